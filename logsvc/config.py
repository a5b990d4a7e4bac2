"""Configuration of one logsvc node, validated with messages a person can act on."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from logsvc.auth import ServerAuth


class ConfigError(ValueError):
    pass


def _peer_entries(text: str) -> dict[str, tuple[str, str]]:
    """`ID=HOST:PORT[/PEER]` entries -> {id: (client address, peer address or "")}.

    PEER is the node's peer port (`/7004`, on the same host) or a whole HOST:PORT.
    """
    peers: dict[str, tuple[str, str]] = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        node_id, sep, addresses = part.partition("=")
        address, slash, peer = addresses.partition("/")
        if not sep or not node_id or ":" not in address or (slash and not peer):
            raise ConfigError(f"peer {part!r} is not of the form ID=HOST:PORT[/PEER_PORT]")
        if node_id in peers:
            raise ConfigError(f"peer id {node_id!r} appears twice")
        if peer and ":" not in peer:
            if not peer.isdigit():
                raise ConfigError(f"peer {part!r}: {peer!r} is not a port or HOST:PORT")
            peer = f"{address.rpartition(':')[0]}:{peer}"
        peers[node_id] = (address, peer)
    return peers


def parse_peers(text: str) -> dict[str, str]:
    """Every node's client address: `a=127.0.0.1:7001/7004,...` -> {"a": "127.0.0.1:7001"}."""
    return {node_id: client for node_id, (client, _) in _peer_entries(text).items()}


def parse_peer_addresses(text: str) -> dict[str, str]:
    """Every node's peer address: `a=127.0.0.1:7001/7004,...` -> {"a": "127.0.0.1:7004"}
    (nodes given without one are left out)."""
    return {node_id: peer for node_id, (_, peer) in _peer_entries(text).items() if peer}


