"""The simulated world: nodes with disks and clocks, a network, clients, and a fault driver.

Everything is driven by one event queue ordered by (time, sequence number); every random
choice comes from generators seeded from the run's seed. No wall clock, no threads, no
iteration over hash-ordered sets: the same seed gives the same run byte for byte, which
`RunResult.trace_digest` witnesses.

Over 500 lines: every part of the world runs off the one event queue and its seeded
generators, kept in one module so that a run stays deterministic.
"""

from __future__ import annotations

import functools
import hashlib
import heapq
import random
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field

from logsvc.raft import (
    ConfChange,
    ConfChangeRefused,
    ConfChangeType,
    Config,
    ConfState,
    Entry,
    MemoryStorage,
    Message,
    MessageType,
    ProposalDropped,
    RaftError,
    RawNode,
    Ready,
    Role,
    Storage,
)
from logsvc.raft.raft import Raft
from logsvc.window import TermRuns, WindowStorage
from tests.sim.checkers import Checkers, LogView, Violation
from tests.sim.faults import MIXES, MIXES_BY_NAME, FaultMix
from tests.sim.variants import VARIANTS

ZONES = ("a", "b", "c")
TICK_MS = 10
# Liveness allowance per entry a member of the newest membership lags at the heal.
CATCH_UP_MS_PER_ENTRY = 12


@dataclass(frozen=True, slots=True)
class RunConfig:
    seed: int
    variant: str = "correct"
    mix: str | None = None  # None: chosen by the seed
    cluster_size: int | None = None  # None: chosen by the seed
    safety_ms: int = 5000
    clients: int = 3
    # The core reads a WindowStorage (logsvc/window.py) that fetches older entries from the
    # disk after a delay, as a log node's does; None: chosen by the seed.
    window: bool | None = None
    # Membership changes: two spare nodes join (as learners, then voters), members leave,
    # while the faults go on; None: chosen by the seed.
    membership: bool | None = None

    def describe(self) -> str:
        return f"seed={self.seed} variant={self.variant}"


@dataclass
class RunResult:
    seed: int
    variant: str
    mix: str
    cluster_size: int
    violation: Violation | None
    trace_digest: str
    events: int
    sim_ms: int
    leaders: int
    committed: int
    acknowledged: int
    reads_answered: int
    notes: list[str] = field(default_factory=list)
    window: bool | None = None  # forced on or off; None: as the seed chose
    membership: bool | None = None  # forced on or off; None: as the seed chose
    conf_changes: int = 0  # membership changes committed
    final_voters: tuple[str, ...] = ()  # the voters of the newest membership at the end

    def repro_command(self) -> str:
        extra = "" if self.variant == "correct" else f" --variant {self.variant}"
        if self.window is not None:
            extra += f" --window {'on' if self.window else 'off'}"
        if self.membership is not None:
            extra += f" --membership {'on' if self.membership else 'off'}"
        return f"python -m tests.sim --seed {self.seed}{extra}"


@dataclass
class SimNode:
    id: str
    zone: str
    config: Config
    raft_class: type[Raft]
    storage: MemoryStorage = field(default_factory=MemoryStorage)  # the disk
    # With windows on: what the core reads, rebuilt from the disk at every start.
    window: WindowStorage | None = None
    window_limits: tuple[int, int, int] = (0, 0, 0)
    fetching: bool = False
    alive: bool = True
    incarnation: int = 0
    node: RawNode | None = None
    pending: Ready | None = None  # the Ready whose sync is in progress
    tick_ms: int = TICK_MS
    sync_ms_max: int = 4

    def raw(self) -> RawNode:
        if self.node is None:
            raise RuntimeError(f"node {self.id} is down")
        return self.node

    def log_view(self) -> LogView:
        if self.alive and self.node is not None:
            log = self.node.raft.log
            first = log.first_index()
            # The checkers read the disk, which holds what the window holds and more.
            core_storage, log.storage = log.storage, self.storage
            try:
                return LogView(self.id, first, log.slice(first, log.last_index() + 1))
            finally:
                log.storage = core_storage
        return self.durable_view()

    def durable_view(self) -> LogView:
        first = self.storage.first_index()
        entries = self.storage.entries(first, self.storage.last_index() + 1)
        return LogView(self.id, first, entries)


