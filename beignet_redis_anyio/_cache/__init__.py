"""The cache port and everything ``remember`` needs.

Holds ``RedisConfig`` (``config``); the port and its five operations
(``port``), the protocol applications type against (``protocol``), input
checks (``inputs``) and the events and log lines they report
(``reporting``, ``events``); per-key single-flight (``single_flight``) and the
first read shared by concurrent callers (``shared_read``); XFetch early
refresh (``refresh``); the cross-process lease (``lease``, its Lua
``scripts``, the ``ready`` notifications followers wait on, typed against
``commands.CommandClient``); sidecar key names in the value's slot
(``keys``); and the circuit breaker (``breaker``).

May import: ``_net``, ``_topology``, ``_client``.
"""
