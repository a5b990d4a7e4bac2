"""The metric names docs/monitoring.md documents (the first column of its tables), for tests
that hold the docs, the exporters, the alert rules and the dashboard to the same names."""

from __future__ import annotations

import re
from pathlib import Path

DOCS = Path(__file__).resolve().parents[1] / "docs" / "monitoring.md"
# The suffixes Prometheus adds to a family's samples.
SAMPLE_SUFFIXES = ("_bucket", "_count", "_sum", "_created")


def documented(prefix: str = "memlog_") -> set[str]:
    """Every metric a row of docs/monitoring.md's metric tables names (| name | type | ...;
    counters with _total)."""
    names: set[str] = set()
    for line in DOCS.read_text().splitlines():
        if not line.startswith("| `"):
            continue
        cells = line.split("|")
        if len(cells) < 3 or cells[2].strip() not in ("counter", "gauge", "histogram"):
            continue  # a table of something else (INFO fields)
        first_cell = cells[1]
        names.update(n for n in re.findall(r"`([a-z_]+)`", first_cell) if n.startswith(prefix))
    return names


def family(sample: str) -> str:
    """A sample's name without the suffix a histogram's samples carry."""
    for suffix in SAMPLE_SUFFIXES:
        if sample.endswith(suffix):
            return sample[: -len(suffix)]
    return sample