@dataclass
class Proposal:
    client: int
    node: str
    index: int
    data: bytes
    deadline_ms: int


class Simulation:
    def __init__(self, run: RunConfig) -> None:
        self.run = run
        master = random.Random(run.seed)
        # Independent streams, so adding a draw in one place does not reshuffle the rest.
        self.rng_net = random.Random(master.getrandbits(64))
        self.rng_fault = random.Random(master.getrandbits(64))
        self.rng_client = random.Random(master.getrandbits(64))
        rng_setup = random.Random(master.getrandbits(64))
        self.rng_raft_seed = master.getrandbits(64)

        self.mix: FaultMix = (
            MIXES_BY_NAME[run.mix] if run.mix else MIXES[rng_setup.randrange(len(MIXES))]
        )
        size = run.cluster_size or rng_setup.choice(self.mix.cluster_sizes)
        self.size = size
        ids = tuple(f"n{i + 1}" for i in range(size))
        election_ticks = rng_setup.randrange(6, 16)
        heartbeat_ticks = rng_setup.randrange(1, max(2, election_ticks // 4))
        append_bytes_max = self.mix.append_bytes_max or rng_setup.choice((1, 200, 4096, 1 << 20))
        inflight = rng_setup.choice((1, 4, 64))
        # Its own generator, so that runs without windows stay what they were.
        rng_window = random.Random(f"window-{run.seed}")
        windowed = run.window if run.window is not None else rng_window.random() < 0.5
        window_limits = (
            rng_window.choice((1, 3, 20)),
            rng_window.choice((64, 1 << 20)),
            # At least two append messages, as a node's config demands one.
            max(rng_window.choice((100, 4096)), 2 * append_bytes_max),
        )
        raft_class = VARIANTS[run.variant]
        # Its own generator too: runs without membership changes stay what they were.
        self.rng_member = random.Random(f"membership-{run.seed}")
        self.membership = (
            run.membership if run.membership is not None else self.rng_member.random() < 0.2
        )
        if self.membership:
            # A learner added late replicates the whole log through the leader's window; with
            # the smallest windows that is a disk fetch per entry or two, too slow for the
            # liveness bound (the safety phase is what membership runs are about).
            window_limits = (
                max(20, window_limits[0]), window_limits[1], max(4096, window_limits[2])
            )
        spares = (f"n{size + 1}", f"n{size + 2}") if self.membership else ()
        self.bootstrap_voters = ids
        self.nodes: dict[str, SimNode] = {}
        for i, node_id in enumerate(ids + spares):
            config = Config(
                id=node_id,
                voters=() if node_id in spares else ids,
                joining=node_id in spares,
                election_ticks=election_ticks,
                heartbeat_ticks=heartbeat_ticks,
                append_bytes_max=append_bytes_max,
                inflight_messages_max=inflight,
                promote_lag_entries_max=self.rng_member.choice((0, 20)),
            )
            self.nodes[node_id] = SimNode(node_id, ZONES[i % len(ZONES)], config, raft_class)
            if windowed:
                self.nodes[node_id].window_limits = window_limits
        self.election_ms = election_ticks * TICK_MS

        self.now_ms = 0
        self._queue: list[tuple[int, int, Callable[[], None]]] = []
        self._seq = 0
        self.events = 0
        self._digest = hashlib.sha256()
        self.trace: list[str] = []
        # Directed links that drop everything: (from, to).
        self.blocked: set[tuple[str, str]] = set()
        self.drop_probability = self.mix.drop_probability
        self.duplicate_probability = self.mix.duplicate_probability
        self.reorder_probability = self.mix.reorder_probability
        self.faults_on = True

        self.check = Checkers()
        self.proposals: dict[tuple[str, int], Proposal] = {}
        self.client_busy: dict[int, bool] = {}
        self.client_counter = 0
        self.reads_waiting: dict[bytes, int] = {}  # context -> required index
        self.reads_answered = 0
        self.clients_stopped = False
        self.leaders = 0
        self.describe = (
            f"seed={run.seed} variant={run.variant} mix={self.mix.name} nodes={size} "
            f"election_ticks={election_ticks} heartbeat_ticks={heartbeat_ticks} "
            f"append_bytes_max={append_bytes_max} inflight={inflight}"
        )
        if windowed:
            self.describe += " window={}/{}/{}".format(*window_limits)
        if self.membership:
            self.describe += f" membership spares={','.join(spares)}"
        self.note(self.describe)

    # -- the event queue -------------------------------------------------------------

    def at(self, delay_ms: int, action: Callable[[], None]) -> None:
        self._seq += 1
        heapq.heappush(self._queue, (self.now_ms + max(0, delay_ms), self._seq, action))

    def run_until(self, end_ms: int, stop: Callable[[], bool] | None = None) -> bool:
        while self._queue and self._queue[0][0] <= end_ms:
            when, _, action = heapq.heappop(self._queue)
            self.now_ms = when
            self.events += 1
            action()
            if stop is not None and stop():
                return True
        self.now_ms = max(self.now_ms, end_ms)
        return False

    def note(self, text: str) -> None:
        line = f"{self.now_ms:>7}ms {text}"
        self.trace.append(line)
        self._digest.update(line.encode())

    def digest(self, text: str) -> None:
        self._digest.update(f"{self.now_ms}:{text}\n".encode())

    # -- nodes: ticks, the Ready loop, the disk ---------------------------------------

    def start_node(self, sn: SimNode) -> None:
        sn.alive = True
        sn.incarnation += 1
        sn.pending = None
        rng = random.Random(self.rng_raft_seed ^ hash_id(sn.id) ^ (sn.incarnation << 32))
        sn.fetching = False
        core_storage: Storage = sn.storage
        if sn.window_limits[0]:
            sn.window = core_storage = window_from_disk(sn.storage, sn.window_limits)
        sn.node = RawNode(sn.config, core_storage, rng, raft_class=sn.raft_class)
        self.check.on_restart(sn.id)
        incarnation = sn.incarnation
        self.at(self.rng_fault.randrange(sn.tick_ms), lambda: self.on_tick(sn, incarnation))

    def on_tick(self, sn: SimNode, incarnation: int) -> None:
        if not sn.alive or sn.incarnation != incarnation:
            return
        self.guard(sn, sn.raw().tick)
        self.drive(sn)
        self.at(sn.tick_ms, lambda: self.on_tick(sn, incarnation))

    def guard(self, sn: SimNode, action: Callable[[], object]) -> None:
        """Run a core call; an exception from the core is a violation of its own checks."""
        try:
            action()
        except ProposalDropped:
            raise
        except RaftError as exc:
            raise Violation("core-invariant", f"{sn.id}: {exc}") from exc

    def drive(self, sn: SimNode) -> None:
        """Take a Ready if none is in flight: send `messages` now, sync, then the rest."""
        if not sn.alive:
            return
        self.maybe_fetch(sn)
        node = sn.raw()
        if sn.pending is not None:
            for m in node.take_messages():
                self.send(m)
            return
        if not node.has_ready():
            return
        rd = node.ready()
        self.observe_soft_state(sn, rd)
        for m in rd.messages:
            self.send(m)
        sn.pending = rd
        if rd.must_sync:
            incarnation = sn.incarnation
            delay = 1 + self.rng_fault.randrange(sn.sync_ms_max)
            self.at(delay, lambda: self.on_synced(sn, incarnation, rd))
        else:
            self.on_synced(sn, sn.incarnation, rd)

    def on_synced(self, sn: SimNode, incarnation: int, rd: Ready) -> None:
        if not sn.alive or sn.incarnation != incarnation:
            return  # the node crashed while this write was in flight: it is lost
        if sn.window is not None:
            if rd.snapshot is not None:
                sn.window.apply_snapshot(rd.snapshot)
            sn.window.append(rd.entries)
            if rd.hard_state is not None:
                sn.window.set_hard_state(rd.hard_state)
        if rd.snapshot is not None:
            sn.storage.apply_snapshot(rd.snapshot)
            self.check.on_boundary(sn.id, rd.snapshot.index)
            boundary = rd.snapshot
            self.note(f"{sn.id} restarts its log at boundary {boundary.term}/{boundary.index}")
        if rd.entries:
            sn.storage.append(rd.entries)
        if rd.hard_state is not None:
            sn.storage.set_hard_state(rd.hard_state)
        for m in rd.persisted_messages:
            self.send(m)
            if m.type is MessageType.VOTE_RESPONSE and not m.reject:
                self.on_vote_granted(sn)
        for entry in rd.committed_entries:
            self.publish(sn, entry)
        if sn.window is not None and rd.committed_entries:
            sn.window.set_pinned(rd.committed_entries[-1].index)
        for rs in rd.read_states:
            required = self.reads_waiting.pop(rs.context, None)
            if required is not None:
                self.check.on_read_answer(sn.id, rs.context, rs.index, required)
                self.reads_answered += 1
                self.digest(f"read {sn.id} {rs.context!r} {rs.index}")
        sn.pending = None
        self.guard(sn, lambda: sn.raw().advance(rd))
        self.drive(sn)

    def maybe_fetch(self, sn: SimNode) -> None:
        """The window found entries missing: the disk answers after a delay, as the node's
        reader thread does; the core then sends what waited (a crash loses the read)."""
        window = sn.window
        if window is None or sn.fetching:
            return
        lo = window.take_fetch()
        if lo is None:
            return
        sn.fetching = True
        incarnation = sn.incarnation
        bytes_max = window.cache_bytes_max // 2

        def fetched() -> None:
            if not sn.alive or sn.incarnation != incarnation or sn.window is not window:
                return
            sn.fetching = False
            first = sn.storage.first_index()
            end = min(window.window_first(), sn.storage.last_index() + 1)
            if first <= lo < end:
                window.fill(sn.storage.entries(lo, end, bytes_max))
            self.digest(f"fetched {sn.id} {lo}")
            self.guard(sn, sn.raw().entries_fetched)
            self.drive(sn)

        self.at(1 + self.rng_fault.randrange(sn.sync_ms_max), fetched)

    def observe_soft_state(self, sn: SimNode, rd: Ready) -> None:
        if rd.soft_state is None:
            return
        raft = sn.raw().raft
        if rd.soft_state.role is Role.LEADER:
            self.check.on_leader(sn.id, raft.term)
            self.check.on_leader_membership(sn.id, raft.term, raft.voters)
            self.check.check_leader_completeness(sn.log_view(), raft.term)
            self.leaders += 1
            self.maybe_isolate_new_leader(sn)
        self.note(f"{sn.id} is {rd.soft_state.role.name} term={raft.term}")

    def publish(self, sn: SimNode, entry: Entry) -> None:
        self.check.on_publish(sn.id, entry)
        self.digest(f"commit {sn.id} {entry.term}/{entry.index}")
        proposal = self.proposals.pop((sn.id, entry.index), None)
        if proposal is None:
            return
        if entry.data == proposal.data:
            self.check.on_acknowledged(entry.index, entry.data)
            self.digest(f"ack {proposal.data!r}@{entry.index}")
        self.client_busy[proposal.client] = False

    def crash(self, sn: SimNode) -> None:
        sn.alive = False
        sn.node = None
        sn.pending = None  # an unsynced write is lost with the process
        self.note(f"{sn.id} crashes")

    def restart(self, sn: SimNode) -> None:
        if sn.alive:
            return
        self.start_node(sn)
        self.note(f"{sn.id} restarts (term={sn.raw().raft.term})")
        self.drive(sn)

    # -- the network ---------------------------------------------------------------------

    def send(self, m: Message) -> None:
        self.digest(m.describe())
        if self.faults_on and self.rng_net.random() < self.drop_probability:
            return
        copies = 2 if self.faults_on and self.rng_net.random() < self.duplicate_probability else 1
        for _ in range(copies):
            delay = 1 + self.rng_net.randrange(self.mix.delay_ms_max)
            if self.faults_on and self.rng_net.random() < self.reorder_probability:
                delay += self.rng_net.randrange(10, 4 * self.election_ms)
            self.at(delay, lambda: self.deliver(m))

    def deliver(self, m: Message) -> None:
        sn = self.nodes[m.to]
        if not sn.alive or (m.frm, m.to) in self.blocked:
            return
        raft = sn.raw().raft
        committed = raft.log.committed
        self.guard(sn, lambda: sn.raw().step(m))
        if raft.role is Role.LEADER and raft.log.committed > committed:
            self.on_leader_commit(sn)
        self.drive(sn)

    # -- clients -------------------------------------------------------------------------

    def start_clients(self) -> None:
        for client in range(self.run.clients):
            self.client_busy[client] = False
            self.at(self.rng_client.randrange(20), functools.partial(self.client_step, client))

    def leader_guess(self) -> SimNode | None:
        leaders = [
            sn for sn in self.nodes.values() if sn.alive and sn.raw().raft.role is Role.LEADER
        ]
        if leaders:
            # The newest term wins; a stale leader may still think it leads.
            return max(leaders, key=lambda sn: (sn.raw().raft.term, sn.id))
        return None

    def client_step(self, client: int) -> None:
        if self.clients_stopped:
            return
        self.at(2 + self.rng_client.randrange(15), lambda: self.client_step(client))
        self.expire_proposals()
        if self.rng_client.random() < 0.2:
            self.client_read(client)
        if self.client_busy[client]:
            return
        alive = [sn for sn in self.nodes.values() if sn.alive]
        if not alive:
            return
        guess = self.leader_guess()
        sn = guess if guess is not None and self.rng_client.random() < 0.8 else None
        if sn is None:
            sn = alive[self.rng_client.randrange(len(alive))]
        batch = 1 + (self.rng_client.randrange(4) if self.rng_client.random() < 0.3 else 0)
        datas = []
        for _ in range(batch):
            self.client_counter += 1
            datas.append(f"c{client}-{self.client_counter}".encode())
        try:
            indexes = sn.raw().propose_batch(datas)
        except ProposalDropped:
            return
        for index, data in zip(indexes, datas, strict=True):
            self.proposals[(sn.id, index)] = Proposal(
                client, sn.id, index, data, self.now_ms + 4 * self.election_ms
            )
        self.client_busy[client] = True
        self.digest(f"propose {sn.id} {datas!r} at {indexes}")
        self.drive(sn)

    def client_read(self, client: int) -> None:
        alive = [sn for sn in self.nodes.values() if sn.alive]
        if not alive:
            return
        sn = alive[self.rng_client.randrange(len(alive))]
        self.client_counter += 1
        context = f"r{client}-{self.client_counter}".encode()
        try:
            sn.raw().read_index(context)
        except ProposalDropped:
            return
        self.reads_waiting[context] = self.check.committed_max
        self.drive(sn)

    def expire_proposals(self) -> None:
        """A proposal whose outcome stays unknown too long is abandoned by its client."""
        for key in [k for k, p in self.proposals.items() if p.deadline_ms < self.now_ms]:
            proposal = self.proposals.pop(key)
            self.client_busy[proposal.client] = False

    # -- faults ----------------------------------------------------------------------------

    def schedule_faults(self) -> None:
        mix = self.mix
        kinds: list[tuple[int, Callable[[], None]]] = [
            (mix.crash_every_ms, self.fault_crash),
            (mix.partition_every_ms, self.fault_partition),
            (mix.transfer_every_ms, self.fault_transfer),
            (mix.trim_every_ms, self.fault_trim),
            (mix.clock_skew_every_ms, self.fault_clock),
            (mix.slow_disk_every_ms, self.fault_disk),
            (300 if self.membership else 0, self.fault_member),
        ]
        for every_ms, action in kinds:
            if every_ms:
                self._schedule_fault(every_ms, action)

    def _schedule_fault(self, every_ms: int, action: Callable[[], None]) -> None:
        def fire() -> None:
            if not self.faults_on:
                return
            action()
            self._schedule_fault(every_ms, action)

        self.at(self.rng_fault.randrange(1, 2 * every_ms), fire)

    def pick(self, alive: bool | None = None) -> SimNode | None:
        nodes = [sn for sn in self.nodes.values() if alive is None or sn.alive == alive]
        if not nodes:
            return None
        return nodes[self.rng_fault.randrange(len(nodes))]

    def fault_crash(self) -> None:
        # Prefer the leader half of the time: that is where the interesting bugs are.
        leader = self.leader_guess()
        sn = leader if leader is not None and self.rng_fault.random() < 0.5 else self.pick(True)
        if sn is not None:
            self.crash_soon(sn, 0, self.mix.down_ms_max)

    def fault_partition(self) -> None:
        ids = list(self.nodes)
        kind = self.rng_fault.randrange(3)
        if kind == 0:  # symmetric split into two sides
            side = {i for i in ids if self.rng_fault.random() < 0.5}
            cut = {(a, b) for a in ids for b in ids if (a in side) != (b in side)}
            label = f"split {sorted(side)} | {sorted(set(ids) - side)}"
        elif kind == 1:  # one-way link failures
            cut = set()
            for _ in range(1 + self.rng_fault.randrange(len(ids))):
                a = ids[self.rng_fault.randrange(len(ids))]
                b = ids[self.rng_fault.randrange(len(ids))]
                if a != b:
                    cut.add((a, b))
            label = f"one-way cuts {sorted(cut)}"
        else:  # a whole zone cut off
            zone = ZONES[self.rng_fault.randrange(len(ZONES))]
            inside = {i for i in ids if self.nodes[i].zone == zone}
            cut = {(a, b) for a in ids for b in ids if (a in inside) != (b in inside)}
            label = f"zone {zone} cut off {sorted(inside)}"
        self.blocked = cut
        self.note(f"partition: {label}")
        heal_ms = self.rng_fault.randrange(1, self.mix.partition_ms_max)
        self.at(heal_ms, self.heal_partition)

    def maybe_isolate_new_leader(self, sn: SimNode) -> None:
        if self.faults_on and self.rng_fault.random() < self.mix.isolate_new_leader_probability:
            self.isolate(sn, "new leader")

    def isolate(self, sn: SimNode, why: str) -> None:
        ids = list(self.nodes)
        self.blocked = {(a, b) for a in ids for b in ids if (a == sn.id) != (b == sn.id)}
        self.note(f"partition: {why} {sn.id} cut off")
        self.at(self.rng_fault.randrange(1, self.mix.partition_ms_max), self.heal_partition)

    def on_leader_commit(self, sn: SimNode) -> None:
        if not self.faults_on:
            return
        if self.rng_fault.random() < self.mix.isolate_on_commit_probability:
            self.isolate(sn, "committing leader")
        if self.rng_fault.random() >= self.mix.crash_on_commit_probability:
            return
        self.crash_soon(sn, self.rng_fault.randrange(6), self.mix.down_ms_max)

    def on_vote_granted(self, sn: SimNode) -> None:
        if self.faults_on and self.rng_fault.random() < self.mix.crash_after_vote_probability:
            self.crash_soon(sn, self.rng_fault.randrange(4), 3)

    def crash_soon(self, sn: SimNode, delay_ms: int, down_ms_max: int) -> None:
        """Crash this incarnation of the node after delay_ms, and restart it later."""
        incarnation = sn.incarnation

        def crash_now() -> None:
            if sn.alive and sn.incarnation == incarnation and self.faults_on:
                self.crash(sn)
                down_ms = self.rng_fault.randrange(1, down_ms_max)
                self.at(down_ms, lambda: self.restart(sn) if self.faults_on else None)

        self.at(delay_ms, crash_now)

    def heal_partition(self) -> None:
        if self.blocked:
            self.blocked = set()
            self.note("partition healed")

    def fault_transfer(self) -> None:
        leader = self.leader_guess()
        target = self.pick(True)
        if leader is None or target is None or target is leader:
            return
        try:
            leader.raw().transfer_leader(target.id)
        except (ProposalDropped, ValueError):  # ValueError: the target is not a voter
            return
        self.note(f"{leader.id} transfers leadership to {target.id}")
        self.drive(leader)

    def fault_trim(self) -> None:
        sn = self.pick(True)
        if sn is None or sn.pending is not None:
            return
        log = sn.raw().raft.log
        if log.unstable_snapshot is not None:
            return
        top = min(log.applied, sn.storage.last_index())
        first = sn.storage.first_index()
        if top < first:
            return
        index = self.rng_fault.randrange(first, top + 1)
        # The membership as of the applied index, which is at or past the trim point.
        conf = sn.raw().conf_state()
        sn.storage.compact(index, conf)
        if sn.window is not None:
            sn.window.compact(index, conf)
        self.note(f"{sn.id} trims its log up to {index}")

    def fault_member(self) -> None:
        """Ask the leader for one membership change: promote a learner, add a node that is
        not a member as a learner, remove a learner or a voter (at most five voters, at
        least one). The core refuses what is not allowed now; the run goes on."""
        leader = self.leader_guess()
        if leader is None:
            return
        raft = leader.raw().raft
        conf = raft.conf_state()
        members = set(conf.voters) | set(conf.learners)
        # Weighted toward three voters: promotions first, then additions; voters are
        # removed mostly while there are more than three (down to one, now and then).
        options: list[ConfChange] = []
        if len(conf.voters) < 5:
            options += [ConfChange(ConfChangeType.PROMOTE, n) for n in conf.learners] * 4
        outside = sorted(set(self.nodes) - members)
        options += [ConfChange(ConfChangeType.ADD_LEARNER, n) for n in outside] * 2
        options += [ConfChange(ConfChangeType.REMOVE, n) for n in conf.learners]
        if len(conf.voters) > 1:
            weight = 3 if len(conf.voters) > 3 else 1
            options += [ConfChange(ConfChangeType.REMOVE, n) for n in conf.voters] * weight
        if not options:
            return
        change = options[self.rng_member.randrange(len(options))]
        try:
            index = leader.raw().propose_conf_change(change)
        except (ProposalDropped, ConfChangeRefused) as exc:
            self.digest(f"conf change {change.describe()} refused: {exc}")
            return
        self.note(f"{leader.id} proposes {change.describe()} at {index}")
        self.drive(leader)
        if self.rng_member.random() < 0.5:
            # Another at once: the core must refuse it until this one is applied.
            self.at(1 + self.rng_member.randrange(5), self._fault_member_again)

    def _fault_member_again(self) -> None:
        if self.faults_on:
            self.fault_member()

    def final_conf(self) -> ConfState:
        """The newest membership any node has applied."""
        confs = [sn.raw().conf_state() for sn in self.nodes.values() if sn.alive]
        return max(confs, key=lambda c: c.index)

    def fault_clock(self) -> None:
        sn = self.pick()
        if sn is None:
            return
        sn.tick_ms = self.rng_fault.choice((5, 8, 10, 10, 12, 20))
        self.note(f"{sn.id} clock now ticks every {sn.tick_ms}ms")

    def fault_disk(self) -> None:
        sn = self.pick()
        if sn is None:
            return
        sn.sync_ms_max = self.rng_fault.choice((2, 4, 20, 60))
        self.note(f"{sn.id} disk syncs now take up to {sn.sync_ms_max}ms")

    def heal_everything(self) -> None:
        self.faults_on = False
        self.blocked = set()
        for sn in self.nodes.values():
            sn.tick_ms = TICK_MS
            sn.sync_ms_max = 4
            if not sn.alive:
                self.restart(sn)
        self.note("faults healed: liveness phase")

    # -- the run -----------------------------------------------------------------------

    def cross_check(self) -> None:
        self.check.check_log_matching(sn.log_view() for sn in self.nodes.values())

    def schedule_cross_checks(self) -> None:
        def fire() -> None:
            self.cross_check()
            self.at(500, fire)

        self.at(500, fire)

    def execute(self) -> None:
        for sn in self.nodes.values():
            self.start_node(sn)
        self.start_clients()
        self.schedule_faults()
        self.schedule_cross_checks()
        self.run_until(self.run.safety_ms)

        # Liveness: with every fault healed, commits must advance again, on every node,
        # within a bounded time.
        self.heal_everything()
        target = self.check.committed_max + 1
        bound_ms = self.now_ms + 40 * self.election_ms + 1000
        if self.membership:
            # A learner added just before the heal replicates its whole backlog first, an
            # entry per round trip with the smallest messages and window: allow for that.
            members = [self.nodes[n] for n in self.final_conf().members()]
            applied = min(sn.raw().raft.log.applied for sn in members if sn.alive)
            bound_ms += CATCH_UP_MS_PER_ENTRY * max(0, target - applied)
        done = self.run_until(bound_ms, stop=lambda: self._caught_up(target))
        if not done:
            raise Violation(
                "liveness",
                f"after healing at {self.run.safety_ms}ms no commit past index {target - 1} "
                f"reached every node within {bound_ms - self.run.safety_ms}ms",
            )
        if self.membership and self.check.acknowledged:
            # An entry committed by a majority of the membership before a change may sit on
            # only one voter of the membership after it (the others of that majority were
            # removed): it is safe (every majority of either membership holds it) but not
            # yet on a majority of the newest one. Wait until every member has applied the
            # highest acknowledged entry; then every member's disk must hold each of them.
            self.clients_stopped = True  # what is acknowledged now is what must arrive
            top = max(self.check.acknowledged)
            members = [self.nodes[n] for n in self.final_conf().members()]
            applied = min(sn.raw().raft.log.applied for sn in members)
            more_ms = 20 * self.election_ms + 1000 + CATCH_UP_MS_PER_ENTRY * max(0, top - applied)
            if not self.run_until(self.now_ms + more_ms, stop=lambda: self._caught_up(top)):
                raise Violation(
                    "liveness",
                    f"the members did not all apply the acknowledged index {top} within "
                    f"{more_ms}ms after catching up with index {target}",
                )
        self.cross_check()
        self.check.check_membership_steps(self.bootstrap_voters)
        voters = self.final_conf().voters
        self.check.check_acknowledged_durable(
            [self.nodes[v].durable_view() for v in voters], len(voters) // 2 + 1
        )

    def _caught_up(self, target: int) -> bool:
        """Every member of the newest membership (nodes removed for good are not) has
        applied target."""
        if self.check.committed_max < target:
            return False
        members = self.final_conf().members()
        for node_id in members:
            sn = self.nodes[node_id]
            if not sn.alive or sn.raw().raft.log.applied < target:
                return False
        return True


def hash_id(node_id: str) -> int:
    """A process-independent integer for a node id (str hashes vary per process)."""
    return int.from_bytes(hashlib.sha256(node_id.encode()).digest()[:8], "big")


def run_seed(run: RunConfig) -> tuple[RunResult, Simulation]:
    sim = Simulation(run)
    violation: Violation | None = None
    try:
        sim.execute()
    except Violation as exc:
        violation = exc
        sim.note(f"VIOLATION {exc}")
    except Exception as exc:  # a crash of the core or the simulator is a finding too
        violation = Violation("crash", "".join(traceback.format_exception(exc)).strip())
        sim.note(f"VIOLATION {violation}")
    result = RunResult(
        seed=run.seed,
        variant=run.variant,
        mix=sim.mix.name,
        cluster_size=sim.size,
        violation=violation,
        trace_digest=sim._digest.hexdigest(),
        events=sim.events,
        sim_ms=sim.now_ms,
        leaders=sim.leaders,
        committed=sim.check.committed_max,
        acknowledged=len(sim.check.acknowledged),
        reads_answered=sim.reads_answered,
        window=run.window,
        membership=run.membership,
        conf_changes=len(sim.check.conf_changes),
        final_voters=sim.final_conf().voters if violation is None else (),
    )
    return result, sim


def window_from_disk(disk: MemoryStorage, limits: tuple[int, int, int]) -> WindowStorage:
    """What a restarted node's load builds: every term, the entries past the boundary in
    the window (the core hands the committed ones out again: nothing is applied yet)."""
    window = WindowStorage(*limits)
    boundary = disk.snapshot()
    newest = disk.entries(boundary.index + 1, disk.last_index() + 1)
    terms = TermRuns()
    terms.extend(newest)
    window.restore(boundary, disk.initial_state(), disk.last_index(), terms, newest, boundary.index)
    return window
