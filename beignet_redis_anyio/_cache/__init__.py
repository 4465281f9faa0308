"""The cache port: the five operations, their batches, and what they need.

May import: ``_exceptions``, ``_net``, ``_topology``, ``_client``.

Modules and subpackages:

- ``config``: ``RedisConfig``, from the environment or from code.
- ``port``: ``RedisCachePort`` and its five operations.
- ``core``: the plumbing the operations and the batches share.
- ``batches``: ``get_many``, ``set_many``, ``delete_many``, ``remember_many``.
- ``protocol``: ``CachePort``, what an application types against.
- ``inputs``: what the port accepts, checked before any I/O.
- ``events``: ``CacheEvent``, what the port reports of each operation.
- ``reporting``: events and log lines, told by one ``Reporter``.
- ``breaker``: the circuit breaker in front of Redis.
- ``local``: the local cache, kept right by the server's invalidations.
- ``remember``: single-flight, the shared first read, early refresh, the cross-process lease.
- ``views``: typed values, the ``@cached`` decorator and namespaces.
"""
