"""Streams (Redis t_stream.c), the entries: XADD, XRANGE, XREVRANGE, XLEN, XDEL, XTRIM,
XSETID, and the ID and trimming arguments every stream command reads. Reading (XREAD,
XREADGROUP) is in `streamread`, consumer groups and XINFO in `streamgroups`.

Determinism: XADD's automatic IDs come from `ctx.now_ms`, the record's time inside apply,
so every shim assigns the same ID. The node layout (which decides ``~`` trimming) follows
the keyspace's `stream_node_max_bytes` and `stream_node_max_entries`, the same on every
shim (see `cacheshim.types.streamvalue`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from cacheshim.commands import Ctx, command
from cacheshim.commands.args import parse_int
from cacheshim.commands.argspec import option
from cacheshim.notify import STREAM, notify
from cacheshim.protocol import errors
from cacheshim.protocol.errors import CommandError
from cacheshim.protocol.resp import NULL_ARRAY, OK, Reply
from cacheshim.types.keyspace import Database
from cacheshim.types.streamvalue import (
    ID_MAX,
    ID_MIN,
    U64_MAX,
    Stream,
    StreamID,
    decr_id,
    format_id,
    incr_id,
)

_SPACES: Final = b" \t\n\v\f\r"
# Redis's trimming work bound for ``~`` without LIMIT: 100 nodes' worth, within these.
_APPROX_LIMIT_MIN: Final = 10_000
_APPROX_LIMIT_MAX: Final = 1_000_000


# -- IDs ------------------------------------------------------------------------------------


def _strtoull(text: bytes) -> int | None:
    """string2ull: a strict 64-bit integer that is not negative, else what strtoull reads
    of the whole text (leading spaces, a sign, digits; a minus wraps around), else None."""
    if not text:
        return None
    strict = _strict_int(text)
    if strict is not None:
        return strict if strict >= 0 else None
    body = text.lstrip(_SPACES)
    negative = False
    if body[:1] in (b"+", b"-"):
        negative = body[:1] == b"-"
        body = body[1:]
    if not body or not body.isdigit():
        return None
    number = int(body)
    if number > U64_MAX:
        return None
    return (-number) % (U64_MAX + 1) if negative else number


def _strict_int(text: bytes) -> int | None:
    if not 0 < len(text) <= 20:
        return None
    digits = text[1:] if text[:1] == b"-" else text
    if not digits.isdigit() or (digits[:1] == b"0" and len(text) > 1):
        return None
    number = int(text)
    return number if -(2**63) <= number < 2**63 else None


def parse_id(
    arg: bytes, missing_seq: int = 0, strict: bool = False, seq_star: bool = False
) -> tuple[StreamID, bool]:
    """streamGenericParseIDOrReply: ``ms-seq``, ``ms`` (seq = missing_seq), ``-`` and ``+``
    (unless strict), ``ms-*`` (seq_star, XADD: the second value False). Raises Redis's
    invalid ID error."""
    if len(arg) > 127:
        raise CommandError(errors.STREAM_INVALID_ID)
    nul = arg.find(0)
    if nul >= 0:
        arg = arg[:nul]
    if arg == b"-" or arg == b"+":
        if strict:
            raise CommandError(errors.STREAM_INVALID_ID)
        return (ID_MIN if arg == b"-" else ID_MAX), True
    ms_text, dash, seq_text = arg.partition(b"-")
    ms = _strtoull(ms_text)
    if ms is None:
        raise CommandError(errors.STREAM_INVALID_ID)
    if not dash:
        return (ms, missing_seq), True
    if seq_star and seq_text == b"*":
        return (ms, 0), False
    seq = _strtoull(seq_text)
    if seq is None:
        raise CommandError(errors.STREAM_INVALID_ID)
    return (ms, seq), True


def parse_strict_id(arg: bytes) -> StreamID:
    return parse_id(arg, strict=True)[0]


def parse_interval(arg: bytes, missing_seq: int) -> tuple[StreamID, bool]:
    """A range bound: ``(`` before a strict ID excludes it."""
    if len(arg) > 1 and arg[:1] == b"(":
        return parse_id(arg[1:], missing_seq, strict=True)[0], True
    return parse_id(arg, missing_seq)[0], False


def parse_range(start_arg: bytes, end_arg: bytes) -> tuple[StreamID, StreamID] | None:
    """XRANGE's start and end, exclusive bounds moved inward; errors as Redis's, in its
    order."""
    start, start_ex = parse_interval(start_arg, 0)
    if start_ex:
        moved = incr_id(start)
        if moved is None:
            raise CommandError(errors.STREAM_INVALID_START)
        start = moved
    end, end_ex = parse_interval(end_arg, U64_MAX)
    if end_ex:
        moved = decr_id(end)
        if moved is None:
            raise CommandError(errors.STREAM_INVALID_END)
        end = moved
    return start, end


def entry_reply(stream_id: StreamID, data: tuple[bytes, ...]) -> Reply:
    return [format_id(stream_id), list(data)]


def stream_of(db: Database, key: bytes, now_ms: int) -> Stream | None:
    return db.get_typed(key, now_ms, Stream)


def node_limits(ctx: Ctx) -> tuple[int, int]:
    keyspace = ctx.keyspace
    return keyspace.stream_node_max_bytes, keyspace.stream_node_max_entries


# -- trimming arguments (XADD and XTRIM) ------------------------------------------------------


@dataclass
class TrimArgs:
    maxlen: int | None = None
    minid: StreamID | None = None
    approx: bool = False
    limit: int = 0
    id_at: int = -1  # XADD: where the ID is
    nomkstream: bool = False

    @property
    def strategy(self) -> bool:
        return self.maxlen is not None or self.minid is not None


def parse_trim_args(args: list[bytes], xadd: bool, node_max_entries: int) -> TrimArgs:
    """streamParseAddOrTrimArgsOrReply over args (the key first): the options, and for XADD
    where its ID is."""
    parsed = TrimArgs()
    limit_given = False
    i = 1
    while i < len(args):
        more = len(args) - 1 - i
        arg = args[i]
        word = option(arg)
        if xadd and arg == b"*":
            break
        if word in (b"MAXLEN", b"MINID") and more:
            if parsed.strategy:
                raise CommandError(errors.STREAM_MAXLEN_AND_MINID)
            parsed.approx = False
            following = args[i + 1]
            if more >= 2 and following in (b"~", b"="):
                parsed.approx = following == b"~"
                i += 1
            value = args[i + 1]
            if word == b"MAXLEN":
                maxlen = parse_int(value)
                if maxlen < 0:
                    raise CommandError(errors.STREAM_MAXLEN_NEGATIVE)
                parsed.maxlen = maxlen
            else:
                parsed.minid = parse_strict_id(value)
            i += 2
            continue
        if word == b"LIMIT" and more:
            limit = parse_int(args[i + 1])
            if limit < 0:
                raise CommandError(errors.STREAM_LIMIT_NEGATIVE)
            parsed.limit = limit
            limit_given = True
            i += 2
            continue
        if xadd and word == b"NOMKSTREAM":
            parsed.nomkstream = True
            i += 1
            continue
        if xadd:  # the ID (the fields follow it)
            parsed.id_at = i
            break
        raise CommandError(errors.SYNTAX_ERROR)
    if xadd and parsed.id_at < 0:  # at "*", or past the end (then the arity check fails)
        parsed.id_at = i
    if parsed.limit and not parsed.strategy:
        raise CommandError(errors.STREAM_LIMIT_WITHOUT_STRATEGY)
    if not xadd and not parsed.strategy:
        raise CommandError(errors.STREAM_XTRIM_WITHOUT_STRATEGY)
    if limit_given:
        if not parsed.approx:
            raise CommandError(errors.STREAM_LIMIT_WITHOUT_APPROX)
    elif parsed.approx:
        limit = 100 * node_max_entries
        if limit <= 0:
            limit = _APPROX_LIMIT_MIN
        parsed.limit = min(limit, _APPROX_LIMIT_MAX)
    else:
        parsed.limit = 0
    return parsed


def trim(stream: Stream, parsed: TrimArgs) -> int:
    return stream.trim(parsed.maxlen, parsed.minid, parsed.approx, parsed.limit)


# -- commands ---------------------------------------------------------------------------------


@command(
    "xadd", -5, "write denyoom fast", (1, 1, 1), "write stream fast", "stream", "5.0.0",
    "Appends an entry to a stream (creating it unless NOMKSTREAM), trims it if asked, and "
    "answers the entry's ID.", "O(1) when adding a new entry, O(N) when trimming where N "
    "being the number of entries evicted.", tips="nondeterministic_output",
    key_flags="RW update",
)  # fmt: skip
def xadd(ctx: Ctx, args: list[bytes]) -> Reply:
    max_bytes, max_entries = node_limits(ctx)
    parsed = parse_trim_args(args, True, max_entries)
    id_at = parsed.id_at
    given: StreamID | None = None
    seq_given = True
    if id_at < len(args) and args[id_at] != b"*":
        given, seq_given = parse_id(args[id_at], strict=True, seq_star=True)
    pairs = args[id_at + 1 :]
    if len(pairs) < 2 or len(pairs) % 2:
        raise CommandError(errors.wrong_number_of_arguments("xadd"))
    if given == ID_MIN and seq_given:
        raise CommandError(errors.STREAM_XADD_ID_ZERO)
    db = ctx.db
    key = args[0]
    stream = stream_of(db, key, ctx.now_ms)
    if stream is None:
        if parsed.nomkstream:
            return None
        stream = Stream()
        db.set(key, stream, ctx.index)
    if stream.last_id == ID_MAX:
        raise CommandError(errors.STREAM_EXHAUSTED)
    last = stream.last_id
    if given is None:  # streamNextID, with the record's time
        new_id = (ctx.now_ms, 0) if ctx.now_ms > last[0] else incr_id(last)
    elif not seq_given and given[0] == last[0]:
        new_id = None if last[1] == U64_MAX else (last[0], last[1] + 1)
    else:
        new_id = given
    if new_id is None or new_id <= last:
        raise CommandError(errors.STREAM_XADD_ID_TOO_SMALL)
    stream.append(new_id, tuple(pairs), max_bytes, max_entries)
    notify(ctx, STREAM, b"xadd", key)
    if parsed.strategy and trim(stream, parsed):
        notify(ctx, STREAM, b"xtrim", key)
    db.touch_changed(key, ctx.index)
    return format_id(new_id)


def _range(ctx: Ctx, args: list[bytes], reverse: bool) -> Reply:
    start_arg, end_arg = (args[2], args[1]) if reverse else (args[1], args[2])
    bounds = parse_range(start_arg, end_arg)
    assert bounds is not None
    start, end = bounds
    count = -1
    i = 3
    while i < len(args):
        if option(args[i]) == b"COUNT" and i + 1 < len(args):
            count = max(parse_int(args[i + 1]), 0)
            i += 2
        else:
            raise CommandError(errors.SYNTAX_ERROR)
    stream = stream_of(ctx.db, args[0], ctx.now_ms)
    if stream is None:
        return []
    if count == 0:
        return NULL_ARRAY
    out: list[Reply] = []
    if start > end:
        return out
    for stream_id, data in stream.range(start, end, reverse):
        out.append(entry_reply(stream_id, data))
        if len(out) == count:
            break
    return out


@command(
    "xrange", -4, "readonly", (1, 1, 1), "read stream slow", "stream", "5.0.0",
    "Answers the entries of a stream whose IDs are in a range, oldest first.",
    "O(N) with N being the number of elements being returned. If N is constant (e.g. always "
    "asking for the first 10 elements with COUNT), you can consider it O(1).",
    key_flags="RO access",
)  # fmt: skip
def xrange(ctx: Ctx, args: list[bytes]) -> Reply:
    return _range(ctx, args, reverse=False)


@command(
    "xrevrange", -4, "readonly", (1, 1, 1), "read stream slow", "stream", "5.0.0",
    "Answers the entries of a stream whose IDs are in a range, newest first.",
    "O(N) with N being the number of elements returned. If N is constant (e.g. always asking "
    "for the first 10 elements with COUNT), you can consider it O(1).",
    key_flags="RO access",
)  # fmt: skip
def xrevrange(ctx: Ctx, args: list[bytes]) -> Reply:
    return _range(ctx, args, reverse=True)


@command(
    "xlen", 2, "readonly fast", (1, 1, 1), "read stream fast", "stream", "5.0.0",
    "Answers the number of entries of a stream (0 for a missing key).", key_flags="RO",
)  # fmt: skip
def xlen(ctx: Ctx, args: list[bytes]) -> Reply:
    stream = stream_of(ctx.db, args[0], ctx.now_ms)
    return 0 if stream is None else len(stream)


@command(
    "xdel", -3, "write fast", (1, 1, 1), "write stream fast", "stream", "5.0.0",
    "Deletes entries of a stream by ID and answers how many it found.",
    "O(1) for each single item to delete in the stream, regardless of the stream size.",
    key_flags="RW delete",
)  # fmt: skip
def xdel(ctx: Ctx, args: list[bytes]) -> Reply:
    db = ctx.db
    stream = stream_of(db, args[0], ctx.now_ms)
    if stream is None:
        return 0
    ids = [parse_strict_id(arg) for arg in args[1:]]
    deleted = 0
    first_gone = False
    for stream_id in ids:
        if stream.delete(stream_id):
            if stream_id == stream.first_id:
                first_gone = True
            if stream_id > stream.max_deleted_id:
                stream.max_deleted_id = stream_id
            deleted += 1
    if deleted:
        if not len(stream) or first_gone:
            stream.refresh_first_id()
        db.touch_changed(args[0], ctx.index)
        notify(ctx, STREAM, b"xdel", args[0])
    return deleted


@command(
    "xtrim", -4, "write", (1, 1, 1), "write stream slow", "stream", "5.0.0",
    "Trims a stream to a length (MAXLEN) or to the entries from an ID on (MINID); answers "
    "how many entries it removed.", "O(N), with N being the number of evicted entries. "
    "Constant times are very small however, since entries are organized in macro nodes "
    "containing multiple entries that can be released with a single deallocation.",
    tips="nondeterministic_output", key_flags="RW delete",
)  # fmt: skip
def xtrim(ctx: Ctx, args: list[bytes]) -> Reply:
    parsed = parse_trim_args(args, False, node_limits(ctx)[1])
    db = ctx.db
    stream = stream_of(db, args[0], ctx.now_ms)
    if stream is None:
        return 0
    deleted = trim(stream, parsed)
    if deleted:
        db.touch_changed(args[0], ctx.index)
        notify(ctx, STREAM, b"xtrim", args[0])
    return deleted


@command(
    "xsetid", -3, "write denyoom fast", (1, 1, 1), "write stream fast", "stream", "5.0.0",
    "Sets a stream's last ID (and its entries-added counter and largest deleted ID).",
    key_flags="RW update",
)  # fmt: skip
def xsetid(ctx: Ctx, args: list[bytes]) -> Reply:
    new_id = parse_strict_id(args[1])
    entries_added = -1
    max_deleted = ID_MIN
    i = 2
    while i < len(args):
        word = option(args[i])
        more = len(args) - 1 - i
        if word == b"ENTRIESADDED" and more:
            entries_added = parse_int(args[i + 1])
            if entries_added < 0:
                raise CommandError(errors.STREAM_ENTRIES_ADDED_NEGATIVE)
        elif word == b"MAXDELETEDID" and more:
            max_deleted = parse_strict_id(args[i + 1])
            if new_id < max_deleted:
                raise CommandError(errors.STREAM_XSETID_BELOW_MAX_DELETED)
        else:
            raise CommandError(errors.SYNTAX_ERROR)
        i += 2
    db = ctx.db
    stream = stream_of(db, args[0], ctx.now_ms)
    if stream is None:
        raise CommandError(errors.NO_SUCH_KEY)
    if len(stream):
        top = stream.last_live_id()
        assert top is not None
        if new_id < top:
            raise CommandError(errors.STREAM_XSETID_BELOW_TOP)
        if entries_added != -1 and len(stream) > entries_added:
            raise CommandError(errors.STREAM_XSETID_ENTRIES_ADDED_SMALL)
    stream.last_id = new_id
    if entries_added != -1:
        stream.entries_added = entries_added
    if max_deleted != ID_MIN:
        stream.max_deleted_id = max_deleted
    db.touch_changed(args[0], ctx.index)
    notify(ctx, STREAM, b"xsetid", args[0])
    return OK
