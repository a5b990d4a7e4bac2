"""ACL LOG: the refusals this shim saw (commands, keys, channels, failed AUTH), newest first.

Local to the shim, as Redis's is local to its node: a refusal happens on the connection that
sent the command, before anything reaches the log. An entry like the newest ones (same reason,
context, object and user, within 60 s) counts up instead of adding a line, as in Redis.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from cacheshim.protocol.resp import Reply

REASONS: Final = {1: "command", 2: "key", 3: "auth", 4: "channel"}
GROUP_MS: Final = 60_000


@dataclass
class Entry:
    count: int
    reason: str
    context: str
    object: bytes
    username: bytes
    created_ms: int
    updated_ms: int
    client_info: bytes

    def reply(self, now_ms: int) -> Reply:
        return {
            b"count": self.count,
            b"reason": self.reason.encode(),
            b"context": self.context.encode(),
            b"object": self.object,
            b"username": self.username,
            b"age-seconds": max(0, now_ms - self.created_ms) / 1000.0,
            b"client-info": self.client_info,
        }


class AclLog:
    def __init__(self) -> None:
        self.entries: list[Entry] = []  # newest first

    def add(
        self, why: int, context: str, obj: bytes, username: bytes, client_info: bytes,
        now_ms: int, max_len: int,
    ) -> None:  # fmt: skip
        reason = REASONS[why]
        for entry in self.entries:
            if now_ms - entry.updated_ms > GROUP_MS:
                break
            if (entry.reason, entry.context, entry.object, entry.username) == (
                reason, context, obj, username,
            ):  # fmt: skip
                entry.count += 1
                entry.updated_ms = now_ms
                entry.client_info = client_info
                self.entries.remove(entry)
                self.entries.insert(0, entry)
                return
        self.entries.insert(0, Entry(1, reason, context, obj, username, now_ms, now_ms,
                                     client_info))  # fmt: skip
        del self.entries[max(0, max_len) :]

    def reset(self) -> None:
        self.entries = []
