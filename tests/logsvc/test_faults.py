"""Faults with real processes: SIGKILL, SIGTERM, SIGSTOP of nodes, under load and at rest.

Over 500 lines: each fault, under load and at rest, shares the load and verification
helpers.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import shutil
import time
from dataclasses import dataclass, field

import grpc
import pytest
from grpc_health.v1 import health_pb2

from logsvc.client import AppendOutcomeUnknown, AppendResult, LogClient, TrimmedError
from logsvc.storage import DurableLog
from logsvc.v1 import log_pb2
from tests.logsvc.cluster import STOP_TIMEOUT_S, Cluster, RpcFailure, rpc_failure
from tests.logsvc.conftest import Clusters

TIMEOUT_S = 10.0


def other(cluster: Cluster, *not_these: str) -> str:
    return next(i for i in cluster.nodes if i not in not_these)


async def append_batches(c: Cluster, prefix: str, batches: int, size: int) -> tuple[int, int]:
    """Append batches of distinct payloads; returns (first index, last index)."""
    async with LogClient(c.addresses, timeout_s=20) as client:
        first = last = 0
        for b in range(batches):
            acked = await client.append([f"{prefix}-{b}-{i}".encode() for i in range(size)])
            first = first or acked.first_index
            last = acked.last_index
        return first, last


# -- concurrent appenders while the leader dies twice ----------------------------------------


@dataclass
class Load:
    writers: int
    appends_max: int  # per writer
    acked: dict[bytes, int] = field(default_factory=dict)  # payload -> acknowledged index
    unknown: set[bytes] = field(default_factory=set)  # gave up: maybe appended
    acked_by_writer: dict[int, list[int]] = field(default_factory=dict)
    stop: asyncio.Event = field(default_factory=asyncio.Event)

    async def writer(self, c: Cluster, k: int) -> None:
        indexes = self.acked_by_writer.setdefault(k, [])
        # A short attempt timeout: a request stuck at a frozen (SIGSTOP) leader is retried
        # elsewhere, with the same sequence, after 1.5 s rather than the default 6 s.
        async with LogClient(
            c.addresses, producer_id=f"writer-{k}", timeout_s=15, attempt_timeout_s=1.5
        ) as client:
            for i in range(self.appends_max):
                if self.stop.is_set():
                    return
                payload = f"w{k}-{i}".encode()
                try:
                    result = await client.append([payload])
                except AppendOutcomeUnknown:
                    self.unknown.add(payload)
                    continue
                # duplicate=True is fine: the client's retry found its first attempt.
                self.acked[payload] = result.first_index
                indexes.append(result.first_index)

    async def until_acked(self, count: int, timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while len(self.acked) < count:
            assert time.monotonic() < deadline, (
                f"only {len(self.acked)} of {count} appends acknowledged {what} "
                f"after {timeout}s (unknown: {len(self.unknown)})"
            )
            await asyncio.sleep(0.01)


@pytest.mark.parametrize("fault", ["sigkill", "sigstop"])
def test_concurrent_appenders_survive_two_leader_failures(cluster: Cluster, fault: str) -> None:
    """Four appenders go on while the leader dies (SIGKILL, then a restart) or freezes
    (SIGSTOP, then SIGCONT: it comes back as a stale leader), twice in a row."""
    c = cluster
    load = Load(writers=4, appends_max=3000)
    killed: list[str] = []
    tailed: list[tuple[int, bytes]] = []

    async def tail() -> None:
        # A follower of the log from index 1, through the kills (it reconnects elsewhere).
        async with LogClient(c.addresses) as reader:
            async for record in reader.read(1, follow=True):
                tailed.append(record)

    async def chaos() -> None:
        await load.until_acked(100, 15, "before the first kill")
        for round_ in range(2):
            leader = await asyncio.to_thread(c.leader)
            if fault == "sigkill":
                c.kill(leader)
            else:
                c.pause(leader)
            killed.append(leader)
            await asyncio.to_thread(c.new_leader, leader)
            # The appenders go on under the new leader.
            await load.until_acked(len(load.acked) + 150, 20, f"after {fault} {round_ + 1}")
            # Bring the node back so that the next fault leaves a majority.
            if fault == "sigkill":
                c.start(leader)
            else:
                c.resume(leader)
            await asyncio.to_thread(c.wait_serving, leader)
        await load.until_acked(len(load.acked) + 100, 20, "after both restarts")

    async def go() -> None:
        writers = [asyncio.create_task(load.writer(c, k)) for k in range(load.writers)]
        tailer = asyncio.create_task(tail())
        try:
            await asyncio.wait_for(chaos(), 60)
        finally:
            load.stop.set()
            await asyncio.wait_for(asyncio.gather(*writers), 30)
        try:
            top = max(load.acked.values())
            deadline = time.monotonic() + 20
            while not (tailed and tailed[-1][0] >= top):
                assert not tailer.done(), tailer
                assert time.monotonic() < deadline, f"the tail reached {tailed[-1:]}, not {top}"
                await asyncio.sleep(0.02)
        finally:
            tailer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await tailer

    asyncio.run(go())
    assert len(killed) == 2
    print(f"acked {len(load.acked)}, outcome unknown {len(load.unknown)}, killed {killed}")
    max_acked = max(load.acked.values())
    c.wait_last_index(max_acked, list(c.nodes))
    logs = {node_id: dict(c.read_all(node_id)) for node_id in c.nodes}
    for node_id, log in logs.items():
        # Every acknowledged append is there, with its payload, on every node.
        wrong = {p: i for p, i in load.acked.items() if log.get(i) != p}
        assert not wrong, f"node {node_id}: acked records missing or different: {wrong}"
        # No payload twice (the client retries with the same producer sequence).
        counts = collections.Counter(log.values())
        assert not [p for p, n in counts.items() if n > 1], f"node {node_id}: duplicates"
        assert sorted(log) == list(range(1, len(log) + 1)), f"node {node_id}: holes"
    # The nodes agree on the common prefix.
    common = min(len(log) for log in logs.values())
    for node_id, log in logs.items():
        assert [log[i] for i in range(1, common + 1)] == [
            logs["a"][i] for i in range(1, common + 1)
        ], node_id
    # The follower of the log saw every record once, in order, as the nodes hold them.
    assert [i for i, _ in tailed] == list(range(1, len(tailed) + 1))
    assert all(logs["a"].get(i) == p for i, p in tailed)
    # One writer's appends land in the order it made them.
    for k, indexes in load.acked_by_writer.items():
        assert indexes == sorted(indexes), f"writer {k}"


# -- a stopped node catches up ----------------------------------------------------------------


def test_stopped_follower_catches_up_after_restart(cluster: Cluster) -> None:
    c = cluster
    asyncio.run(append_batches(c, "before", 5, 10))
    follower = other(c, c.leader())
    assert c.stop(follower) == 0, "SIGTERM must be a clean exit"
    _, last = asyncio.run(append_batches(c, "while-down", 40, 5))
    c.start(follower)
    c.wait_serving(follower)
    c.wait_last_index(last, [follower])
    c.wait_health_serving(follower, "logsvc.v1.Log")
    leader = c.leader()
    st, lst = c.status(follower), c.status(leader)
    assert (st.commit_index, st.last_index) == (lst.commit_index, lst.last_index)
    assert c.read_all(follower) == c.read_all(leader)


def test_a_follower_whose_data_was_wiped_rejoins_without_a_vote_in_the_current_term(
    cluster: Cluster,
) -> None:
    """A lost volume: the node comes back empty under the same id. Before it takes part it
    learns the cluster's term and syncs a vote for itself in it (LogNode.start), so it can
    never hand out a second vote in a term it may have voted in; then it catches up."""
    c = cluster
    asyncio.run(append_batches(c, "before-wipe", 5, 10))
    leader = c.leader()
    follower = other(c, leader)
    term = c.status(leader).header.term
    assert c.stop(follower) == 0
    shutil.rmtree(c.nodes[follower].rocksdb_path)
    _, last = asyncio.run(append_batches(c, "while-wiped", 10, 5))
    c.start(follower)
    c.wait_serving(follower)
    c.wait_last_index(last, [follower])
    assert c.read_all(follower) == c.read_all(c.leader())
    assert c.leader() == leader, "the empty node must not have disturbed the leader"
    assert c.stop(follower) == 0
    durable = DurableLog(c.nodes[follower].rocksdb_path.parent)
    try:
        durable.load()
        stored = durable.memory.initial_state()
    finally:
        durable.close()
    assert stored.term == term and stored.vote == follower, stored
    assert "starts with an empty data directory in a cluster at term" in (
        c.nodes[follower].log_path.read_text(errors="replace")
    )


def test_an_empty_node_waiting_for_its_peers_is_not_ready(clusters: Clusters) -> None:
    """A node of a new cluster whose peers are not up yet serves gRPC (peers probe it) but
    takes no part in Raft: its health says NOT_SERVING, so Kubernetes routes nothing to it,
    and it stops cleanly on SIGTERM while it waits."""
    c = clusters()
    c.start("a")
    not_serving = health_pb2.HealthCheckResponse.NOT_SERVING
    c.wait_until(lambda: _health_or_none(c, "a") is not None, 15, "node a answers health checks")
    assert c.health("a") == not_serving
    assert c.health("a", "logsvc.v1.Log") == not_serving
    # Status answers (the startup and liveness probes run `logsvc status`): it waits.
    st = c.status("a")
    assert (st.role, st.header.term, st.header.leader_id) == ("starting", 0, "")
    assert "waits for every peer's term" in c.wait_until(
        lambda: _log_with(c, "a", "waits for every peer's term"), 15, "a says whom it waits for"
    )
    assert c.stop("a") == 0


def _health_or_none(c: Cluster, node_id: str) -> int | None:
    try:
        return c.health(node_id)
    except grpc.RpcError:
        return None


def _log_with(c: Cluster, node_id: str, text: str) -> str | None:
    log_text = c.nodes[node_id].log_path.read_text(errors="replace")
    return log_text if text in log_text else None


def test_sigterm_of_the_leader_does_not_stall_appends(cluster: Cluster) -> None:
    """A graceful stop of the leader must cost no more write time than a crash would.

    With this test's timing an election takes well under a second; appends may pause
    for about that long, not for the whole shutdown grace period.
    """
    c = cluster
    leader = c.leader()
    node = c.nodes[leader]
    assert node.proc is not None

    async def go() -> float:
        async with LogClient(c.addresses, timeout_s=30) as client:
            await client.append([b"before-sigterm"])
            c.terminate(leader)
            started = last_ack = time.monotonic()
            longest = 0.0
            # Append for a while: the longest wait for an acknowledgement is the stall.
            while last_ack - started < 1.5:
                await client.append([b"after-sigterm"])
                now = time.monotonic()
                longest, last_ack = max(longest, now - last_ack), now
            return longest

    stalled = asyncio.run(go())
    assert node.proc.wait(STOP_TIMEOUT_S) == 0
    assert stalled < 2.0, f"appends stalled for {stalled:.2f}s after SIGTERM of the leader"


def test_node_behind_the_trim_point_restarts_from_the_boundary(cluster: Cluster) -> None:
    c = cluster
    _, had = asyncio.run(append_batches(c, "early", 3, 4))
    c.wait_last_index(had)
    follower = other(c, c.leader())
    c.kill(follower)
    _, last = asyncio.run(append_batches(c, "later", 20, 5))
    before = last - 10
    # Trim with the CLI, its flags from the environment (forced: no snapshot covers them).
    result = c.cli(
        "trim", env={"LOGSVC_ADDR": c.addr, "LOGSVC_BEFORE": str(before), "LOGSVC_FORCE": "1"}
    )
    first_retained = int(result.stdout)
    assert had + 1 < first_retained <= before, (had, first_retained, before)
    live = [i for i in c.nodes if i != follower]
    c.wait_until(
        lambda: all(c.status(i).first_index == first_retained for i in live),
        TIMEOUT_S,
        f"nodes {live} retain records from {first_retained} on",
    )

    c.start(follower)
    c.wait_serving(follower)
    c.wait_last_index(last, [follower])
    st = c.status(follower)
    assert st.first_index == first_retained, st
    assert c.read_all(follower, first_retained) == c.read_all(c.leader(), first_retained)

    # Reading before the first retained index: OUT_OF_RANGE naming it.
    failure = rpc_failure(
        lambda: list(c.stub(follower).Read(log_pb2.ReadRequest(from_index=1), timeout=5))
    )
    assert failure.code is grpc.StatusCode.OUT_OF_RANGE
    assert failure.metadata.get("logsvc-first-index") == str(first_retained), failure

    async def read_trimmed() -> None:
        async with LogClient([c.address(follower)]) as client:
            with pytest.raises(TrimmedError) as info:
                async for _ in client.read(first_retained - 1, address=c.address(follower)):
                    pass
            assert info.value.first_index == first_retained

    asyncio.run(read_trimmed())

    # New appends reach it.
    _, newest = asyncio.run(append_batches(c, "after-restart", 3, 3))
    c.wait_last_index(newest, [follower])
    assert c.read_all(follower, last + 1) == c.read_all(c.leader(), last + 1)


def test_follow_reader_moves_on_when_its_node_dies(cluster: Cluster) -> None:
    """LogClient.read(follow=True) reconnects to another node, without gap or repeat."""
    c = cluster
    follower = other(c, c.leader())
    # The reader's first address is the follower that will die.
    addresses = [c.address(follower), *(c.address(i) for i in c.nodes if i != follower)]

    async def go() -> list[tuple[int, bytes]]:
        got: list[tuple[int, bytes]] = []
        async with LogClient(c.addresses) as writer, LogClient(addresses) as reader:
            stream = reader.read(1, follow=True)
            try:
                for i in range(40):
                    if i == 20:
                        c.kill(follower)
                    acked = await writer.append([f"tail-{i}".encode()])
                    while not got or got[-1][0] < acked.last_index:
                        got.append(await asyncio.wait_for(anext(stream), TIMEOUT_S))
            finally:
                await stream.aclose()  # type: ignore[attr-defined]
        return got

    got = asyncio.run(go())
    assert got == [(i + 1, f"tail-{i}".encode()) for i in range(40)]


def test_follow_reader_moves_on_when_its_node_hangs(cluster: Cluster) -> None:
    """A node stopped with SIGSTOP keeps its TCP connections open and raises nothing: the
    client's keepalive gives up on it, and the follow read goes on from another node."""
    c = cluster
    follower = other(c, c.leader())
    addresses = [c.address(follower), *(c.address(i) for i in c.nodes if i != follower)]

    async def go() -> tuple[list[tuple[int, bytes]], float]:
        got: list[tuple[int, bytes]] = []
        async with LogClient(c.addresses) as writer, LogClient(addresses) as reader:
            stream = reader.read(1, follow=True)
            try:
                acked = await writer.append([b"hang-0"])
                got.append(await asyncio.wait_for(anext(stream), TIMEOUT_S))
                c.pause(follower)
                try:
                    started = time.monotonic()
                    acked = await writer.append([b"hang-1"])
                    while got[-1][0] < acked.last_index:
                        got.append(await asyncio.wait_for(anext(stream), TIMEOUT_S))
                    waited = time.monotonic() - started
                finally:
                    c.resume(follower)
            finally:
                await stream.aclose()  # type: ignore[attr-defined]
        return got, waited

    got, waited = asyncio.run(go())
    assert got == [(1, b"hang-0"), (2, b"hang-1")]
    # Keepalive: a ping after 1 s of silence, given up 2 s later (transport.py).
    assert waited < 8, waited


