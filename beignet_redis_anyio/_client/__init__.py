"""redis-py's command vocabulary on our connections.

May import: ``_exceptions``, ``_net``, ``_topology``.

Modules:

- ``client``: ``RedisClient``: redis-py's command mixins, sent on our connections.
- ``pipeline``: ``Pipeline``: many commands in one write, MULTI/EXEC and WATCH.
- ``script``: ``client.register_script(...)``, pipelines included.
- ``lock``: ``Lock``: redis-py's distributed lock, safe under cancellation.
- ``pubsub``: ``client.pubsub()``: redis-py's ``PubSub`` on anyio.
- ``pubsub_connection``: one subscribed connection, re-subscribed after a loss.
- ``pubsub_inbox``: the bounded queue of frames not yet taken.
- ``monitor``: ``client.monitor()``: every command the server runs.
- ``local_stats``: ``LocalStats``, the counters a local cache reports.
- ``reply_cache``: read-only commands' replies from memory (``local_cache=True``).
"""
