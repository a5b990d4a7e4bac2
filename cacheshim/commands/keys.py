"""Generic key commands (Redis db.c, expire.c, object.c), Redis 7.0's replies and errors.

They work on keys of any type: TYPE, OBJECT and COPY ask the value's kind
(`cacheshim.types.keyspace.kind_of`) what to answer, so new types only register themselves.
Write handlers run only inside apply, where "now" is the record's time; read handlers never
change the keyspace, they hide keys expired by their own clock.
"""

from __future__ import annotations

from typing import Final

from cacheshim.commands import Ctx, command, container
from cacheshim.commands.args import parse_db_index, parse_int, parse_scan_options
from cacheshim.commands.argspec import ArgSpec, Conflict, token, valued
from cacheshim.notify import GENERIC, notify
from cacheshim.protocol import errors
from cacheshim.protocol.errors import CommandError
from cacheshim.protocol.resp import OK, Reply, Status
from cacheshim.types.glob import Pattern
from cacheshim.types.keyspace import Database, Value, kind_of

LLONG_MAX: Final = 2**63 - 1
LLONG_MIN: Final = -(2**63)
ULONG_MAX: Final = 2**64 - 1

# -- delete, exists, type -------------------------------------------------------------------


def _delete(ctx: Ctx, keys: list[bytes]) -> int:
    removed = 0
    for key in keys:
        if ctx.db.contains(key, ctx.now_ms) and ctx.db.delete(key, ctx.index):
            notify(ctx, GENERIC, b"del", key)
            removed += 1
    return removed


@command(
    "del", -2, "write", (1, -1, 1), "keyspace write slow", "generic", "1.0.0",
    "Deletes one or more keys.", "O(N) where N is the number of keys that will be removed.",
    key_flags="RM delete",
)  # fmt: skip
def del_(ctx: Ctx, args: list[bytes]) -> Reply:
    return _delete(ctx, args)


@command(
    "unlink", -2, "write fast", (1, -1, 1), "keyspace write fast", "generic", "4.0.0",
    "Deletes keys like DEL (Redis frees big values in the background; here, as DEL).",
    "O(1) for each key removed.", key_flags="RM delete",
)  # fmt: skip
def unlink(ctx: Ctx, args: list[bytes]) -> Reply:
    return _delete(ctx, args)


@command(
    "exists", -2, "readonly fast", (1, -1, 1), "keyspace read fast", "generic", "1.0.0",
    "Counts how many of the given keys exist (a key named twice counts "
    "twice).", "O(N) where N is the number of keys to check.",
    key_flags="RO",
)  # fmt: skip
def exists(ctx: Ctx, args: list[bytes]) -> Reply:
    return sum(1 for key in args if ctx.db.contains(key, ctx.now_ms))


@command(
    "touch", -2, "readonly fast", (1, -1, 1), "keyspace read fast", "generic", "3.2.1",
    "Counts the given keys that exist (Redis also refreshes their last access time).",
    "O(N) where N is the number of keys.", key_flags="RO",
)  # fmt: skip
def touch(ctx: Ctx, args: list[bytes]) -> Reply:
    return sum(1 for key in args if ctx.db.contains(key, ctx.now_ms))


@command(
    "type", 2, "readonly fast", (1, 1, 1), "keyspace read fast", "generic", "1.0.0",
    "Answers the type of the value at a key, or none.", key_flags="RO",
)  # fmt: skip
def type_(ctx: Ctx, args: list[bytes]) -> Reply:
    value = ctx.db.get(args[0], ctx.now_ms)
    return Status("none" if value is None else kind_of(value).name)


# -- expiry ---------------------------------------------------------------------------------


_NX, _XX, _GT, _LT = map(token, ("NX", "XX", "GT", "LT"))
_EXPIRE_OPTIONS: Final = ArgSpec(
    _NX, _XX, _GT, _LT,
    conflicts=[
        Conflict(_NX, (_XX, _GT, _LT), errors.EXPIRE_NX_AND_OTHERS),
        Conflict(_GT, (_LT,), errors.EXPIRE_GT_AND_LT),
    ],
    unknown=errors.unsupported_option,
)  # fmt: skip


