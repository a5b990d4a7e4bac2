"""python -m tests.nemesis --profile long --seed N: one nemesis run, its table on stdout.
Exit status 1 on any safety violation; with --strict, on a missed availability target too."""

from __future__ import annotations

import argparse
import random
import sys
from pathlib import Path

from tests.nemesis.runner import PROFILES, run


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.nemesis", description=__doc__)
    parser.add_argument("--profile", choices=sorted(PROFILES), default="long")
    parser.add_argument("--seed", type=int, default=None, help="default: a random one (printed)")
    parser.add_argument("--dir", type=Path, default=None,
                        help="keep the deployment's data and logs here (default: a temporary "
                        "folder, removed after)")  # fmt: skip
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder")
    parser.add_argument("--fast-timing", action="store_true",
                        help="the test harness's Raft timing (10 ms ticks, elections after "
                        "150 ms) instead of logsvc's defaults")  # fmt: skip
    parser.add_argument("--strict", action="store_true",
                        help="exit 1 when the 3 s availability target is missed")  # fmt: skip
    parser.add_argument("--sabotage", action="store_true",
                        help="a self-test: spoil a list and a register behind the clients' "
                        "backs before the checks, which must then fail")  # fmt: skip
    args = parser.parse_args(argv)
    seed = args.seed if args.seed is not None else random.randrange(1 << 31)
    result = run(PROFILES[args.profile], seed, root=args.dir, fast_timing=args.fast_timing,
                 keep=args.keep, sabotage=args.sabotage)  # fmt: skip
    if result.violations:
        return 1
    return 1 if args.strict and result.misses else 0


if __name__ == "__main__":
    sys.exit(main())
