"""The shim's Writer batches the writes of all connections into Appends.

A stand-in for the log answers each Append after a fixed delay and applies its records a
little later, as the zone-local node's Read stream does; fifty writers each send their next
write a moment after their reply, as redis-benchmark's clients do. Nothing else of the shim
is involved: this checks the batching policy, with the log's timing made explicit, on a
virtual clock (a loaded machine would otherwise stretch some delays and not others).
"""

from __future__ import annotations

import asyncio
import os
import random
from typing import cast

import pytest

from cacheshim import server
from cacheshim.protocol.resp import OK, Error, Reply
from cacheshim.server import Writer
from cacheshim.server import writer as writer_module
from cacheshim.v1 import record_pb2
from logsvc.client import LogClient

WRITERS = 50
ROUNDS = 30
APPEND_S = 0.002  # the log's answer
APPLY_LAG_S = 0.0002  # then the records arrive on the Read stream and are applied
COME_BACK_S_MAX = 0.0002  # a writer's next write, after its reply


class TimedLog:
    def __init__(self) -> None:
        self.batches: list[int] = []
        self.writer: Writer | None = None

    async def append(self, payloads: list[bytes], timeout_s: float | None = None) -> None:
        self.batches.append(len(payloads))
        await asyncio.sleep(APPEND_S)
        records = [record_pb2.Record.FromString(p) for p in payloads]
        asyncio.get_running_loop().call_later(APPLY_LAG_S, self._apply, records)

    def _apply(self, records: list[record_pb2.Record]) -> None:
        assert self.writer is not None
        for record in records:
            self.writer.applied(record, OK)


class VirtualClockLoop(asyncio.SelectorEventLoop):
    """An event loop whose clock moves only when nothing is ready to run: it jumps to the
    next timer. Timers and the Writer's linger (both on loop.time()) then keep the ratios
    the test sets, however slow or busy the machine is; nothing here does real I/O."""

    def __init__(self) -> None:
        super().__init__()
        self._now = 0.0

    def time(self) -> float:
        return self._now

    def _run_once(self) -> None:
        scheduled = self._scheduled  # type: ignore[attr-defined]
        if not self._ready and scheduled:  # type: ignore[attr-defined]
            self._now = max(self._now, scheduled[0].when())
        super()._run_once()  # type: ignore[misc]


def _batches(rng: random.Random) -> list[int]:
    async def go() -> list[int]:
        log = TimedLog()
        writer = log.writer = Writer(cast(LogClient, log), "shim-t", timeout_s=5)
        writer.start()

        async def one_client() -> None:
            for _ in range(ROUNDS):
                assert await writer.submit(record_pb2.Record(db=0)) is OK
                await asyncio.sleep(rng.uniform(0, COME_BACK_S_MAX))

        await asyncio.wait_for(asyncio.gather(*(one_client() for _ in range(WRITERS))), 30)
        return log.batches

    with asyncio.Runner(loop_factory=VirtualClockLoop) as runner:
        return runner.run(go())


@pytest.fixture()
def rng() -> random.Random:
    seed = int(os.environ.get("WRITER_SEED", random.randrange(2**32)))
    print(f"seed {seed} (rerun: WRITER_SEED={seed})")
    return random.Random(seed)


def test_steady_writers_travel_together_in_full_appends(rng: random.Random) -> None:
    batches = _batches(rng)
    assert sum(batches) == WRITERS * ROUNDS
    steady = batches[3:]
    # Without the linger the load splits into a small and a big Append that alternate
    # forever (mean about half the writers); with it nearly every Append carries all.
    assert sum(steady) / len(steady) >= 0.8 * WRITERS, batches


