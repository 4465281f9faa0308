"""The network layer: bytes, connections, and what a command does to one.

Only this layer opens sockets. It may import the standard library, anyio,
hiredis, redis-py and ``_exceptions`` — nothing else of ours — and trio,
only when trio runs the task (``primitives``).

Modules:

- ``settings``: where to connect and how, parsed from a URL and checked up front.
- ``numbers``: strict ASCII number parsing and range checks, for every setting.
- ``wire``: RESP on the wire, packed and parsed by hiredis.
- ``redis_compat``: every redis-py internal we use, guarded by a test.
- ``transport``: opening one authenticated, selected, named connection.
- ``primitives``: the running loop's own event and checkpoints, taken once per connection.
- ``multiplexer``: the one connection every task shares (writer, reader, watchdog, reconnect).
- ``dedicated``: the bounded connections for commands that block on the server.
- ``node``: one server, owning its shared connection and its dedicated ones.
- ``commands``: the command table: each command's path, keys, block time, refusal.
- ``subscriber``: staying connected and subscribed, with backoff, while a task runs.
- ``errors``: the wording of failures that every layer raises.
- ``task_group``: a task group whose body's exception comes out as itself.
"""
