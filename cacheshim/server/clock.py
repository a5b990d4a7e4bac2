"""The wall clock of the shim's serving side (never read inside apply)."""

from __future__ import annotations

import time


def wall_ms() -> int:
    return time.time_ns() // 1_000_000
