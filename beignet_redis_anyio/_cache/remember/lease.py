"""Cross-process single-flight: one process computes, the others wait for it.

In-process single-flight (``single_flight.py``) makes one task per process ask;
this makes one *process* compute. The protocol, per key:

1. Try to take a lease: ``SET <lock> <random token> NX PX <lease>``.
2. The leader runs the factory while a renewal task extends the lease every
   third of it (compare-and-``PEXPIRE``, so only the holder can extend it).
   Then one script stores the value (and its metadata) *before* deleting the
   lease — only if it is still ours — and publishes the key. A lease found
   lost (expired, taken) is reported; the value is still stored and returned.
   If anything fails before the value is stored (the factory, the store
   itself) or the leader is cancelled, the lease is released at once and the
   followers told. An early refresh (``refresh.py``) takes the lease as a miss
   does, so that one process across the fleet refreshes; the value it started
   from is no reason for its leader not to compute.
3. A follower subscribes to its key's ready channel (``ready.py``: per key,
   only while it waits), reads the key once the subscription is confirmed,
   and waits to be told — the message carries the value — or for a bounded,
   jittered poll. When the lease is free again without a value (the leader
   died or failed), the next poll's ``SET NX`` makes that follower the
   leader. A waiting process sends five commands: the first ``GET``, the
   ``SET NX``, ``SSUBSCRIBE``, the ``GET`` after it, ``SUNSUBSCRIBE``.
   After ``wait`` seconds at most it computes the value itself: the lease
   saves work; it is never what correctness depends on.
"""

from __future__ import annotations

import random
import secrets
import time
from collections.abc import Awaitable, Callable

import anyio

from ..._net.task_group import background_task_group
from .keys import sidecar_key
from .lease_client import CommandClient
from .lease_scripts import RELEASE, RENEW, STORE_AND_RELEASE
from .ready import ReadyNotifications, ready_channel

__all__ = ["Lease", "LeaseReport"]

#: Produces the value and how long producing it took (seconds).
Produce = Callable[[], Awaitable[tuple[str, float]]]
#: Stores the value without a lease (a follower that stopped waiting).
Store = Callable[[str, float], Awaitable[None]]
#: Reports "lease_lost" / "wait_expired" for a key.
LeaseReport = Callable[[str, str, str | None], None]

_POLL_MIN, _POLL_MAX = 0.05, 1.0


