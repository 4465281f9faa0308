"""The client on its own: redis-py's commands, one multiplexed connection,
under asyncio or trio.

    python examples/client_demo.py --backend trio

Uses ``REDIS_URL`` when it is set; otherwise starts an embedded fakeredis
server, so it runs on a machine with no Redis at all.
"""

from __future__ import annotations

import argparse
import os
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import anyio

from beignet_redis_anyio import open_redis_client


@contextmanager
def redis_url() -> Iterator[str]:
    url = os.environ.get("REDIS_URL")
    if url:
        yield url
        return
    from fakeredis import TcpFakeServer

    server = TcpFakeServer(("127.0.0.1", 0))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        print("REDIS_URL is not set: using an embedded fakeredis server")
        yield f"redis://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


async def main(url: str) -> None:
    async with open_redis_client(url) as client:
        await client.set("demo:greeting", "hello from beignet-redis-anyio")
        print("GET   ", await client.get("demo:greeting"))
        print("INCR  ", await client.incr("demo:counter"))
        await client.hset("demo:user:1", mapping={"name": "Ada", "lang": "python"})
        print("HGETALL", await client.hgetall("demo:user:1"))

        pipe = client.pipeline(transaction=True)
        pipe.incr("demo:counter").expire("demo:counter", 60).ttl("demo:counter")
        print("MULTI ", await pipe.execute())

        # 1000 GETs from 100 tasks share one connection and leave in few writes.
        started = time.perf_counter()

        async def worker() -> None:
            for _ in range(10):
                await client.get("demo:greeting")

        async with anyio.create_task_group() as tasks:
            for _ in range(100):
                tasks.start_soon(worker)
        elapsed = time.perf_counter() - started
        print(f"1000 concurrent GETs in {elapsed * 1000:.1f} ms on one connection")
        await client.delete("demo:greeting", "demo:counter", "demo:user:1")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--backend", choices=["asyncio", "trio"], default="asyncio")
    arguments = parser.parse_args()
    with redis_url() as url:
        anyio.run(main, url, backend=arguments.backend)
