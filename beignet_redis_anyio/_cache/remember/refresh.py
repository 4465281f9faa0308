"""Early refresh (XFetch): recompute a value shortly before it expires.

Vattani, Chierichetti & Lowenstein, "Optimal Probabilistic Cache Stampede
Prevention" (VLDB 2015): on a hit, recompute early when
``now - delta * beta * ln(rand()) >= expiry``, with ``delta`` the time the
last computation took. The longer a value takes to compute and the nearer
its expiry, the likelier one hit refreshes it — so, usually, exactly one
caller recomputes a hot key before it expires, and nobody ever waits.

``delta`` is kept in a *sidecar* key beside the value (``keys.py``), never
inside it: ``get`` and ``cache.client`` still read exactly what was stored.
The refresh itself runs in the background, in the provider's task group, and
reports a ``cache.refresh`` event when it ends; the caller that started it
gets the current value at once.
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Awaitable, Callable

from ..reporting import Reporter
from .keys import sidecar_key
from .single_flight import cancelled_from_outside

__all__ = ["meta_delta", "meta_key", "meta_value", "refresh_due", "reported_refresh"]


def meta_key(full_key: str) -> str:
    """Where the metadata of the value at ``full_key`` lives (same slot)."""
    return sidecar_key(full_key, "meta")


def meta_value(delta: float) -> str:
    """Metadata kept beside a value: how long computing it took, in ms."""
    return f"{delta * 1000:.3f}"


#: ``-ln(rand)`` never exceeds this: ``rand = 1 - random.random()`` is at
#: least 2**-53, and ``-ln(2**-53)`` is about 36.74. So when even this much
#: times ``delta * beta`` falls short of the remaining TTL, no draw could
#: make the refresh due, and none is made: what every hit of a hot key far
#: from its expiry decides, without the draw.
_MOST_LN = 36.8


def meta_delta(meta: str | bytes | float | None) -> float | None:
    """``delta`` in ms from the sidecar's metadata, or ``None`` when there
    is none or it is not a finite, non-negative number (another program
    wrote the key): then no hit refreshes."""
    if meta is None:
        return None
    try:
        delta_ms = float(meta)
    except (TypeError, ValueError):
        return None
    return delta_ms if 0 <= delta_ms < math.inf else None


def refresh_due(meta: str | bytes | float | None, remaining_ms: object, beta: float) -> bool:
    """Whether this hit should start an early refresh.

    ``meta`` is what the sidecar holds (``None`` if nothing: a value stored
    by ``set``, or before early refresh was on), or its :func:`meta_delta`
    already; ``remaining_ms`` the value's ``PTTL`` (negative when it has no
    expiry). Metadata that is not a finite, non-negative number (another
    program wrote the key) means no refresh: the hit is still a hit.
    """
    if meta is None or not isinstance(remaining_ms, int) or remaining_ms <= 0:
        return False
    delta_ms = meta if type(meta) is float else meta_delta(meta)
    if delta_ms is None or delta_ms * beta * _MOST_LN < remaining_ms:
        return False
    rand = 1.0 - random.random()  # in (0, 1]: ln stays finite
    return -delta_ms * beta * math.log(rand) >= remaining_ms


def reported_refresh(
    key: str, compute: Callable[[], Awaitable[str]], report: Reporter
) -> Callable[[], Awaitable[str]]:
    """``compute``, reporting a ``cache.refresh`` event for ``key`` when it ends."""

    async def refresh() -> str:
        started = time.perf_counter()
        try:
            value = await compute()
        except BaseException as exc:
            # Any failure of the factory's, BaseExceptions included (the
            # flight drops it: nobody waits); not the provider closing.
            if report.observer is not None and not cancelled_from_outside(exc):
                report.error("cache.refresh", key, None, started, exc)
            raise
        if report.observer is not None:
            report.event("cache.refresh", key, "stored", None, started)
        return value

    return refresh
