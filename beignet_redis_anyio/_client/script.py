"""``client.register_script(…)``: redis-py's script object, pipelines included.

redis-py's ``AsyncScript`` recognises a pipeline by its own ``Pipeline``
class, which ours is not; given ours, it would send EVALSHA without telling
the pipeline, and a server without the script would fail it with NOSCRIPT.
:class:`Script` is that object with the one check widened: given our
:class:`~.pipeline.Pipeline`, it registers itself there, and the pipeline
loads it (SCRIPT EXISTS / SCRIPT LOAD) before sending anything. Run on a
client, it is redis-py's: EVALSHA, and on NOSCRIPT SCRIPT LOAD and EVALSHA
again.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from redis.commands.core import AsyncScript
from redis.exceptions import NoScriptError

from .pipeline import Pipeline

__all__ = ["Script"]


class Script(AsyncScript):
    """A Lua script run by SHA1 (see the module docstring)."""

    async def __call__(
        self,
        keys: Sequence[Any] | None = None,
        args: Iterable[Any] | None = None,
        client: Any = None,
    ) -> Any:
        keys = keys or []
        arguments = (*keys, *(args or []))
        if client is None:
            client = self.registered_client
        if isinstance(client, Pipeline):
            client.scripts.add(self)
        try:
            return await client.evalsha(self.sha, len(keys), *arguments)
        except NoScriptError:
            # The client may point at another server than the one that knew
            # it; load it there and keep the SHA the server gives.
            self.sha = await client.script_load(self.script)
            return await client.evalsha(self.sha, len(keys), *arguments)
