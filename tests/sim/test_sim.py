"""The simulator in CI: a seed sweep over every fault mix, determinism, and proof that the
checkers catch deliberately broken cores.

SIM_SEEDS overrides the sweep size (default 1000); every failure prints the seed and the
command that reproduces it.
"""

from __future__ import annotations

import multiprocessing
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from logsvc.raft import Entry
from tests.sim.checkers import Checkers, LogView, Violation
from tests.sim.faults import MIXES
from tests.sim.simulator import RunConfig, RunResult, run_seed
from tests.sim.variants import VARIANTS

REPO = Path(__file__).resolve().parents[2]
SWEEP_SEEDS = int(os.environ.get("SIM_SEEDS", "1000"))
# Seeds a broken variant may take before the simulator must have caught it.
VARIANT_SEED_BUDGET = 500
JOBS = max(1, min(4, os.cpu_count() or 1))


def _run(run: RunConfig) -> RunResult:
    return run_seed(run)[0]


def _sweep(configs: list[RunConfig]) -> Iterator[RunResult]:
    # Fresh worker processes, not forks of this one: by now the test process holds gRPC's
    # threads and servers of earlier tests. Forked workers spent their time in Thread.join
    # called from finalizers (py-spy), and in a full run the sweep went past five minutes
    # instead of 85 s.
    with multiprocessing.get_context("forkserver").Pool(JOBS) as pool:
        yield from pool.imap(_run, configs, chunksize=4)


# -- the sweep -----------------------------------------------------------------------------


def test_seed_sweep_over_all_fault_mixes_finds_no_violation() -> None:
    started = time.monotonic()
    mixes: dict[str, int] = {}
    sizes: dict[int, int] = {}
    for result in _sweep([RunConfig(seed=s) for s in range(1, SWEEP_SEEDS + 1)]):
        if result.violation is not None:
            pytest.fail(
                f"seed {result.seed} ({result.mix}, {result.cluster_size} nodes): "
                f"{result.violation}\nreproduce: {result.repro_command()}"
            )
        assert result.committed > 0, f"seed {result.seed} committed nothing"
        mixes[result.mix] = mixes.get(result.mix, 0) + 1
        sizes[result.cluster_size] = sizes.get(result.cluster_size, 0) + 1
    elapsed = time.monotonic() - started
    print(
        f"\n{SWEEP_SEEDS} seeds in {elapsed:.1f}s "
        f"({SWEEP_SEEDS / elapsed * 60:.0f} seeds/min, {JOBS} jobs); "
        f"mixes {sorted(mixes.items())}; cluster sizes {sorted(sizes.items())}"
    )
    assert set(mixes) == {m.name for m in MIXES}, "every fault mix must be exercised"
    assert set(sizes) == {1, 3, 5}, "cluster sizes 1, 3 and 5 must all be exercised"


@pytest.mark.parametrize("size", [1, 3, 5])
def test_every_cluster_size_commits_reads_and_survives_chaos(size: int) -> None:
    for seed in (1, 2, 3):
        result = _run(RunConfig(seed=seed, mix="chaos", cluster_size=size))
        assert result.violation is None, f"{result.violation}\n{result.repro_command()}"
        assert result.acknowledged > 0 and result.reads_answered > 0
        assert result.cluster_size == size


def test_membership_changes_under_every_fault_mix() -> None:
    """Spare nodes join as learners, are promoted, members leave, under each fault mix."""
    configs = [
        RunConfig(seed=seed, mix=mix.name, membership=True, safety_ms=3000)
        for mix in MIXES
        for seed in (2,)
    ]
    changes = 0
    replaced = 0
    for result in _sweep(configs):
        assert result.violation is None, f"{result.violation}\n{result.repro_command()}"
        assert result.committed > 0
        changes += result.conf_changes
        originals = {f"n{i}" for i in range(1, result.cluster_size + 1)}
        if set(result.final_voters) - originals:
            replaced += 1  # a spare ended as a voter
    print(f"\n{len(configs)} membership runs: {changes} changes committed, "
          f"{replaced} ended with a spare among the voters")  # fmt: skip
    assert changes >= 2 * len(configs)
    assert replaced > 0


# -- the checkers bite --------------------------------------------------------------------


@pytest.mark.parametrize("variant", sorted(v for v in VARIANTS if v != "correct"))
def test_broken_variant_is_caught_within_the_seed_budget(variant: str) -> None:
    configs = [RunConfig(seed=s, variant=variant) for s in range(1, VARIANT_SEED_BUDGET + 1)]
    for result in _sweep(configs):
        if result.violation is not None:
            print(
                f"\n{variant}: caught by seed {result.seed} ({result.mix}, "
                f"{result.cluster_size} nodes) by {result.violation.checker}: "
                f"{result.violation.detail}\nreproduce: {result.repro_command()}"
            )
            # A liveness failure or a crash of the simulator is not a safety catch.
            assert result.violation.checker not in ("liveness", "crash"), result.violation
            return
    pytest.fail(f"{variant} survived {VARIANT_SEED_BUDGET} seeds: the checkers do not bite")