# -- a paused leader ----------------------------------------------------------------------------


def check_no_false_success(
    c: Cluster, payload: bytes, outcome: log_pb2.AppendResponse | RpcFailure
) -> None:
    """An error must be one of the contract's; a success must be committed on a majority."""
    leader = c.leader()
    count = [p for _, p in c.read_all(leader)].count(payload)
    if isinstance(outcome, RpcFailure):
        allowed = {
            (grpc.StatusCode.UNAVAILABLE, "NOT_LEADER"),
            (grpc.StatusCode.UNAVAILABLE, "NOT_APPENDED"),
            (grpc.StatusCode.UNKNOWN, "OUTCOME_UNKNOWN"),
            (grpc.StatusCode.DEADLINE_EXCEEDED, ""),
        }
        assert (outcome.code, outcome.kind) in allowed, outcome
        if outcome.kind in ("NOT_LEADER", "NOT_APPENDED"):
            assert count == 0, f"{outcome.kind}, yet {payload!r} is in the log"
        else:
            assert count <= 1, payload
        return
    assert count == 1, (payload, count)
    index = outcome.first_index
    holders = [i for i in c.live() if c.read_all(i, index)[:1] == [(index, payload)]]
    assert len(holders) >= 2, (outcome, holders)


def test_paused_leader_steps_down_and_gives_no_false_success(cluster: Cluster) -> None:
    c = cluster
    asyncio.run(append_batches(c, "warm", 3, 3))
    old = c.leader()
    old_term = c.status(old).header.term
    others = [c.address(i) for i in c.nodes if i != old]
    calls: list[tuple[bytes, grpc.Future[log_pb2.AppendResponse]]] = []

    def raw_append(name: str) -> tuple[bytes, grpc.Future[log_pb2.AppendResponse]]:
        payload = f"to-the-paused-leader-{name}".encode()
        request = log_pb2.AppendRequest(records=[payload], producer_id=name, sequence=1)
        return payload, c.stub(old).Append.future(request, timeout=6)

    async def go() -> tuple[str, int, AppendResult | AppendOutcomeUnknown]:
        async with LogClient([c.address(old)], timeout_s=10) as stuck:
            c.pause(old)
            try:
                client_append = asyncio.create_task(stuck.append([b"client-of-the-old-leader"]))
                calls.append(raw_append("raw-early"))
                new = await asyncio.to_thread(c.new_leader, old)
                # The others go on committing.
                async with LogClient(others, timeout_s=20) as client:
                    for i in range(10):
                        last = (await client.append([f"during-pause-{i}".encode()])).last_index
                calls.append(raw_append("raw-late"))
            finally:
                c.resume(old)
            try:
                result: AppendResult | AppendOutcomeUnknown = await client_append
            except AppendOutcomeUnknown as exc:
                result = exc
            return new, last, result

    new, last, client_result = asyncio.run(go())
    new_term = c.status(new).header.term
    assert new_term > old_term

    def stepped_down() -> bool:
        st = c.status(old)
        return st.role == "follower" and st.header.term == new_term and st.header.leader_id == new

    c.wait_until(stepped_down, TIMEOUT_S, f"{old} steps down to follow {new} in term {new_term}")
    c.wait_last_index(last)

    for payload, call in calls:
        try:
            outcome: log_pb2.AppendResponse | RpcFailure = call.result(timeout=10)
        except grpc.RpcError as exc:
            outcome = RpcFailure.of(exc)
        check_no_false_success(c, payload, outcome)
    # The client of the old leader followed the NOT_LEADER hint: a success is a real one.
    if isinstance(client_result, AppendResult):
        response = log_pb2.AppendResponse(
            first_index=client_result.first_index, last_index=client_result.last_index
        )
        check_no_false_success(c, b"client-of-the-old-leader", response)


