"""The Lua scripts behind the cross-process lease, and how they are run.

Compare-and-delete and compare-and-renew must be atomic — check the token and
act in one step — or a process could delete a lease another process has just
taken. Redis 7 has no single command for that, and ``WATCH`` would need a
connection of its own, so we use a script. Scripts run by ``EVALSHA`` (the
hash only) and fall back to ``EVAL`` once when the server does not know them
yet (a restart, a failover).
"""

from __future__ import annotations

import hashlib
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from redis.exceptions import NoScriptError

from .lease_client import CommandClient

__all__ = ["RELEASE", "RENEW", "STORE_AND_RELEASE", "Script", "Send"]

#: Sends commands together (one write per node) and returns their replies,
#: error replies as values: how a batch runs a script for many keys.
Send = Callable[[Sequence[tuple[Any, ...]]], Awaitable[list[Any]]]


class Script:
    def __init__(self, source: str) -> None:
        self.source = source
        self.sha = hashlib.sha1(source.encode()).hexdigest()

    async def __call__(self, client: CommandClient, keys: list[str], args: list[Any]) -> Any:
        try:
            return await client.execute_command("EVALSHA", self.sha, len(keys), *keys, *args)
        except NoScriptError:
            return await client.execute_command("EVAL", self.source, len(keys), *keys, *args)

    async def many(self, send: Send, calls: Sequence[tuple[list[str], list[Any]]]) -> list[Any]:
        """One run per ``(keys, args)`` of ``calls``, sent together by
        ``send`` (one write per node: a batch's leases, each in its key's
        slot); each run's reply, an error reply as its exception. The runs
        the server did not know the script for (``NOSCRIPT``) go again by
        ``EVAL``, together, once."""
        replies = await send([("EVALSHA", self.sha, len(k), *k, *a) for k, a in calls])
        unknown = [i for i, reply in enumerate(replies) if isinstance(reply, NoScriptError)]
        if unknown:
            again = await send(
                [
                    ("EVAL", self.source, len(calls[i][0]), *calls[i][0], *calls[i][1])
                    for i in unknown
                ]
            )
            for index, reply in zip(unknown, again, strict=True):
                replies[index] = reply
        return replies


#: Tells the key's followers (``ready.py``): ``SPUBLISH`` on the key's own
#: channel, in the key's slot; ``PUBLISH`` where the server has no sharded
#: pub/sub (Redis 6). A publish that fails anyway (an ACL on channels) only
#: costs the followers a poll, so it never fails the script.
_NOTIFY = """
local function notify(channel, message)
  if not pcall(redis.call, 'SPUBLISH', channel, message) then
    pcall(redis.call, 'PUBLISH', channel, message)
  end
end
"""

#: KEYS[1] lock; ARGV[1] token, ARGV[2] the key's ready channel.
#: Deletes the lock if it is still ours and tells the followers to look again.
RELEASE = Script(
    _NOTIFY
    + """
local released = 0
if redis.call('GET', KEYS[1]) == ARGV[1] then
  released = redis.call('DEL', KEYS[1])
end
notify(ARGV[2], 'r')
return released
"""
)

#: KEYS[1] lock; ARGV[1] token, ARGV[2] lease in ms. 1 if renewed, 0 if lost.
RENEW = Script(
    """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
"""
)

#: KEYS[1] value, KEYS[2] meta, KEYS[3] lock;
#: ARGV[1] value, ARGV[2] ttl ms (0: none), ARGV[3] meta ('' : none),
#: ARGV[4] token, ARGV[5] the key's ready channel.
#: Stores the value (and its metadata) *before* giving the lease up, then
#: tells the followers, handing them the value. Returns 1 if the lease was
#: still ours, 0 if lost.
STORE_AND_RELEASE = Script(
    _NOTIFY
    + """
local ttl = tonumber(ARGV[2])
if ttl > 0 then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ttl)
else
  redis.call('SET', KEYS[1], ARGV[1])
end
if ARGV[3] ~= '' then
  if ttl > 0 then
    redis.call('SET', KEYS[2], ARGV[3], 'PX', ttl)
  else
    redis.call('SET', KEYS[2], ARGV[3])
  end
else
  redis.call('DEL', KEYS[2])
end
local ours = 0
if redis.call('GET', KEYS[3]) == ARGV[4] then
  redis.call('DEL', KEYS[3])
  ours = 1
end
notify(ARGV[5], 'v' .. ARGV[1])
return ours
"""
)
