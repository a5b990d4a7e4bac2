"""A pure Raft core: no I/O, no clock, injected randomness. See rawnode.RawNode."""

from logsvc.raft.config import Config, ConfigError
from logsvc.raft.progress import ProgressState
from logsvc.raft.rawnode import PeerStatus, RawNode, ReadyOutstanding, Status
from logsvc.raft.storage import (
    Compacted,
    LogTemporarilyUnavailable,
    MemoryStorage,
    Storage,
    StorageError,
    Unavailable,
)
from logsvc.raft.types import (
    Entry,
    EntryType,
    HardState,
    InvariantViolation,
    Message,
    MessageType,
    NodeId,
    ProposalDropped,
    RaftError,
    ReadState,
    Ready,
    Role,
    SnapshotMeta,
    SoftState,
)

__all__ = [
    "Compacted",
    "Config",
    "ConfigError",
    "Entry",
    "EntryType",
    "HardState",
    "InvariantViolation",
    "LogTemporarilyUnavailable",
    "MemoryStorage",
    "Message",
    "MessageType",
    "NodeId",
    "PeerStatus",
    "ProgressState",
    "ProposalDropped",
    "RaftError",
    "RawNode",
    "ReadState",
    "Ready",
    "ReadyOutstanding",
    "Role",
    "SnapshotMeta",
    "SoftState",
    "Status",
    "Storage",
    "StorageError",
    "Unavailable",
]
