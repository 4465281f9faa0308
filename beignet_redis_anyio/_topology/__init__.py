"""Many servers behind one address: cluster and Sentinel.

May import: ``_exceptions``, ``_net``.

Modules:

- ``urls``: the ``redis+cluster://`` and ``redis+sentinel://`` URLs that name them.
- ``cluster``: routing by hash slot, MOVED/ASK, a node per primary, per-slot splitting.
- ``sentinel``: asking sentinels for the master and following ``+switch-master``;
  its replicas, for reads.
- ``replicas``: the ``read_from`` policy, and which replica is healthy.
"""
