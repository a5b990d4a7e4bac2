"""The nemesis suite's short profile (tests/nemesis/runner.py): three real log nodes and two
shims through a kill -9 of the leader, a pause of the leader with 1 MB values, a pause of a
follower, a slow fsync on the leader, a pause of a shim and a whole-cluster crash, in an
order drawn from the seed. Safety is asserted in full; availability only against a generous
bound (the 3 s target is measured by `make nemesis` and recorded in docs/availability.md),
so that a slow, shared machine does not fail it. NEMESIS_SEED=N reruns a seed."""

from __future__ import annotations

import os
import random
import shutil
from pathlib import Path

from tests.nemesis.runner import ONE_LOG_NODE, PROFILES, run

# How long one log node's fault may stall a workload here before the test fails: clients
# stuck for good, or a log that does not recover, fail it. Not the 3 s target: faults last
# 1.5-2.5 s here (test_failover.py and the long profile measure that).
GENEROUS_S = 12.0


def test_short_nemesis_run_loses_nothing_and_recovers(tmp_path: Path) -> None:
    seed = int(os.environ.get("NEMESIS_SEED") or random.randrange(1 << 31))
    print(f"NEMESIS_SEED={seed}")
    root = tmp_path / "run"
    result = run(PROFILES["short"], seed, root=root)
    assert not result.violations, result.table
    assert not result.unchecked, result.table
    faults = {r.phase.fault for r in result.rows}
    assert set(f for f, _ in PROFILES["short"].phases) <= faults
    for row in result.rows:
        # Every phase acknowledged writes of every workload: the checkers judged something.
        assert row.ok > 0, (row.phase.fault, row.workload, result.table)
        if row.phase.fault in (*ONE_LOG_NODE, "slow-disk-leader"):
            for gap in (row.write_gap, row.read_gap):
                assert gap is None or gap < GENEROUS_S, (
                    row.phase.fault,
                    row.workload,
                    result.table,
                )
    shutil.rmtree(root, ignore_errors=True)  # 1 MB values on three nodes: not kept
