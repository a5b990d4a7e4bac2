"""Configuration of one logsvc node, validated with messages a person can act on."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path


class ConfigError(ValueError):
    pass


def parse_peers(text: str) -> dict[str, str]:
    """`a=127.0.0.1:7001,b=127.0.0.1:7002` -> {"a": "127.0.0.1:7001", ...}."""
    peers: dict[str, str] = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        node_id, sep, address = part.partition("=")
        if not sep or not node_id or not address:
            raise ConfigError(f"peer {part!r} is not of the form ID=HOST:PORT")
        if node_id in peers:
            raise ConfigError(f"peer id {node_id!r} appears twice")
        peers[node_id] = address
    return peers


@dataclass(frozen=True, slots=True)
class NodeConfig:
    id: str
    listen: str
    peers: dict[str, str]
    data_dir: Path
    zone: str = ""
    cluster_id: str = "memlog"
    tick_ms: int = 20
    election_ticks: int = 15
    heartbeat_ticks: int = 3
    record_bytes_max: int = 1 << 20
    append_records_max: int = 100_000
    append_bytes_max: int = 4 << 20  # per Raft message to a follower
    inflight_messages_max: int = 64
    # How long an Append waits for its commit before answering OUTCOME_UNKNOWN.
    append_timeout_s: float = 5.0
    # How long the leader holds an append that only carries a new commit index to a follower
    # in steady replication, in case the next append (which carries it too) comes first.
    # Followers still learn it within this long, or at the next heartbeat; 0 sends at once.
    commit_hold_ms: float = 2.0
    # Producers whose last sequences are remembered, and sequences per producer.
    dedup_sequences_max: int = 256
    # Snapshots: how many of the newest durable ones are kept, and how long a put may take
    # to be synced on a majority.
    snapshot_retain: int = 2
    snapshot_timeout_s: float = 60.0
    # Each node writes a snapshot it receives (put, push or fetch) at most this fast
    # (0: as fast as it comes), so that appends keep their latency meanwhile.
    snapshot_bytes_per_s: int = 32 << 20
    # Automatic trim, by the leader, every trim_interval_s (0: off): below the newest durable
    # snapshot, keeping at least the newest trim_keep_entries records and every record
    # appended within trim_keep_seconds.
    trim_interval_s: float = 10.0
    trim_keep_entries: int = 100_000
    trim_keep_seconds: float = 600.0
    extra: dict[str, str] = field(default_factory=dict)

    def validate(self) -> None:
        if not self.id:
            raise ConfigError("--id must not be empty")
        if self.id not in self.peers:
            raise ConfigError(f"--id {self.id!r} is not in --peers {sorted(self.peers)}")
        if len(self.peers) % 2 == 0:
            raise ConfigError(
                f"--peers names {len(self.peers)} nodes; use an odd number (1, 3, 5) so a "
                "majority survives the loss of a minority"
            )
        if ":" not in self.listen:
            raise ConfigError(f"--listen {self.listen!r} is not HOST:PORT")
        if self.tick_ms < 1:
            raise ConfigError("--tick-ms must be at least 1")
        if self.election_ticks <= self.heartbeat_ticks:
            raise ConfigError("--election-ticks must be greater than --heartbeat-ticks")
        if self.record_bytes_max < 1 or self.append_records_max < 1:
            raise ConfigError("record and append limits must be positive")
        if self.append_timeout_s <= 0:
            raise ConfigError("--append-timeout-s must be positive")
        if self.snapshot_retain < 1:
            raise ConfigError("--snapshot-retain must be at least 1 (the newest snapshot)")
        if self.snapshot_bytes_per_s < 0:
            raise ConfigError("--snapshot-bytes-per-s must be at least 0 (0: no limit)")
        if self.snapshot_timeout_s <= 0:
            raise ConfigError("--snapshot-timeout-s must be positive")
        if self.trim_interval_s < 0:
            raise ConfigError("--trim-interval-s must be at least 0 (0: no automatic trim)")
        if self.trim_keep_entries < 0:
            raise ConfigError("--trim-keep-entries must be at least 0")
        if self.trim_keep_seconds < 0:
            raise ConfigError("--trim-keep-seconds must be at least 0")
        if not 0 <= self.commit_hold_ms < self.tick_ms * self.heartbeat_ticks:
            raise ConfigError(
                "--commit-hold-ms must be at least 0 and shorter than a heartbeat interval "
                f"({self.tick_ms * self.heartbeat_ticks} ms)"
            )