class Lease:
    def __init__(
        self,
        client: CommandClient,
        notifications: ReadyNotifications,
        *,
        lease_seconds: float,
        wait_seconds: float,
        report: LeaseReport,
    ) -> None:
        self._client = client
        self._notifications = notifications
        self.lease_ms = max(1, round(lease_seconds * 1000))
        self.lease_seconds = lease_seconds
        self._wait_seconds = wait_seconds
        self.report = report
        # Poll rarely: notifications do the real work; this only bounds the
        # wait when one is lost.
        self._poll = min(_POLL_MAX, max(_POLL_MIN, lease_seconds / 10))

    def warm(self) -> None:
        """Open the followers' subscriber in the background (``ready.py``),
        so that a follower does not wait for its connection: called by
        every use of the lease."""
        self._notifications.warm()

    async def compute(
        self,
        key: str,
        full_key: str,
        produce: Produce,
        store: Store,
        ttl_ms: int | None,
        meta: Callable[[float], str],
        refreshing: str | None = None,
    ) -> str:
        """The value for ``full_key``: computed here as leader, or read once
        another process has computed it.

        ``refreshing``: the value an early refresh started from (``None``
        for a miss). Its leader computes even though that value is stored —
        only a different one (another process refreshed meanwhile) is used
        as it is; its follower, finding a value stored, returns it at once:
        the process that holds the lease is refreshing it.
        """
        token = secrets.token_hex(16)
        lock = sidecar_key(full_key, "lock")
        self.warm()
        if await self._take(lock, token, full_key):
            return await self._lead(key, full_key, lock, token, produce, ttl_ms, meta, refreshing)
        return await self.follow(key, full_key, produce, store, ttl_ms, meta, refreshing)

    async def follow(
        self,
        key: str,
        full_key: str,
        produce: Produce,
        store: Store,
        ttl_ms: int | None,
        meta: Callable[[float], str],
        refreshing: str | None = None,
    ) -> str:
        """The value for ``full_key``, whose lease another process has just
        been found holding: read once that process has stored it; computed
        here after all when the lease comes free without a value (this
        process takes it over and leads) or after ``wait`` seconds.

        ``remember_many`` takes its keys' leases together and follows each
        key it lost here, on that key's own channel. ``refreshing``: as
        :meth:`compute` has it (for a lease taken over).

        Cancellation: the watch is left (its unsubscribe shielded and
        bounded); a lease taken over is released as :meth:`_lead` says.
        """
        token = secrets.token_hex(16)
        lock = sidecar_key(full_key, "lock")
        give_up_at = time.monotonic() + self._wait_seconds
        self.warm()
        # Someone else leads. Subscribe to the key's channel — confirmed
        # before the next read, so a value stored after that read is heard —
        # then read, and wait to be told (the message carries the value) or
        # to poll. Told to look again (the leader gave up) or after a poll,
        # try the lease: a free one makes us the leader.
        leading = False
        async with self._notifications.watch(full_key, self._poll) as watch:
            while True:
                value = await self._client.execute_command("GET", full_key)
                if value is not None:
                    return str(value)
                left = give_up_at - time.monotonic()
                if left <= 0:
                    break
                told = await watch.wait(min(left, self._poll * random.uniform(0.5, 1.5)))
                if told is not None:
                    return told
                if await self._take(lock, token, full_key):
                    leading = True
                    break
        if leading:
            return await self._lead(key, full_key, lock, token, produce, ttl_ms, meta, refreshing)
        self.report(key, "wait_expired", None)
        produced, delta = await produce()
        await store(produced, delta)
        return produced

    async def _take(self, lock: str, token: str, full_key: str) -> bool:
        """Try to take the lease. Cancelled while the ``SET NX`` is in flight,
        the server may have set it without our hearing: give it up (only if
        it holds our token), or the others would wait it out."""
        try:
            return bool(
                await self._client.execute_command("SET", lock, token, "NX", "PX", self.lease_ms)
            )
        except BaseException:
            await self._release(lock, token, full_key)
            raise

    async def _lead(
        self,
        key: str,
        full_key: str,
        lock: str,
        token: str,
        produce: Produce,
        ttl_ms: int | None,
        meta: Callable[[float], str],
        refreshing: str | None = None,
    ) -> str:
        """Compute, store and let go, as the holder of the lease ``token``.

        The lease is given up on every way out, never left for the followers
        to wait out (``lock_wait_seconds``) or to expire: stored and released
        in one script when all goes well; released at once — RELEASE
        publishes, so the followers look again and one of them takes over —
        when anything fails (the first read, the factory, the renewal group,
        the store itself: a value or TTL the server refuses, a lost
        connection) or we are cancelled. The release is shielded and bounded
        by the lease's length, and safe when the store did run after all
        (a cancelled reply): it deletes the lock only while it holds our
        token.
        """
        try:
            # The previous leader may have stored the value and let go
            # between our first read and our SET NX: look once more first.
            # A refresh finds the value it started from there: only another
            # one (refreshed meanwhile by another process) is used as it is.
            existing = await self._client.execute_command("GET", full_key)
            if existing is not None and (refreshing is None or str(existing) != refreshing):
                await self._release(lock, token, full_key)
                return str(existing)
            lost: list[bool] = []
            async with background_task_group() as renewals:
                renewals.start_soon(self._keep_renewed, key, lock, token, lost)
                value, delta = await produce()
            ours = await STORE_AND_RELEASE(
                self._client,
                [full_key, sidecar_key(full_key, "meta"), lock],
                [value, ttl_ms or 0, meta(delta), token, ready_channel(full_key)],
            )
        except BaseException:
            await self._release(lock, token, full_key)
            raise
        if not ours and not lost:
            self.report(
                key, "lease_lost", "the lease expired or was taken before the value was stored"
            )
        return value

    async def _keep_renewed(self, key: str, lock: str, token: str, lost: list[bool]) -> None:
        interval = self.lease_seconds / 3
        while True:
            await anyio.sleep(interval)
            try:
                renewed = await RENEW(self._client, [lock], [token, self.lease_ms])
            except Exception:
                continue  # Redis hiccup: try again next interval; expiry is the backstop
            if not renewed:
                lost.append(True)
                self.report(key, "lease_lost", "the lease expired or was taken while computing")
                return

    async def _release(self, lock: str, token: str, full_key: str) -> None:
        """Give the lease up now (something failed, or we were cancelled)."""
        with anyio.CancelScope(shield=True), anyio.move_on_after(self.lease_seconds):
            try:
                await RELEASE(self._client, [lock], [token, ready_channel(full_key)])
            except Exception:
                pass  # the lease expires by itself
