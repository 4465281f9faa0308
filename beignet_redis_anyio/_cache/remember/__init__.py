"""What ``remember`` needs beyond one command: one computation per key.

Modules:

- ``single_flight``: per-key single-flight, owned by the provider's task group.
- ``shared_read``: the first read of a key, shared by every caller that wants it now.
- ``refresh``: early refresh (XFetch) before a value expires.
- ``lease``: the cross-process lease: one process computes, the others wait.
- ``lease_batch``: the same lease for each key of a ``remember_many``.
- ``lease_client``: the little of a client the lease uses, as a Protocol.
- ``lease_scripts``: the lease's Lua scripts and how they run.
- ``ready``: the notifications followers wait on, per key.
- ``keys``: the sidecar keys beside a value (its lease, its metadata).
"""