def _expire(ctx: Ctx, args: list[bytes], name: str, seconds: bool, relative: bool) -> Reply:
    """EXPIRE, PEXPIRE, EXPIREAT, PEXPIREAT (expireGenericCommand)."""
    key = args[0]
    flags = _EXPIRE_OPTIONS.parse(args, 2)
    when = parse_int(args[1])
    if seconds:
        if when > LLONG_MAX // 1000 or when < -(LLONG_MAX // 1000):
            raise CommandError(errors.invalid_expire_time(name))
        when *= 1000
    base = ctx.now_ms if relative else 0
    if when > LLONG_MAX - base:
        raise CommandError(errors.invalid_expire_time(name))
    when += base
    db = ctx.db
    if not db.contains(key, ctx.now_ms):
        return 0
    current = db.expires.get(key)
    if _NX in flags and current is not None:
        return 0
    if _XX in flags and current is None:
        return 0
    if _GT in flags and (current is None or when <= current):
        return 0  # no expiry counts as an infinite one
    if _LT in flags and current is not None and when >= current:
        return 0
    if when <= ctx.now_ms:
        db.delete(key, ctx.index)  # already past: the key goes now
        notify(ctx, GENERIC, b"del", key)
    else:
        db.set_expiry(key, when, ctx.index)
        notify(ctx, GENERIC, b"expire", key)
    return 1


_EXPIRE_SUMMARY_TAIL: Final = (
    " NX, XX, GT and LT: only if it has none, has one, the new one is later, is sooner."
)


@command(
    "expire", -3, "write fast", (1, 1, 1), "keyspace write fast", "generic", "1.0.0",
    "Gives a key a time to live in seconds." + _EXPIRE_SUMMARY_TAIL,
)  # fmt: skip
def expire(ctx: Ctx, args: list[bytes]) -> Reply:
    return _expire(ctx, args, "expire", seconds=True, relative=True)


@command(
    "pexpire", -3, "write fast", (1, 1, 1), "keyspace write fast", "generic", "2.6.0",
    "Gives a key a time to live in milliseconds." + _EXPIRE_SUMMARY_TAIL,
)  # fmt: skip
def pexpire(ctx: Ctx, args: list[bytes]) -> Reply:
    return _expire(ctx, args, "pexpire", seconds=False, relative=True)


@command(
    "expireat", -3, "write fast", (1, 1, 1), "keyspace write fast", "generic", "1.2.0",
    "Makes a key expire at a unix time in seconds." + _EXPIRE_SUMMARY_TAIL,
)  # fmt: skip
def expireat(ctx: Ctx, args: list[bytes]) -> Reply:
    return _expire(ctx, args, "expireat", seconds=True, relative=False)


@command(
    "pexpireat", -3, "write fast", (1, 1, 1), "keyspace write fast", "generic", "2.6.0",
    "Makes a key expire at a unix time in milliseconds." + _EXPIRE_SUMMARY_TAIL,
)  # fmt: skip
def pexpireat(ctx: Ctx, args: list[bytes]) -> Reply:
    return _expire(ctx, args, "pexpireat", seconds=False, relative=False)


def _ttl(ctx: Ctx, key: bytes, in_ms: bool, absolute: bool) -> Reply:
    """TTL, PTTL, EXPIRETIME, PEXPIRETIME (ttlGenericCommand)."""
    if not ctx.db.contains(key, ctx.now_ms):
        return -2
    when = ctx.db.expires.get(key)
    if when is None:
        return -1
    left = max(when if absolute else when - ctx.now_ms, 0)
    return left if in_ms else (left + 500) // 1000


