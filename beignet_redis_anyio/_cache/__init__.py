"""The cache layer: ``RedisCachePort`` and everything ``remember`` needs.

Above the client (``_client/``), below the provider (``_provider/``): the
port (``port.py``) with its protocol, inputs, events and reporting; the
configuration; per-key single-flight, the shared first read, the
cross-process lease with its Lua scripts and ready notifications; early
refresh; the circuit breaker; and the sidecar keys kept beside a value.
"""
