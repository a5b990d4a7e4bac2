"""HyperLogLog commands (Redis hyperloglog.c), Redis 7.0's replies, errors and bytes.

An HLL is a string in Redis's own representation (`cacheshim.types.hll`), so GET, DUMP and
the RDB export carry the same bytes as redis-server after the same writes.

PFCOUNT of one key caches the cardinality in the string's header in Redis (a change Redis
propagates to replicas and the AOF). memlog's PFCOUNT is a read served from memory and never
writes that cache: a write would cost every PFCOUNT a trip through the log, and a read that
changed one shim's copy would make the shims' keyspaces differ. So PFADD and PFMERGE leave
redis-server's bytes, counts are redis-server's, but after a PFCOUNT redis-server's header
holds the count (and keeps its bytes under the "stale" bit later) where memlog's says
"stale" with zeros. Both are valid HLLs to either server.
"""

from __future__ import annotations

from typing import Final

from cacheshim.commands import Ctx, command
from cacheshim.commands.args import option
from cacheshim.protocol import errors
from cacheshim.protocol.errors import CommandError
from cacheshim.protocol.resp import OK, Reply, Status
from cacheshim.types import hll
from cacheshim.types.hll import Hll, InvalidHll
from cacheshim.types.keyspace import RawString

_GROUP: Final = "hyperloglog"


# The HLLs the last commands parsed, by (db, key), each with the very string it was parsed
# from: a command on the same string takes the parsed form instead of parsing it again (a
# sparse HLL costs a pass in Python). Only a speed-up: an entry serves only while the key
# still holds that same object, and a command takes its entry out while it works on it.
_PARSED: dict[tuple[int, bytes], tuple[bytes, Hll]] = {}
_PARSED_MAX: Final = 64


def _remember(ctx: Ctx, key: bytes, value: bytes, sketch: Hll) -> None:
    _PARSED[(ctx.db_index, key)] = (value, sketch)
    if len(_PARSED) > _PARSED_MAX:
        del _PARSED[next(iter(_PARSED))]


def _load(ctx: Ctx, key: bytes, reading: bool = False) -> Hll | None:
    """The HLL at key, None if there is no key; WRONGTYPE (of either kind) otherwise.
    reading: the caller will not change it (it stays remembered)."""
    value = ctx.db.get(key, ctx.now_ms)
    if value is None:
        return None
    if not isinstance(value, bytes):
        raise CommandError(errors.WRONGTYPE)
    if not hll.is_hll(value):
        raise CommandError(errors.HLL_WRONGTYPE)
    parsed = _PARSED.pop((ctx.db_index, key), None)
    sketch = parsed[1] if parsed is not None and parsed[0] is value else Hll(value)
    if reading:
        _remember(ctx, key, value, sketch)
    return sketch


def _save(ctx: Ctx, key: bytes, sketch: Hll, created: bool) -> None:
    # Changed in place (the key keeps its time to live), or created.
    value = RawString(sketch.to_bytes())
    ctx.db.set(key, value, ctx.index, keep_ttl=not created)
    _remember(ctx, key, value, sketch)


def _union(ctx: Ctx, keys: list[bytes]) -> tuple[bytearray, bool]:
    """The registerwise maximum of the HLLs at keys (missing keys count as empty), and
    whether any of them is dense."""
    maximum = bytearray(hll.REGISTERS)
    any_dense = False
    for key in keys:
        sketch = _load(ctx, key, reading=True)
        if sketch is None:
            continue
        any_dense = any_dense or sketch.encoding == hll.DENSE
        try:
            maximum = hll.merge_max(maximum, sketch.registers())
        except InvalidHll:
            raise CommandError(errors.HLL_CORRUPTED) from None
    return maximum, any_dense


@command(
    "pfadd", -2, "write denyoom fast", (1, 1, 1), "write hyperloglog fast", _GROUP, "2.8.9",
    "Adds elements to the HyperLogLog at a key (creating it); answers 1 if its estimate may "
    "have changed.", "O(1) to add every element.", key_flags="RW insert",
)  # fmt: skip
def pfadd(ctx: Ctx, args: list[bytes]) -> Reply:
    key = args[0]
    sketch = _load(ctx, key)
    created = sketch is None
    if sketch is None:
        sketch = Hll(hll.empty())
    updated = 1 if created else 0
    for element in args[1:]:
        try:
            updated += sketch.add(element)
        except InvalidHll:
            if updated:  # Redis keeps the registers it changed before it found the damage
                _save(ctx, key, sketch, created)
            raise CommandError(errors.HLL_CORRUPTED) from None
    if updated:
        sketch.invalidate_cache()
        _save(ctx, key, sketch, created)
    return 1 if updated else 0


