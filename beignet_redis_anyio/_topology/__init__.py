"""Many servers behind one address: cluster and Sentinel.

Holds the URLs that name them (``urls``: ``redis+cluster://``,
``redis+sentinel://``), routing by hash slot with MOVED/ASK handling and
per-slot splitting (``cluster``), and asking sentinels for the master and
following ``+switch-master`` (``sentinel``).

May import: ``_net``.
"""
