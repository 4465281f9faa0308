"""Codecs: how the typed views turn objects into the port's strings and back.

A codec is any object with ``dumps(obj) -> str`` and ``loads(str) -> obj``
(``json``'s own module shape, so ``cache.with_codec(my_codec)`` takes a
msgpack or pydantic adapter of a few lines; see ``docs/views.md``). ``JSON`` is the
one ``cache.json`` uses: compact and deterministic, so equal values are equal
strings under the same key names, whichever process wrote them.

There is no pickle codec, on purpose: unpickling runs whatever code the
stored bytes name, so anyone who can write to the cache (another service, a
compromised host, a typo in a key) could run code in every reader.

A value that fails to decode raises :class:`CacheDecodeError` naming the key;
the views never treat it as a miss, so another program's data is never
silently overwritten.
"""

from __future__ import annotations

import json
from typing import Any, Protocol, TypeVar, Union

__all__ = ["JSON", "Codec", "JsonCodec", "JsonValue"]

T = TypeVar("T")

#: What ``cache.json`` stores and returns. Tuples are accepted and come back
#: as lists (JSON has no tuple), as ``json.loads`` does.
JsonValue = Union[dict[str, Any], list[Any], str, int, float, bool, None]  # noqa: UP007


class Codec(Protocol[T]):
    """Anything with ``dumps(obj) -> str`` and ``loads(data) -> obj``.

    ``dumps`` may raise ``TypeError``/``ValueError`` for an object it cannot
    encode (nothing is stored); anything ``loads`` raises is a decode failure.
    To cache ``None`` (negative caching), ``dumps(None)`` must produce a
    string that ``loads`` turns back into ``None``.
    """

    def dumps(self, obj: T, /) -> str: ...

    def loads(self, data: str, /) -> T: ...


def _no_constants(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


class JsonCodec:
    """Compact, deterministic JSON: ``separators=(",", ":")``, sorted keys,
    UTF-8 text as is (``ensure_ascii=False``), and no NaN or Infinity either
    way (they are not JSON; other languages' parsers reject them)."""

    # Built once: json.dumps/json.loads with any option build a new
    # encoder/decoder per call, which would dominate a cache hit.
    _encode = json.JSONEncoder(
        separators=(",", ":"), sort_keys=True, ensure_ascii=False, allow_nan=False
    ).encode
    _decode = json.JSONDecoder(parse_constant=_no_constants).decode

    def dumps(self, obj: JsonValue | tuple[Any, ...], /) -> str:
        try:
            return self._encode(obj)
        except ValueError as exc:
            if "Out of range float" in str(exc):
                raise ValueError("NaN and Infinity cannot be stored as JSON") from None
            raise

    def loads(self, data: str, /) -> JsonValue:
        value: JsonValue = self._decode(data)
        return value

    def __repr__(self) -> str:
        return "JSON"


#: The codec of ``cache.json``.
JSON = JsonCodec()
