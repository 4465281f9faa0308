"""``CommandClient``: the little of a Redis client the lease and its scripts use.

The lease and its Lua scripts send commands and read the command timeout;
that is all. Typing them against this protocol, not ``RedisClient``'s class,
keeps them free of the client layer's details: ``RedisClient`` fits it, and
so does any stand-in a test makes.
"""

from __future__ import annotations

from typing import Any, Protocol

__all__ = ["CommandClient"]


class CommandClient(Protocol):
    @property
    def command_timeout(self) -> float | None:
        """Seconds a command may take, or ``None`` for no limit."""
        ...

    async def execute_command(self, *args: Any) -> Any:
        """Send one command; its reply, or the error reply raised."""
        ...
