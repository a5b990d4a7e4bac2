"""Configuration of one Raft node, validated with messages a person can act on."""

from __future__ import annotations

from dataclasses import dataclass

from logsvc.raft.types import NodeId


class ConfigError(ValueError):
    pass


@dataclass(frozen=True, slots=True)
class Config:
    id: NodeId
    # The membership as of `conf_index` (0: the bootstrap membership of a new cluster).
    # A driver restarting a node passes what it applied; the core takes the newer of this
    # and the membership stored with the log's trim boundary.
    voters: tuple[NodeId, ...]
    learners: tuple[NodeId, ...] = ()
    conf_index: int = 0
    # A node joining a running cluster with an empty log: it knows no membership yet and
    # learns it from the leader's entries (or trim boundary); voters may be empty.
    joining: bool = False
    # A follower that hears nothing for a random number of ticks in
    # [election_ticks, 2 * election_ticks) starts an election.
    election_ticks: int = 10
    heartbeat_ticks: int = 1
    # Entries per AppendEntries message are cut at this many bytes (at least one entry).
    append_bytes_max: int = 1 << 20
    # Replication window: AppendEntries messages in flight to one follower.
    inflight_messages_max: int = 64
    pre_vote: bool = True
    check_quorum: bool = True
    # Highest index the application has already applied (on restart).
    applied_index: int = 0
    # A learner is promoted only when its match index is at most this far behind the
    # leader's commit index (a voter far behind would stall commits it is needed for).
    promote_lag_entries_max: int = 0

    def validate(self) -> None:
        if not self.id:
            raise ConfigError("node id must not be empty")
        if not self.voters and not self.joining:
            raise ConfigError("voters must name at least one node")
        if len(set(self.voters)) != len(self.voters):
            raise ConfigError(f"voters has duplicates: {list(self.voters)}")
        if len(set(self.learners)) != len(self.learners):
            raise ConfigError(f"learners has duplicates: {list(self.learners)}")
        both = sorted(set(self.voters) & set(self.learners))
        if both:
            raise ConfigError(f"{both} are both voters and learners")
        if (
            self.conf_index == 0
            and not self.joining
            and self.id not in self.voters
            and self.id not in self.learners
        ):
            raise ConfigError(f"node id {self.id!r} is not among the voters {list(self.voters)}")
        if self.conf_index < 0:
            raise ConfigError("conf_index must not be negative")
        if self.promote_lag_entries_max < 0:
            raise ConfigError("promote_lag_entries_max must not be negative")
        if self.heartbeat_ticks < 1:
            raise ConfigError("heartbeat_ticks must be at least 1")
        if self.election_ticks <= self.heartbeat_ticks:
            raise ConfigError(
                f"election_ticks ({self.election_ticks}) must be greater than "
                f"heartbeat_ticks ({self.heartbeat_ticks})"
            )
        if self.append_bytes_max < 1:
            raise ConfigError("append_bytes_max must be at least 1")
        if self.inflight_messages_max < 1:
            raise ConfigError("inflight_messages_max must be at least 1")
        if self.applied_index < 0:
            raise ConfigError("applied_index must not be negative")
