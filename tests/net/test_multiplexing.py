"""One shared connection: coalesced writes, in-order replies, cancellation safety."""

from __future__ import annotations

import random
from typing import Any

import anyio
import pytest

from beignet_redis_anyio import open_redis_client
from beignet_redis_anyio._net.multiplexer import (
    HOLD_TURNS,
    SPIN_GIVE_UP,
    SPIN_PROBE_EVERY,
    SPIN_TURNS,
    _Spin,
)
from beignet_redis_anyio._net.transport import SocketTransport
from helpers.backends import running_backend
from helpers.targets import RedisServer, bulk, serve_script

pytestmark = pytest.mark.anyio


async def test_concurrent_tasks_share_one_connection(server_url: str, key: str) -> None:
    name = f"shared-{key.rpartition(':')[2]}"
    async with open_redis_client(server_url, client_name=name) as client:
        results: dict[int, str] = {}

        async def echo(index: int) -> None:
            results[index] = await client.echo(f"{key}:{index}")

        async with anyio.create_task_group() as tasks:
            for index in range(200):
                tasks.start_soon(echo, index)
        assert results == {index: f"{key}:{index}" for index in range(200)}
        names = [entry["name"] for entry in await client.client_list()]
        assert names.count(name) == 1


async def test_commands_from_concurrent_tasks_are_coalesced(
    server_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # send_now is where every byte meets the kernel (send() loops over it).
    writes: list[int] = []
    original_send_now = SocketTransport.send_now

    def counting_send_now(self: SocketTransport, data: bytes) -> int:
        writes.append(bytes(data).count(b"ECHO"))
        return original_send_now(self, data)

    async with open_redis_client(server_url) as client:
        await client.ping()  # connect first: the handshake is not what we count
        monkeypatch.setattr(SocketTransport, "send_now", counting_send_now)
        async with anyio.create_task_group() as tasks:
            for index in range(100):
                tasks.start_soon(client.echo, str(index))
    # 100 commands, issued in one scheduling round: the first may go out on
    # its own, the rest leave together.
    assert sum(writes) == 100
    assert len([count for count in writes if count]) <= 3, writes


async def test_a_steady_crowd_leaves_in_one_write_per_round(
    real_server: RedisServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Under steady load the first caller of each round finds an idle line.
    Written at once, its command would leave alone and the others after it:
    two writes and two reads a round. Once others have joined a caller
    alone while it read, the next such caller leaves its write to the
    writer, and the round leaves together."""
    writes: list[int] = []
    original_send_now = SocketTransport.send_now

    def counting_send_now(self: SocketTransport, data: bytes) -> int:
        writes.append(bytes(data).count(b"ECHO"))
        return original_send_now(self, data)

    rounds, crowd = 20, 50

    async def caller(index: int) -> None:
        for round_ in range(rounds):
            assert await client.echo(f"{index}:{round_}") == f"{index}:{round_}"

    async with open_redis_client(real_server.url) as client:
        await client.ping()
        monkeypatch.setattr(SocketTransport, "send_now", counting_send_now)
        async with anyio.create_task_group() as tasks:
            for index in range(crowd):
                tasks.start_soon(caller, index)
    assert sum(writes) == rounds * crowd
    # Without the hold every round takes two writes (its first caller alone,
    # then the rest). With it a round takes one, unless the replies came back
    # in parts, which a loaded machine does: a bound well under two a round
    # tells the hold from its absence without asking for a quiet machine.
    assert len([count for count in writes if count]) <= rounds * 3 // 2 + 2, writes


async def test_a_caller_alone_after_a_crowd_waits_at_most_two_turns_to_send(
    real_server: RedisServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The hold is for a crowd that is still there: when none joins, the
    command leaves after HOLD_TURNS turns, and the next one at once."""
    async with open_redis_client(real_server.url) as client:
        await client.ping()
        link = client._mux._link
        assert link is not None
        turns = 0
        sent_after: list[int] = []
        original_turn = link.turn
        original_send_now = SocketTransport.send_now

        async def counting_turn() -> None:
            nonlocal turns
            turns += 1
            await original_turn()

        def recording_send_now(self: SocketTransport, data: bytes) -> int:
            if b"ECHO" in bytes(data):
                sent_after.append(turns)
            return original_send_now(self, data)

        async def crowd_member(index: int) -> None:
            for round_ in range(3):
                assert await client.echo(f"{index}:{round_}") == f"{index}:{round_}"

        async with anyio.create_task_group() as tasks:
            for index in range(20):
                tasks.start_soon(crowd_member, index)
        assert link.crowded  # others joined the last caller alone
        monkeypatch.setattr(link, "turn", counting_turn)
        monkeypatch.setattr(SocketTransport, "send_now", recording_send_now)
        assert await client.echo("alone") == "alone"
        assert sent_after == [HOLD_TURNS]
        assert not link.crowded
        turns, sent_after[:] = 0, []
        assert await client.echo("alone again") == "alone again"
        assert sent_after == [0]  # written at once, no turn first


async def test_cancelled_before_sending_leaves_no_trace(server_url: str, key: str) -> None:
    async with open_redis_client(server_url) as client:
        await client.ping()  # connected: nothing in the way of a send but the check
        with anyio.CancelScope() as scope:
            scope.cancel()
            await client.set(key, "never")
        assert await client.get(key) is None
        assert await client.echo("next") == "next"


async def test_cancelled_before_sending_sends_nothing_on_a_busy_line_either(
    real_server: RedisServer, key: str
) -> None:
    """Queued behind another caller, a command would leave with the writer
    task's next write — which may run before the caller's wait notices its
    scope is cancelled. A cancelled scope must stop it before it is queued."""
    async with open_redis_client(real_server.url) as client:
        with anyio.fail_after(10):
            async with anyio.create_task_group() as tasks:
                tasks.start_soon(client.execute_command, "DEBUG", "SLEEP", "0.2")
                await anyio.wait_all_tasks_blocked()  # the line is busy with it
                for command in (("SET", key, "never"), ("INCR", f"{key}:n")):
                    with anyio.CancelScope() as scope:
                        scope.cancel()
                        await client.execute_command(*command)
                    pipe = client.pipeline(transaction=True)
                    pipe.execute_command(*command)
                    with anyio.CancelScope() as scope:
                        scope.cancel()
                        await pipe.execute()
        assert await client.get(key) is None
        assert await client.get(f"{key}:n") is None


async def test_cancelled_while_waiting_its_reply_is_dropped(real_server: RedisServer) -> None:
    async with open_redis_client(real_server.url) as client:
        # DEBUG SLEEP holds the reply back; we give up waiting for it.
        with anyio.move_on_after(0.05) as scope:
            await client.execute_command("DEBUG", "SLEEP", "0.3")
        assert scope.cancelled_caught
        # The late "OK" is read and dropped; our replies stay our own.
        assert await client.echo("after the cancel") == "after the cancel"
        assert [await client.echo(str(n)) for n in range(5)] == ["0", "1", "2", "3", "4"]


async def test_a_caller_cancelled_at_any_turn_of_its_spin_keeps_the_line_in_step(
    real_server: RedisServer,
) -> None:
    """A caller reading for itself takes turns of the scheduler before it
    parks; a cancellation then — delivered at the turn on asyncio, at the
    park on trio, whose cheapest turn is shielded — leaves as a cancel while
    parked does: the late reply is read and dropped."""
    async with open_redis_client(real_server.url) as client:
        await client.ping()
        link = client._mux._link
        assert link is not None
        original_turn = link.turn
        for at in sorted({1, 2, SPIN_TURNS // 2, SPIN_TURNS}):
            turns = 0
            scope = anyio.CancelScope()

            async def cancelling_turn() -> None:
                nonlocal turns
                turns += 1
                if turns == at:  # noqa: B023 (this round's)
                    scope.cancel()  # noqa: B023
                await original_turn()

            link.turn = cancelling_turn  # type: ignore[method-assign]
            # Every full spin so far ended in a miss (this very test's sleeps,
            # and on a loaded machine any reply): after SPIN_GIVE_UP of them
            # the link would take one turn. Here it must take them all.
            link.spin.misses = 0
            try:
                with scope:
                    # Its reply comes long after every turn has been taken,
                    # even on a loaded machine where 32 turns take a while.
                    await client.execute_command("DEBUG", "SLEEP", "0.2")
            finally:
                link.turn = original_turn  # type: ignore[method-assign]
            assert scope.cancelled_caught
            assert turns == (SPIN_TURNS if running_backend() == "trio" else at)
            assert await client.echo(f"after {at}") == f"after {at}"
            assert [await client.echo(str(n)) for n in range(3)] == ["0", "1", "2"]


async def test_cancelled_mid_write_keeps_the_stream_whole(server_url: str, key: str) -> None:
    big = "x" * (8 * 1024 * 1024)  # more than a socket buffer: the write takes a while
    async with open_redis_client(server_url, command_timeout=30) as client:
        for attempt in range(5):
            with anyio.move_on_after(0.001 * attempt):
                await client.set(f"{key}:big", big)
            assert await client.echo(f"intact {attempt}") == f"intact {attempt}"
        assert await client.strlen(f"{key}:big") in (0, len(big))


async def test_a_value_larger_than_the_socket_buffer_arrives_byte_for_byte(
    real_server: RedisServer, key: str
) -> None:
    """The kernel takes part of a large command at once and the writer the
    rest, beside other callers' commands: no byte is lost, repeated or
    shifted, whichever part went first. (Real servers: fakeredis's parser
    takes longer over these values than a command timeout.)"""

    async def write(client: Any, index: int) -> None:
        await client.set(f"{key}:{index}", values[index])

    values = [random.Random(seed).randbytes(8 * 1024 * 1024 + seed) for seed in range(3)]
    async with open_redis_client(real_server.url, decode_responses=False) as client:
        await write(client, 0)  # alone on an idle line: its caller sends what it can

        async def count() -> None:
            for _ in range(50):
                await client.incr(f"{key}:n")

        async with anyio.create_task_group() as tasks:
            for index in range(1, len(values)):
                tasks.start_soon(write, client, index)
            tasks.start_soon(count)
        for index, value in enumerate(values):
            assert await client.get(f"{key}:{index}") == value
        assert await client.get(f"{key}:n") == b"50"


async def test_cancellation_fuzz(server_url: str, key: str) -> None:
    """Thousands of commands under random tiny deadlines: every reply that
    arrives belongs to the command that asked for it."""
    tasks_count, per_task = 40, 60
    rng = random.Random(20261129)
    completed = 0
    cancelled = 0

    async with open_redis_client(server_url, command_timeout=30) as client:

        async def worker(worker_id: int, seed: int) -> None:
            nonlocal completed, cancelled
            local = random.Random(seed)
            counter = f"{key}:counter:{worker_id}"
            last_seen = 0
            for step in range(per_task):
                token = f"{worker_id}:{step}:{local.random()}"
                with anyio.move_on_after(local.choice([0, 0.0001, 0.0005, 0.001, 0.003, 1])):
                    if step % 3 == 0:
                        value = await client.incr(counter)
                        # Counters only go up; a reply for someone else would
                        # not be an int at all, or would jump backwards.
                        assert isinstance(value, int)
                        assert value > last_seen
                        last_seen = value
                    else:
                        assert await client.echo(token) == token
                    completed += 1
                    continue
                cancelled += 1

        with anyio.fail_after(120):
            async with anyio.create_task_group() as group:
                for worker_id in range(tasks_count):
                    group.start_soon(worker, worker_id, rng.random())

        # Afterwards, with no deadlines: everything exact, in order.
        for index in range(50):
            assert await client.echo(f"final {index}") == f"final {index}"
        pipe = client.pipeline(transaction=False)
        for index in range(50):
            pipe.echo(str(index))
        assert await pipe.execute() == [str(index) for index in range(50)]
    assert completed + cancelled == tasks_count * per_task
    assert completed > 0
    assert cancelled > 0


async def test_replies_to_one_write_that_arrive_in_parts() -> None:
    """Callers whose commands left in one write share one wake-up. When the
    server answers that write in two parts, the first part's callers must
    return at once (nobody waits for the whole write), and the rest must
    still get exactly their own replies."""
    callers, first_part = 20, 10
    release = anyio.Event()
    results: dict[int, str] = {}
    echoed = 0

    async def answer(command: list[bytes]) -> bytes:
        nonlocal echoed
        name = command[0].upper()
        if name != b"ECHO":
            return b"+PONG\r\n" if name == b"PING" else b"+OK\r\n"
        if echoed == first_part:  # hold the rest back
            await release.wait()
        echoed += 1
        return bulk(command[1])

    async with anyio.create_task_group() as server:
        port = await server.start(serve_script, answer)
        async with open_redis_client(f"redis://127.0.0.1:{port}") as client:
            await client.ping()  # connected first, so that all 20 start at once

            async def echo(index: int) -> None:
                results[index] = await client.echo(f"reply {index}")
                if len(results) == first_part:
                    # Only reachable if the first part's callers were woken
                    # while the rest of their write is still unanswered.
                    release.set()

            with anyio.fail_after(5):
                async with anyio.create_task_group() as tasks:
                    for index in range(callers):
                        tasks.start_soon(echo, index)
            assert results == {index: f"reply {index}" for index in range(callers)}
            assert await client.echo("after") == "after"
        server.cancel_scope.cancel()


async def test_a_caller_alone_stops_looking_early_when_replies_never_come_quickly(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    looks: list[int] = []
    original = SocketTransport.receive_now

    def counting_receive_now(self: SocketTransport) -> bytes | None:
        looks[-1] += 1
        return original(self)

    async def answer(command: list[bytes]) -> bytes:
        if command[0].upper() != b"ECHO":
            return b"+OK\r\n"
        # Only once the client has stopped looking and parked: a server too
        # far away for the client's turns ever to catch a reply.
        await anyio.wait_all_tasks_blocked()
        return bulk(command[1])

    async with anyio.create_task_group() as server:
        port = await server.start(serve_script, answer)
        async with open_redis_client(f"redis://127.0.0.1:{port}") as client:
            assert await client.echo("connect") == "connect"  # a first miss
            monkeypatch.setattr(SocketTransport, "receive_now", counting_receive_now)
            for index in range(SPIN_GIVE_UP + 2):
                looks.append(0)
                assert await client.echo(str(index)) == str(index)
        server.cancel_scope.cancel()
    # Each turn looked and found nothing, then one read after parking; after
    # SPIN_GIVE_UP such misses in a row, a single turn.
    assert looks == [SPIN_TURNS + 1] * (SPIN_GIVE_UP - 1) + [2] * 3


def test_the_turns_come_back_once_a_reply_is_caught_again() -> None:
    spin = _Spin()
    for _ in range(SPIN_GIVE_UP):
        turns = spin.turns()
        assert turns == SPIN_TURNS
        spin.record(turns, caught=False)
    # Given up: one read in SPIN_PROBE_EVERY still tries the full turns.
    budgets = []
    for _ in range(SPIN_PROBE_EVERY):
        turns = spin.turns()
        budgets.append(turns)
        spin.record(turns, caught=False)
    assert sorted(budgets) == [1] * (SPIN_PROBE_EVERY - 1) + [SPIN_TURNS]
    # The server came closer: a reply caught, even in the single turn,
    # brings the full turns back.
    spin.record(spin.turns(), caught=True)
    assert spin.turns() == SPIN_TURNS
