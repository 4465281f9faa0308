"""Views over a port: typed values, the decorator, namespaces.

Each is written over the five string operations (``viewed``), so every port
— ``RedisCachePort``, ``testing.MemoryCachePort``, a namespace — gets the
same conveniences with ``remember``'s guarantees.

Modules:

- ``viewed``: what the views need from the port beneath them.
- ``codecs``: how objects become the port's strings and back.
- ``typed``: ``TypedCache``, the five operations through a codec.
- ``decorator``: ``@cache.cached(...)``, an ``async def`` through ``remember``.
- ``conveniences``: ``json``, ``with_codec`` and ``cached`` as a mixin.
- ``namespace``: ``cache.namespace(name)``, and the mixin that offers it.
- ``slot``: ``CacheSlot``, the conveniences declared before any port exists.
"""