# -- idempotent retry across a leader change ---------------------------------------------------


@pytest.mark.parametrize("kill", ["after_the_reply", "before_the_reply"])
def test_idempotent_retry_across_a_leader_change(cluster: Cluster, kill: str) -> None:
    c = cluster
    asyncio.run(append_batches(c, "warm", 2, 2))
    old = c.leader()
    payloads = [f"idempotent-{kill}-{i}".encode() for i in range(3)]
    request = log_pb2.AppendRequest(records=payloads, producer_id="idem", sequence=7)
    first: log_pb2.AppendResponse | None = None
    if kill == "after_the_reply":
        first = c.stub(old).Append(request, timeout=TIMEOUT_S)
        assert not first.duplicate
        c.kill(old)
    else:
        call = c.stub(old).Append.future(request, timeout=3)
        time.sleep(0.002)  # not a synchronisation: let the request leave, then kill at once
        c.kill(old)
        try:
            first = call.result()
        except grpc.RpcError:
            first = None  # outcome unknown: the retry must settle it
    new = c.new_leader(old)

    def retried() -> log_pb2.AppendResponse | None:
        try:
            return c.stub(new).Append(request, timeout=TIMEOUT_S)
        except grpc.RpcError as exc:
            failure = RpcFailure.of(exc)
            # Just elected: it may ask for a retry; anything else is an answer.
            assert failure.kind in ("NOT_APPENDED", "NOT_LEADER"), failure
            return None

    again = c.wait_until(retried, TIMEOUT_S, f"the retry is answered by {new}")
    if first is not None:
        assert (again.first_index, again.last_index, again.duplicate) == (
            first.first_index,
            first.last_index,
            True,
        )
    assert again.last_index == again.first_index + len(payloads) - 1
    c.start(old)
    c.wait_serving(old)
    c.wait_last_index(again.last_index, list(c.nodes))
    for node_id in c.nodes:
        log = c.read_all(node_id)
        for offset, payload in enumerate(payloads):
            assert [p for _, p in log].count(payload) == 1, (node_id, payload)
            assert log[again.first_index - 1 + offset] == (again.first_index + offset, payload)


# -- five nodes ------------------------------------------------------------------------------------


def test_five_nodes_commit_with_two_down(clusters: Clusters) -> None:
    c = clusters(ids=("a", "b", "c", "d", "e"))
    c.start_all()
    leader = c.leader()
    c.kill(leader)
    c.kill(other(c, leader))
    c.new_leader(leader)
    _, last = asyncio.run(append_batches(c, "five", 5, 4))
    c.wait_last_index(last)
    reads = [c.read_all(i) for i in c.live()]
    assert all(r == reads[0] for r in reads)
    assert len(reads[0]) == last
