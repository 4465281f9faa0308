"""The cache port and everything ``remember`` needs.

Holds ``RedisConfig`` (``config``), the port and its five operations
(``port``), per-key single-flight (``single_flight``), the cross-process lease
(``lease``, its Lua ``scripts``, and the ``ready`` notifications followers
wait on), sidecar key names in the value's slot (``keys``), the circuit
breaker (``breaker``) and the events an observer receives (``events``).

May import: ``_net``, ``_topology``, ``_client``.
"""
