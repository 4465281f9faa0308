"""Redis outages as ``503 Service Unavailable``, for FastAPI and Starlette apps.

When Redis cannot be reached, every cache operation raises redis-py's
``ConnectionError`` (:class:`CircuitOpenError` at once while the breaker is
open, :class:`BatchUnavailableError` for a batch that was part done) or
``TimeoutError`` (a frozen server). Left alone, each becomes a 500 and a
logged traceback per request — a flood in the log during an outage that the
breaker already logs once. One call maps them all to a short 503 with
``Retry-After``::

    from beignet_redis_anyio.fastapi import add_cache_unavailable_handler

    app = FastAPI(lifespan=lifespan)
    add_cache_unavailable_handler(app)

The response never carries the exception's message (it may name a host).
Starlette (FastAPI's base, installed with it) is the one requirement.
"""

from __future__ import annotations

from typing import Any

from redis.exceptions import ConnectionError, TimeoutError
from starlette.requests import Request
from starlette.responses import JSONResponse

__all__ = ["OUTAGES", "add_cache_unavailable_handler", "cache_unavailable_response"]

#: What the cache raises when Redis cannot be reached.
OUTAGES = (ConnectionError, TimeoutError)


def cache_unavailable_response(*, retry_after_seconds: int = 1) -> JSONResponse:
    """The 503 itself: a JSON ``detail`` and ``Retry-After``."""
    return JSONResponse(
        {"detail": "the cache is unavailable, retry shortly"},
        status_code=503,
        headers={"Retry-After": str(retry_after_seconds)},
    )


def add_cache_unavailable_handler(app: Any, *, retry_after_seconds: int = 1) -> None:
    """Register, on a FastAPI or Starlette ``app``, the handler that answers
    every Redis outage (:data:`OUTAGES`, their subclasses included) with
    :func:`cache_unavailable_response`.

    Raises ``TypeError``/``ValueError`` for a ``retry_after_seconds`` that is
    not a whole number of seconds from 0 (``Retry-After`` takes no other).
    """
    if isinstance(retry_after_seconds, bool) or not isinstance(retry_after_seconds, int):
        raise TypeError(
            f"retry_after_seconds must be an int, got {type(retry_after_seconds).__name__}"
        )
    if retry_after_seconds < 0:
        raise ValueError(f"retry_after_seconds must be 0 or more, got {retry_after_seconds}")

    async def cache_unavailable(request: Request, exc: Exception) -> JSONResponse:
        return cache_unavailable_response(retry_after_seconds=retry_after_seconds)

    for outage in OUTAGES:
        app.add_exception_handler(outage, cache_unavailable)