def test_checkers_flag_two_leaders_in_one_term() -> None:
    check = Checkers()
    check.on_leader("n1", 3)
    check.on_leader("n1", 3)
    with pytest.raises(Violation, match="two leaders in term 3"):
        check.on_leader("n2", 3)


def test_checkers_flag_different_commits_at_one_index() -> None:
    check = Checkers()
    check.on_publish("n1", Entry(term=1, index=1, data=b"x"))
    check.on_publish("n2", Entry(term=1, index=1, data=b"x"))
    with pytest.raises(Violation, match="state-machine-safety"):
        check.on_publish("n3", Entry(term=2, index=1, data=b"y"))


def test_checkers_flag_a_gap_in_a_node_commit_stream() -> None:
    check = Checkers()
    check.on_publish("n1", Entry(term=1, index=1))
    with pytest.raises(Violation, match="commit-order"):
        check.on_publish("n1", Entry(term=1, index=3))


def test_checkers_flag_log_matching_breach() -> None:
    a = LogView("n1", 1, [Entry(1, 1, b"a"), Entry(1, 2, b"b"), Entry(2, 3, b"c")])
    b = LogView("n2", 1, [Entry(1, 1, b"a"), Entry(1, 2, b"X"), Entry(2, 3, b"c")])
    with pytest.raises(Violation, match="log-matching"):
        Checkers().check_log_matching([a, b])
    diverged = LogView("n3", 1, [Entry(1, 1, b"a"), Entry(3, 2, b"z")])
    Checkers().check_log_matching([a, diverged])  # differing terms: allowed


def test_checkers_flag_incomplete_leader_and_stale_read() -> None:
    check = Checkers()
    check.on_publish("n1", Entry(term=1, index=1, data=b"x"))
    with pytest.raises(Violation, match="leader-completeness"):
        check.check_leader_completeness(LogView("n2", 1, [Entry(2, 1, b"")]), 2)
    with pytest.raises(Violation, match="read-index"):
        check.on_read_answer("n2", b"r1", index=0, required=1)


def test_checkers_flag_an_acknowledged_write_missing_from_a_majority() -> None:
    check = Checkers()
    check.on_publish("n1", Entry(term=1, index=1, data=b"x"))
    check.on_acknowledged(1, b"x")
    holding = LogView("n1", 1, [Entry(1, 1, b"x")])
    empty = LogView("n2", 1, [])
    check.check_acknowledged_durable([holding, empty, holding], quorum=2)
    with pytest.raises(Violation, match="fewer than a majority"):
        check.check_acknowledged_durable([holding, empty, empty], quorum=2)


# -- determinism ----------------------------------------------------------------------------


def test_same_seed_gives_the_same_run_byte_for_byte() -> None:
    first, sim1 = run_seed(RunConfig(seed=11, mix="chaos"))
    second, sim2 = run_seed(RunConfig(seed=11, mix="chaos"))
    assert first.trace_digest == second.trace_digest
    assert sim1.trace == sim2.trace
    assert first.events == second.events
    other = _run(RunConfig(seed=12, mix="chaos"))
    assert other.trace_digest != first.trace_digest


def _cli(args: list[str], hash_seed: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONHASHSEED": hash_seed}
    return subprocess.run(
        [sys.executable, "-m", "tests.sim", *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_same_seed_same_digest_across_processes_and_hash_seeds() -> None:
    """str hashing differs per process; nothing the run decides may depend on it."""
    expected = _run(RunConfig(seed=7)).trace_digest
    for hash_seed in ("1", "2"):
        out = _cli(["--seed", "7"], hash_seed)
        assert out.returncode == 0, out.stdout + out.stderr
        assert f"digest={expected[:16]}" in out.stdout


def test_cli_range_stops_at_first_violation_and_prints_the_repro_command() -> None:
    variant = "follower-acks-before-persist"
    first_caught = next(
        r.seed
        for r in _sweep([RunConfig(seed=s, variant=variant) for s in range(1, 60)])
        if r.violation is not None
    )
    out = _cli(["--seeds", f"1-{first_caught + 5}", "--variant", variant], "0")
    assert out.returncode == 1, out.stdout + out.stderr
    assert f"reproduce: python -m tests.sim --seed {first_caught} --variant {variant}" in out.stdout
    clean = _cli(["--seeds", "1-4"], "0")
    assert clean.returncode == 0, clean.stdout + clean.stderr
    assert "4 seeds (1-4)" in clean.stdout and "no violation" in clean.stdout
