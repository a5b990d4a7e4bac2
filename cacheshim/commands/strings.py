"""String commands (Redis t_string.c), Redis 7.0's replies and errors.

Write handlers run only inside apply: "now" is the record's time, so a relative expiry
(EX, PX, SETEX, ...) becomes the same absolute time on every shim.

Over 500 lines: the whole string family (22 commands) is one module as in the command
table's groups; SET's option parser serves SET and GETEX, and the counters share theirs.
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
from typing import Final

from cacheshim.commands import Ctx, command
from cacheshim.commands.args import parse_int
from cacheshim.commands.argspec import ArgSpec, Conflict, raw, token, valued
from cacheshim.notify import GENERIC, STRING, notify
from cacheshim.protocol import errors
from cacheshim.protocol.errors import CommandError
from cacheshim.protocol.resp import BULK_BYTES_MAX_DEFAULT, OK, Reply
from cacheshim.types import longdouble
from cacheshim.types.keyspace import PlainString, RawString

__all__ = ["STRING_BYTES_MAX", "get_string", "parse_int"]

# proto-max-bulk-len: the longest string APPEND and SETRANGE may build, and the largest
# transient table LCS may allocate (Redis's default; not configurable here yet).
STRING_BYTES_MAX: Final = BULK_BYTES_MAX_DEFAULT

LLONG_MIN: Final = -(2**63)
LLONG_MAX: Final = 2**63 - 1
_UINT32_MAX: Final = 2**32 - 1


def get_string(ctx: Ctx, key: bytes) -> bytes | None:
    """The live string at key, None if there is no key; WRONGTYPE for another type."""
    return ctx.db.get_typed(key, ctx.now_ms, bytes)


# -- SET and GETEX options (parseExtendedStringArgumentsOrReply) ---------------------------


@dataclass
class _SetOptions:
    nx: bool = False
    xx: bool = False
    get: bool = False
    keep_ttl: bool = False
    persist: bool = False
    expire: bytes | None = None  # EX, PX, EXAT or PXAT
    expire_arg: bytes = b""


_NO_OPTIONS: Final = _SetOptions()  # shared: never changed
# The expiry's value is checked after the loop (a syntax error later on the line wins). One
# of NX/XX, and one way to set the time to live, though the same option twice is fine.
_NX, _XX, _GET, _KEEPTTL, _PERSIST = map(token, ("NX", "XX", "GET", "KEEPTTL", "PERSIST"))
_EXPIRY: Final = tuple(raw(name) for name in ("EX", "PX", "EXAT", "PXAT"))
_SET_OPTIONS: Final = ArgSpec(
    _NX, _XX, _GET, _KEEPTTL, *_EXPIRY, exclusive=[(_NX, _XX), (_KEEPTTL, *_EXPIRY)]
)
_GETEX_OPTIONS: Final = ArgSpec(_PERSIST, *_EXPIRY, exclusive=[(_PERSIST, *_EXPIRY)])


def _parse_set_options(args: list[bytes], spec: ArgSpec) -> _SetOptions:
    """SET's options or GETEX's, read with Redis's rules for which go together."""
    if not args:
        return _NO_OPTIONS  # the common case, without the spec's bookkeeping
    parsed = spec.parse(args)
    expiry = parsed.last(*_EXPIRY)
    return _SetOptions(
        nx=_NX in parsed,
        xx=_XX in parsed,
        get=_GET in parsed,
        keep_ttl=_KEEPTTL in parsed,
        persist=_PERSIST in parsed,
        expire=None if expiry is None else expiry.name,
        expire_arg=b"" if expiry is None else parsed.get(expiry, b""),
    )


