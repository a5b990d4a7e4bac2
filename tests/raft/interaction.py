"""A datadriven interaction harness for the Raft core, in the manner of etcd-io/raft.

A scenario file (`testdata/*.txt`) is a sequence of blocks:

    # narration (comment lines, kept verbatim)
    command arg arg key=value
    ----
    expected output

separated by blank lines. `run_file` executes every command against an in-process
cluster of `RawNode`s (each with its own `MemoryStorage` and seeded `random.Random`) and
returns the file with the actual output in place of the expected one, so a caller
compares the two, or writes the result back to regenerate the goldens.

`InteractionEnv` is also a small Python API over the same cluster, used directly by the
paper-claim tests. It checks two global invariants on every step: at most one leader per
term (election safety) and every node publishing the same entry at each committed index
(state machine safety); a violation raises `SafetyViolation`.

Commands (ids are the strings "1".."N"):

    add-nodes N [election=10] [heartbeat=1] [prevote=true] [checkquorum=true]
              [max-bytes=B] [inflight=M] [seed=S]
    add-joining-node ID                    (empty log, knows no membership: `serve --join`)
    propose-conf-change ID add-learner|promote|remove NODE
    conf ID                                (the membership in effect on ID)
    set-log ID terms=1,1,4 [term=T] [vote=V] [commit=C]   (rebuilds ID from that storage)
    campaign ID
    tick ID [N]
    tick-heartbeat ID
    propose ID DATA
    read-index ID CTX
    transfer-leader FROM TO
    process-ready ID [ID...]
    deliver-msgs [ID...] [drop=ID,ID]      (no argument: deliver everything)
    stabilize [ID...]
    status ID
    raft-log ID
    isolate ID / heal [ID]
    compact ID INDEX
    crash ID                               (restart from storage; in-memory state is lost)
    checkpoint NAME / restore NAME         (save and return to a whole cluster state)

Over 500 lines: the scenario parser, every command of the language and the safety checks
after each step are one harness.
"""

from __future__ import annotations

import copy
import random
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field

from logsvc.raft import (
    ConfChange,
    ConfChangeRefused,
    ConfChangeType,
    Config,
    Entry,
    EntryType,
    HardState,
    MemoryStorage,
    Message,
    NodeId,
    ProposalDropped,
    RawNode,
    ReadState,
    Ready,
    Role,
)
from logsvc.raft.progress import ProgressState

SEPARATOR = "----"


class ScenarioError(Exception):
    """A malformed scenario file or a command the harness cannot run."""


class SafetyViolation(AssertionError):
    """The cluster broke a Raft safety property (a bug in the core)."""


# -- parsing ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Command:
    name: str
    args: tuple[str, ...]
    kwargs: dict[str, str]

    def int_arg(self, pos: int, default: int | None = None) -> int:
        if pos < len(self.args):
            return _to_int(self.args[pos], f"argument {pos + 1} of {self.name}")
        if default is None:
            raise ScenarioError(f"{self.name}: missing argument {pos + 1}")
        return default

    def str_arg(self, pos: int) -> str:
        if pos >= len(self.args):
            raise ScenarioError(f"{self.name}: missing argument {pos + 1}")
        return self.args[pos]

    def int_kw(self, key: str, default: int) -> int:
        return _to_int(self.kwargs[key], f"{key}=") if key in self.kwargs else default

    def bool_kw(self, key: str, default: bool) -> bool:
        if key not in self.kwargs:
            return default
        value = self.kwargs[key]
        if value not in ("true", "false"):
            raise ScenarioError(f"{self.name}: {key}= must be true or false, not {value!r}")
        return value == "true"

    def check_kwargs(self, *allowed: str) -> None:
        unknown = sorted(set(self.kwargs) - set(allowed))
        if unknown:
            raise ScenarioError(f"{self.name}: unknown options {unknown} (allowed: {allowed})")


