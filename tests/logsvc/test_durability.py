"""What is on disk: a whole-cluster restart keeps everything, a corrupt value is refused."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import grpc
from rocksdict import Options, Rdict

from logsvc.client import LogClient
from logsvc.v1 import log_pb2
from tests.logsvc.cluster import Cluster, RpcFailure

TIMEOUT_S = 10.0
PRODUCER = "durable"


def entry_key(raft_index: int) -> bytes:
    return b"e" + raft_index.to_bytes(8, "big")


def test_whole_cluster_restart_keeps_every_record(cluster: Cluster) -> None:
    c = cluster

    async def load() -> list[tuple[int, int]]:
        async with LogClient(c.addresses, producer_id=PRODUCER) as client:
            return [
                (r.first_index, r.last_index)
                for r in [
                    await client.append([f"keep-{b}-{i}".encode() for i in range(b % 5 + 1)])
                    for b in range(40)
                ]
            ]

    acked = asyncio.run(load())
    last = acked[-1][1]
    c.wait_last_index(last, list(c.nodes))
    expected = c.read_all(c.leader())
    assert len(expected) == last

    codes = c.stop_all()
    assert codes == dict.fromkeys(c.nodes, 0), f"SIGTERM must be a clean exit: {codes}"
    c.start_all()
    c.wait_last_index(last, list(c.nodes))
    for node_id in c.nodes:
        assert c.read_all(node_id) == expected, node_id

    # The deduplication state came back with the log: the last append, retried, is a
    # duplicate with its first indexes.
    leader = c.leader()
    b = len(acked) - 1
    retry = log_pb2.AppendRequest(
        records=[f"keep-{b}-{i}".encode() for i in range(b % 5 + 1)],
        producer_id=PRODUCER,
        sequence=len(acked),
    )
    again = c.stub(leader).Append(retry, timeout=TIMEOUT_S)
    assert (again.first_index, again.last_index, again.duplicate) == (*acked[-1], True)
    # And numbering goes on where it stopped.
    fresh = c.stub(leader).Append(log_pb2.AppendRequest(records=[b"after"]), timeout=TIMEOUT_S)
    assert fresh.first_index == last + 1


def corrupt_and_start(c: Cluster, node_id: str, mutate: Callable[[Rdict], None]) -> str:
    """With node_id down, change its RocksDB, start it: it must exit non-zero at once.

    Returns the log of that start. The change is undone afterwards.
    """
    node = c.nodes[node_id]
    assert not node.running()
    db = Rdict(str(node.rocksdb_path), Options(raw_mode=True))
    saved = dict(db.items())
    try:
        mutate(db)
    finally:
        db.close()
    before = len(c.log_text(node_id))
    c.start(node_id)
    assert node.proc is not None
    try:
        code = node.proc.wait(15)
    except Exception:
        raise AssertionError(f"node {node_id} serves a corrupt log{c.log_tails()}") from None
    log = c.log_text(node_id)[before:]
    assert code != 0, log
    assert "serving on" not in log, log
    # Undo the change.
    db = Rdict(str(node.rocksdb_path), Options(raw_mode=True))
    try:
        for key in list(db.keys()):
            if key not in saved:
                del db[key]
        for key, value in saved.items():
            db[key] = value
    finally:
        db.close()
    return log


def test_corrupt_value_on_disk_is_refused(cluster: Cluster) -> None:
    c = cluster

    async def load() -> int:
        async with LogClient(c.addresses) as client:
            for b in range(10):
                last = (
                    await client.append([f"disk-{b}-{i}".encode() for i in range(3)])
                ).last_index
            return last

    last = asyncio.run(load())
    c.wait_last_index(last, list(c.nodes))
    victim = next(i for i in c.nodes if i != c.leader())
    raft_last = c.status(victim).raft_last_index
    middle = raft_last // 2
    c.kill(victim)

    def garbage(db: Rdict) -> None:
        assert entry_key(middle) in db
        db[entry_key(middle)] = b"\xde\xad\xbe\xef not a RaftEntry, and not its checksum"

    log = corrupt_and_start(c, victim, garbage)
    assert "checksum mismatch" in log, log
    assert f"entry {middle}" in log, log

    def torn(db: Rdict) -> None:
        db[entry_key(raft_last)] = b"\x01"

    assert "torn" in corrupt_and_start(c, victim, torn)

    def flipped_bit(db: Rdict) -> None:
        stored = db[entry_key(middle)]
        assert isinstance(stored, bytes)
        value = bytearray(stored)
        value[-1] ^= 0x01
        db[entry_key(middle)] = bytes(value)

    assert "checksum mismatch" in corrupt_and_start(c, victim, flipped_bit)

    def hole(db: Rdict) -> None:
        del db[entry_key(middle)]

    assert "hole" in corrupt_and_start(c, victim, hole)

    def hard_state(db: Rdict) -> None:
        db[b"m/hard"] = b"\x00\x00\x00\x00garbage"

    assert "checksum mismatch" in corrupt_and_start(c, victim, hard_state)

    # The others went on without it; undone, the node starts and catches up.
    newest = c.stub(c.leader()).Append(
        log_pb2.AppendRequest(records=[b"while-refused"]), timeout=TIMEOUT_S
    )
    c.start(victim)
    c.wait_serving(victim)
    c.wait_last_index(newest.last_index, [victim])
    assert c.read_all(victim) == c.read_all(c.leader())


def test_dedup_survives_trim_and_restart(cluster: Cluster) -> None:
    """A retry of (producer, sequence) never appends twice, even after a trim and restart.

    Every node rebuilds its deduplication state from the retained log; after a trim, the
    batches before the boundary, with their producer sequences, are gone from it.
    """
    c = cluster
    leader = c.leader()
    stub = c.stub(leader)
    first = log_pb2.AppendRequest(records=[b"p-1"], producer_id="p", sequence=1)
    assert stub.Append(first, timeout=TIMEOUT_S).first_index == 1
    assert (
        stub.Append(
            log_pb2.AppendRequest(records=[b"p-2"], producer_id="p", sequence=2), timeout=TIMEOUT_S
        ).first_index
        == 2
    )
    for seq in range(1, 9):
        request = log_pb2.AppendRequest(
            records=[f"q-{seq}".encode()], producer_id="q", sequence=seq
        )
        stub.Append(request, timeout=TIMEOUT_S)
    # No snapshot covers the records: only a forced trim drops them.
    trimmed = stub.Trim(log_pb2.TrimRequest(before_index=8, force=True), timeout=TIMEOUT_S)
    assert trimmed.first_index > 2
    c.wait_last_index(10, list(c.nodes))
    again = stub.Append(first, timeout=TIMEOUT_S)
    assert (again.first_index, again.duplicate) == (1, True)

    for node_id in c.nodes:
        c.kill(node_id)
    c.start_all()
    c.wait_last_index(10, list(c.nodes))
    # Record 10 comes before the trim in the log: a node may show it before the trim.
    c.wait_until(
        lambda: all(c.status(i).first_index == trimmed.first_index for i in c.nodes),
        TIMEOUT_S,
        f"every node retains records from {trimmed.first_index} on again",
    )
    leader = c.leader()
    try:
        retry = c.stub(leader).Append(first, timeout=TIMEOUT_S)
    except grpc.RpcError as exc:
        failure = RpcFailure.of(exc)
        # "Older than the deduplication window": nothing appended, which is fine.
        assert failure.code is grpc.StatusCode.FAILED_PRECONDITION, failure
    else:
        assert (retry.first_index, retry.last_index, retry.duplicate) == (1, 1, True), (
            f"the retry of (p, 1) was appended again: {retry}"
        )
    assert c.status(leader).last_index == 10
