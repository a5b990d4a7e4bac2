"""MONITOR: the clients watching every command this shim runs, and the lines they get.

Two kinds of lines, both in Redis's format (``+<unix time with µs> [<db> <source>] "arg" ...``):
- the commands this shim's own clients run (as Redis shows them: after they ran, not the
  admin commands nor those flagged skip_monitor, secrets redacted as in SLOWLOG), the source
  being the client's address;
- the writes this shim applies from the log that other shims served, and the commands of
  this shim's own transactions and scripts, the source being ``log:<shim id>:<log index>``,
  which no client address can look like (this shim's own clients' single writes show once,
  as served, after they were applied).
Per shim: a MONITOR client sees this shim's traffic and the log's writes, not the reads
other shims serve.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Protocol

from cacheshim.observe.slowlog import redacted
from cacheshim.protocol.resp import Reply, Status


class Watcher(Protocol):
    id: int
    closing: bool
    push: Callable[[Reply], None] | None


def quoted(arg: bytes) -> str:
    """An argument as Redis's sdscatrepr quotes it."""
    out = ['"']
    for byte in arg:
        char = chr(byte)
        if char in '\\"':
            out.append("\\" + char)
        elif char == "\n":
            out.append("\\n")
        elif char == "\r":
            out.append("\\r")
        elif char == "\t":
            out.append("\\t")
        elif char == "\a":
            out.append("\\a")
        elif char == "\b":
            out.append("\\b")
        elif 32 <= byte <= 126:
            out.append(char)
        else:
            out.append(f"\\x{byte:02x}")
    out.append('"')
    return "".join(out)


def line(db: int, source: str, args: Sequence[bytes], now_s: float | None = None) -> str:
    now = time.time() if now_s is None else now_s
    seconds = int(now)
    micros = int((now - seconds) * 1_000_000)
    shown = " ".join(quoted(arg) for arg in redacted(list(args)))
    return f"{seconds}.{micros:06d} [{db} {source}] {shown}"


class Monitors:
    def __init__(self) -> None:
        self.watchers: dict[int, Watcher] = {}

    def add(self, watcher: Watcher) -> None:
        self.watchers[watcher.id] = watcher

    def feed(self, db: int, source: str, args: Sequence[bytes]) -> None:
        text = line(db, source, args)
        for watcher_id, watcher in list(self.watchers.items()):
            if watcher.closing or watcher.push is None:
                del self.watchers[watcher_id]
                continue
            watcher.push(Status(text))
