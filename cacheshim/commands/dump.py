"""DUMP and RESTORE (Redis cluster.c), Redis 7.0's serialization, replies and errors.

A payload is what an RDB file holds for one value (the snapshot writer's own encoder,
`cacheshim.snapshot.rdb.encode_value`), then RDB version 10 and a CRC-64, so a value moves
between memlog and redis-server either way. memlog does not compress strings with LZF, so a
long compressible string dumps longer than redis-server dumps it (both load either form).

RESTORE's TTL is relative to the record's time, so every shim stores the same expiry.
IDLETIME and FREQ are checked as Redis checks them; memlog keeps no idle time or access
frequency (OBJECT IDLETIME answers 0, OBJECT FREQ needs an LFU policy memlog does not
have), which is what they would set.
"""

from __future__ import annotations

from typing import Final, cast

from cacheshim.commands import Ctx, command
from cacheshim.commands.args import option, parse_int
from cacheshim.notify import GENERIC, notify
from cacheshim.protocol import errors
from cacheshim.protocol.errors import CommandError
from cacheshim.protocol.resp import OK, Reply
from cacheshim.snapshot.rdb import RdbError, dump_payload, load_payload, payload_is_valid
from cacheshim.types.keyspace import Value

_BUSYKEY: Final = "BUSYKEY Target key name already exists."


@command(
    "dump", 2, "readonly", (1, 1, 1), "keyspace read slow", "generic", "2.6.0",
    "Answers the value at a key serialized as Redis's DUMP does (RDB encoding, version and "
    "CRC-64), for RESTORE.",
    "O(1) to access the key and additional O(N*M) to serialize it, where N is the number of "
    "Redis objects composing the value and M their average size.",
    tips="nondeterministic_output", key_flags="RO access",
)  # fmt: skip
def dump(ctx: Ctx, args: list[bytes]) -> Reply:
    value = ctx.db.get(args[0], ctx.now_ms)
    return None if value is None else dump_payload(value)


@command(
    "restore", -4, "write denyoom", (1, 1, 1), "keyspace write slow dangerous", "generic",
    "2.6.0", "Creates a key from a DUMP payload (REPLACE, ABSTTL, IDLETIME, FREQ).",
    "O(1) to create the new key and additional O(N*M) to reconstruct the serialized value, "
    "where N is the number of Redis objects composing the value and M their average size.",
    key_flags="OW update",
)  # fmt: skip
def restore(ctx: Ctx, args: list[bytes]) -> Reply:
    key, ttl_arg, payload = args[0], args[1], args[2]
    replace = absolute = False
    idle = freq = -1
    i = 3
    while i < len(args):
        word = option(args[i])
        more = i + 1 < len(args)
        if word == b"REPLACE":
            replace = True
        elif word == b"ABSTTL":
            absolute = True
        elif word == b"IDLETIME" and more and freq == -1:
            idle = parse_int(args[i + 1])
            if idle < 0:
                raise CommandError("ERR Invalid IDLETIME value, must be >= 0")
            i += 1
        elif word == b"FREQ" and more and idle == -1:
            freq = parse_int(args[i + 1])
            if not 0 <= freq <= 255:
                raise CommandError("ERR Invalid FREQ value, must be >= 0 and <= 255")
            i += 1
        else:
            raise CommandError(errors.SYNTAX_ERROR)
        i += 1
    if not replace and ctx.db.contains(key, ctx.now_ms):
        raise CommandError(_BUSYKEY)
    ttl = parse_int(ttl_arg)
    if ttl < 0:
        raise CommandError("ERR Invalid TTL value, must be >= 0")
    if not payload_is_valid(payload):
        raise CommandError("ERR DUMP payload version or checksum are wrong")
    try:
        value = load_payload(payload, key)
    except RdbError:
        raise CommandError("ERR Bad data format") from None
    deleted = replace and ctx.db.contains(key, ctx.now_ms) and ctx.db.delete(key, ctx.index)
    if ttl and not absolute:  # added as Redis adds it, in 64 bits: an overflow is expired
        ttl = (ttl + ctx.now_ms + 2**63) % 2**64 - 2**63
    if ttl and ttl <= ctx.now_ms:  # already expired: nothing is created
        if deleted:
            notify(ctx, GENERIC, b"del", key)
        return OK
    ctx.db.set(key, cast(Value, value), ctx.index)
    if ttl:
        ctx.db.set_expiry(key, ttl, ctx.index)
    notify(ctx, GENERIC, b"restore", key)
    return OK
