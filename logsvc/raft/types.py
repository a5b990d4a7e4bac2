"""Values that flow in and out of the Raft core: entries, messages, states, the Ready.

Everything here is plain data. Node ids are strings (the zone names in a default
cluster); ordering decisions that must be deterministic never depend on hashing them.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

NodeId = str

# Fixed per-entry overhead counted toward byte limits, beside the payload itself.
ENTRY_OVERHEAD_BYTES = 24


class EntryType(enum.IntEnum):
    NORMAL = 0
    # The empty entry a new leader appends at the start of its term (Raft thesis 6.4).
    NOOP = 1
    # A membership change (one server at a time, thesis 4.1); data is ConfChange.encode().
    CONF_CHANGE = 2


@dataclass(frozen=True, slots=True)
class Entry:
    term: int
    index: int
    data: bytes = b""
    type: EntryType = EntryType.NORMAL

    def size_bytes(self) -> int:
        return len(self.data) + ENTRY_OVERHEAD_BYTES


@dataclass(frozen=True, slots=True)
class HardState:
    """What must be durable before a node speaks: term, vote, and commit index."""

    term: int = 0
    vote: NodeId | None = None
    commit: int = 0


class ConfChangeType(enum.IntEnum):
    # A new member that receives entries but neither votes nor counts toward commit.
    ADD_LEARNER = 0
    # A learner becomes a voter.
    PROMOTE = 1
    # A voter or a learner leaves.
    REMOVE = 2


@dataclass(frozen=True, slots=True)
class ConfChange:
    """One single-server membership change, carried by a CONF_CHANGE entry.

    The entry also carries the whole membership the change results in, so that applying
    it never depends on knowing the membership before it (a node that joined with an empty
    log replays the log from its start without knowing how the cluster was bootstrapped).
    `context` is opaque to the core: the driver puts there what every node must learn
    about the member (its peer address), and reads it back when the entry is applied.
    """

    type: ConfChangeType
    node: NodeId
    context: bytes = b""

    def encode(self, after: ConfState) -> bytes:
        head = f"{self.type.name.lower()} {self.node}\n"
        return (
            f"{head}{' '.join(after.voters)}\n{' '.join(after.learners)}\n".encode()
            + self.context
        )

    @classmethod
    def decode(cls, data: bytes) -> tuple[ConfChange, ConfState]:
        """The change and the membership it results in (index 0: the caller knows it)."""
        parts = data.split(b"\n", 3)
        if len(parts) != 4:
            raise InvariantViolation(f"malformed membership change entry {data[:80]!r}")
        words = parts[0].decode("utf-8", "replace").split(" ")
        if len(words) != 2 or words[0].upper() not in _CC_NAMES:
            raise InvariantViolation(f"malformed membership change entry {data[:80]!r}")
        voters = tuple(parts[1].decode().split())
        learners = tuple(parts[2].decode().split())
        change = cls(ConfChangeType[words[0].upper()], words[1], parts[3])
        return change, ConfState(voters=voters, learners=learners)

    def describe(self) -> str:
        return f"{self.type.name.lower().replace('_', '-')} {self.node}"


_CC_NAMES = frozenset(t.name for t in ConfChangeType)


@dataclass(frozen=True, slots=True)
class ConfState:
    """The membership in effect once the entry at `index` is applied (0: the bootstrap
    membership from configuration). Voters and learners are sorted and disjoint."""

    voters: tuple[NodeId, ...] = ()
    learners: tuple[NodeId, ...] = ()
    index: int = 0

    def members(self) -> tuple[NodeId, ...]:
        return tuple(sorted(self.voters + self.learners))

    def describe(self) -> str:
        return (
            f"voters=({' '.join(self.voters)}) learners=({' '.join(self.learners)}) "
            f"index={self.index}"
        )


@dataclass(frozen=True, slots=True)
class SnapshotMeta:
    """The trim boundary: index and term of the last entry dropped from the log prefix.

    memlog's log carries opaque records and applications keep their own snapshots, so a
    Raft snapshot carries no state at all: a follower behind the boundary restarts its
    log right after it. It does carry the membership, since the entries that changed it
    are gone: `conf` is the membership as of an applied index at or past the boundary
    (None where no membership change was ever recorded: the configured one holds).
    """

    index: int = 0
    term: int = 0
    conf: ConfState | None = None


class Role(enum.IntEnum):
    FOLLOWER = 0
    PRE_CANDIDATE = 1
    CANDIDATE = 2
    LEADER = 3


class MessageType(enum.IntEnum):
    APPEND = 0
    APPEND_RESPONSE = 1
    VOTE = 2
    VOTE_RESPONSE = 3
    PRE_VOTE = 4
    PRE_VOTE_RESPONSE = 5
    HEARTBEAT = 6
    HEARTBEAT_RESPONSE = 7
    SNAPSHOT = 8
    TIMEOUT_NOW = 9
    READ_INDEX = 10
    READ_INDEX_RESPONSE = 11


# Context of a vote request sent on behalf of a leader transfer: voters grant it even
# while they still hear from a leader (thesis 3.10), since the leader asked for it.
CAMPAIGN_TRANSFER = b"transfer"


@dataclass(frozen=True, slots=True)
class Message:
    type: MessageType
    to: NodeId
    frm: NodeId
    term: int
    log_term: int = 0
    index: int = 0
    entries: tuple[Entry, ...] = ()
    commit: int = 0
    reject: bool = False
    reject_hint: int = 0
    context: bytes = b""
    snapshot: SnapshotMeta | None = None

    def describe(self) -> str:
        """A compact, stable, human-readable line (used in traces and golden files)."""
        parts = [f"{self.frm}->{self.to} {self.type.name} term={self.term}"]
        if self.type in (MessageType.APPEND, MessageType.VOTE, MessageType.PRE_VOTE):
            parts.append(f"log={self.log_term}/{self.index}")
        elif self.type in (MessageType.APPEND_RESPONSE, MessageType.READ_INDEX_RESPONSE):
            parts.append(f"index={self.index}")
        if self.type in (MessageType.APPEND, MessageType.HEARTBEAT):
            parts.append(f"commit={self.commit}")
        if self.entries:
            shown = " ".join(_describe_entry(e) for e in self.entries)
            parts.append(f"entries=[{shown}]")
        if self.reject:
            parts.append(f"rejected (hint: {self.reject_hint}/{self.log_term})")
        if self.snapshot is not None:
            parts.append(f"snapshot={self.snapshot.term}/{self.snapshot.index}")
        if self.context:
            parts.append(f"ctx={self.context.decode('utf-8', 'backslashreplace')}")
        return " ".join(parts)


def _describe_entry(entry: Entry) -> str:
    if entry.type is EntryType.NOOP:
        return f"{entry.term}/{entry.index} noop"
    if entry.type is EntryType.CONF_CHANGE:
        change, after = ConfChange.decode(entry.data)
        return (
            f"{entry.term}/{entry.index} conf {change.describe()} -> "
            f"voters=({' '.join(after.voters)}) learners=({' '.join(after.learners)})"
        )
    return f"{entry.term}/{entry.index} {entry.data.decode('utf-8', 'backslashreplace')}"


# Responses that promise something about this node's durable state (its log or its
# vote), and the vote requests of a candidate (which has voted for itself): these may
# leave the node only after the Ready that produced them has been persisted and synced.
PERSISTED_MESSAGE_TYPES = frozenset(
    {
        MessageType.APPEND_RESPONSE,
        MessageType.VOTE,
        MessageType.VOTE_RESPONSE,
        MessageType.PRE_VOTE_RESPONSE,
    }
)


@dataclass(frozen=True, slots=True)
class ReadState:
    """A ReadIndex answer: reads for `context` are linearizable once applied >= index."""

    index: int
    context: bytes


@dataclass(frozen=True, slots=True)
class SoftState:
    leader: NodeId | None
    role: Role


@dataclass(slots=True)
class Ready:
    """One batch of work for the driver, done in this order:

    1. persist `snapshot` (the new log boundary), `entries` and `hard_state` in one
       write, synced when `must_sync` (a hard state whose only change is the commit index
       may be written without waiting for a sync);
    2. send `persisted_messages` (only now) — `messages` may go out at any time, even
       before step 1;
    3. publish `committed_entries` and deliver `read_states`;
    4. call `RawNode.advance(ready)`.
    """

    soft_state: SoftState | None = None
    hard_state: HardState | None = None
    snapshot: SnapshotMeta | None = None
    entries: list[Entry] = field(default_factory=list)
    messages: list[Message] = field(default_factory=list)
    persisted_messages: list[Message] = field(default_factory=list)
    committed_entries: list[Entry] = field(default_factory=list)
    read_states: list[ReadState] = field(default_factory=list)
    # The term or the vote changed (a commit index change alone needs no sync: it is only
    # a lower bound that the node re-learns from the leader after a restart).
    hard_state_must_sync: bool = False

    @property
    def must_sync(self) -> bool:
        """Must step 1 be a synced write before anything that depends on it (etcd MustSync)?"""
        return bool(self.entries) or self.snapshot is not None or self.hard_state_must_sync


class RaftError(Exception):
    """Base of the errors the core raises to its caller."""


class ProposalDropped(RaftError):
    """The proposal was definitely not appended (not the leader, or a transfer is on)."""


class InvariantViolation(RaftError):
    """The core found its own state impossible: a bug, or storage that lost synced data."""


class ConfChangeRefused(ValueError):
    """The membership change makes no sense against the current membership (adding a
    member twice, promoting a voter or a learner still behind, removing the last voter).
    Nothing was appended."""
