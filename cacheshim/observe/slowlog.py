"""SLOWLOG: the commands of this shim that took longer than slowlog-log-slower-than
microseconds, newest first, at most slowlog-max-len of them (per shim, never logged).

An entry keeps at most 32 arguments (the last one then says how many more there were) and
at most 128 bytes of each (with how many more bytes there were), and secrets never: the
arguments that carry passwords are replaced by ``(redacted)`` as Redis does.
"""

from __future__ import annotations

from collections import deque
from typing import Final, NamedTuple

ARGS_MAX: Final = 32
ARG_BYTES_MAX: Final = 128
REDACTED: Final = b"(redacted)"


class Entry(NamedTuple):
    id: int
    time_s: int
    duration_us: int
    args: list[bytes]
    addr: str
    name: bytes


def redacted(args: list[bytes]) -> list[bytes]:
    """args with the arguments that carry secrets replaced (AUTH's, HELLO's AUTH pair,
    ACL SETUSER's rules and name, MIGRATE's AUTH and AUTH2, CONFIG SET of a password)."""
    name = args[0].lower()
    hidden: set[int] = set()
    if name == b"auth":
        hidden.update(range(1, len(args)))
    elif name == b"hello":
        for i, arg in enumerate(args):
            if arg.lower() == b"auth" and i + 2 < len(args) + 1:
                hidden.update((i + 1, i + 2))
    elif name == b"acl" and len(args) > 1 and args[1].lower() == b"setuser":
        hidden.update(range(2, len(args)))
    elif name == b"migrate":
        for i, arg in enumerate(args):
            word = arg.lower()
            if word == b"auth":
                hidden.add(i + 1)
            elif word == b"auth2":
                hidden.update((i + 1, i + 2))
    elif name == b"config" and len(args) > 1 and args[1].lower() == b"set":
        for i in range(2, len(args) - 1, 2):
            if args[i].lower() in (b"requirepass", b"masterauth", b"masteruser"):
                hidden.add(i + 1)
    if not hidden:
        return args
    return [REDACTED if i in hidden else arg for i, arg in enumerate(args)]


def trimmed(args: list[bytes]) -> list[bytes]:
    count = min(len(args), ARGS_MAX)
    out: list[bytes] = []
    for i in range(count):
        if count == ARGS_MAX and i == ARGS_MAX - 1 and len(args) > ARGS_MAX:
            out.append(b"... (%d more arguments)" % (len(args) - ARGS_MAX + 1))
            break
        arg = args[i]
        if len(arg) > ARG_BYTES_MAX:
            arg = arg[:ARG_BYTES_MAX] + b"... (%d more bytes)" % (len(arg) - ARG_BYTES_MAX)
        out.append(arg)
    return out


class SlowLog:
    def __init__(self) -> None:
        self.entries: deque[Entry] = deque()
        self.next_id = 0

    def add(
        self, args: list[bytes], duration_us: int, time_s: int, addr: str, name: bytes,
        max_len: int,
    ) -> None:  # fmt: skip
        self.entries.appendleft(
            Entry(self.next_id, time_s, duration_us, trimmed(redacted(args)), addr, name)
        )
        self.next_id += 1
        while len(self.entries) > max_len:
            self.entries.pop()

    def trim(self, max_len: int) -> None:
        while len(self.entries) > max_len:
            self.entries.pop()

    def reset(self) -> None:
        self.entries.clear()