def expire_at_ms(ctx: Ctx, unit_and_base: bytes, arg: bytes, command_name: str) -> int:
    """The absolute unix-ms time an EX/PX/EXAT/PXAT argument names, checked as Redis's
    getExpireMillisecondsOrReply checks it (positive; no overflow)."""
    amount = parse_int(arg)
    seconds = unit_and_base in (b"EX", b"EXAT")
    if amount <= 0 or (seconds and amount > LLONG_MAX // 1000):
        raise CommandError(errors.invalid_expire_time(command_name))
    when = amount * 1000 if seconds else amount
    if unit_and_base in (b"EX", b"PX"):
        when += ctx.now_ms
    if when > LLONG_MAX:  # Redis's addition wraps negative and fails the same way
        raise CommandError(errors.invalid_expire_time(command_name))
    return when


def _set_generic(
    ctx: Ctx,
    key: bytes,
    value: bytes,
    opts: _SetOptions,
    command_name: str,
    ok_reply: Reply = OK,
    abort_reply: Reply = None,
) -> Reply:
    expire_at = None
    if opts.expire is not None:
        expire_at = expire_at_ms(ctx, opts.expire, opts.expire_arg, command_name)
    old = get_string(ctx, key) if opts.get else None
    found = ctx.db.contains(key, ctx.now_ms)
    if (opts.nx and found) or (opts.xx and not found):
        return old if opts.get else abort_reply
    ctx.db.set(key, value, ctx.index, keep_ttl=opts.keep_ttl)
    notify(ctx, STRING, b"set", key)
    if expire_at is not None:
        ctx.db.set_expiry(key, expire_at, ctx.index)
        notify(ctx, GENERIC, b"expire", key)
    return old if opts.get else ok_reply


# -- GET / SET and friends ---------------------------------------------------------------


@command(
    "get", 2, "readonly fast", (1, 1, 1), "read string fast", "string", "1.0.0",
    "Answers the string at a key (nil for a missing key).",
)  # fmt: skip
def get(ctx: Ctx, args: list[bytes]) -> Reply:
    return get_string(ctx, args[0])


@command(
    "set", -3, "write denyoom", (1, 1, 1), "write string slow", "string", "1.0.0",
    "Stores a string at a key, whatever the key held (NX, XX, GET, EX, PX, EXAT, PXAT, "
    "KEEPTTL).",
)  # fmt: skip
def set_(ctx: Ctx, args: list[bytes]) -> Reply:
    return _set_generic(ctx, args[0], args[1], _parse_set_options(args[2:], _SET_OPTIONS), "set")


@command(
    "setnx", 3, "write denyoom fast", (1, 1, 1), "write string fast", "string", "1.0.0",
    "Stores a string only when the key does not exist yet.", key_flags="OW insert",
)  # fmt: skip
def setnx(ctx: Ctx, args: list[bytes]) -> Reply:
    return _set_generic(ctx, args[0], args[1], _SetOptions(nx=True), "setnx", 1, 0)


@command(
    "setex", 4, "write denyoom", (1, 1, 1), "write string slow", "string", "2.0.0",
    "Stores a string with a time to live in seconds.", key_flags="OW update",
)  # fmt: skip
def setex(ctx: Ctx, args: list[bytes]) -> Reply:
    opts = _SetOptions(expire=b"EX", expire_arg=args[1])
    return _set_generic(ctx, args[0], args[2], opts, "setex")


@command(
    "psetex", 4, "write denyoom", (1, 1, 1), "write string slow", "string", "2.6.0",
    "Stores a string with a time to live in milliseconds.", key_flags="OW update",
)  # fmt: skip
def psetex(ctx: Ctx, args: list[bytes]) -> Reply:
    opts = _SetOptions(expire=b"PX", expire_arg=args[1])
    return _set_generic(ctx, args[0], args[2], opts, "psetex")


@command(
    "getset", 3, "write denyoom fast", (1, 1, 1), "write string fast", "string", "1.0.0",
    "Stores a string and answers the string it replaced (deprecated: SET ... GET).",
    key_flags="RW access update",
)  # fmt: skip
def getset(ctx: Ctx, args: list[bytes]) -> Reply:
    old = get_string(ctx, args[0])
    ctx.db.set(args[0], args[1], ctx.index)
    notify(ctx, STRING, b"set", args[0])
    return old


@command(
    "getdel", 2, "write fast", (1, 1, 1), "write string fast", "string", "6.2.0",
    "Answers the string at a key and removes the key.", key_flags="RW access delete",
)  # fmt: skip
def getdel(ctx: Ctx, args: list[bytes]) -> Reply:
    value = get_string(ctx, args[0])
    if value is not None:
        ctx.db.delete(args[0], ctx.index)
        notify(ctx, GENERIC, b"del", args[0])
    return value


@command(
    "getex", -2, "write fast", (1, 1, 1), "write string fast", "string", "6.2.0",
    "Answers the string at a key and optionally changes or removes its time to live.",
    key_flags="RW access update",
)  # fmt: skip
def getex(ctx: Ctx, args: list[bytes]) -> Reply:
    key = args[0]
    opts = _parse_set_options(args[1:], _GETEX_OPTIONS)
    value = get_string(ctx, key)
    if value is None:
        return None
    if opts.expire is not None:
        when = expire_at_ms(ctx, opts.expire, opts.expire_arg, "getex")
        if opts.expire in (b"EXAT", b"PXAT") and when <= ctx.now_ms:
            ctx.db.delete(key, ctx.index)  # a time already past: the key goes at once
            notify(ctx, GENERIC, b"del", key)
        else:
            ctx.db.set_expiry(key, when, ctx.index)
            notify(ctx, GENERIC, b"expire", key)
    elif opts.persist and ctx.db.persist(key, ctx.index):
        notify(ctx, GENERIC, b"persist", key)
    return value


@command(
    "mget", -2, "readonly fast", (1, -1, 1), "read string fast", "string", "1.0.0",
    "Answers the strings at several keys (nil for a missing key or one of another type).",
    "O(N) where N is the number of keys.",
)  # fmt: skip
def mget(ctx: Ctx, args: list[bytes]) -> Reply:
    values = (ctx.db.get(key, ctx.now_ms) for key in args)
    return [value if isinstance(value, bytes) else None for value in values]


def _check_pairs(args: list[bytes], name: str) -> None:
    if len(args) % 2:
        raise CommandError(errors.wrong_number_of_arguments(name))


@command(
    "mset", -3, "write denyoom", (1, -1, 2), "write string slow", "string", "1.0.1",
    "Stores strings at several keys at once.", "O(N) where N is the number of keys.",
    key_flags="OW update",
)  # fmt: skip
def mset(ctx: Ctx, args: list[bytes]) -> Reply:
    _check_pairs(args, "mset")
    for i in range(0, len(args), 2):
        ctx.db.set(args[i], args[i + 1], ctx.index)
        notify(ctx, STRING, b"set", args[i])
    return OK


@command(
    "msetnx", -3, "write denyoom", (1, -1, 2), "write string slow", "string", "1.0.1",
    "Stores strings at several keys at once, only if none of the keys exists.",
    "O(N) where N is the number of keys.", key_flags="OW insert",
)  # fmt: skip
def msetnx(ctx: Ctx, args: list[bytes]) -> Reply:
    _check_pairs(args, "msetnx")
    if any(ctx.db.contains(args[i], ctx.now_ms) for i in range(0, len(args), 2)):
        return 0
    for i in range(0, len(args), 2):
        ctx.db.set(args[i], args[i + 1], ctx.index)
        notify(ctx, STRING, b"set", args[i])
    return 1


# -- counters -----------------------------------------------------------------------------


def _incr_by(ctx: Ctx, key: bytes, delta: int) -> Reply:
    current = get_string(ctx, key)
    value = 0 if current is None else parse_int(current)
    if (delta < 0 and value < 0 and delta < LLONG_MIN - value) or (
        delta > 0 and value > 0 and delta > LLONG_MAX - value
    ):
        raise CommandError(errors.INCR_OVERFLOW)
    value += delta
    ctx.db.set(key, b"%d" % value, ctx.index, keep_ttl=True)
    notify(ctx, STRING, b"incrby", key)
    return value


@command(
    "incr", 2, "write denyoom fast", (1, 1, 1), "write string fast", "string", "1.0.0",
    "Adds one to the integer at a key (a missing key counts as 0).", key_flags="RW access update",
)  # fmt: skip
def incr(ctx: Ctx, args: list[bytes]) -> Reply:
    return _incr_by(ctx, args[0], 1)


@command(
    "decr", 2, "write denyoom fast", (1, 1, 1), "write string fast", "string", "1.0.0",
    "Subtracts one from the integer at a key (a missing key counts as 0).",
    key_flags="RW access update",
)  # fmt: skip
def decr(ctx: Ctx, args: list[bytes]) -> Reply:
    return _incr_by(ctx, args[0], -1)


@command(
    "incrby", 3, "write denyoom fast", (1, 1, 1), "write string fast", "string", "1.0.0",
    "Adds an integer to the integer at a key (a missing key counts as 0).",
    key_flags="RW access update",
)  # fmt: skip
def incrby(ctx: Ctx, args: list[bytes]) -> Reply:
    return _incr_by(ctx, args[0], parse_int(args[1]))


@command(
    "decrby", 3, "write denyoom fast", (1, 1, 1), "write string fast", "string", "1.0.0",
    "Subtracts an integer from the integer at a key (a missing key counts as 0).",
    key_flags="RW access update",
)  # fmt: skip
def decrby(ctx: Ctx, args: list[bytes]) -> Reply:
    amount = parse_int(args[1])
    if amount == LLONG_MIN:
        raise CommandError(errors.DECRBY_OVERFLOW)
    return _incr_by(ctx, args[0], -amount)


@command(
    "incrbyfloat", 3, "write denyoom fast", (1, 1, 1), "write string fast", "string",
    "2.6.0", "Adds a floating-point number to the number at a key (a missing key counts as 0).",
    key_flags="RW access update",
)  # fmt: skip
def incrbyfloat(ctx: Ctx, args: list[bytes]) -> Reply:
    current = get_string(ctx, args[0])
    value = Fraction(0) if current is None else longdouble.parse(current)
    increment = longdouble.parse(args[1])
    if value is None or increment is None:
        raise CommandError(errors.NOT_A_VALID_FLOAT)
    total = longdouble.add(value, increment)
    if isinstance(total, float):
        raise CommandError(errors.INCR_NAN_OR_INFINITY)
    text = PlainString(longdouble.format_human(total))
    ctx.db.set(args[0], text, ctx.index, keep_ttl=True)
    notify(ctx, STRING, b"incrbyfloat", args[0])
    return text


# -- parts of strings ---------------------------------------------------------------------


def _check_length(size: int, more: int) -> None:
    if size + more > STRING_BYTES_MAX:
        raise CommandError(errors.STRING_TOO_LONG)


@command(
    "append", 3, "write denyoom fast", (1, 1, 1), "write string fast", "string", "2.0.0",
    "Adds bytes to the end of the string at a key (creating it) and answers its length.",
    "O(1) amortized for small appends (the new string is copied here).", key_flags="RW insert",
)  # fmt: skip
def append(ctx: Ctx, args: list[bytes]) -> Reply:
    key, tail = args
    current = get_string(ctx, key)
    if current is None:
        ctx.db.set(key, tail, ctx.index)
        notify(ctx, STRING, b"append", key)
        return len(tail)
    _check_length(len(current), len(tail))
    grown = RawString(current + tail)
    ctx.db.set(key, grown, ctx.index, keep_ttl=True)
    notify(ctx, STRING, b"append", key)
    return len(grown)


@command(
    "strlen", 2, "readonly fast", (1, 1, 1), "read string fast", "string", "2.2.0",
    "Answers the length in bytes of the string at a key (0 for a missing key).", key_flags="RO",
)  # fmt: skip
def strlen(ctx: Ctx, args: list[bytes]) -> Reply:
    value = get_string(ctx, args[0])
    return 0 if value is None else len(value)


def _getrange(ctx: Ctx, args: list[bytes]) -> Reply:
    start = parse_int(args[1])
    end = parse_int(args[2])
    value = get_string(ctx, args[0])
    if value is None:
        return b""
    size = len(value)
    if start < 0 and end < 0 and start > end:
        return b""
    if start < 0:
        start = max(size + start, 0)
    if end < 0:
        end = max(size + end, 0)
    end = min(end, size - 1)
    if start > end or size == 0:
        return b""
    return bytes(value[start : end + 1])


_RANGE_COMPLEXITY: Final = "O(N) where N is the length of the returned part."


@command(
    "getrange", 4, "readonly", (1, 1, 1), "read string slow", "string", "2.4.0",
    "Answers the bytes of a string between two offsets (both included; negative offsets "
    "count from the end).", _RANGE_COMPLEXITY,
)  # fmt: skip
def getrange(ctx: Ctx, args: list[bytes]) -> Reply:
    return _getrange(ctx, args)


@command(
    "substr", 4, "readonly", (1, 1, 1), "read string slow", "string", "1.0.0",
    "Answers the bytes of a string between two offsets (deprecated: GETRANGE).",
    _RANGE_COMPLEXITY,
)  # fmt: skip
def substr(ctx: Ctx, args: list[bytes]) -> Reply:
    return _getrange(ctx, args)


@command(
    "setrange", 4, "write denyoom", (1, 1, 1), "write string slow", "string", "2.2.0",
    "Overwrites part of the string at a key from an offset on, padding with zero bytes, and "
    "answers the new length.",
    "O(1) plus the copy of the value; O(M) when the string grows to M bytes.",
)  # fmt: skip
def setrange(ctx: Ctx, args: list[bytes]) -> Reply:
    key, patch = args[0], args[2]
    offset = parse_int(args[1])
    if offset < 0:
        raise CommandError(errors.OFFSET_OUT_OF_RANGE)
    current = get_string(ctx, key)
    if current is None:
        if not patch:
            return 0
        _check_length(offset, len(patch))
        created = RawString(bytes(offset) + patch)
        ctx.db.set(key, created, ctx.index)
        notify(ctx, STRING, b"setrange", key)
        return len(created)
    if not patch:
        return len(current)
    _check_length(offset, len(patch))
    buffer = bytearray(current)
    end = offset + len(patch)
    if len(buffer) < end:
        buffer.extend(bytes(end - len(buffer)))
    buffer[offset:end] = patch
    patched = RawString(buffer)
    ctx.db.set(key, patched, ctx.index, keep_ttl=True)
    notify(ctx, STRING, b"setrange", key)
    return len(patched)


# -- LCS ----------------------------------------------------------------------------------

_IDX, _LEN, _WITHMATCHLEN = token("IDX"), token("LEN"), token("WITHMATCHLEN")
_MINMATCHLEN: Final = valued("MINMATCHLEN", parse_int)
_LCS_OPTIONS: Final = ArgSpec(
    _IDX, _LEN, _WITHMATCHLEN, _MINMATCHLEN,
    conflicts=[Conflict(_IDX, (_LEN,), errors.LCS_LEN_AND_IDX)],
)  # fmt: skip


@command(
    "lcs", -3, "readonly", (1, 2, 1), "read string slow", "string", "7.0.0",
    "Finds the longest common subsequence of the strings at two keys.",
    "O(N*M) where N and M are the lengths of the two strings.",
)  # fmt: skip
def lcs(ctx: Ctx, args: list[bytes]) -> Reply:
    first = ctx.db.get(args[0], ctx.now_ms)
    second = ctx.db.get(args[1], ctx.now_ms)
    if not isinstance(first, bytes | None) or not isinstance(second, bytes | None):
        raise CommandError(errors.LCS_NOT_STRINGS)
    a = first or b""
    b = second or b""
    parsed = _LCS_OPTIONS.parse(args, 2)
    want_idx, want_len = _IDX in parsed, _LEN in parsed
    if len(a) >= _UINT32_MAX - 1 or len(b) >= _UINT32_MAX - 1:
        raise CommandError(errors.LCS_STRING_TOO_LONG)
    # Redis allocates a (len(a)+1) x (len(b)+1) table of 4-byte cells and refuses beyond
    # proto-max-bulk-len; the bit-parallel table here is 32 times smaller, same limit.
    if (len(a) + 1) * (len(b) + 1) * 4 > STRING_BYTES_MAX:
        raise CommandError(errors.LCS_TABLE_TOO_BIG)
    table = _LcsTable(a, b)
    if want_len:
        return table.length(len(a), len(b))
    min_match_len = max(parsed.get(_MINMATCHLEN, 0), 0)
    common, matches = _lcs_walk(table, a, b, min_match_len, _WITHMATCHLEN in parsed)
    if not want_idx:
        return common
    return {b"matches": matches, b"len": table.length(len(a), len(b))}


class _LcsTable:
    """LCS lengths of all prefix pairs, one bit per cell (Allison-Dix / Hyyro).

    rows[j] has bit i clear where LCS(a[:i+1], b[:j]) is one more than LCS(a[:i], b[:j]),
    so LCS(a[:i], b[:j]) is the number of clear bits among the lowest i bits of rows[j].
    Each row costs a few big-integer operations instead of len(a) Python steps.
    """

    def __init__(self, a: bytes, b: bytes) -> None:
        full = (1 << len(a)) - 1
        positions: dict[int, int] = {}
        for byte in set(a):
            # bit i set where a[i] == byte: the translate runs in C, the int() is linear
            marks = a.translate(bytes(0x31 if c == byte else 0x30 for c in range(256)))
            positions[byte] = int(marks[::-1], 2)
        row = full
        self.rows = [row]
        for byte in b:
            hits = row & positions.get(byte, 0)
            row = ((row + hits) | (row - hits)) & full
            self.rows.append(row)

    def length(self, i: int, j: int) -> int:
        return i - (self.rows[j] & ((1 << i) - 1)).bit_count()


def _lcs_walk(
    table: _LcsTable, a: bytes, b: bytes, min_match_len: int, with_match_len: bool
) -> tuple[bytes, list[Reply]]:
    """The LCS string and its matching ranges, walking back from the end of both strings
    and breaking ties the way Redis does, so the same string and ranges come out."""
    common = bytearray()
    matches: list[Reply] = []
    i, j = len(a), len(b)
    unset = len(a)  # a_start == len(a): no range open
    a_start, a_end, b_start, b_end = unset, 0, 0, 0
    while i > 0 and j > 0:
        emit = False
        if a[i - 1] == b[j - 1]:
            common.append(a[i - 1])
            if a_start == unset:
                a_start = a_end = i - 1
                b_start = b_end = j - 1
            elif a_start == i and b_start == j:  # extends the open range backwards
                a_start -= 1
                b_start -= 1
            else:
                emit = True
            if a_start == 0 or b_start == 0:
                emit = True
            i -= 1
            j -= 1
        else:
            if table.length(i - 1, j) > table.length(i, j - 1):
                i -= 1
            else:
                j -= 1
            if a_start != unset:
                emit = True
        if emit:
            match_len = a_end - a_start + 1
            if min_match_len == 0 or match_len >= min_match_len:
                match: list[Reply] = [[a_start, a_end], [b_start, b_end]]
                if with_match_len:
                    match.append(match_len)
                matches.append(match)
            a_start = unset
    common.reverse()
    return bytes(common), matches
