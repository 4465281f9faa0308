"""redis-py's command vocabulary on our connections.

Holds ``RedisClient`` (redis-py's command mixins, sending on the multiplexer,
a dedicated connection or a cluster node, shaping replies with redis-py's
callbacks) and its ``Pipeline``.

May import: ``_net``, ``_topology``.
"""
