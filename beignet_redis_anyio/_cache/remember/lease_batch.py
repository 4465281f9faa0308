"""The cross-process lease for a batch: ``remember_many(lock=True)``.

``lease.py`` makes one process across the fleet compute a key; this does the
same for every key of a batch, while the keys this process wins still go to
*one* ``factory_many`` call. Per key it is ``remember``'s protocol:

1. Take every key's lease at once: a ``SET <lock> <token> NX PX <lease>``
   per key, all in one write per node (a lease lives in its key's slot, so on
   a cluster each goes to its own key's primary). Cancelled while those are
   in flight, every one of them is given up (only where it holds our token).
2. The keys another process holds are told so at once (``followed``): each
   key's run stops waiting for this batch's factory and follows on its own
   channel (``Lease.follow``) exactly as a ``remember`` follower does —
   handed the value when the holder stores it, taking the lease over when it
   comes free without one (its leader failed, was cancelled, or died and the
   lease expired), computing alone after ``lock_wait_seconds``.
3. The keys won: look once more (a previous leader may have stored a value
   and let go between the first read and the ``SET NX``: that key's lease is
   given back at once — but not for an early refresh's key still holding the
   value the refresh started from), then one ``factory_many`` call for the rest while one
   task renews all their leases every third of a lease. Each good value is
   then stored and its lease released by ``STORE_AND_RELEASE`` (which hands
   the value to the key's followers), all in one write per node.

Giving up, per key, as ``remember``'s leader does: a key the factory failed
(it raised, left the key out, returned no ``str``) and a store the server
refused release that key's lease at once — ``RELEASE`` publishes, so its
followers look again and one of them takes over — and the others are
stored. Cancelled (every caller of every key it computes gone) or failing on
the way (a lost connection), every lease still held is released. Releasing
is shielded and bounded by the lease's length, and safe when a store did run
after all: it deletes a lock only while it holds our token.
"""

from __future__ import annotations

import secrets
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Final

import anyio
import attrs

from ..._net.task_group import background_task_group
from ..breaker import UNAVAILABLE
from .keys import sidecar_key
from .lease import Lease
from .lease_scripts import RELEASE, RENEW, STORE_AND_RELEASE, Send
from .ready import ready_channel
from .single_flight import cancelled_from_outside

__all__ = ["FOLLOW", "BatchLease", "Led"]


class _Follow:
    def __repr__(self) -> str:
        return "FOLLOW"


#: A key's outcome when another process holds its lease: follow it.
FOLLOW: Final = _Follow()

#: ``await call(full_keys)``: each key's value (or its own error), and how
#: long the one ``factory_many`` call took (seconds).
Call = Callable[[list[str]], Awaitable[tuple[dict[str, Any], float]]]


@attrs.frozen
class Led:
    """What became of a batch's keys under the lease: each key's value, its
    error, or :data:`FOLLOW`; and the values returned but not stored because
    Redis could not be reached under ``failure_policy="bypass"``."""

    outcomes: dict[str, Any]
    unstored: dict[str, BaseException]


