"""Fault mixes: how often each kind of trouble happens in the safety phase of a run."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class FaultMix:
    name: str
    # Network, per message.
    drop_probability: float = 0.0
    duplicate_probability: float = 0.0
    reorder_probability: float = 0.0  # a long extra delay, so later messages overtake
    # One-way message delay is 1..delay_ms_max ms (before any reordering delay).
    delay_ms_max: int = 3
    # Mean milliseconds between fault actions of each kind (0 = never).
    crash_every_ms: int = 0
    partition_every_ms: int = 0
    transfer_every_ms: int = 0
    trim_every_ms: int = 0
    clock_skew_every_ms: int = 0
    slow_disk_every_ms: int = 0
    # How long a crashed node stays down, and how long a partition lasts (max ms).
    down_ms_max: int = 600
    partition_ms_max: int = 800
    # Targeted faults (in the spirit of FoundationDB's BUGGIFY): a new leader is cut off
    # right after its election; a leader crashes, or is cut off, right after its commit
    # index advances (before the news reaches anyone else).
    isolate_new_leader_probability: float = 0.0
    crash_on_commit_probability: float = 0.0
    isolate_on_commit_probability: float = 0.0
    # A voter crashes right after granting a vote, and comes back quickly.
    crash_after_vote_probability: float = 0.0
    # Upper bound on entries bytes per AppendEntries (None: the mix does not choose).
    append_bytes_max: int | None = None
    # Cluster sizes the seed chooses from.
    cluster_sizes: tuple[int, ...] = (3, 3, 3, 5, 5, 1)


MIXES: tuple[FaultMix, ...] = (
    FaultMix(name="calm", drop_probability=0.01, reorder_probability=0.01, trim_every_ms=900),
    FaultMix(
        name="lossy",
        drop_probability=0.2,
        duplicate_probability=0.1,
        reorder_probability=0.1,
        transfer_every_ms=1500,
        trim_every_ms=700,
    ),
    FaultMix(
        name="partitions",
        drop_probability=0.02,
        reorder_probability=0.05,
        partition_every_ms=300,
        transfer_every_ms=1200,
        trim_every_ms=500,
    ),
    FaultMix(
        name="crashes",
        drop_probability=0.02,
        duplicate_probability=0.02,
        reorder_probability=0.02,
        crash_every_ms=250,
        partition_every_ms=500,
        slow_disk_every_ms=400,
        trim_every_ms=800,
        down_ms_max=500,
        crash_on_commit_probability=0.02,
        crash_after_vote_probability=0.5,
        delay_ms_max=15,
        cluster_sizes=(3, 5),
    ),
    FaultMix(
        name="figure8",
        drop_probability=0.02,
        reorder_probability=0.02,
        crash_every_ms=1000,
        slow_disk_every_ms=300,
        down_ms_max=300,
        partition_ms_max=800,
        isolate_new_leader_probability=0.5,
        crash_on_commit_probability=0.05,
        isolate_on_commit_probability=0.5,
        append_bytes_max=1,
        cluster_sizes=(3,),
    ),
    FaultMix(
        name="chaos",
        drop_probability=0.1,
        duplicate_probability=0.05,
        reorder_probability=0.1,
        crash_every_ms=300,
        partition_every_ms=350,
        transfer_every_ms=900,
        trim_every_ms=400,
        clock_skew_every_ms=500,
        slow_disk_every_ms=500,
        isolate_new_leader_probability=0.05,
        crash_on_commit_probability=0.01,
        crash_after_vote_probability=0.1,
    ),
)

MIXES_BY_NAME = {mix.name: mix for mix in MIXES}