def _to_int(text: str, what: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise ScenarioError(f"{what} must be an integer, not {text!r}") from None


def parse_command(line: str) -> Command:
    words = line.split()
    if not words:
        raise ScenarioError("empty command")
    args: list[str] = []
    kwargs: dict[str, str] = {}
    for word in words[1:]:
        key, eq, value = word.partition("=")
        if eq:
            kwargs[key] = value
        else:
            args.append(word)
    return Command(name=words[0], args=tuple(args), kwargs=kwargs)


@dataclass(slots=True)
class Block:
    command: str
    expected: list[str]
    line_no: int


Chunk = str | Block


def parse_file(text: str) -> list[Chunk]:
    """Split a scenario into verbatim lines (blank, `#` comments) and command blocks."""
    lines = text.splitlines()
    chunks: list[Chunk] = []
    i = 0
    while i < len(lines):
        line = lines[i]
        if not line.strip() or line.startswith("#"):
            chunks.append(line)
            i += 1
            continue
        if i + 1 >= len(lines) or lines[i + 1] != SEPARATOR:
            raise ScenarioError(f"line {i + 1}: command {line!r} is not followed by {SEPARATOR}")
        j = i + 2
        expected: list[str] = []
        while j < len(lines) and lines[j].strip():
            expected.append(lines[j])
            j += 1
        chunks.append(Block(command=line, expected=expected, line_no=i + 1))
        i = j
    return chunks


def render_file(chunks: Sequence[Chunk]) -> str:
    out: list[str] = []
    for chunk in chunks:
        if isinstance(chunk, Block):
            out.append(chunk.command)
            out.append(SEPARATOR)
            out.extend(chunk.expected)
        else:
            out.append(chunk)
    return "\n".join(out) + "\n"


def run_file(text: str, name: str = "<scenario>") -> str:
    """Run every block of a scenario; return the file with the actual outputs filled in."""
    chunks = parse_file(text)
    env = InteractionEnv()
    result: list[Chunk] = []
    for chunk in chunks:
        if isinstance(chunk, Block):
            try:
                output = env.run(chunk.command)
            except (ScenarioError, SafetyViolation) as exc:
                raise type(exc)(f"{name}:{chunk.line_no}: {chunk.command}: {exc}") from exc
            result.append(Block(chunk.command, output.splitlines(), chunk.line_no))
        else:
            result.append(chunk)
    return render_file(result)


# -- formatting -------------------------------------------------------------------------


def describe_entry(entry: Entry) -> str:
    if entry.type is EntryType.NOOP:
        return f"{entry.term}/{entry.index} noop"
    if entry.type is EntryType.CONF_CHANGE:
        change, after = ConfChange.decode(entry.data)
        return (
            f"{entry.term}/{entry.index} conf {change.describe()} -> "
            f"voters=({' '.join(after.voters)}) learners=({' '.join(after.learners)})"
        )
    return f"{entry.term}/{entry.index} {entry.data.decode('utf-8', 'backslashreplace')}"


def describe_hard_state(hs: HardState) -> str:
    return f"term={hs.term} vote={hs.vote or '-'} commit={hs.commit}"


def node_sort_key(node_id: NodeId) -> tuple[int, str]:
    return (len(node_id), node_id)


# -- the cluster ------------------------------------------------------------------------


@dataclass(slots=True)
class Node:
    id: NodeId
    config: Config
    storage: MemoryStorage
    rng: random.Random
    raw: RawNode
    # What this node's application published since its last restart, in order.
    published: list[Entry] = field(default_factory=list)
    # ReadIndex answers this node received, in order.
    read_states: list[ReadState] = field(default_factory=list)


@dataclass(slots=True)
class _ClusterState:
    nodes: dict[NodeId, Node]
    network: list[Message]
    isolated: set[NodeId]
    leaders_by_term: dict[int, NodeId]
    committed_by_index: dict[int, Entry]


class InteractionEnv:
    def __init__(self) -> None:
        self.nodes: dict[NodeId, Node] = {}
        # Messages sent and not yet delivered, in the order they were sent.
        self.network: list[Message] = []
        self.isolated: set[NodeId] = set()
        self.leaders_by_term: dict[int, NodeId] = {}
        self.committed_by_index: dict[int, Entry] = {}
        self._checkpoints: dict[str, _ClusterState] = {}
        self._out: list[str] = []
        self._indent = 0

    # -- output -----------------------------------------------------------------------

    def emit(self, line: str) -> None:
        self._out.append("  " * self._indent + line)

    @contextmanager
    def indented(self) -> Iterator[None]:
        self._indent += 1
        try:
            yield
        finally:
            self._indent -= 1

    def take_output(self) -> str:
        out, self._out = self._out, []
        return "\n".join(out)

    # -- the datadriven entry point ---------------------------------------------------------

    def run(self, line: str) -> str:
        cmd = parse_command(line)
        handler = self._handlers().get(cmd.name)
        if handler is None:
            raise ScenarioError(f"unknown command {cmd.name!r}")
        self._out = []
        self._indent = 0
        handler(cmd)
        self.check_election_safety()
        output = self.take_output()
        if not output:
            return "ok"
        if any(not ln.strip() for ln in output.splitlines()):
            raise ScenarioError("output would contain a blank line")
        return output

    def _handlers(self) -> dict[str, Callable[[Command], None]]:
        return {
            "add-nodes": self._cmd_add_nodes,
            "add-joining-node": self._cmd_add_joining_node,
            "propose-conf-change": self._cmd_propose_conf_change,
            "conf": self._cmd_conf,
            "set-log": self._cmd_set_log,
            "campaign": self._cmd_campaign,
            "tick": self._cmd_tick,
            "tick-heartbeat": self._cmd_tick_heartbeat,
            "propose": self._cmd_propose,
            "read-index": self._cmd_read_index,
            "transfer-leader": self._cmd_transfer_leader,
            "report-log-lost": self._cmd_report_log_lost,
            "process-ready": self._cmd_process_ready,
            "deliver-msgs": self._cmd_deliver_msgs,
            "stabilize": self._cmd_stabilize,
            "status": self._cmd_status,
            "raft-log": self._cmd_raft_log,
            "isolate": self._cmd_isolate,
            "heal": self._cmd_heal,
            "compact": self._cmd_compact,
            "crash": self._cmd_crash,
            "checkpoint": self._cmd_checkpoint,
            "restore": self._cmd_restore,
        }

    def _node_arg(self, cmd: Command, pos: int) -> NodeId:
        node_id = cmd.str_arg(pos)
        if node_id not in self.nodes:
            raise ScenarioError(f"{cmd.name}: no node {node_id!r}")
        return node_id

    def _node_args(self, cmd: Command) -> list[NodeId]:
        return [self._node_arg(cmd, i) for i in range(len(cmd.args))]

    def _cmd_add_nodes(self, cmd: Command) -> None:
        cmd.check_kwargs(
            "election", "heartbeat", "prevote", "checkquorum", "max-bytes", "inflight", "seed"
        )
        defaults = Config(id="1", voters=("1",))
        self.add_nodes(
            cmd.int_arg(0),
            election_ticks=cmd.int_kw("election", defaults.election_ticks),
            heartbeat_ticks=cmd.int_kw("heartbeat", defaults.heartbeat_ticks),
            pre_vote=cmd.bool_kw("prevote", defaults.pre_vote),
            check_quorum=cmd.bool_kw("checkquorum", defaults.check_quorum),
            append_bytes_max=cmd.int_kw("max-bytes", defaults.append_bytes_max),
            inflight_messages_max=cmd.int_kw("inflight", defaults.inflight_messages_max),
            seed=cmd.int_kw("seed", 0),
        )

    def _cmd_add_joining_node(self, cmd: Command) -> None:
        node_id = cmd.str_arg(0)
        if node_id in self.nodes:
            raise ScenarioError(f"add-joining-node: {node_id} exists")
        if not self.nodes:
            raise ScenarioError("add-joining-node: add-nodes first")
        first = self.nodes[min(self.nodes, key=node_sort_key)].config
        config = Config(
            id=node_id,
            voters=(),
            joining=True,
            election_ticks=first.election_ticks,
            heartbeat_ticks=first.heartbeat_ticks,
            append_bytes_max=first.append_bytes_max,
            inflight_messages_max=first.inflight_messages_max,
            pre_vote=first.pre_vote,
            check_quorum=first.check_quorum,
        )
        storage = MemoryStorage()
        rng = random.Random(int(node_id) if node_id.isdigit() else 0)
        self.nodes[node_id] = Node(node_id, config, storage, rng, RawNode(config, storage, rng))
        self.emit(self.status_line(node_id))

    def _cmd_propose_conf_change(self, cmd: Command) -> None:
        cmd.check_kwargs()
        node_id = self._node_arg(cmd, 0)
        kind = cmd.str_arg(1).upper().replace("-", "_")
        if kind not in ConfChangeType.__members__:
            raise ScenarioError(f"propose-conf-change: unknown change {cmd.str_arg(1)!r}")
        change = ConfChange(ConfChangeType[kind], cmd.str_arg(2))
        raw = self.nodes[node_id].raw
        try:
            index = raw.propose_conf_change(change)
        except (ProposalDropped, ConfChangeRefused) as exc:
            self.emit(f"error: {type(exc).__name__}: {exc}")
        else:
            self.emit(f"proposed {change.describe()} at index {index}")

    def _cmd_conf(self, cmd: Command) -> None:
        node_id = self._node_arg(cmd, 0)
        self.emit(f"{node_id}: {self.nodes[node_id].raw.conf_state().describe()}")

    def _cmd_set_log(self, cmd: Command) -> None:
        cmd.check_kwargs("terms", "term", "vote", "commit")
        node_id = self._node_arg(cmd, 0)
        if "terms" not in cmd.kwargs:
            raise ScenarioError("set-log: terms= is required")
        raw_terms = cmd.kwargs["terms"]
        terms = [_to_int(t, "terms=") for t in raw_terms.split(",")] if raw_terms else []
        last_term = terms[-1] if terms else 0
        self.set_log(
            node_id,
            terms,
            term=cmd.int_kw("term", last_term),
            vote=cmd.kwargs.get("vote") or None,
            commit=cmd.int_kw("commit", 0),
        )

    def _cmd_campaign(self, cmd: Command) -> None:
        node_id = self._node_arg(cmd, 0)
        self.nodes[node_id].raw.campaign()
        self.emit(self.status_line(node_id))

    def _cmd_tick(self, cmd: Command) -> None:
        node_id = self._node_arg(cmd, 0)
        self.tick(node_id, cmd.int_arg(1, 1))
        self.emit(self.status_line(node_id))

    def _cmd_tick_heartbeat(self, cmd: Command) -> None:
        node_id = self._node_arg(cmd, 0)
        self.tick(node_id, self.nodes[node_id].config.heartbeat_ticks)
        self.emit(self.status_line(node_id))

    def _cmd_propose(self, cmd: Command) -> None:
        node_id = self._node_arg(cmd, 0)
        try:
            index = self.nodes[node_id].raw.propose(cmd.str_arg(1).encode())
        except ProposalDropped as exc:
            self.emit(f"error: ProposalDropped: {exc}")
        else:
            self.emit(f"proposed at index {index}")

    def _cmd_read_index(self, cmd: Command) -> None:
        node_id = self._node_arg(cmd, 0)
        try:
            self.nodes[node_id].raw.read_index(cmd.str_arg(1).encode())
        except ProposalDropped as exc:
            self.emit(f"error: ProposalDropped: {exc}")

    def _cmd_report_log_lost(self, cmd: Command) -> None:
        """report-log-lost LEADER PEER: PEER came back with an empty log (LogNode's probe)."""
        leader, peer = self._node_arg(cmd, 0), self._node_arg(cmd, 1)
        self.nodes[leader].raw.report_log_lost(peer)
        self.emit(f"{leader}: progress of {peer} = {self.nodes[leader].raw.raft.progress[peer]}")

    def _cmd_transfer_leader(self, cmd: Command) -> None:
        frm = self._node_arg(cmd, 0)
        try:
            self.nodes[frm].raw.transfer_leader(cmd.str_arg(1))
        except (ProposalDropped, ValueError) as exc:
            self.emit(f"error: {type(exc).__name__}: {exc}")

    def _cmd_process_ready(self, cmd: Command) -> None:
        for node_id in self._node_args(cmd):
            if not self.process_ready(node_id):
                self.emit(f"> {node_id} has no Ready")

    def _cmd_deliver_msgs(self, cmd: Command) -> None:
        cmd.check_kwargs("drop")
        drop = {d for d in cmd.kwargs.get("drop", "").split(",") if d}
        recipients: set[NodeId] | None = set(self._node_args(cmd))
        if not recipients:
            recipients = set() if drop else None
        if self.deliver(recipients, drop) == 0:
            self.emit("no messages")

    def _cmd_stabilize(self, cmd: Command) -> None:
        ids = self._node_args(cmd) or None
        self.stabilize(ids)

    def _cmd_status(self, cmd: Command) -> None:
        node_id = self._node_arg(cmd, 0)
        self.emit(self.status_line(node_id))
        for line in self.progress_lines(node_id):
            self.emit(line)

    def _cmd_raft_log(self, cmd: Command) -> None:
        for line in self.log_lines(self._node_arg(cmd, 0)):
            self.emit(line)

    def _cmd_isolate(self, cmd: Command) -> None:
        for node_id in self._node_args(cmd):
            self.isolated.add(node_id)

    def _cmd_heal(self, cmd: Command) -> None:
        ids = self._node_args(cmd)
        if ids:
            self.isolated.difference_update(ids)
        else:
            self.isolated.clear()

    def _cmd_compact(self, cmd: Command) -> None:
        node_id = self._node_arg(cmd, 0)
        self.compact(node_id, cmd.int_arg(1))
        for line in self.log_lines(node_id):
            self.emit(line)

    def _cmd_crash(self, cmd: Command) -> None:
        node_id = self._node_arg(cmd, 0)
        self.crash(node_id)
        self.emit(self.status_line(node_id))

    def _cmd_checkpoint(self, cmd: Command) -> None:
        state = _ClusterState(
            self.nodes,
            self.network,
            self.isolated,
            self.leaders_by_term,
            self.committed_by_index,
        )
        self._checkpoints[cmd.str_arg(0)] = copy.deepcopy(state)

    def _cmd_restore(self, cmd: Command) -> None:
        name = cmd.str_arg(0)
        if name not in self._checkpoints:
            raise ScenarioError(f"restore: no checkpoint {name!r}")
        state = copy.deepcopy(self._checkpoints[name])
        self.nodes = state.nodes
        self.network = state.network
        self.isolated = state.isolated
        self.leaders_by_term = state.leaders_by_term
        self.committed_by_index = state.committed_by_index

    # -- the Python API -----------------------------------------------------------------

    def add_nodes(
        self,
        count: int,
        *,
        election_ticks: int = 10,
        heartbeat_ticks: int = 1,
        pre_vote: bool = True,
        check_quorum: bool = True,
        append_bytes_max: int = 1 << 20,
        inflight_messages_max: int = 64,
        seed: int = 0,
    ) -> None:
        if self.nodes:
            raise ScenarioError("add-nodes: the cluster already exists")
        if count < 1:
            raise ScenarioError("add-nodes: need at least one node")
        voters = tuple(str(i) for i in range(1, count + 1))
        for node_id in voters:
            config = Config(
                id=node_id,
                voters=voters,
                election_ticks=election_ticks,
                heartbeat_ticks=heartbeat_ticks,
                append_bytes_max=append_bytes_max,
                inflight_messages_max=inflight_messages_max,
                pre_vote=pre_vote,
                check_quorum=check_quorum,
            )
            storage = MemoryStorage()
            rng = random.Random(seed * 1_000_003 + int(node_id))
            raw = RawNode(config, storage, rng)
            self.nodes[node_id] = Node(node_id, config, storage, rng, raw)
            self.emit(self.status_line(node_id))

    def set_log(
        self,
        node_id: NodeId,
        terms: Sequence[int],
        *,
        term: int,
        vote: NodeId | None = None,
        commit: int = 0,
    ) -> None:
        """Replace a node's durable state with a log of the given terms, then restart it."""
        node = self.nodes[node_id]
        storage = MemoryStorage()
        storage.append(
            [
                Entry(term=t, index=i, data=f"t{t}i{i}".encode())
                for i, t in enumerate(terms, start=1)
            ]
        )
        storage.set_hard_state(HardState(term=term, vote=vote, commit=commit))
        node.storage = storage
        node.published = []
        self.crash(node_id)
        for line in self.log_lines(node_id):
            self.emit(line)
        self.emit(self.status_line(node_id))

    def node(self, node_id: NodeId) -> RawNode:
        return self.nodes[node_id].raw

    def tick(self, node_id: NodeId, count: int = 1) -> None:
        for _ in range(count):
            self.nodes[node_id].raw.tick()
            self.check_election_safety()

    def crash(self, node_id: NodeId) -> None:
        """Restart a node from what it synced; unsynced entries and messages are gone."""
        node = self.nodes[node_id]
        node.raw = RawNode(node.config, node.storage, node.rng)
        node.published = []
        self.check_election_safety()

    def compact(self, node_id: NodeId, index: int) -> None:
        node = self.nodes[node_id]
        applied = node.raw.status().applied_index
        if index > applied:
            raise ScenarioError(f"compact: index {index} is past {node_id}'s applied {applied}")
        if index > node.storage.last_index():
            raise ScenarioError(f"compact: index {index} is not synced on {node_id} yet")
        node.storage.compact(index, node.raw.conf_state())

    def process_ready(self, node_id: NodeId) -> bool:
        """Handle one Ready the way a driver must: persist, send, publish, advance."""
        node = self.nodes[node_id]
        if not node.raw.has_ready():
            return False
        rd = node.raw.ready()
        self.emit(f"> {node_id} handling Ready")
        with self.indented():
            self.describe_ready(rd)
        if rd.snapshot is not None:
            node.storage.apply_snapshot(rd.snapshot)
        node.storage.append(rd.entries)
        if rd.hard_state is not None:
            node.storage.set_hard_state(rd.hard_state)
        self.network.extend(rd.messages)
        self.network.extend(rd.persisted_messages)
        self.publish(node, rd.committed_entries)
        node.read_states.extend(rd.read_states)
        node.raw.advance(rd)
        self.check_election_safety()
        return True

    def publish(self, node: Node, entries: Sequence[Entry]) -> None:
        for entry in entries:
            known = self.committed_by_index.setdefault(entry.index, entry)
            if known != entry:
                raise SafetyViolation(
                    f"state machine safety: {node.id} applied {describe_entry(entry)} "
                    f"where another node applied {describe_entry(known)}"
                )
            node.published.append(entry)

    def describe_ready(self, rd: Ready) -> None:
        if rd.soft_state is not None:
            lead = rd.soft_state.leader or "-"
            self.emit(f"soft state: {rd.soft_state.role.name} lead={lead}")
        if rd.hard_state is not None:
            self.emit(f"hard state: {describe_hard_state(rd.hard_state)}")
        if rd.snapshot is not None:
            self.emit(f"snapshot: index={rd.snapshot.index} term={rd.snapshot.term}")
        self._emit_list("entries (persist, then sync)", [describe_entry(e) for e in rd.entries])
        self._emit_list("send now", [m.describe() for m in rd.messages])
        self._emit_list("send after sync", [m.describe() for m in rd.persisted_messages])
        self._emit_list("committed (publish)", [describe_entry(e) for e in rd.committed_entries])
        self._emit_list(
            "read states", [f"index={s.index} ctx={s.context.decode()}" for s in rd.read_states]
        )

    def _emit_list(self, title: str, lines: Sequence[str]) -> None:
        if not lines:
            return
        self.emit(f"{title}:")
        with self.indented():
            for line in lines:
                self.emit(line)

    def deliver(self, recipients: set[NodeId] | None, drop: set[NodeId]) -> int:
        """Step queued messages into their recipients (None: all); drop those sent to `drop`.

        Returns how many messages left the network.
        """
        dropped = [m for m in self.network if m.to in drop]
        batches: dict[NodeId, list[Message]] = {}
        remaining: list[Message] = []
        for m in self.network:
            if m.to in drop:
                continue
            if recipients is None or m.to in recipients:
                batches.setdefault(m.to, []).append(m)
            else:
                remaining.append(m)
        self.network = remaining
        if dropped:
            self.emit("> dropping messages")
            with self.indented():
                for m in dropped:
                    self.emit(f"dropped: {m.describe()}")
        for to in sorted(batches, key=node_sort_key):
            if to not in self.nodes:
                raise ScenarioError(f"message for unknown node {to!r}")
            self.emit(f"> {to} receiving messages")
            with self.indented():
                for m in batches[to]:
                    self._step(m)
        return len(dropped) + sum(len(b) for b in batches.values())

    def _step(self, m: Message) -> None:
        if m.frm != m.to and (m.frm in self.isolated or m.to in self.isolated):
            self.emit(f"dropped: {m.describe()} (partitioned)")
            return
        self.emit(m.describe())
        raw = self.nodes[m.to].raw
        before = self.short_state(m.to)
        raw.step(m)
        self.check_election_safety()
        after = self.short_state(m.to)
        if after != before:
            with self.indented():
                self.emit(f"now {self.status_line(m.to)}")

    def stabilize(self, ids: Sequence[NodeId] | None = None) -> None:
        """Process Readies and deliver messages until nothing moves any more."""
        members = sorted(ids or self.nodes, key=node_sort_key)
        for _ in range(10_000):
            moved = False
            for node_id in members:
                moved = self.process_ready(node_id) or moved
            moved = self.deliver(set(members), set()) > 0 or moved
            if not moved:
                return
        raise ScenarioError("stabilize did not settle after 10000 rounds")

    # -- invariants -------------------------------------------------------------------

    def check_election_safety(self) -> None:
        for node_id, node in self.nodes.items():
            raft = node.raw.raft
            if raft.role is not Role.LEADER:
                continue
            known = self.leaders_by_term.setdefault(raft.term, node_id)
            if known != node_id:
                raise SafetyViolation(
                    f"election safety: {node_id} and {known} both lead term {raft.term}"
                )

    # -- inspection -------------------------------------------------------------------

    def short_state(self, node_id: NodeId) -> tuple[Role, int, NodeId | None, NodeId | None]:
        raft = self.nodes[node_id].raw.raft
        return (raft.role, raft.term, raft.leader, raft.vote)

    def status_line(self, node_id: NodeId) -> str:
        st = self.nodes[node_id].raw.status()
        return (
            f"{st.id}: {st.role.name} term={st.term} vote={st.vote or '-'} "
            f"lead={st.leader or '-'} first={st.first_index} last={st.last_index} "
            f"commit={st.commit_index} applied={st.applied_index}"
        )

    def progress_lines(self, node_id: NodeId) -> list[str]:
        raft = self.nodes[node_id].raw.raft
        if raft.role is not Role.LEADER:
            return []
        lines: list[str] = []
        for peer in sorted(raft.progress, key=node_sort_key):
            pr = raft.progress[peer]
            line = f"  {peer}: {pr.state.name} match={pr.match} next={pr.next}"
            if pr.state is ProgressState.REPLICATE and len(pr.inflights):
                line += f" inflight={len(pr.inflights)}"
            if pr.state is ProgressState.SNAPSHOT:
                line += f" pending-snapshot={pr.pending_snapshot}"
            if peer != node_id and pr.is_paused():
                line += " paused"
            lines.append(line)
        return lines

    def log_lines(self, node_id: NodeId) -> list[str]:
        log = self.nodes[node_id].raw.raft.log
        lines: list[str] = []
        boundary = log.snapshot_boundary()
        if boundary.index:
            pending = " (unstable)" if log.unstable_snapshot is not None else ""
            lines.append(f"boundary: index={boundary.index} term={boundary.term}{pending}")
        entries = log.slice(log.first_index(), log.last_index() + 1)
        for entry in entries:
            mark = " (unstable)" if entry.index >= log.unstable_offset else ""
            lines.append(describe_entry(entry) + mark)
        if not lines:
            lines.append("(empty log)")
        return lines
