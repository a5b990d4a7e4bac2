"""What the clients did: one Op per command, with the times it was sent and answered and what
became of it. Times are time.monotonic() seconds of the one process that runs the clients."""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass


class Outcome(enum.Enum):
    OK = "ok"  # answered with a reply
    FAIL = "fail"  # certainly did not happen (the shim said so, or a read that got an error)
    INFO = "info"  # may or may not have happened: a timeout, a dropped connection, "unknown"


@dataclass(frozen=True, slots=True)
class Op:
    """One command. `value`: what was appended, added or written; for a read, what it
    returned (None for a missing key). `complete` is math.inf when the outcome is INFO: the
    command may take effect at any time after it was sent, or never."""

    process: str  # the client (one connection at a time, one command at a time)
    kind: str  # "append", "read", "incr", "write"
    key: str
    value: object
    invoke: float
    complete: float
    outcome: Outcome
    shim: int = 0
    phase: int = 0
    error: str = ""
    # Not a command of its own: the value another command's reply carried (INCRBY's new
    # value, recorded as a read with that command's times).
    derived: bool = False

    @property
    def ok(self) -> bool:
        return self.outcome is Outcome.OK

    @property
    def is_write(self) -> bool:
        return self.kind != "read"


def op(
    process: str,
    kind: str,
    key: str,
    value: object,
    invoke: float,
    complete: float | None,
    outcome: Outcome = Outcome.OK,
    **more: object,
) -> Op:
    """An Op; complete=None (or an INFO outcome) means never answered (math.inf)."""
    end = math.inf if complete is None or outcome is Outcome.INFO else complete
    return Op(process, kind, key, value, invoke, end, outcome, **more)  # type: ignore[arg-type]
