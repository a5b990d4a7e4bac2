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


@dataclass(frozen=True, slots=True)
class SnapshotMeta:
    """The trim boundary: index and term of the last entry dropped from the log prefix.

    memlog's log carries opaque records and applications keep their own snapshots, so a
    Raft snapshot carries no state at all: a follower behind the boundary restarts its
    log right after it.
    """

    index: int = 0
    term: int = 0


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