def test_a_lone_writer_never_waits_for_company(
    rng: random.Random, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(writer_module, "APPEND_LINGER_S", 5.0)  # a wait would show as a timeout

    async def go() -> list[int]:
        log = TimedLog()
        writer = log.writer = Writer(cast(LogClient, log), "shim-t", timeout_s=5)
        writer.start()
        for _ in range(20):
            await asyncio.wait_for(writer.submit(record_pb2.Record(db=0)), 1.0)
        return log.batches

    assert asyncio.run(go()) == [1] * 20


def test_wait_applied_wakes_at_its_index_and_a_timed_out_wait_leaves_nothing() -> None:
    """Shim.wait_applied (restart catch-up, linearizable reads): a caller wakes once its
    index is applied, not before; one that timed out is dropped when its index comes."""

    async def go() -> None:
        shim = server.Shim(
            server.ShimConfig("127.0.0.1", 0, ("127.0.0.1:1",), "127.0.0.1:1", "shim-t")
        )
        payload = server.record_for(0, [[b"SET", b"k", b"v"]], transaction=False)
        waiting = asyncio.create_task(shim.wait_applied(2, timeout_s=30))
        late = asyncio.create_task(shim.wait_applied(3, timeout_s=0.05))
        await asyncio.sleep(0)
        shim._apply(1, payload.SerializeToString())
        await asyncio.sleep(0)
        assert not waiting.done()
        shim._apply(2, payload.SerializeToString())
        await asyncio.wait_for(waiting, 5)
        with pytest.raises(TimeoutError):
            await late
        shim._apply(3, payload.SerializeToString())
        assert shim._index_waiters == []
        await shim.wait_applied(3, timeout_s=0)  # applied already: no wait at all
        await shim.stop()

    asyncio.run(go())


def test_a_connections_writes_are_never_in_two_appends_in_flight(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """With several Appends in flight, a connection's next write waits for the Append that
    carries its last one (a retry of that Append must not land after it); another
    connection's write meanwhile takes the free slot at once."""
    monkeypatch.setattr(writer_module, "APPENDS_IN_FLIGHT_MAX", 2)

    class LoggedLog(TimedLog):
        def __init__(self) -> None:
            super().__init__()
            self.sent: list[tuple[float, list[int]]] = []  # (when, proposal ids)

        async def append(self, payloads: list[bytes], timeout_s: float | None = None) -> None:
            ids = [record_pb2.Record.FromString(p).proposal_id for p in payloads]
            self.sent.append((asyncio.get_running_loop().time(), ids))
            await super().append(payloads, timeout_s)

    async def go() -> list[tuple[float, list[int]]]:
        log = LoggedLog()
        writer = log.writer = Writer(cast(LogClient, log), "shim-t", timeout_s=5)
        writer.start()
        first = writer.submit(record_pb2.Record(db=0), origin=1)  # proposal 1
        await asyncio.sleep(0.0001)  # the first Append is in flight
        second = writer.submit(record_pb2.Record(db=0), origin=1)  # proposal 2: waits
        other = writer.submit(record_pb2.Record(db=0), origin=2)  # proposal 3: goes now
        await asyncio.wait_for(asyncio.gather(first, second, other), 1.0)
        return log.sent

    with asyncio.Runner(loop_factory=VirtualClockLoop) as runner:
        sent = runner.run(go())
    assert [ids for _, ids in sent] == [[1], [3], [2]], sent
    # Proposal 3 went while the first Append was in flight; proposal 2 only after it.
    assert sent[1][0] < APPEND_S <= sent[2][0], sent


# -- the write timeout of a large write -----------------------------------------------------

PIECE = 1024  # small pieces and Appends of two, so that a write of 20 KB takes 11 Appends


class SlowLog:
    """A log whose every Append takes `append_s`, and that stops answering after
    `answers` Appends (None: never). A record is applied as its Append is answered (a
    large one at its last piece)."""

    def __init__(self, append_s: float, answers: int | None = None) -> None:
        self.append_s = append_s
        self.answers = answers
        self.appends = 0
        self.writer: Writer | None = None

    async def append(self, payloads: list[bytes], timeout_s: float | None = None) -> None:
        self.appends += 1
        if self.answers is not None and self.appends > self.answers:
            await asyncio.sleep(3600)  # hung: the writes' own timers answer them
        await asyncio.sleep(self.append_s)
        assert self.writer is not None
        for payload in payloads:
            record = record_pb2.Record.FromString(payload)
            if not record.HasField("chunk") or record.chunk.part == record.chunk.parts - 1:
                self.writer.applied(record, OK)


def _big_set(size: int) -> record_pb2.Record:
    record = record_pb2.Record(db=0)
    record.commands.add().args.extend([b"SET", b"big", b"x" * size])
    return record


def _small_set() -> record_pb2.Record:
    record = record_pb2.Record(db=0)
    record.commands.add().args.extend([b"SET", b"small", b"1"])
    return record


def _slow_writer(log: SlowLog, timeout_s: float) -> Writer:
    writer = log.writer = Writer(
        cast(LogClient, log), "shim-t", timeout_s, piece_bytes=PIECE, append_bytes_max=2 * PIECE
    )
    writer.start()
    return writer


def test_a_large_write_that_goes_on_outlives_the_write_timeout() -> None:
    """11 Appends of 0.3 s each, a timeout of 1 s: the transfer takes 3.3 s and never waits
    1 s for the log, so the write succeeds (it failed at 1 s when the timeout counted from
    its arrival only: a 100 MB SET through a loaded log failed the same way). A small write
    that arrives meanwhile is still bounded from its arrival."""

    async def go() -> tuple[Reply, float, Reply]:
        loop = asyncio.get_running_loop()
        log = SlowLog(append_s=0.3)
        writer = _slow_writer(log, timeout_s=1.0)
        big = writer.submit(_big_set(20_000), origin=1)
        await asyncio.sleep(1.5)
        small = writer.submit(_small_set(), origin=2)
        reply = await big
        return reply, loop.time(), await small

    with asyncio.Runner(loop_factory=VirtualClockLoop) as runner:
        reply, answered_at, small = runner.run(go())
    assert reply is OK, reply
    assert answered_at > 3.0
    assert small is OK


def test_a_large_write_the_log_stops_taking_fails_a_timeout_after_its_last_progress() -> None:
    """The log answers three Appends (at 0.3, 0.6, 0.9 s), then hangs: the large write fails
    1 s after the last one, saying it was not applied; a small write that arrived at 1.2 s
    behind the hung Append fails 1 s after its own arrival, not later (the large write's
    moving deadline does not hold back the others' timer)."""

    async def go() -> tuple[tuple[float, Reply], tuple[float, Reply]]:
        loop = asyncio.get_running_loop()
        writer = _slow_writer(SlowLog(append_s=0.3, answers=3), timeout_s=1.0)
        answers: dict[str, tuple[float, Reply]] = {}

        async def timed(name: str, fut: asyncio.Future[Reply]) -> None:
            reply = await fut
            answers[name] = (loop.time(), reply)

        big = asyncio.create_task(timed("big", writer.submit(_big_set(20_000), origin=1)))
        await asyncio.sleep(1.2)
        await timed("small", writer.submit(_small_set(), origin=2))
        await big
        return answers["big"], answers["small"]

    with asyncio.Runner(loop_factory=VirtualClockLoop) as runner:
        (big_at, big), (small_at, small) = runner.run(go())
    assert isinstance(big, Error) and "it was not applied and will not be" in big.message, big
    assert "within 1s of the log's last confirmation of its pieces" in big.message, big
    assert big_at == pytest.approx(1.9, abs=0.01)
    assert isinstance(small, Error) and "within 1s of its arrival" in small.message, small
    assert small_at == pytest.approx(2.2, abs=0.01)