@dataclass(frozen=True, slots=True)
class NodeConfig:
    id: str
    listen: str
    peers: dict[str, str]
    data_dir: Path
    zone: str = ""
    cluster_id: str = "memlog"
    # Every node's peer address (Raft traffic: a port of its own, never the client port),
    # and where this node serves it (default: its own entry).
    peer_addresses: dict[str, str] = field(default_factory=dict)
    peer_listen: str = ""
    # Serves only grpc.health.v1, in plaintext, for probes that speak no TLS ("": none).
    health_listen: str = ""
    # Serves /metrics over HTTP, for Prometheus (logsvc/metrics.py; "": none).
    metrics_listen: str = ""
    # TLS for both ports, and who may call the client port (logsvc/auth.py).
    auth: ServerAuth = field(default_factory=ServerAuth)
    tick_ms: int = 20
    election_ticks: int = 15
    heartbeat_ticks: int = 3
    record_bytes_max: int = 1 << 20
    append_records_max: int = 100_000
    # Bytes of records in one Append (or one AppendStream request). One append is one Raft
    # entry, and an entry cannot be cut across peer messages: this keeps every entry within
    # one peer message (append_bytes_max), so no message is big enough to hold a node's
    # event loop (parsing, copying, writing it) for a sizeable part of an election timeout.
    append_request_bytes_max: int = 4 << 20
    append_bytes_max: int = 4 << 20  # per Raft message to a follower
    # Appends proposed on this leader and not yet committed, and the bytes of their records:
    # past either, a new append is refused with RESOURCE_EXHAUSTED (retry later).
    pending_appends_max: int = 16_384
    pending_bytes_max: int = 128 << 20
    # Appends in flight on one AppendStream (proposed, not yet answered): past it, a request
    # is answered RESOURCE_EXHAUSTED. Answers the client does not read are bounded too: with
    # this many unread, the node stops reading the stream's requests until it reads some.
    stream_appends_max: int = 4096
    inflight_messages_max: int = 64
    # How long an Append waits for its commit before answering OUTCOME_UNKNOWN.
    append_timeout_s: float = 5.0
    # How long the leader holds an append that only carries a new commit index to a follower
    # in steady replication, in case the next append (which carries it too) comes first.
    # Followers still learn it within this long, or at the next heartbeat; 0 sends at once.
    commit_hold_ms: float = 2.0
    # Producers whose last sequences are remembered, and sequences per producer.
    dedup_sequences_max: int = 256
    # The newest entries kept in memory (both limits hold; entries not yet applied stay
    # whatever they say). Older ones are read from RocksDB when a peer or a reader needs
    # them, into a cache of read_cache_bytes.
    window_entries: int = 10_000
    window_bytes: int = 64 << 20
    read_cache_bytes: int = 16 << 20
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
    # Join a running cluster (`serve --join`): start as nobody's member with whatever log
    # this data directory holds, and learn the membership from the leader once an operator
    # has added this node (`logsvc member add`). --peers then names the members to reach.
    join: bool = False
    extra: dict[str, str] = field(default_factory=dict)

    def message_bytes_max(self) -> int:
        """The largest gRPC message a node accepts, from clients and from peers.

        A little more than an append request or a peer message may carry (protobuf framing
        per record, a batch of small Raft messages), and well short of what would let one
        request hold the event loop for long before it is refused. An append between
        append_request_bytes_max and this is refused with a message that names the limit.
        """
        carried = max(self.append_request_bytes_max, self.append_bytes_max)
        return 2 * carried + 16 * self.append_records_max + (1 << 20)

    def validate(self) -> None:
        if not self.id:
            raise ConfigError("--id must not be empty")
        if self.id not in self.peers:
            raise ConfigError(f"--id {self.id!r} is not in --peers {sorted(self.peers)}")
        if len(self.peers) % 2 == 0 and not self.join:
            raise ConfigError(
                f"--peers names {len(self.peers)} nodes; use an odd number (1, 3, 5) so a "
                "majority survives the loss of a minority"
            )
        if ":" not in self.listen:
            raise ConfigError(f"--listen {self.listen!r} is not HOST:PORT")
        if len(self.peers) > 1:
            missing = sorted(set(self.peers) - set(self.peer_addresses))
            if missing:
                raise ConfigError(
                    f"--peers gives no peer address for {', '.join(missing)}: a cluster of "
                    "several nodes needs each node's peer port, ID=HOST:PORT/PEER_PORT "
                    "(Raft traffic never goes to the client port)"
                )
            clash = set(self.peers.items()) & set(self.peer_addresses.items())
            if clash:
                raise ConfigError(
                    f"--peers gives {sorted(clash)[0][0]} the same client and peer address"
                )
        if self.peer_listen and ":" not in self.peer_listen:
            raise ConfigError(f"--peer-listen {self.peer_listen!r} is not HOST:PORT")
        if self.metrics_listen:
            host, sep, port = self.metrics_listen.rpartition(":")
            if not sep or not host or not port.isdigit() or int(port) > 65535:
                raise ConfigError(f"--metrics-listen {self.metrics_listen!r} is not HOST:PORT")
        if self.tick_ms < 1:
            raise ConfigError("--tick-ms must be at least 1")
        if self.election_ticks <= self.heartbeat_ticks:
            raise ConfigError("--election-ticks must be greater than --heartbeat-ticks")
        if self.record_bytes_max < 1 or self.append_records_max < 1:
            raise ConfigError("record and append limits must be positive")
        if self.append_request_bytes_max < self.record_bytes_max:
            raise ConfigError(
                f"--append-request-bytes-max ({self.append_request_bytes_max}) must be at least "
                f"--record-bytes-max ({self.record_bytes_max}), or no record of the largest "
                "size could be appended"
            )
        if self.pending_appends_max < 1 or self.stream_appends_max < 1:
            raise ConfigError("--pending-appends-max and --stream-appends-max must be positive")
        if self.pending_bytes_max < self.append_request_bytes_max:
            raise ConfigError(
                f"--pending-bytes-max ({self.pending_bytes_max}) must be at least "
                f"--append-request-bytes-max ({self.append_request_bytes_max})"
            )
        if self.append_timeout_s <= 0:
            raise ConfigError("--append-timeout-s must be positive")
        if self.window_entries < 1:
            raise ConfigError(
                f"--window-entries must be at least 1 (got {self.window_entries}): it is how "
                "many of the newest entries a node keeps in memory"
            )
        if self.window_bytes < 1 << 20:
            raise ConfigError(
                f"--window-bytes must be at least 1048576 (1 MiB), got {self.window_bytes}: "
                "it is how many bytes of the newest entries a node keeps in memory"
            )
        if self.read_cache_bytes < self.append_bytes_max:
            raise ConfigError(
                f"--read-cache-bytes must be at least {self.append_bytes_max} (one append "
                f"message to a follower), got {self.read_cache_bytes}"
            )
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

    def peer_listen_address(self) -> str:
        """Where this node serves its peers ("" for a single node without a peer address)."""
        return self.peer_listen or self.peer_addresses.get(self.id, "")
