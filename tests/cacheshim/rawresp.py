"""Exact-bytes helpers for the data-command tests: a blocking RESP client that hands back each
reply's raw bytes, redis-py clients without reply callbacks, and a byte-level comparison."""

from __future__ import annotations

import socket
from collections.abc import Iterator, Sequence

import redis

from cacheshim.protocol.resp import encode_command

Pair = tuple[redis.Redis, redis.Redis]


def without_callbacks(conn: redis.Redis) -> redis.Redis:
    """The client, answering raw replies (no bool/float/tuple conversions by command)."""
    conn.response_callbacks.clear()
    return conn


def _reply_end(buf: bytes, pos: int) -> int:
    """Where the reply starting at pos ends; IndexError/ValueError while incomplete."""
    kind = buf[pos : pos + 1]
    line_end = buf.index(b"\r\n", pos)
    after_line = line_end + 2
    if kind in (b"+", b"-", b":", b"_", b",", b"#", b"("):
        return after_line
    size = int(buf[pos + 1 : line_end])
    if kind in (b"$", b"=", b"!"):
        if size < 0:
            return after_line
        end = after_line + size + 2
        if end > len(buf):
            raise IndexError("incomplete bulk")
        return end
    if kind in (b"*", b"~", b">", b"%", b"|"):
        items = size * 2 if kind in (b"%", b"|") else size
        pos = after_line
        for _ in range(max(items, 0)):
            pos = _reply_end(buf, pos)
        return pos
    raise ValueError(f"unknown RESP type {kind!r}")


class RawConnection:
    """One connection; call() sends a command and answers the exact bytes of its reply."""

    def __init__(self, port: int, protocol: int = 2) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=15)
        self.buffer = b""
        if protocol == 3:
            self.call(b"HELLO", b"3")

    def send(self, *commands: Sequence[bytes | str | int]) -> None:
        """Send several commands at once (a pipeline); read them with replies()."""
        self.sock.sendall(
            b"".join(
                encode_command([a if isinstance(a, bytes) else str(a).encode() for a in c])
                for c in commands
            )
        )

    def replies(self, count: int) -> list[bytes]:
        """The exact bytes of the next count replies."""
        out: list[bytes] = []
        while len(out) < count:
            try:
                end = _reply_end(self.buffer, 0)
            except (IndexError, ValueError):
                chunk = self.sock.recv(1 << 16)
                if not chunk:
                    raise ConnectionError("server closed the connection") from None
                self.buffer += chunk
                continue
            out.append(self.buffer[:end])
            self.buffer = self.buffer[end:]
        return out

    def call(self, *args: bytes | str | int) -> bytes:
        self.send(args)
        return self.replies(1)[0]

    def close(self) -> None:
        self.sock.close()


def compare_raw(
    oracle: RawConnection, subject: RawConnection, commands: Sequence[Sequence[bytes | str | int]]
) -> None:
    """Each command's reply must be the same bytes from both servers."""
    for args in commands:
        want = oracle.call(*args)
        got = subject.call(*args)
        assert got == want, f"{list(args)!r}: redis-server sent {want!r}, memlog sent {got!r}"


def chunks(items: Sequence[bytes], size: int) -> Iterator[Sequence[bytes]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def flushed_pair(
    oracle_port: int, subject_port: int, protocol: int
) -> Iterator[tuple[RawConnection, RawConnection]]:
    """(redis-server, memlog) byte-level connections in one protocol, both keyspaces flushed
    first; closed when the caller's fixture ends (`yield from` it)."""
    oracle = RawConnection(oracle_port, protocol=protocol)
    subject = RawConnection(subject_port, protocol=protocol)
    try:
        for conn in (oracle, subject):
            conn.call("FLUSHALL")
        yield oracle, subject
    finally:
        oracle.close()
        subject.close()
