"""The network layer: bytes, connections, and what a command does to one.

Holds the settings of one server (``settings``, with the strict number
parsing it needs in ``numbers``), RESP on the wire (``wire``, parsed by
hiredis, error replies mapped by ``redis_compat`` — the one module that
touches redis-py internals), opening an authenticated connection
(``transport``), the shared multiplexed connection (``multiplexer``), the
bounded set of connections for blocking commands (``dedicated``), which path
each command takes (``commands``), and the task group that keeps a body's
exception unwrapped (``task_group``).

May import: the standard library, anyio, hiredis, redis-py — nothing else of
ours. Only this layer opens sockets.
"""
