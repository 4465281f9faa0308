"""redis-py's command vocabulary on our connections.

Holds ``RedisClient`` (redis-py's command mixins, sending on the multiplexer,
a dedicated connection or a cluster node, shaping replies with redis-py's
callbacks), its ``Pipeline`` (WATCH on a held dedicated connection) and
``Script``, and what needs a connection of its own or none: ``Lock``,
``Monitor``.

May import: ``_net``, ``_topology``.
"""
