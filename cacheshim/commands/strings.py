"""String commands (Redis t_string.c)."""

from __future__ import annotations

from cacheshim import errors
from cacheshim.commands import Ctx, command
from cacheshim.errors import CommandError
from cacheshim.resp import OK, Reply


def get_string(ctx: Ctx, key: bytes) -> bytes | None:
    value = ctx.db.get(key, ctx.now_ms)
    if value is not None and not isinstance(value, bytes):
        raise CommandError(errors.WRONGTYPE)
    return value


def parse_int(arg: bytes) -> int:
    """A 64-bit signed integer as Redis's string2ll accepts it."""
    try:
        text = arg.decode("ascii")
    except UnicodeDecodeError:
        raise CommandError(errors.NOT_AN_INTEGER) from None
    if not text or text != text.strip() or (len(text) > 1 and text.lstrip("-").startswith("0")):
        raise CommandError(errors.NOT_AN_INTEGER)
    if text.startswith("+") or text == "-0":
        raise CommandError(errors.NOT_AN_INTEGER)
    try:
        value = int(text)
    except ValueError:
        raise CommandError(errors.NOT_AN_INTEGER) from None
    if not -(1 << 63) <= value < (1 << 63):
        raise CommandError(errors.NOT_AN_INTEGER)
    return value


@command(
    "get", 2, "readonly fast", (1, 1, 1), "read string fast", "string", "1.0.0",
    "Returns the string value of a key.",
)  # fmt: skip
def get(ctx: Ctx, args: list[bytes]) -> Reply:
    return get_string(ctx, args[0])


@command(
    "set", -3, "write denyoom", (1, 1, 1), "write string slow", "string", "1.0.0",
    "Sets the string value of a key, ignoring its type. The key is created if it doesn't "
    "exist.",
)  # fmt: skip
def set_(ctx: Ctx, args: list[bytes]) -> Reply:
    key, value = args[0], args[1]
    nx = xx = keep_ttl = get_old = False
    expire_at: int | None = None
    i = 2
    while i < len(args):
        opt = args[i].upper()
        has_next = i + 1 < len(args)
        if opt == b"NX" and not xx:
            nx = True
        elif opt == b"XX" and not nx:
            xx = True
        elif opt == b"GET":
            get_old = True
        elif opt == b"KEEPTTL" and expire_at is None:
            keep_ttl = True
        elif opt in (b"EX", b"PX", b"EXAT", b"PXAT") and expire_at is None and not keep_ttl:
            if not has_next:
                raise CommandError(errors.SYNTAX_ERROR)
            amount = parse_int(args[i + 1])
            if amount <= 0 or (opt in (b"EX", b"EXAT") and amount > (1 << 63) // 1000):
                raise CommandError("ERR invalid expire time in 'set' command")
            if opt == b"EX":
                expire_at = ctx.now_ms + amount * 1000
            elif opt == b"PX":
                expire_at = ctx.now_ms + amount
            elif opt == b"EXAT":
                expire_at = amount * 1000
            else:
                expire_at = amount
            i += 1
        else:
            raise CommandError(errors.SYNTAX_ERROR)
        i += 1
    old = get_string(ctx, key) if get_old else None
    exists = ctx.db.contains(key, ctx.now_ms)
    if (nx and exists) or (xx and not exists):
        return old if get_old else None
    ctx.db.set(key, value, ctx.index, keep_ttl=keep_ttl)
    if expire_at is not None:
        ctx.db.set_expiry(key, expire_at, ctx.index)
    return old if get_old else OK
