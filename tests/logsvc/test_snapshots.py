"""The snapshot store and trim, with real `logsvc serve` processes.

A snapshot is random bytes (several MB, from a printed seed): stored through the leader,
it must come back byte for byte from every node, after the leader dies, after a node's copy
is corrupted or deleted, and on a node that was down while the log was trimmed past it.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import random
import shutil
import statistics
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from logsvc.client import LogClient, put_snapshot
from logsvc.v1 import log_pb2, peer_pb2, peer_pb2_grpc
from tests.logsvc.cluster import Cluster, RpcFailure, rpc_failure
from tests.logsvc.conftest import Clusters

TIMEOUT_S = 30.0
CHUNK = 1 << 20


@pytest.fixture
def seed() -> int:
    value = int(os.environ.get("SNAPSHOT_SEED", random.SystemRandom().randrange(1 << 32)))
    print(f"snapshot seed: {value} (rerun: SNAPSHOT_SEED={value})")
    return value


def blob(seed: int, size: int) -> bytes:
    return random.Random(seed).randbytes(size)


def chunks(index: int, data: bytes, sha256: bytes | None = None) -> Iterator[log_pb2.SnapshotChunk]:
    info = log_pb2.SnapshotInfo(
        index=index, size_bytes=len(data), sha256=sha256 or hashlib.sha256(data).digest()
    )
    yield log_pb2.SnapshotChunk(info=info, data=data[:CHUNK])
    for at in range(CHUNK, len(data), CHUNK):
        yield log_pb2.SnapshotChunk(data=data[at : at + CHUNK])


def put(c: Cluster, node_id: str, index: int, data: bytes) -> log_pb2.PutSnapshotResponse:
    return c.stub(node_id).PutSnapshot(chunks(index, data), timeout=TIMEOUT_S)


def put_durable(c: Cluster, index: int, data: bytes) -> log_pb2.PutSnapshotResponse:
    """Put through whichever node leads, again after a leader change (a busy machine may
    move leadership mid-put); a retry of a put that became durable answers `duplicate`."""

    def attempt() -> log_pb2.PutSnapshotResponse | None:
        try:
            return put(c, c.leader(), index, data)
        except grpc.RpcError as exc:
            if exc.code() is not grpc.StatusCode.UNAVAILABLE:
                raise AssertionError(f"put {index} failed: {exc}") from exc
            return None

    return c.wait_until(attempt, TIMEOUT_S, f"snapshot {index} is durable")


def get(c: Cluster, node_id: str, index: int = 0) -> tuple[log_pb2.SnapshotInfo, bytes]:
    info = None
    parts = []
    for chunk in c.stub(node_id).GetSnapshot(
        log_pb2.GetSnapshotRequest(index=index), timeout=TIMEOUT_S
    ):
        if info is None:
            info = chunk.info
        assert len(chunk.data) <= CHUNK, len(chunk.data)
        parts.append(chunk.data)
    assert info is not None
    return info, b"".join(parts)


def served(c: Cluster, node_id: str, index: int, data: bytes) -> bool:
    """Does node_id serve snapshot `index` with exactly these bytes? A refusal is "not yet";
    wrong bytes fail the test at once."""
    try:
        info, got = get(c, node_id, index)
    except grpc.RpcError as exc:
        assert exc.code() in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.NOT_FOUND), exc
        return False
    assert index in (0, info.index) and info.sha256 == hashlib.sha256(data).digest(), info
    assert got == data, f"{node_id} served {len(got)} bytes that differ from the snapshot"
    return True


def wait_served(c: Cluster, node_id: str, index: int, data: bytes) -> None:
    c.wait_until(
        lambda: served(c, node_id, index, data), TIMEOUT_S, f"{node_id} serves snapshot {index}"
    )


def append(c: Cluster, prefix: str, count: int) -> int:
    """Append `count` single-record batches; returns the last index."""

    async def go() -> int:
        last = 0
        async with LogClient(c.addresses, timeout_s=TIMEOUT_S) as client:
            for i in range(count):
                last = (await client.append([f"{prefix}-{i}".encode()])).last_index
        return last

    return asyncio.run(go())


def blob_files(c: Cluster, node_id: str) -> list[Path]:
    folder = c.nodes[node_id].data_dir / node_id / "snapshots"
    return sorted(folder.glob("snap-*.blob"))


def followers(c: Cluster, leader: str) -> list[str]:
    return [i for i in c.nodes if i != leader]


def test_put_then_get_from_every_node_after_the_leader_dies(cluster: Cluster, seed: int) -> None:
    c = cluster
    last = append(c, "r", 20)
    data = blob(seed, 5 * CHUNK + 12345)
    response = put_durable(c, last - 5, data)  # again on a new leader if leadership moves
    assert response.snapshot.index == last - 5
    assert response.snapshot.size_bytes == len(data)
    assert response.snapshot.sha256 == hashlib.sha256(data).digest()
    assert response.snapshot.term >= 1 and response.snapshot.created_at_ms > 0
    assert len(response.stored_on) >= 2, response
    # A retry of the same put answers the same, as a duplicate.
    again = put_durable(c, last - 5, data)
    assert again.duplicate and again.snapshot.sha256 == response.snapshot.sha256

    leader = c.leader()
    c.kill(leader)
    new = c.new_leader(leader)
    for node_id in c.live():
        wait_served(c, node_id, 0, data)
        listed = c.stub(node_id).ListSnapshots(log_pb2.ListSnapshotsRequest(), timeout=5)
        assert [s.index for s in listed.snapshots] == [last - 5]
    c.start(leader)
    c.wait_serving(leader)
    c.wait_until(lambda: served(c, leader, last - 5, data), TIMEOUT_S, "the old leader serves it")
    st = c.status(new)
    assert st.newest_snapshot.index == last - 5 and st.snapshots_durable == 1, st
    # The snapshot's log entry is no record: readers see exactly what was appended.
    assert c.read_all(leader) == [(i, f"r-{i - 1}".encode()) for i in range(1, last + 1)]
    assert st.newest_snapshot.size_bytes == len(data)

    # What the API refuses, and how.
    bad = rpc_failure(lambda: c.stub(new).PutSnapshot(
        chunks(last, data, sha256=b"\0" * 32), timeout=TIMEOUT_S))  # fmt: skip
    assert bad.code is grpc.StatusCode.DATA_LOSS and "checksum mismatch" in bad.details, bad
    above = rpc_failure(lambda: put(c, new, last + 100, b"x"))
    assert above.code is grpc.StatusCode.FAILED_PRECONDITION, above
    assert "above the commit index" in above.details, above
    older = rpc_failure(lambda: put(c, new, last - 6, b"x"))
    assert older.code is grpc.StatusCode.FAILED_PRECONDITION, older
    assert f"newest durable snapshot (index {last - 5})" in older.details, older
    follower = followers(c, new)[0]
    not_leader = rpc_failure(lambda: put(c, follower, last, b"x"))
    assert (not_leader.code, not_leader.kind) == (grpc.StatusCode.UNAVAILABLE, "NOT_LEADER")
    unknown = rpc_failure(lambda: get(c, follower, last - 1))
    assert unknown.code is grpc.StatusCode.NOT_FOUND, unknown
    # Nothing of the refused puts was kept.
    for node_id in c.nodes:
        assert len(blob_files(c, node_id)) == 1, (node_id, blob_files(c, node_id))


def test_corrupt_or_lost_copies_are_never_served_and_are_fetched_again(
    cluster: Cluster, seed: int
) -> None:
    c = cluster
    last = append(c, "r", 10)
    data = blob(seed, 3 * CHUNK + 7)
    leader = c.leader()
    put_durable(c, last, data)
    for node_id in c.nodes:
        wait_served(c, node_id, last, data)
    one, two = followers(c, leader)

    # A byte flipped on disk under a running node: refused, then fetched again.
    (path,) = blob_files(c, one)
    raw = bytearray(path.read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    path.write_bytes(bytes(raw))
    failure = rpc_failure(lambda: get(c, one, last))
    assert failure.code is grpc.StatusCode.UNAVAILABLE, failure
    assert "failed its checksum" in failure.details, failure
    c.wait_until(lambda: served(c, one, last, data), TIMEOUT_S, f"{one} fetched it again")
    c.wait_until(lambda: "fetched snapshot" in c.log_text(one), TIMEOUT_S, "it logs the fetch")

    # Corrupted while the node is down: dropped at start, fetched again.
    c.stop(two)
    (path,) = blob_files(c, two)
    path.write_bytes(b"garbage" + path.read_bytes()[7:])
    c.start(two)
    c.wait_serving(two)
    c.wait_until(lambda: served(c, two, last, data), TIMEOUT_S, f"{two} fetched it again")
    assert "dropped a corrupt snapshot copy" in c.log_text(two)

    # Every snapshot file of a node lost: it recovers them.
    c.stop(one)
    for path in blob_files(c, one):
        path.unlink()
    c.start(one)
    c.wait_serving(one)
    c.wait_until(lambda: served(c, one, last, data), TIMEOUT_S, f"{one} recovered its copy")


def trim_at_leader(c: Cluster, before: int) -> log_pb2.TrimResponse | RpcFailure:
    """Trim asked of whoever leads now: a leader may change under a loaded machine, and a
    NOT_LEADER answer says nothing about the trim itself, so it is asked again."""
    deadline = time.monotonic() + TIMEOUT_S
    while True:
        try:
            response: log_pb2.TrimResponse = c.stub(c.leader()).Trim(
                log_pb2.TrimRequest(before_index=before), timeout=TIMEOUT_S
            )
            return response
        except grpc.RpcError as exc:
            failure = RpcFailure.of(exc)
            if failure.metadata.get("logsvc-error-kind") != "NOT_LEADER":
                return failure
            if time.monotonic() > deadline:
                raise


def refused_trim(c: Cluster, before: int) -> RpcFailure:
    result = trim_at_leader(c, before)
    assert isinstance(result, RpcFailure), f"trim before {before} was accepted: {result}"
    return result


def test_trim_is_refused_above_the_newest_snapshot(cluster: Cluster, tmp_path: Path) -> None:
    c = cluster
    leader = c.leader()
    last = append(c, "r", 30)
    no_snapshot = refused_trim(c, 5)
    assert no_snapshot.code is grpc.StatusCode.FAILED_PRECONDITION, no_snapshot
    assert "no snapshot is durable yet" in no_snapshot.details, no_snapshot
    state = tmp_path / "state-20.bin"
    state.write_bytes(b"state at 20")
    stored = json.loads(
        c.cli("snapshot", "put", "--addr", c.addr, "--index", "20", str(state)).stdout
    )
    assert stored["index"] == 20 and stored["size_bytes"] == len(b"state at 20"), stored
    assert stored["sha256"] == hashlib.sha256(b"state at 20").hexdigest(), stored
    listed = json.loads(c.cli("snapshot", "list", "--addr", c.address(leader)).stdout)
    assert [s["index"] for s in listed] == [20], listed
    for node_id in c.nodes:
        out = tmp_path / f"got-{node_id}.bin"
        c.wait_until(
            lambda n=node_id, o=out: (
                c.cli(  # type: ignore[misc]
                    "snapshot", "get", "--addr", c.address(n), str(o), check=False
                ).returncode
                == 0
            ),
            TIMEOUT_S,
            f"{node_id} serves the snapshot to the CLI",
        )
        assert out.read_bytes() == b"state at 20", node_id
    status = json.loads(c.cli("status", "--addr", c.address(leader)).stdout)
    assert status["newestSnapshot"]["index"] == "20", status
    assert status["snapshotsDurable"] == 1 and status["snapshotsMissing"] == 0, status
    above = refused_trim(c, 22)
    assert above.code is grpc.StatusCode.FAILED_PRECONDITION, above
    assert "covers records up to 20" in above.details and "at most 21" in above.details, above
    # The CLI says the same, in one line, and exits 1.
    refused = c.cli("trim", "--addr", c.addr, "--before", "22", check=False)
    assert refused.returncode == 1 and b"covers records up to 20" in refused.stderr, refused
    assert c.status(c.leader()).first_index == 1

    trimmed = trim_at_leader(c, 21)
    assert isinstance(trimmed, log_pb2.TrimResponse), trimmed
    assert 1 < trimmed.first_index <= 21, trimmed
    c.wait_until(
        lambda: all(c.status(i).first_index == trimmed.first_index for i in c.nodes),
        TIMEOUT_S,
        "every node applied the trim",
    )
    # Forced, it goes above the snapshot.
    forced = c.cli("trim", "--addr", c.addr, "--before", "25", "--force")
    assert 21 < int(forced.stdout) <= 25, forced
    # A read below the first index: OUT_OF_RANGE, naming it.
    for node_id in c.nodes:
        first = c.status(node_id).first_index
        failure = rpc_failure(
            lambda n=node_id: list(c.stub(n).Read(log_pb2.ReadRequest(from_index=2), timeout=5))  # type: ignore[misc]
        )
        assert failure.code is grpc.StatusCode.OUT_OF_RANGE, failure
        assert failure.metadata["logsvc-first-index"] == str(first), failure
        assert f"first retained index is {first}" in failure.details, failure
    assert [i for i, _ in c.read_all(leader, int(forced.stdout))][-1] == last


@pytest.mark.parametrize(
    ("keep_entries", "keep_seconds"), [(300, 0.0), (0, 2.0)], ids=["by-entries", "by-age"]
)
def test_automatic_trim_under_load_keeps_the_floors(
    clusters: Clusters, keep_entries: int, keep_seconds: float
) -> None:
    """Snapshots at the last index each second: only the floor under test holds trim back.
    (The age variant takes its flags from LOGSVC_* variables.)"""
    c = clusters(
        extra_args=(
            "--trim-interval-s", "0.3",
            "--trim-keep-entries", str(keep_entries),
            "--trim-keep-seconds", str(keep_seconds),
        ),
        flags_in_env=bool(keep_seconds),
    )  # fmt: skip
    c.start_all()
    sent_at: dict[int, float] = {}  # record index -> when its append was sent
    observations: list[tuple[float, int, int, int]] = []  # (time, first, last, snapshot)

    async def load() -> None:
        async with LogClient(c.addresses, timeout_s=TIMEOUT_S) as client:
            started = time.time()
            next_snapshot = started + 1.0
            # At least 8 s, and until the first index moved three times (60 s at most).
            while time.time() - started < 8.0 or (
                len({o[1] for o in observations}) < 4 and time.time() - started < 60.0
            ):
                before = time.time()
                result = await client.append([b"x" * 100] * 5)
                for i in range(result.first_index, result.last_index + 1):
                    sent_at[i] = before
                if time.time() >= next_snapshot:
                    stored = await put_snapshot(client, result.last_index, b"s" * 1000)
                    next_snapshot = time.time() + 1.0
                    st = await client.status(c.address(stored.header.node_id))
                    observations.append(
                        (time.time(), st.first_index, st.last_index, st.newest_snapshot.index)
                    )

    asyncio.run(load())
    leader = c.leader()
    st = c.status(leader)
    observations.append((time.time(), st.first_index, st.last_index, st.newest_snapshot.index))
    firsts = [first for _, first, _, _ in observations]
    assert firsts[-1] > 1 and len(set(firsts)) >= 3, f"trimmed fewer than 3 times: {firsts}"
    assert st.trim_keep_entries == keep_entries, st
    # Whichever node led when it trimmed says so (leadership may move on a busy machine).
    assert max(c.status(i).auto_trim_before_index for i in c.nodes) > 1
    for at, first, last, snapshot in observations:
        assert first <= snapshot + 1, (first, snapshot)
        # Trimmed (first > 1), at least the floor is left; untrimmed, the log may still be
        # shorter than the floor (a slow machine appends fewer records in the first second).
        assert first == 1 or last - first + 1 >= keep_entries, (first, last)
        # Every trimmed record was sent at least keep_seconds before it was trimmed.
        if not keep_seconds:
            continue
        young = [i for i in range(1, first) if sent_at.get(i, 0) > at - keep_seconds]
        assert not young, f"records {young[:5]}... trimmed younger than {keep_seconds}s"
    assert any("trimmed the log before" in c.log_text(i) for i in c.nodes)


def test_a_node_behind_the_trim_point_gets_boundary_catalog_and_blobs(
    cluster: Cluster, seed: int
) -> None:
    c = cluster
    leader = c.leader()
    behind = followers(c, leader)[0]
    append(c, "early", 5)
    c.stop(behind)
    first_at = append(c, "a", 20)
    old = blob(seed, 2 * CHUNK + 1)
    put_durable(c, first_at, old)
    second_at = append(c, "b", 20)
    new = blob(seed + 1, 3 * CHUNK + 3)
    put_durable(c, second_at, new)
    append(c, "c", 10)
    # Trim below the newest snapshot, far enough that the first snapshot's entry is gone
    # from the log: the node that was down learns of it from the trim's copy of the catalog.
    trimmed = c.stub(leader).Trim(
        log_pb2.TrimRequest(before_index=second_at + 1), timeout=TIMEOUT_S
    )
    assert trimmed.first_index > first_at + 1, trimmed
    leader_status = c.status(leader)
    assert leader_status.raft_first_index > 1

    c.start(behind)
    c.wait_serving(behind)
    c.wait_last_index(leader_status.last_index, [behind])
    st = c.status(behind)
    assert st.first_index == trimmed.first_index, st
    listed = c.stub(behind).ListSnapshots(log_pb2.ListSnapshotsRequest(), timeout=5)
    assert [s.index for s in listed.snapshots] == [second_at, first_at], listed
    c.wait_until(lambda: served(c, behind, second_at, new), TIMEOUT_S, "it serves the newest")
    c.wait_until(lambda: served(c, behind, first_at, old), TIMEOUT_S, "it serves the older")
    c.wait_until(
        lambda: c.status(behind).snapshots_missing == 0, TIMEOUT_S, "it misses no snapshot"
    )
    assert c.read_all(behind, trimmed.first_index) == c.read_all(leader, trimmed.first_index)

    # A node whose whole data directory is lost (a new volume) comes back the same way.
    wiped = next(i for i in c.nodes if i not in (leader, behind))
    c.stop(wiped)
    shutil.rmtree(c.nodes[wiped].data_dir / wiped)
    c.start(wiped)
    c.wait_serving(wiped)
    c.wait_last_index(leader_status.last_index, [wiped])
    c.wait_until(lambda: served(c, wiped, second_at, new), TIMEOUT_S, "the new node serves it")
    c.wait_until(lambda: served(c, wiped, first_at, old), TIMEOUT_S, "and the older one")
    assert c.status(wiped).first_index == trimmed.first_index


def test_retention_keeps_the_newest_snapshots(clusters: Clusters) -> None:
    c = clusters(extra_args=("--snapshot-retain", "2"))
    c.start_all()
    leader = c.leader()
    indexes = []
    for k in range(4):
        last = append(c, f"r{k}", 3)
        put_durable(c, last, f"snapshot {k}".encode())
        indexes.append(last)
    for node_id in c.nodes:
        c.wait_until(
            lambda n=node_id: len(blob_files(c, n)) == 2,  # type: ignore[misc]
            TIMEOUT_S,
            f"{node_id} keeps two snapshot files",
        )
        listed = c.stub(node_id).ListSnapshots(log_pb2.ListSnapshotsRequest(), timeout=5)
        assert [s.index for s in listed.snapshots] == indexes[:1:-1], listed
    gone = rpc_failure(lambda: get(c, leader, indexes[0]))
    assert gone.code is grpc.StatusCode.NOT_FOUND, gone


def test_serve_refuses_bad_snapshot_and_trim_settings(clusters: Clusters) -> None:
    c = clusters(ids=("solo",))
    cases = {
        ("--snapshot-retain", "0"): "--snapshot-retain must be at least 1",
        ("--trim-keep-seconds", "-1"): "--trim-keep-seconds must be at least 0",
        ("--trim-keep-entries", "-5"): "--trim-keep-entries must be at least 0",
        ("--trim-interval-s", "-1"): "--trim-interval-s must be at least 0",
        ("--snapshot-timeout-s", "0"): "--snapshot-timeout-s must be positive",
    }
    for flag, message in cases.items():
        result = c.cli(*c.serve_args("solo"), *flag, check=False)
        assert result.returncode == 2 and message.encode() in result.stderr, (flag, result)
    # A node alone is its own majority.
    c.start_all()
    last = append(c, "r", 2)
    stored = put(c, "solo", last, b"alone")
    assert list(stored.stored_on) == ["solo"], stored
    assert get(c, "solo")[1] == b"alone"


def test_received_snapshots_are_written_no_faster_than_the_limit(clusters: Clusters) -> None:
    """Paced, a put takes its time, and appends go on meanwhile at their own pace (they do
    not queue behind snapshot bytes), while the put still finishes under that load."""
    rate = 2 << 20
    c = clusters(extra_args=("--snapshot-bytes-per-s", str(rate)))
    leader = c.start_all()
    assert leader is not None
    last = append(c, "r", 3)
    data = blob(7, 4 << 20)
    latencies: list[float] = []

    async def load(put_done: asyncio.Event) -> None:
        async with LogClient(c.addresses, timeout_s=TIMEOUT_S) as client:
            while not put_done.is_set():
                sent = time.monotonic()
                await client.append([b"during the put"])
                latencies.append(time.monotonic() - sent)

    async def put_under_load() -> float:
        put_done = asyncio.Event()
        loader = asyncio.create_task(load(put_done))
        started = time.monotonic()
        try:
            await asyncio.to_thread(put_durable, c, last, data)
        finally:
            put_done.set()
            await loader
        return time.monotonic() - started

    elapsed = asyncio.run(put_under_load())
    # The leader writes it at 2 MiB/s, then its peers do: at least the first 4 MiB - 1 chunk.
    assert elapsed >= (len(data) - CHUNK) / rate, elapsed
    # Appends were answered all along, each in a small part of the put's time.
    assert len(latencies) >= 10, latencies
    assert statistics.median(latencies) < elapsed / 10, (statistics.median(latencies), elapsed)


def test_a_push_whose_bytes_fail_their_checksum_is_refused(cluster: Cluster, seed: int) -> None:
    """The leader sends its copy to its peers without hashing it again: each peer hashes
    what it receives, and refuses (keeping nothing) bytes that differ from the SHA-256 or
    the size the push declared, whatever chunk they are in."""
    c = cluster
    leader = c.leader()
    target = followers(c, leader)[0]
    last = append(c, "r", 3)
    data = blob(seed, 3 * CHUNK + 777)
    sha256 = hashlib.sha256(data).digest()
    flipped = bytearray(data)
    flipped[random.Random(seed).randrange(len(data))] ^= 0x01
    stub = peer_pb2_grpc.PeerStub(c.peer_channel(target))

    def push(body: bytes, size: int) -> None:
        def transfers() -> Iterator[peer_pb2.SnapshotTransfer]:
            info = log_pb2.SnapshotInfo(index=last, size_bytes=size, sha256=sha256)
            yield peer_pb2.SnapshotTransfer(
                cluster_id="memlog", from_id=leader, chunk=log_pb2.SnapshotChunk(info=info)
            )
            for at in range(0, len(body), CHUNK):
                yield peer_pb2.SnapshotTransfer(
                    cluster_id="memlog",
                    from_id=leader,
                    chunk=log_pb2.SnapshotChunk(data=body[at : at + CHUNK]),
                )

        stub.PushSnapshot(transfers(), timeout=TIMEOUT_S)

    corrupt = rpc_failure(lambda: push(bytes(flipped), len(data)))
    assert corrupt.code is grpc.StatusCode.DATA_LOSS, corrupt
    assert "checksum mismatch" in corrupt.details, corrupt
    short = rpc_failure(lambda: push(data[:-1], len(data)))
    assert short.code is grpc.StatusCode.DATA_LOSS and "declared" in short.details, short
    longer = rpc_failure(lambda: push(data + b"x", len(data)))
    assert longer.code is grpc.StatusCode.DATA_LOSS and "more than" in longer.details, longer
    folder = c.nodes[target].data_dir / target / "snapshots"
    assert list(folder.iterdir()) == [], list(folder.iterdir())  # no blob, no temp file
    # The right bytes are taken, and a put of them then counts that copy.
    push(data, len(data))
    assert [p.name for p in blob_files(c, target)] == [f"snap-{last:020d}-{sha256.hex()}.blob"]
    put_durable(c, last, data)
    for node_id in c.nodes:
        wait_served(c, node_id, last, data)
