"""Every public async function says what it raises and what cancellation does."""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterator
from typing import Any

import beignet_redis_anyio
from beignet_redis_anyio import testing
from beignet_redis_anyio.testing import asgi, servers


def _is_async(function: Any) -> bool:
    wrapped = getattr(function, "__wrapped__", None)  # an asynccontextmanager
    return any(
        inspect.iscoroutinefunction(f) or inspect.isasyncgenfunction(f) for f in (function, wrapped)
    )


def _public_async() -> Iterator[tuple[str, Callable[..., Any]]]:
    seen: set[str] = set()
    for module in (beignet_redis_anyio, testing, asgi, servers):
        for name in module.__all__:
            obj = getattr(module, name)
            if inspect.isclass(obj):
                for attr, member in vars(obj).items():
                    if attr.startswith("_") and attr not in ("__aenter__", "__aexit__"):
                        continue
                    if _is_async(member) and f"{name}.{attr}" not in seen:
                        seen.add(f"{name}.{attr}")
                        yield f"{name}.{attr}", member
            elif callable(obj) and _is_async(obj) and name not in seen:
                seen.add(name)
                yield name, obj


def test_every_public_async_function_states_raises_and_cancellation() -> None:
    found = dict(_public_async())
    assert len(found) > 60  # the walk itself still sees the API
    silent = [
        name
        for name, function in found.items()
        if not {"raise", "cancel"} <= set(_words(inspect.getdoc(function) or ""))
    ]
    assert silent == []


def _words(docstring: str) -> Iterator[str]:
    text = docstring.lower()
    for word in ("raise", "cancel"):
        if word in text:
            yield word
