"""Command line: rerun one seed, or sweep a range and stop at the first violation."""

from __future__ import annotations

import argparse
import multiprocessing
import sys
import time

from tests.sim.faults import MIXES_BY_NAME
from tests.sim.simulator import RunConfig, RunResult, run_seed
from tests.sim.variants import VARIANTS


def _parse_range(text: str) -> range:
    lo, sep, hi = text.partition("-")
    if not sep:
        return range(int(lo), int(lo) + 1)
    return range(int(lo), int(hi) + 1)


def _run_one(run: RunConfig) -> RunResult:
    return run_seed(run)[0]


def summary(result: RunResult) -> str:
    status = "ok" if result.violation is None else f"VIOLATION {result.violation}"
    return (
        f"seed {result.seed}: {status} | mix={result.mix} nodes={result.cluster_size} "
        f"sim={result.sim_ms}ms events={result.events} leaders={result.leaders} "
        f"committed={result.committed} acked={result.acknowledged} "
        f"reads={result.reads_answered} conf_changes={result.conf_changes} "
        f"digest={result.trace_digest[:16]}"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.sim", description=__doc__)
    which = parser.add_mutually_exclusive_group(required=True)
    which.add_argument("--seed", type=int, help="run one seed and print what happened")
    which.add_argument("--seeds", type=_parse_range, help="run a range A-B of seeds")
    parser.add_argument("--variant", choices=sorted(VARIANTS), default="correct")
    parser.add_argument("--mix", choices=sorted(MIXES_BY_NAME), default=None)
    parser.add_argument("--nodes", type=int, choices=(1, 3, 5), default=None)
    parser.add_argument("--safety-ms", type=int, default=5000)
    parser.add_argument("--jobs", type=int, default=multiprocessing.cpu_count())
    parser.add_argument("--trace", action="store_true", help="with --seed: print the trace")
    parser.add_argument(
        "--window",
        choices=("on", "off"),
        default=None,
        help="the core reads a memory window that fetches old entries (default: by seed)",
    )
    parser.add_argument(
        "--membership",
        choices=("on", "off"),
        default=None,
        help="membership changes with spare nodes during the faults (default: by seed)",
    )
    args = parser.parse_args(argv)

    def config(seed: int) -> RunConfig:
        return RunConfig(
            seed=seed,
            variant=args.variant,
            mix=args.mix,
            cluster_size=args.nodes,
            safety_ms=args.safety_ms,
            window=None if args.window is None else args.window == "on",
            membership=None if args.membership is None else args.membership == "on",
        )

    if args.seed is not None:
        result, sim = run_seed(config(args.seed))
        lines = sim.trace if args.trace else [*sim.trace[:1], *sim.trace[-15:]]
        print("\n".join(lines))
        print(summary(result))
        if result.violation is not None:
            print(f"reproduce: {result.repro_command()}")
            return 1
        return 0

    seeds: range = args.seeds
    started = time.monotonic()
    ran = 0
    with multiprocessing.Pool(max(1, args.jobs)) as pool:
        for result in pool.imap(_run_one, [config(s) for s in seeds]):
            ran += 1
            if result.violation is not None:
                print(summary(result))
                print(f"reproduce: {result.repro_command()}")
                pool.terminate()
                return 1
    elapsed = time.monotonic() - started
    rate = ran / elapsed * 60 if elapsed > 0 else 0.0
    print(
        f"{ran} seeds ({seeds.start}-{seeds.stop - 1}) variant={args.variant}: no violation "
        f"in {elapsed:.1f}s ({rate:.0f} seeds/min, {args.jobs} jobs)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
