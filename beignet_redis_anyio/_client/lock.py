"""``Lock``: redis-py's distributed lock, on asyncio and trio.

It *is* redis-py's asyncio ``Lock`` (a subclass): the same constructor,
attributes (``name``, ``timeout``, ``sleep``, ``blocking``,
``blocking_timeout``, ``thread_local``, ``local``,
``raise_on_release_error``), Lua scripts, ``LockError`` /
``LockNotOwnedError`` and messages, and ``isinstance(lock,
redis.asyncio.lock.Lock)`` holds. We override only what is bound to asyncio
or that cancellation makes unsafe:

- ``acquire``: redis-py's retry loop calls ``asyncio.sleep`` and the asyncio
  loop's clock, which do not exist under trio. Ours is the same loop on
  ``anyio.sleep`` and ``anyio.current_time()``, and it cleans up after an
  interrupted ``SET`` (below).
- ``release`` runs shielded, so ``finally: await lock.release()`` still
  releases in a cancelled scope (under trio an unshielded await there would
  raise at once and leave the lock held).
- ``__aexit__``: a cancellation leaving the block always propagates as
  itself; a release error cannot replace it.
- ``register_scripts``: the same scripts, falling back to ``EVAL`` on
  ``NOSCRIPT`` so they work on a cluster (see :class:`_Script`).

Why a subclass rather than a copy: the rest (``do_acquire``, ``locked``,
``owned``, ``do_release``, ``extend``, ``reacquire``, the script texts) is
plain command logic with no event-loop calls, so inheriting it keeps one copy
of redis-py's semantics and error messages instead of a second that drifts.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Awaitable, Iterable, Sequence
from types import TracebackType
from typing import Any, Protocol, cast
from uuid import uuid4

import anyio
from redis.asyncio.lock import Lock as RedisPyLock
from redis.exceptions import LockError, LockNotOwnedError, NoScriptError
from redis.exceptions import TimeoutError as RedisTimeoutError
from redis.typing import EncodableT, KeyT, Number


class LockClient(Protocol):
    """What the lock needs of its client (``RedisClient`` is one): the script
    commands its Lua runs with, the encoder its tokens go through, and the
    command timeout its shielded release is bounded by. redis-py's own lock
    code calls ``set``, ``get`` and ``register_script`` as well, untyped.
    Typed here rather than imported, so the client (which makes locks) and
    the lock do not import each other."""

    @property
    def command_timeout(self) -> float | None: ...

    def get_encoder(self) -> Any: ...

    def evalsha(self, sha: str, numkeys: int, *keys_and_args: Any) -> Awaitable[Any]: ...

    def eval(self, script: str, numkeys: int, *keys_and_args: Any) -> Awaitable[Any]: ...


__all__ = ["Lock", "LockClient"]

logger = logging.getLogger(__name__)

#: The bound on a shielded release when the client has no ``command_timeout``
#: (commands may wait forever, but a shielded wait must not).
RELEASE_TIMEOUT = 5.0

# The retry loop's clock and sleep, looked up at call time so tests can put a
# fake clock here (as redis-py's own tests patch ``asyncio`` in its module).
_now = anyio.current_time
_sleep = anyio.sleep


class _Script:
    """One of the lock's Lua scripts, called as redis-py's lock calls its
    ``AsyncScript`` (``script(keys=, args=, client=)``).

    ``EVALSHA`` first; on ``NOSCRIPT``, ``EVAL`` with the source — not
    redis-py's ``SCRIPT LOAD`` and retry: ``SCRIPT LOAD`` names no key, so on
    a cluster it reaches any primary and the retried ``EVALSHA`` fails again
    on the key's own; ``EVAL`` goes where the key lives, and the server keeps
    the script for the next ``EVALSHA``.
    """

    def __init__(self, source: str) -> None:
        self.script = source
        self.sha = hashlib.sha1(source.encode()).hexdigest()

    async def __call__(
        self, keys: Sequence[KeyT], args: Iterable[EncodableT], client: LockClient
    ) -> Any:
        try:
            return await client.evalsha(self.sha, len(keys), *keys, *args)
        except NoScriptError:
            return await client.eval(self.script, len(keys), *keys, *args)


# redis-py's scripts, word for word: only how they are sent differs.
_RELEASE = _Script(RedisPyLock.LUA_RELEASE_SCRIPT)
_EXTEND = _Script(RedisPyLock.LUA_EXTEND_SCRIPT)
_REACQUIRE = _Script(RedisPyLock.LUA_REACQUIRE_SCRIPT)


class Lock(RedisPyLock):
    """A distributed lock on one Redis key; make one with ``client.lock(name)``.

    Semantics are redis-py's asyncio ``Lock`` (see its docstring, inherited
    by ``__init__``): ``acquire()`` sets the key to a fresh token with
    ``SET NX`` (``PX timeout`` when ``timeout`` is given), retrying every
    ``sleep`` seconds while someone else holds it — one ``SET`` per
    ``sleep``, never a busy loop — until ``blocking_timeout``; ``release``,
    ``extend`` and ``reacquire`` are Lua scripts that act only if the key
    still holds our token. ``async with lock:`` acquires (``LockError`` if it
    could not within ``blocking_timeout``) and releases on exit.

    ``thread_local=True`` (the default) keeps the token in a
    ``threading.local``, exactly as redis-py does: every task in one thread
    sees the same token, so give each task its own ``Lock`` object.

    Cancellation:

    - ``acquire`` cancelled while it waits between attempts holds nothing.
    - ``acquire`` interrupted while its ``SET`` is in flight (cancelled, timed
      out, connection lost) may have taken the lock on the server without
      seeing the reply. It then runs the release script with its token —
      shielded, bounded like ``release`` (below) — before the
      interruption propagates, so the key is not leaked (redis-py's lock
      leaks it until ``timeout``). The script deletes only our token, so it
      is harmless when the ``SET`` did not take the lock (unless ``token=``
      was given and the key already holds that same token: that holder is
      taken to be us, as ``release`` would). If the server cannot
      be reached within that bound the key stays until its ``timeout``
      (forever without one), and a warning is logged.
    - ``release`` is shielded and bounded by twice the client's
      ``command_timeout`` (room for the ``NOSCRIPT`` fallback), or
      :data:`RELEASE_TIMEOUT` when it has none: it completes even
      when its caller is cancelled, and the cancellation is delivered at the
      caller's next checkpoint. The local token is cleared only once the
      server has answered (or said the lock is no longer ours), so a release
      that failed can be retried.
    - ``async with``: the exit releases even when the block is cancelled; the
      cancellation then propagates unchanged — a release error (lock expired,
      server unreachable) is logged, not raised over it. Other exits behave as
      in redis-py: a ``LockError`` from the release is raised unless
      ``raise_on_release_error=False``.
    - ``extend`` / ``reacquire`` are not shielded: cancelled in flight, they
      may still apply (they only lengthen our own lock).
    """

    # What the inherited do_release / do_extend / do_reacquire call.
    lua_release: Any = None
    lua_extend: Any = None
    lua_reacquire: Any = None

    def __init__(
        self,
        redis: LockClient,
        name: KeyT,
        timeout: float | None = None,
        sleep: float = 0.1,
        blocking: bool = True,
        blocking_timeout: Number | None = None,
        thread_local: bool = True,
        raise_on_release_error: bool = True,
    ) -> None:
        # redis-py types ``redis`` as its own clients; ours offers the same
        # methods (set, get, register_script, get_encoder).
        super().__init__(
            cast(Any, redis),
            name,
            timeout=timeout,
            sleep=sleep,
            blocking=blocking,
            blocking_timeout=blocking_timeout,
            thread_local=thread_local,
            raise_on_release_error=raise_on_release_error,
        )
        self._client = redis

    def register_scripts(self) -> None:
        # Instead of the base class's: ours fall back to EVAL (see _Script),
        # and are not shared with redis-py's own locks on redis-py's clients.
        self.lua_release, self.lua_extend, self.lua_reacquire = _RELEASE, _EXTEND, _REACQUIRE

    async def __aenter__(self) -> Lock:
        # redis-py's own: it calls our acquire, and its LockError is worded
        # (and, from 8.2, carries lock_name) as the installed release does.
        """Acquire, as :meth:`acquire` with the lock's own settings. Raises redis-py's
        ``LockError`` when the lock is not acquired (``blocking=False``, or ``blocking_timeout``
        ran out), and ``ConnectionError``/``TimeoutError`` when Redis cannot be reached.
        Cancellation: as :meth:`acquire`: an interrupted ``SET`` is undone, shielded."""
        await super().__aenter__()  # type: ignore[no-untyped-call, unused-ignore]
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc_value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        """Release, shielded and bounded. Raises the release's ``LockError``/``LockNotOwnedError``
        unless ``raise_on_release_error=False`` (then logged). Cancellation: a cancellation
        leaving the block always propagates as itself; a release error is logged instead of
        replacing it."""
        try:
            await self.release()
        except Exception as error:
            if isinstance(exc_value, anyio.get_cancelled_exc_class()):
                # Replacing a cancellation would break the canceller's scope.
                logger.warning(
                    "Lock %r could not be released on cancellation: %s", self.name, error
                )
                return
            if isinstance(error, LockError) and not self.raise_on_release_error:
                logger.warning("Lock was unlocked or no longer owned when exiting context manager.")
                return
            raise

    async def acquire(
        self,
        blocking: bool | None = None,
        blocking_timeout: Number | None = None,
        token: str | bytes | None = None,
        *,
        sleep: Number | None = None,
    ) -> bool:
        """Take the lock; ``True`` once held, ``False`` if not (``blocking=False``,
        or ``blocking_timeout`` ran out).

        Tries once, then — if ``blocking`` — again every ``sleep`` seconds
        (this call's ``sleep``, else the lock's), giving up without a last
        sleep when that would pass ``blocking_timeout`` (redis-py's loop).
        ``token`` (``str`` or ``bytes``) replaces the generated ``uuid4`` hex.
        Cancellation: see the class docstring.

        Raises redis-py's ``ConnectionError``/``TimeoutError`` when Redis cannot be reached
        during a try (the try's ``SET`` is undone first, shielded).
        """
        if sleep is None:
            sleep = self.sleep
        if token is None:
            encoded = uuid4().hex.encode()
        else:
            encoded = self._client.get_encoder().encode(token)
        if blocking is None:
            blocking = self.blocking
        if blocking_timeout is None:
            blocking_timeout = self.blocking_timeout
        stop_trying_at = None
        if blocking_timeout is not None:
            stop_trying_at = _now() + blocking_timeout
        while True:
            if await self._try_acquire(encoded):
                self.local.token = encoded
                return True
            if not blocking:
                return False
            next_try_at = _now() + sleep
            if stop_trying_at is not None and next_try_at > stop_trying_at:
                return False
            await _sleep(sleep)

    async def _try_acquire(self, token: bytes) -> bool:
        try:
            return await self.do_acquire(token)
        except BaseException:
            # The SET may have been applied although we never saw its reply.
            await self._undo_acquire(token)
            raise

    async def _undo_acquire(self, token: bytes) -> None:
        with anyio.CancelScope(shield=True), anyio.move_on_after(self._release_timeout()):
            try:
                await self.do_release(token)
                logger.debug("Lock %r: released what an interrupted acquire took", self.name)
                return
            except LockNotOwnedError:
                return  # the SET had not taken it: nothing to undo
            except Exception as error:
                logger.warning(
                    "Lock %r: an interrupted acquire may hold the key until its timeout: %s",
                    self.name,
                    error,
                )
                return
        logger.warning(
            "Lock %r: an interrupted acquire may hold the key until its timeout", self.name
        )

    async def release(self) -> None:
        """Release the lock: ``LockError`` if this lock holds no token,
        ``LockNotOwnedError`` if the key no longer holds it (expired, taken).

        Shielded and bounded (see the class docstring); past the bound it
        raises redis-py's ``TimeoutError`` and keeps the token, so it can be
        retried.

        Cancellation: shielded, so it completes (within that bound) even in a cancelled scope;
        ``finally: await lock.release()`` is safe.
        """
        bound = self._release_timeout()
        with anyio.CancelScope(shield=True):
            with anyio.move_on_after(bound) as deadline:
                await super().release()
            if deadline.cancelled_caught:
                raise RedisTimeoutError(f"releasing lock {self.name!r} took over {bound} s")

    def _release_timeout(self) -> float:
        # Room for the NOSCRIPT fallback's second round trip, so the client's
        # own TimeoutError (one command_timeout) surfaces first.
        command_timeout = self._client.command_timeout
        return RELEASE_TIMEOUT if command_timeout is None else 2 * command_timeout
