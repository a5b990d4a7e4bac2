"""A write's fate is its own: a write the log refuses fails alone, at once and with the
log's reason, while the writes of other clients batched with it succeed and are applied.
Real processes: three `logsvc` nodes that take records of at most 64 KiB, and a shim."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator

import pytest
import redis

from cacheshim.apply import Applier
from cacheshim.commands import load_all
from cacheshim.protocol.resp import OK, Error, Reply
from cacheshim.server import Writer
from cacheshim.v1 import record_pb2
from logsvc.client import LogClient
from tests.cacheshim.harness import Memlog, client

LOG_RECORD_BYTES_MAX = 64 * 1024


@pytest.fixture(scope="module")
def small_log(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Memlog]:
    memlog = Memlog(
        tmp_path_factory.mktemp("write-fate"),
        log_args=["--record-bytes-max", str(LOG_RECORD_BYTES_MAX)],
    )
    try:
        memlog.start()
        yield memlog
    finally:
        memlog.stop()


def test_a_write_the_log_refuses_fails_alone(small_log: Memlog) -> None:
    """The shim sends records up to 256 KiB whole; this log takes 64 KiB at most. A 200 KB
    SET is refused by the log: it fails with the log's reason (nothing was appended), and
    the small SETs of four other clients, many in the same Appends, all succeed."""
    port = small_log.shim_ports[0]
    stop = threading.Event()
    small_acked: dict[str, int] = {}
    small_failed: list[str] = []
    big_errors: list[str] = []

    def small(w: int) -> None:
        conn = client(port)
        i = 0
        while not stop.is_set() or i < 50:
            i += 1
            try:
                conn.set(f"small-{w}-{i}", i)
            except redis.RedisError as exc:
                small_failed.append(f"small-{w}-{i}: {exc}")
                continue
            small_acked[f"small-{w}-{i}"] = i

    def big() -> None:
        conn = client(port)
        pipe = conn.pipeline(transaction=False)
        for i in range(20):
            pipe.set(f"big-{i}", b"x" * 200_000)
        for reply in pipe.execute(raise_on_error=False):
            big_errors.append(str(reply))

    threads = [threading.Thread(target=small, args=(w,)) for w in range(4)]
    for t in threads:
        t.start()
    try:
        big()
    finally:
        stop.set()
        for t in threads:
            t.join(timeout=120)
    assert not small_failed, small_failed[:5]
    assert len(big_errors) == 20
    for error in big_errors:
        assert error.startswith("memlog: the log refused the write; nothing of it was"), error
        assert f"over the limit of {LOG_RECORD_BYTES_MAX}" in error, error
    conn = client(port)
    assert conn.exists(*(f"big-{i}" for i in range(20))) == 0
    values = conn.mget(list(small_acked))
    assert values == [str(v).encode() for v in small_acked.values()]


def test_values_over_the_piece_size_fail_clearly_when_the_log_takes_less(
    small_log: Memlog,
) -> None:
    """Pieces are 256 KiB; a log configured below that refuses them: the write fails with
    the log's reason, nothing of it is applied, and the shim goes on."""
    conn = client(small_log.shim_ports[0])
    with pytest.raises(redis.ResponseError, match="over the limit of 65536"):
        conn.set("huge", b"y" * 3_000_000)
    assert conn.get("huge") is None
    assert conn.set("after-huge", 1) and conn.get("after-huge") == b"1"


