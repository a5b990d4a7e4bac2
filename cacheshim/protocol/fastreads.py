"""The fast path for the common reads other than GET (issue 18).

`serve_reads` answers, at the start of a read, a run of well-formed requests of the
commands in `FAST_READS` (MGET, EXISTS, TTL, HGETALL, LRANGE, ...), mixed freely with plain
GETs (which keep their own C path, `cacheshim.protocol.fastread.serve_gets`). What it skips
is the general dispatch around a read (the RequestParser's state machine, the central
checks, ACL, `Ctx` with a session, the encoder's state, the stats per command): the answer
itself comes from the command's one handler in `cacheshim.commands`, encoded by the one
RESP encoder (`resp.encode`; the C extension encodes the common shapes, bulk strings, nil,
integers and arrays and maps of them, byte for byte as `resp.encode` does), so the meaning of
each command keeps a single implementation.

Like GET's fast path it stops, consuming nothing more, at the first request that is in any
way unusual, and the general path takes over from that byte:
- a request not spelled canonically (inline, a length with a leading zero, an argument over
  `ARG_BYTES_MAX`, more than `ARGS_MAX` arguments) or not complete in `data`;
- a command not in `FAST_READS`, or with the wrong number of arguments;
- a key of the request that is expired by `now_ms` (the general path hides it: the same
  answer, but keeping that case in one place costs nothing);
- a handler error (WRONGTYPE, "value is not an integer", a syntax error): the general path
  runs the read again and answers the error. The handlers only read, so that is harmless.
The caller decides whether the fast path applies to the connection at all (MULTI, CLIENT
REPLY, linearizable reads, ACL-restricted users, LOADING, ...: `Connection._fast_path_open`).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Final

from cacheshim.protocol.errors import CommandError
from cacheshim.protocol.fastread import serve_gets
from cacheshim.protocol.resp import Error, Reply, SetReply, encode
from cacheshim.types.keyspace import Keyspace

ARG_BYTES_MAX: Final = 64 * 1024
ARGS_MAX: Final = 1024

# The commands served here and where their keys are among the arguments after the name:
# "first" (only args[1]) or "all" (every argument: MGET, EXISTS).
FAST_READS: Final[dict[bytes, str]] = {
    b"mget": "all",
    b"exists": "all",
    b"ttl": "first",
    b"pttl": "first",
    b"strlen": "first",
    b"hget": "first",
    b"hmget": "first",
    b"hgetall": "first",
    b"hlen": "first",
    b"lrange": "first",
    b"lindex": "first",
    b"llen": "first",
    b"smembers": "first",
    b"sismember": "first",
    b"scard": "first",
    b"zscore": "first",
    b"zrank": "first",
    b"zcard": "first",
    b"zrange": "first",
}

_HEAD: Final = re.compile(rb"\*([1-9][0-9]{0,3})\r\n")
_BULK: Final = re.compile(rb"\$(0|[1-9][0-9]{0,8})\r\n")
_GET_PREFIX: Final = b"*2\r\n$3\r\n"

# (reply, resp3) -> its RESP bytes, or None for a reply the C encoder leaves to `encode`.
EncodeReply = Callable[[Reply, bool], bytes | None]


def _native_encoder() -> EncodeReply | None:
    try:
        from cacheshim.protocol import _fastread  # type: ignore[attr-defined]
    except ImportError:  # MEMLOG_PURE_PYTHON=1: the extension is not built
        return None
    encoder: EncodeReply = _fastread.encode_reply
    return encoder


encode_reply_native: Final = _native_encoder()


def encode_reply(reply: Reply, resp3: bool) -> bytes:
    """`resp.encode(reply)`, through the C encoder where it handles the reply's shape (a
    set reply as the array of its items, with RESP3's set header)."""
    native = encode_reply_native
    if native is not None:
        if type(reply) is SetReply:
            encoded = native(reply.items, resp3)
            if encoded is not None:
                return b"~" + encoded[1:] if resp3 else encoded
        else:
            encoded = native(reply, resp3)
            if encoded is not None:
                return encoded
    return encode(reply, 3 if resp3 else 2)


_Handler = Callable[..., Reply]
_handlers: dict[bytes, tuple[_Handler, Callable[[int], bool]]] = {}


def _table() -> dict[bytes, tuple[_Handler, Callable[[int], bool]]]:
    """Each fast command's handler and arity check, from the command table (on first use,
    after every command module is imported)."""
    if not _handlers:
        from cacheshim.commands import load_all, lookup

        load_all()
        from cacheshim.types.hashvalue import HashValue
        from cacheshim.types.listvalue import ListValue

        _kinds.update({b"lrange": ListValue, b"hgetall": HashValue})
        for name in FAST_READS:
            spec = lookup([name])
            assert spec is not None and spec.handler is not None and not spec.is_write, name
            _handlers[name] = (spec.handler, spec.arity_ok)
    return _handlers