class BatchLease:
    """The lease for the keys of one ``remember_many`` call at a time (see
    the module's docstring); one per port, beside its :class:`Lease`."""

    def __init__(self, lease: Lease, send: Send, release_send: Send, *, bypass: bool) -> None:
        """``send``: the batch's commands, through the circuit breaker;
        ``release_send``: the releases, around it (cleanup that must reach
        Redis even while the breaker is open, as ``Lease``'s does)."""
        self._lease = lease
        self._send = send
        self._release_send = release_send
        self._bypass = bypass

    async def compute(
        self,
        keys: list[str],
        names: dict[str, str],
        call: Call,
        followed: Callable[[list[str]], None],
        ttl_ms: Callable[[], int | None],
        meta: Callable[[float], str],
        refreshing: Mapping[str, str] | None = None,
    ) -> Led:
        """Take ``keys``' leases, tell ``followed`` which keys another process
        holds, and compute the rest by one ``call`` (``names``: each full
        key's name as the caller gave it, for events). ``refreshing``: for
        an early refresh, the values it started from (``Lease.compute``).

        Raises what taking the leases or the second read raised (a lost
        connection: the factory has not run), every lease given up first.
        Cancellation: every lease still held is released, shielded and
        bounded; nothing is stored.
        """
        lease = self._lease
        lease.warm()
        tokens = {full: secrets.token_hex(16) for full in keys}
        try:
            replies = await self._send(
                [
                    ("SET", sidecar_key(f, "lock"), tokens[f], "NX", "PX", lease.lease_ms)
                    for f in keys
                ]
            )
        except BaseException:
            # Cancelled with the SETs in flight: the server may have set some.
            await self._release(tokens)
            raise
        outcomes: dict[str, Any] = {}
        held: dict[str, str] = {}
        for full, reply in zip(keys, replies, strict=True):
            if isinstance(reply, Exception):
                outcomes[full] = reply  # this key's own trouble (an ACL on its lock)
            elif reply:
                held[full] = tokens[full]
            else:
                outcomes[full] = FOLLOW
        following = [full for full, outcome in outcomes.items() if outcome is FOLLOW]
        if following:
            followed(following)
        try:
            unstored = await self._lead(held, outcomes, names, call, ttl_ms, meta, refreshing)
        except BaseException:
            await self._release(held)
            raise
        return Led(outcomes, unstored)

    async def _lead(
        self,
        held: dict[str, str],
        outcomes: dict[str, Any],
        names: dict[str, str],
        call: Call,
        ttl_ms: Callable[[], int | None],
        meta: Callable[[float], str],
        refreshing: Mapping[str, str] | None,
    ) -> dict[str, BaseException]:
        """Compute and store the keys of ``held`` (their tokens), filling in
        their ``outcomes``; a lease is dropped from ``held`` once it is
        given up or stored-and-released, so that the caller's release on the
        way out gives up exactly the rest."""
        if not held:
            return {}
        # The previous leader may have stored a value and let go between our
        # first read and our SET NX: look once more first. A refresh finds
        # the values it started from there: only another one (refreshed
        # meanwhile by another process) is used as it is.
        leading = list(held)
        existing = await self._send([("GET", full) for full in leading])
        started_from = refreshing or {}
        found: dict[str, str] = {}
        for full, value in zip(leading, existing, strict=True):
            if value is not None and (full not in started_from or value != started_from[full]):
                outcomes[full] = value  # a value, or this key's error (not text)
                found[full] = held.pop(full)
        await self._release(found)
        computing = list(held)
        if not computing:
            return {}
        lost: set[str] = set()
        try:
            async with background_task_group() as renewals:
                renewals.start_soon(self._keep_renewed, dict(held), names, lost)
                produced, delta = await call(computing)
        except BaseException as exc:
            if cancelled_from_outside(exc):
                raise
            # The factory failed every key it was given, and only those: the
            # keys other processes lead are followed all the same.
            produced, delta = dict.fromkeys(computing, exc), 0.0
        outcomes.update(produced)
        failed = {f: held.pop(f) for f in computing if isinstance(produced[f], BaseException)}
        await self._release(failed)  # its followers take over now
        good = list(held)
        if not good:
            return {}
        try:
            replies = await STORE_AND_RELEASE.many(
                self._send,
                [
                    (
                        [full, sidecar_key(full, "meta"), sidecar_key(full, "lock")],
                        [
                            produced[full],
                            ttl_ms() or 0,
                            meta(delta),
                            held[full],
                            ready_channel(full),
                        ],
                    )
                    for full in good
                ],
            )
        except UNAVAILABLE as exc:
            if not self._bypass:
                raise
            return dict.fromkeys(good, exc)  # the values are still good; Redis is not
        refused: dict[str, str] = {}
        for full, ours in zip(good, replies, strict=True):
            token = held.pop(full)
            if isinstance(ours, Exception):
                outcomes[full] = ours  # the server refused the store: nothing stored
                refused[full] = token
            elif not ours and full not in lost:
                self._lease.report(
                    names[full],
                    "lease_lost",
                    "the lease expired or was taken before the value was stored",
                )
        await self._release(refused)
        return {}

    async def _keep_renewed(
        self, tokens: dict[str, str], names: dict[str, str], lost: set[str]
    ) -> None:
        """Renew every lease of ``tokens`` each third of a lease, together;
        a lease found lost (expired, taken) is reported once and no longer
        renewed. Ends when cancelled (the factory returned)."""
        lease = self._lease
        renewing = dict(tokens)
        while renewing:
            await anyio.sleep(lease.lease_seconds / 3)
            calls = [([sidecar_key(f, "lock")], [t, lease.lease_ms]) for f, t in renewing.items()]
            try:
                replies = await RENEW.many(self._send, calls)
            except Exception:
                continue  # Redis hiccup: try again next interval; expiry is the backstop
            for full, renewed in zip(list(renewing), replies, strict=True):
                if not isinstance(renewed, Exception) and not renewed:
                    del renewing[full]
                    lost.add(full)
                    lease.report(
                        names[full], "lease_lost", "the lease expired or was taken while computing"
                    )

    async def _release(self, tokens: dict[str, str]) -> None:
        """Give the leases of ``tokens`` up now, each only if it still holds
        our token, telling each key's followers to look again. Shielded and
        bounded by the lease's length; a release that fails leaves the lease
        to expire by itself."""
        if not tokens:
            return
        calls = [([sidecar_key(f, "lock")], [t, ready_channel(f)]) for f, t in tokens.items()]
        with anyio.CancelScope(shield=True), anyio.move_on_after(self._lease.lease_seconds):
            try:
                await RELEASE.many(self._release_send, calls)
            except Exception:
                pass  # the leases expire by themselves