@command(
    "pfcount", -2, "readonly may_replicate", (1, -1, 1), "read hyperloglog slow", _GROUP,
    "2.8.9", "Answers the estimated number of distinct elements added to the HyperLogLogs at "
    "keys (of their union for several keys).",
    "O(1) with a very small average constant time when called with a single key. O(N) with N "
    "being the number of keys, and much bigger constant times, when called with multiple keys.",
    key_flags="RW access",
)  # fmt: skip
def pfcount(ctx: Ctx, args: list[bytes]) -> Reply:
    if len(args) > 1:
        maximum, _ = _union(ctx, args)
        return hll.estimate(hll.histogram_of(maximum))
    sketch = _load(ctx, args[0], reading=True)
    if sketch is None:
        return 0
    cached = sketch.cached()
    if cached is not None:
        return cached
    try:
        return hll.estimate(sketch.histogram())
    except InvalidHll:
        raise CommandError(errors.HLL_CORRUPTED) from None


@command(
    "pfmerge", -2, "write denyoom", (1, -1, 1), "write hyperloglog slow", _GROUP, "2.8.9",
    "Merges HyperLogLogs into the one at the first key (creating it).",
    "O(N) to merge N HyperLogLogs, but with high constant times.",
    key_flags="RW access insert|RO access",
)  # fmt: skip
def pfmerge(ctx: Ctx, args: list[bytes]) -> Reply:
    destination = args[0]
    maximum, any_dense = _union(ctx, args)
    sketch = _load(ctx, destination)
    created = sketch is None
    if sketch is None:
        sketch = Hll(hll.empty())
    if any_dense:
        sketch.to_dense()
    if sketch.encoding == hll.DENSE:  # hllDenseSet raises registers only: a maximum
        sketch.dense = hll.pack_dense(hll.merge_max(sketch.registers(), maximum))
        sketch.dense.append(0)
    else:
        for index, count in enumerate(maximum):
            if count:
                sketch.set(index, count)
    sketch.invalidate_cache()
    _save(ctx, destination, sketch, created)
    return OK


@command(
    "pfdebug", 3, "write denyoom admin", (2, 2, 1), "write hyperloglog admin slow dangerous",
    _GROUP, "2.8.9", "Internal commands for debugging HyperLogLog values (GETREG, DECODE, "
    "ENCODING, TODENSE).", "N/A", key_flags="RW access",
)  # fmt: skip
def pfdebug(ctx: Ctx, args: list[bytes]) -> Reply:
    subcommand, key = args
    value = ctx.db.get(key, ctx.now_ms)
    if value is None:
        raise CommandError("ERR The specified key does not exist")
    sketch = _load(ctx, key)
    assert sketch is not None
    word = option(subcommand)
    try:
        if word == b"GETREG":
            if sketch.to_dense():
                _save(ctx, key, sketch, created=False)
            return list(sketch.registers())
        if word == b"DECODE":
            if sketch.encoding != hll.SPARSE:
                raise CommandError("ERR HLL encoding is not sparse")
            return sketch.decode()
        if word == b"ENCODING":
            return Status("sparse" if sketch.encoding == hll.SPARSE else "dense")
        if word == b"TODENSE":
            converted = sketch.to_dense()
            if converted:
                _save(ctx, key, sketch, created=False)
            return 1 if converted else 0
    except InvalidHll:
        raise CommandError(errors.HLL_CORRUPTED) from None
    name = errors.text_from_bytes(subcommand.split(b"\x00", 1)[0])
    raise CommandError(f"ERR Unknown PFDEBUG subcommand '{name}'")


PFSELFTEST_REFUSED: Final = (
    "ERR memlog: PFSELFTEST (Redis's internal self test of its C HyperLogLog code) is not run "
    "here; memlog's HyperLogLog is checked byte for byte against redis-server by its own tests"
)


@command(
    "pfselftest", 1, "admin", (0, 0, 0), "hyperloglog admin slow dangerous", _GROUP, "2.8.9",
    "Redis's internal HyperLogLog self test: refused here, with the reason.", "N/A",
)  # fmt: skip
def pfselftest(ctx: Ctx, args: list[bytes]) -> Reply:
    # Redis's test sets and reads 16,384 registers 1,000 times and adds ten million elements
    # to a dense and a sparse HLL: minutes of the event loop in Python, for a test of C code.
    raise CommandError(PFSELFTEST_REFUSED)