@command(
    "ttl", 2, "readonly fast", (1, 1, 1), "keyspace read fast", "generic", "1.0.0",
    "Answers a key's time to live in seconds (-1: no expiry, -2: no key).",
)  # fmt: skip
def ttl(ctx: Ctx, args: list[bytes]) -> Reply:
    return _ttl(ctx, args[0], in_ms=False, absolute=False)


@command(
    "pttl", 2, "readonly fast", (1, 1, 1), "keyspace read fast", "generic", "2.6.0",
    "Answers a key's time to live in milliseconds (-1: no expiry, -2: no key).",
)  # fmt: skip
def pttl(ctx: Ctx, args: list[bytes]) -> Reply:
    return _ttl(ctx, args[0], in_ms=True, absolute=False)


@command(
    "expiretime", 2, "readonly fast", (1, 1, 1), "keyspace read fast", "generic", "7.0.0",
    "Answers the unix time in seconds at which a key expires (-1: never, -2: no key).",
)  # fmt: skip
def expiretime(ctx: Ctx, args: list[bytes]) -> Reply:
    return _ttl(ctx, args[0], in_ms=False, absolute=True)


@command(
    "pexpiretime", 2, "readonly fast", (1, 1, 1), "keyspace read fast", "generic", "7.0.0",
    "Answers the unix time in milliseconds at which a key expires (-1: never, -2: no key).",
)  # fmt: skip
def pexpiretime(ctx: Ctx, args: list[bytes]) -> Reply:
    return _ttl(ctx, args[0], in_ms=True, absolute=True)


@command(
    "persist", 2, "write fast", (1, 1, 1), "keyspace write fast", "generic", "2.2.0",
    "Removes a key's expiry, so that it stays.",
)  # fmt: skip
def persist(ctx: Ctx, args: list[bytes]) -> Reply:
    key = args[0]
    if ctx.db.contains(key, ctx.now_ms) and ctx.db.persist(key, ctx.index):
        notify(ctx, GENERIC, b"persist", key)
        return 1
    return 0


# -- rename, copy, move ---------------------------------------------------------------------


def _put(db: Database, key: bytes, value: Value, expires_ms: int | None, index: int) -> None:
    db.set(key, value, index)
    if expires_ms is not None:
        db.set_expiry(key, expires_ms, index)


def _rename(ctx: Ctx, args: list[bytes], nx: bool) -> Reply:
    source, target = args
    db = ctx.db
    value = db.get(source, ctx.now_ms)
    if value is None:
        raise CommandError(errors.NO_SUCH_KEY)
    if source == target:
        return 0 if nx else OK
    expires_ms = db.expires.get(source)
    if db.contains(target, ctx.now_ms):
        if nx:
            return 0
        db.delete(target, ctx.index)
    _put(db, target, value, expires_ms, ctx.index)
    db.delete(source, ctx.index)
    notify(ctx, GENERIC, b"rename_from", source)
    notify(ctx, GENERIC, b"rename_to", target)
    return 1 if nx else OK


@command(
    "rename", 3, "write", (1, 2, 1), "keyspace write slow", "generic", "1.0.0",
    "Renames a key, replacing any key of the new name.", key_flags="RW access delete|OW update",
)  # fmt: skip
def rename(ctx: Ctx, args: list[bytes]) -> Reply:
    return _rename(ctx, args, nx=False)


@command(
    "renamenx", 3, "write fast", (1, 2, 1), "keyspace write fast", "generic", "1.0.0",
    "Renames a key only if no key has the new name yet.", key_flags="RW access delete|OW insert",
)  # fmt: skip
def renamenx(ctx: Ctx, args: list[bytes]) -> Reply:
    return _rename(ctx, args, nx=True)


_DB: Final = valued("DB", parse_db_index)
_REPLACE: Final = token("REPLACE")
_COPY_OPTIONS: Final = ArgSpec(_REPLACE, _DB)