def test_a_write_over_the_largest_record_fails_before_it_is_queued(small_log: Memlog) -> None:
    """The Writer (with a real LogClient on the real log) refuses a write over its
    write_bytes_max at submit: its future is answered at once and nothing is appended,
    while the write beside it is appended and answered."""
    assert small_log.cluster is not None
    addresses = small_log.cluster.addresses()

    async def go() -> tuple[Reply, Reply, int, int, int]:
        async with LogClient(addresses, timeout_s=10) as log:
            writer: Writer

            def committed(first: int, payloads: list[bytes]) -> None:
                for payload in payloads:
                    writer.applied(record_pb2.Record.FromString(payload), OK)

            writer = Writer(log, "fate-t", 10.0, committed, write_bytes_max=10_000)
            writer.start()
            before = (await log.status(addresses[0])).last_index
            big = record_pb2.Record(time_ms=1)
            big.commands.add().args.extend([b"SET", b"k", b"v" * 20_000])
            small = record_pb2.Record(time_ms=1)
            small.commands.add().args.extend([b"SET", b"k", b"v"])
            refused = writer.submit(big, origin=1)
            assert refused.done()  # answered before it could join any Append
            done = writer.submit(small, origin=2)
            async with asyncio.timeout(30):
                reply = await done
            after = (await log.status(addresses[0])).last_index
            for _ in range(100):  # addresses[0] may be a follower a little behind
                if after > before:
                    break
                await asyncio.sleep(0.05)
                after = (await log.status(addresses[0])).last_index
            return refused.result(), reply, before, after, big.ByteSize()

    refused, reply, before, after, size = asyncio.run(go())
    assert refused == Error(
        f"ERR memlog: the write is {size} bytes as a log record, over the 10000 bytes one "
        "write may carry; nothing was applied"
    )
    assert reply is OK
    assert after == before + 1


def test_pieces_keep_a_connections_order_and_let_others_pass(small_log: Memlog) -> None:
    """A Writer with 16 KiB pieces and 64 KiB Appends (this log takes 64 KiB records) on the
    real log, applied by a real Applier from the log's Read stream: a 200 KB write of one
    connection is applied whole after its pieces, the connection's next write after it,
    and another connection's writes go on between the pieces. The other connection sends
    its next write when the log confirms the last (as a shim answers its own Appends), not
    when the Read stream brings it back: that stream lags on a loaded machine, and the
    writes then came only after the last piece (1 run of 3 at load 20)."""
    assert small_log.cluster is not None
    addresses = small_log.cluster.addresses()

    def set_record(key: bytes, value: bytes) -> record_pb2.Record:
        out = record_pb2.Record(time_ms=1)
        out.commands.add().args.extend([b"SET", key, value])
        return out

    async def go() -> tuple[dict[bytes, int], dict[bytes, int], list[Reply], bytes | None]:
        async with LogClient(addresses, timeout_s=20) as log:
            load_all()
            applier = Applier()
            committed_at: dict[bytes, int] = {}  # as the log confirmed the Appends
            applied_at: dict[bytes, int] = {}  # as the Read stream brought them

            def committed(first_index: int, payloads: list[bytes]) -> None:
                for index, payload in enumerate(payloads, first_index):
                    record = record_pb2.Record.FromString(payload)
                    if record.HasField("chunk"):
                        if record.chunk.part == record.chunk.parts - 1:
                            committed_at[b"big"] = index  # applied at its last piece
                        continue
                    key = record.commands[0].args[1]
                    committed_at[key] = index
                    if key.startswith(b"other-"):
                        writer.applied(record, OK)

            writer = Writer(
                log, "order-t", 20.0, committed=committed,
                piece_bytes=16 * 1024, append_bytes_max=64 * 1024,
            )  # fmt: skip

            async def apply_loop() -> None:
                async for index, payload in log.read(1, follow=True):
                    record, reply = applier.apply(index, payload)
                    if record is not None and record.shim_id == "order-t":
                        applied_at[record.commands[0].args[1]] = index
                        writer.applied(record, reply)

            reader = asyncio.create_task(apply_loop())
            writer.start()
            big = writer.submit(set_record(b"big", b"B" * 200_000), origin=1)
            after = writer.submit(set_record(b"after-big", b"1"), origin=1)
            others: list[Reply] = []
            async with asyncio.timeout(60):
                while b"big" not in committed_at:
                    key = b"other-%d" % (len(others) + 1)
                    others.append(await writer.submit(set_record(key, b"x"), origin=2))
                replies = [await big, await after, *others]
            reader.cancel()
            value = applier.keyspace.dbs[0].get(b"big", 0)
            return committed_at, applied_at, replies, value if isinstance(value, bytes) else None

    committed_at, applied_at, replies, value = asyncio.run(go())
    assert all(reply is OK for reply in replies), replies
    assert value == b"B" * 200_000
    assert applied_at[b"big"] == committed_at[b"big"] < applied_at[b"after-big"]
    between = [
        k for k, i in committed_at.items() if k.startswith(b"other-") and i < committed_at[b"big"]
    ]
    assert len(between) >= 2, committed_at
