"""Redis for your tests and demos, with nothing to install.

``embedded_redis()`` runs fakeredis's TCP server on a free loopback port in a
background thread and yields its ``redis://`` URL; point a provider at it::

    from beignet_redis_anyio import RedisConfig, open_redis_provider
    from beignet_redis_anyio.testing import embedded_redis

    async with embedded_redis() as url, open_redis_provider(RedisConfig(url=url)) as cache:
        ...

It needs ``fakeredis`` (``pip install 'beignet-redis-anyio[testing]'``). For
pytest, add ``pytest_plugins = ["beignet_redis_anyio.testing.pytest_plugin"]``
to your ``conftest.py`` for a ready ``cache`` fixture.

A unit test that needs no server at all takes ``MemoryCachePort()`` instead:
the port's semantics, in this process (``memory.py``).

Modules:

- ``memory``: ``MemoryCachePort``, the port in this process, for tests with no server.
- ``caller_flight``: the single-flight ``MemoryCachePort`` runs in its callers.
- ``pytest_plugin``: a ready ``cache`` fixture, every backend, an app's lifespan.
- ``_backends``: the backends a suite can name (``asyncio``, ``uvloop``, ``trio``).
- ``asgi``: an ASGI app's real lifespan in a test, and requests to it.
- ``servers``: throw-away real ``redis-server`` and ``valkey-server`` processes.
- ``cleanup``: deleting the keys a test wrote, on every node.
"""

from __future__ import annotations

import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio

from .memory import MemoryCachePort

__all__ = ["EmbeddedRedis", "MemoryCachePort", "embedded_redis"]

#: How often the server thread checks for shutdown; bounds how long stopping takes.
_POLL_INTERVAL = 0.05


class EmbeddedRedis:
    """fakeredis's TCP server on ``127.0.0.1`` and a free port, in a thread.

    ``start()`` and ``stop()`` are plain (blocking) calls, for session-scoped
    fixtures; :func:`embedded_redis` wraps them for ``async with``.
    """

    def __init__(self) -> None:
        try:
            from fakeredis import TcpFakeServer
        except ImportError:  # pragma: no cover - depends on the install
            raise ImportError(
                "the embedded Redis needs fakeredis: pip install 'beignet-redis-anyio[testing]'"
            ) from None
        self._server: Any = TcpFakeServer(("127.0.0.1", 0))
        # Connection threads must not keep the interpreter alive or make
        # stop() wait for clients that never hung up.
        self._server.daemon_threads = True
        self._server.block_on_close = False
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"redis://{host}:{port}"

    def start(self) -> EmbeddedRedis:
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": _POLL_INTERVAL},
            name="beignet-embedded-redis",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._thread is not None:
            self._server.shutdown()
            self._thread.join()
            self._thread = None
        self._server.server_close()


@asynccontextmanager
async def embedded_redis() -> AsyncIterator[str]:
    """Start an embedded Redis and yield its URL; stop it on exit.

    Raises ``ImportError`` (naming the extra to install) without fakeredis.
    The server runs in a thread of this process, on a free loopback port.
    Cancellation: leaving the block, cancelled or not, stops the server,
    shielded, so no thread outlives it.
    """
    server = EmbeddedRedis().start()
    try:
        yield server.url
    finally:
        with anyio.CancelScope(shield=True):
            await anyio.to_thread.run_sync(server.stop)