def parse_request_py(
    data: bytes, pos: int, args_max: int = ARGS_MAX, arg_bytes_max: int = ARG_BYTES_MAX
) -> tuple[list[bytes], int] | None:
    """The canonical `*N` array of bulk strings at data[pos:], and the position after it;
    None for anything else (including an incomplete request). The C extension has its twin
    (`_fastread.parse_request`)."""
    match = _HEAD.match(data, pos)
    if match is None:
        return None
    count = int(match.group(1))
    if count > args_max:
        return None
    end = len(data)
    p = match.end()
    args: list[bytes] = []
    for _ in range(count):
        match = _BULK.match(data, p)
        if match is None:
            return None
        size = int(match.group(1))
        start = match.end()
        stop = start + size
        if size > arg_bytes_max or stop + 2 > end or data[stop : stop + 2] != b"\r\n":
            return None
        args.append(data[start:stop])
        p = stop + 2
    return args, p


# (keys, values, expires, now_ms, resp3) -> MGET's reply, or None when a key is expired.
Mget = Callable[[list[bytes], Mapping[bytes, object], Mapping[bytes, int], int, bool], bytes | None]


def _native_mget() -> Mget | None:
    try:
        from cacheshim.protocol import _fastread  # type: ignore[attr-defined]
    except ImportError:
        return None
    answer: Mget = _fastread.mget
    return answer


mget_native: Final = _native_mget()

# (args after the name, values, expires, now_ms, resp3, the value type) -> the reply of
# LRANGE or HGETALL, or None: the general path answers (the handler is the specification).
WholeRead = Callable[
    [list[bytes], Mapping[bytes, object], Mapping[bytes, int], int, bool, type], bytes | None
]


def _native_whole_reads() -> dict[bytes, WholeRead]:
    try:
        from cacheshim.protocol import _fastread  # type: ignore[attr-defined]
    except ImportError:
        return {}
    return {b"lrange": _fastread.lrange, b"hgetall": _fastread.hgetall}


# The reads answered wholly in C besides MGET (tests/cacheshim/protocol/test_fastreads.py
# fuzzes serve_reads with and without them).
whole_reads_native: Final = _native_whole_reads()
_kinds: dict[bytes, type] = {}


ParseRequest = Callable[[bytes, int, int, int], tuple[list[bytes], int] | None]


def _native_parser() -> ParseRequest | None:
    try:
        from cacheshim.protocol import _fastread  # type: ignore[attr-defined]
    except ImportError:
        return None
    parser: ParseRequest = _fastread.parse_request
    return parser


parse_request_native: Final = _native_parser()
parse_request: Final[ParseRequest] = parse_request_native or parse_request_py


def serve_reads(
    data: bytes, keyspace: Keyspace, db_index: int, now_ms: int, resp3: bool
) -> tuple[int, bytes, int, str]:
    """(consumed bytes, the replies, how many requests were answered, the last command's
    name) for the run of fast reads at the start of data; see the module doc."""
    from cacheshim.commands import Ctx

    table = _table()
    db = keyspace.dbs[db_index]
    expires = db.expires
    ctx = Ctx(keyspace, db_index, now_ms)
    out: list[bytes] = []
    consumed = 0
    served = 0
    last = ""
    end = len(data)
    while consumed < end:
        if data.startswith(_GET_PREFIX, consumed) and data[consumed + 8 : consumed + 9] in (
            b"G",
            b"g",
        ):
            chunk = data if consumed == 0 else data[consumed:]
            took, replies, gets = serve_gets(chunk, db.data, expires, now_ms, resp3)
            if gets:
                out.append(replies)
                consumed += took
                served += gets
                last = "get"
                continue
        request = parse_request(data, consumed, ARGS_MAX, ARG_BYTES_MAX)
        if request is None:
            break
        args, after = request
        name = args[0].lower()
        entry = table.get(name)
        if entry is None:
            break
        handler, arity_ok = entry
        if not arity_ok(len(args)):
            break
        if name == b"mget" and mget_native is not None:  # the commonest multi-key read, in C
            answer = mget_native(args[1:], db.data, expires, now_ms, resp3)
            if answer is None:
                break
            out.append(answer)
            consumed = after
            served += 1
            last = "mget"
            continue
        whole = whole_reads_native.get(name)
        if whole is not None:
            answer = whole(args[1:], db.data, expires, now_ms, resp3, _kinds[name])
            if answer is not None:
                out.append(answer)
                consumed = after
                served += 1
                last = name.decode()
                continue
        if expires:
            keys = args[1:] if FAST_READS[name] == "all" else args[1:2]
            if any(expires.get(key, now_ms + 1) <= now_ms for key in keys):
                break
        try:
            reply = handler(ctx, args[1:])
        except CommandError:
            break
        if isinstance(reply, Error):
            break
        out.append(encode_reply(reply, resp3))
        consumed = after
        served += 1
        last = name.decode()
    return consumed, b"".join(out), served, last