@command(
    "copy", -3, "write denyoom", (1, 2, 1), "keyspace write slow", "generic", "6.2.0",
    "Copies the value (and expiry) of a key to another key, in this or another database.",
    "O(N) for a collection of N nested items, O(1) for a string.", key_flags="RO access|OW update",
)  # fmt: skip
def copy(ctx: Ctx, args: list[bytes]) -> Reply:
    source, target = args[0], args[1]
    parsed = _COPY_OPTIONS.parse(args, 2)
    target_db_index = parsed.get(_DB, ctx.db_index)
    if target_db_index == ctx.db_index and source == target:
        raise CommandError(errors.SAME_OBJECT)
    value = ctx.db.get(source, ctx.now_ms)
    if value is None:
        return 0
    expires_ms = ctx.db.expires.get(source)
    target_db = ctx.keyspace.dbs[target_db_index]
    if target_db.contains(target, ctx.now_ms):
        if _REPLACE not in parsed:
            return 0
        target_db.delete(target, ctx.index)
    _put(target_db, target, kind_of(value).duplicate(value), expires_ms, ctx.index)
    notify(ctx, GENERIC, b"copy_to", target, target_db_index)
    return 1


@command(
    "move", 3, "write fast", (1, 1, 1), "keyspace write fast", "generic", "1.0.0",
    "Moves a key to another database, unless a key of that name is there already.",
    key_flags="RW access update",
)  # fmt: skip
def move(ctx: Ctx, args: list[bytes]) -> Reply:
    key = args[0]
    target_db_index = parse_db_index(args[1])
    if target_db_index == ctx.db_index:
        raise CommandError(errors.SAME_OBJECT)
    value = ctx.db.get(key, ctx.now_ms)
    if value is None:
        return 0
    target_db = ctx.keyspace.dbs[target_db_index]
    if target_db.contains(key, ctx.now_ms):
        return 0
    _put(target_db, key, value, ctx.db.expires.get(key), ctx.index)
    ctx.db.delete(key, ctx.index)
    notify(ctx, GENERIC, b"move_from", key)
    notify(ctx, GENERIC, b"move_to", key, target_db_index)
    return 1


# -- finding keys -----------------------------------------------------------------------------


@command(
    "keys", 2, "readonly", (0, 0, 0), "keyspace read slow dangerous", "generic", "1.0.0",
    "Answers every key that matches a glob-style pattern.",
    "O(N) with N the number of keys in the database.",
)  # fmt: skip
def keys(ctx: Ctx, args: list[bytes]) -> Reply:
    live = ctx.db.live_keys(ctx.now_ms)
    if args[0] == b"*":  # everything, the empty key included
        return live
    pattern = Pattern(args[0])
    return [key for key in live if pattern.match(key)]


def parse_cursor(arg: bytes) -> int:
    """A SCAN cursor as Redis reads it (strtoul): optional sign, decimal digits, no blank
    first; a negative number wraps around 2**64; an empty string is 0."""
    nul = arg.find(0)  # strtoul stops at a NUL byte, and Redis checks only that it did
    text = arg = arg if nul < 0 else arg[:nul]
    negative = text[:1] == b"-"
    if text[:1] in (b"+", b"-"):
        text = text[1:]
    if text and not text.isdigit():
        raise CommandError(errors.INVALID_CURSOR)
    if arg[:1] in (b"+", b"-") and not text:
        raise CommandError(errors.INVALID_CURSOR)  # a lone sign: strtoul reads nothing
    value = int(text) if text else 0
    if value > ULONG_MAX:
        raise CommandError(errors.INVALID_CURSOR)
    return (-value) & ULONG_MAX if negative else value


