"""The read fast path: a run of plain GETs at the start of a read, answered in one call.

Most of a cache's traffic is GET. The general path (`RequestParser`, the command table,
`Ctx`, the encoder) costs several microseconds of Python per command; `serve_gets` answers
a run of well-formed `*2\\r\\n$3\\r\\nGET\\r\\n$<n>\\r\\n<key>\\r\\n` requests straight from the
database's dicts, in C when the extension `cacheshim.protocol._fastread` is built (it is, by
`pip install`), else with the Python below, which is also its specification.

It stops, consuming nothing more, at the first request it does not fully understand
(another command, an inline request, an incomplete one, a length spelled unusually, a key
holding another type, a key over `KEY_BYTES_MAX`): the general path takes over from that
byte, so every error and every unusual case keeps its single implementation there.
The caller decides when the fast path applies at all (see `Connection.data_received`).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Final

KEY_BYTES_MAX: Final = 64 * 1024

# One GET request in the canonical spelling; the length is "0" or has no leading zero.
_GET: Final = re.compile(rb"\*2\r\n\$3\r\n[Gg][Ee][Tt]\r\n\$(0|[1-9][0-9]{0,8})\r\n")

# (data, values, expires, now_ms, resp3) -> (consumed, replies, served); dicts in C.
ServeGets = Callable[
    [bytes, Mapping[bytes, object], Mapping[bytes, int], int, bool], tuple[int, bytes, int]
]


def serve_gets_py(
    data: bytes,
    values: Mapping[bytes, object],
    expires: Mapping[bytes, int],
    now_ms: int,
    resp3: bool,
) -> tuple[int, bytes, int]:
    """(consumed bytes, the replies, how many GETs were answered); see the module doc."""
    nil = b"_\r\n" if resp3 else b"$-1\r\n"
    out: list[bytes] = []
    consumed = 0
    served = 0
    end = len(data)
    while consumed < end:
        match = _GET.match(data, consumed)
        if match is None:
            break
        key_len = int(match.group(1))
        start = match.end()
        if key_len > KEY_BYTES_MAX or end - start < key_len + 2:
            break
        if data[start + key_len : start + key_len + 2] != b"\r\n":
            break
        key = data[start : start + key_len]
        value = values.get(key)
        if value is not None and not isinstance(value, bytes):
            break
        if value is not None and expires:
            when = expires.get(key)
            if when is not None and when <= now_ms:
                value = None
        out.append(nil if value is None else b"$%d\r\n%b\r\n" % (len(value), value))
        consumed = start + key_len + 2
        served += 1
    return consumed, b"".join(out), served


def _native() -> ServeGets | None:
    try:
        from cacheshim.protocol import _fastread  # type: ignore[attr-defined]
    except ImportError:
        return None
    serve: ServeGets = _fastread.serve_gets
    return serve


serve_gets_native: Final = _native()
serve_gets: Final[ServeGets] = serve_gets_native or serve_gets_py
