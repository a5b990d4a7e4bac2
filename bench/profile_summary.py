"""Where a py-spy profile (`--format raw`, collapsed stacks) spends its samples.

    .venv/bin/python bench/profile_summary.py PROFILE.txt [--top 25]

Prints the share of samples by leaf function (self) and by function anywhere on the stack
(inclusive), with the file each is in.
"""

from __future__ import annotations

import argparse
import collections
import re
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("profile", type=Path)
    parser.add_argument("--top", type=int, default=25)
    args = parser.parse_args()
    leaf: collections.Counter[str] = collections.Counter()
    inclusive: collections.Counter[str] = collections.Counter()
    total = 0
    for line in args.profile.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack:
            continue
        count = int(count_text)
        total += count
        frames = [re.sub(r":\d+\)$", ")", f).replace("/work/wt/i18-commit/", "")
                  for f in stack.split(";")]  # fmt: skip
        frames = [re.sub(r"\(.*/site-packages/", "(", f) for f in frames]
        leaf[frames[-1]] += count
        for frame in set(frames):
            inclusive[frame] += count
    print(f"{args.profile}: {total} samples")
    for title, counter in (("self", leaf), ("inclusive", inclusive)):
        print(f"-- {title}")
        for frame, count in counter.most_common(args.top):
            print(f"{100 * count / total:5.1f}%  {frame}")


if __name__ == "__main__":
    main()