@command(
    "scan", -2, "readonly", (0, 0, 0), "keyspace read slow", "generic", "2.8.0",
    "Walks the keys of the database a few at a time with a cursor (MATCH, COUNT, TYPE).",
    "O(1) per call; O(N) for a whole walk of N keys.",
)  # fmt: skip
def scan(ctx: Ctx, args: list[bytes]) -> Reply:
    cursor = parse_cursor(args[0])
    count, pattern, type_name = parse_scan_options(args[1:], with_type=True)
    db = ctx.db
    cursor, found = db.scan(cursor, count)
    out: list[Reply] = []
    for key in found:
        if pattern is not None and not pattern.match(key):
            continue
        value = db.get(key, ctx.now_ms)
        if value is None:  # expired
            continue
        if type_name is not None and kind_of(value).name.upper().encode() != type_name:
            continue
        out.append(key)
    return [b"%d" % cursor, out]


@command(
    "randomkey", 1, "readonly", (0, 0, 0), "keyspace read slow", "generic", "1.0.0",
    "Answers a key picked at random, or nil when the database is empty.",
)  # fmt: skip
def randomkey(ctx: Ctx, args: list[bytes]) -> Reply:
    return ctx.db.random_key(ctx.now_ms, ctx.random())


# -- OBJECT ---------------------------------------------------------------------------------

container(
    "object", -2, "slow", "generic", "2.2.3",
    "Answers questions about how the value at a key is stored.",
)  # fmt: skip

_OBJECT_HELP: Final = (
    "OBJECT <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
    "ENCODING <key>",
    "    Return the kind of internal representation used in order to store the value",
    "    associated with a <key>.",
    "FREQ <key>",
    "    Return the access frequency index of the <key>. The returned integer is",
    "    proportional to the logarithm of the recent access frequency of the key.",
    "IDLETIME <key>",
    "    Return the idle time of the <key>, that is the approximated number of",
    "    seconds elapsed since the last access to the key.",
    "REFCOUNT <key>",
    "    Return the number of references of the value associated with the specified",
    "    <key>.",
    "HELP",
    "    Prints this help.",
)


def _object_value(ctx: Ctx, key: bytes) -> Value | None:
    return ctx.db.get(key, ctx.now_ms)


@command(
    "encoding", 3, "readonly", (2, 2, 1), "keyspace read slow", "generic", "2.2.3",
    "Answers how the value at a key is encoded (int, embstr, raw, listpack, ...).",
    container="object", key_flags="RO",
)  # fmt: skip
def object_encoding(ctx: Ctx, args: list[bytes]) -> Reply:
    value = _object_value(ctx, args[0])
    return None if value is None else kind_of(value).encoding(value).encode()


@command(
    "refcount", 3, "readonly", (2, 2, 1), "keyspace read slow", "generic", "2.2.3",
    "Answers how many references the value at a key has (shared small integers: INT_MAX).",
    container="object", key_flags="RO",
)  # fmt: skip
def object_refcount(ctx: Ctx, args: list[bytes]) -> Reply:
    value = _object_value(ctx, args[0])
    return None if value is None else kind_of(value).refcount(value)


@command(
    "idletime", 3, "readonly", (2, 2, 1), "keyspace read slow", "generic", "2.2.3",
    "Answers the seconds since the key was last used (not tracked here: always 0).",
    container="object", key_flags="RO",
)  # fmt: skip
def object_idletime(ctx: Ctx, args: list[bytes]) -> Reply:
    return None if _object_value(ctx, args[0]) is None else 0


@command(
    "freq", 3, "readonly", (2, 2, 1), "keyspace read slow", "generic", "4.0.0",
    "Answers the key's access frequency counter (only under an LFU maxmemory policy).",
    container="object", key_flags="RO",
)  # fmt: skip
def object_freq(ctx: Ctx, args: list[bytes]) -> Reply:
    if _object_value(ctx, args[0]) is None:
        return None
    raise CommandError(errors.OBJECT_FREQ_WITHOUT_LFU)  # no LFU policy exists here


@command(
    "help", 2, "loading stale", (0, 0, 0), "keyspace slow", "generic", "6.2.0",
    "Describes the OBJECT subcommands.", container="object",
)  # fmt: skip
def object_help(ctx: Ctx, args: list[bytes]) -> Reply:
    return [Status(line) for line in _OBJECT_HELP]
