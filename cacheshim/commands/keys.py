"""Generic key commands (Redis db.c, expire.c)."""

from __future__ import annotations

from cacheshim.commands import Ctx, command
from cacheshim.resp import Reply


@command(
    "del", -2, "write", (1, -1, 1), "keyspace write slow", "generic", "1.0.0",
    "Deletes one or more keys.", "O(N) where N is the number of keys that will be removed.",
)  # fmt: skip
def del_(ctx: Ctx, args: list[bytes]) -> Reply:
    removed = 0
    for key in args:
        if ctx.db.contains(key, ctx.now_ms) and ctx.db.delete(key, ctx.index):
            removed += 1
    return removed


@command(
    "exists", -2, "readonly fast", (1, -1, 1), "keyspace read fast", "generic", "1.0.0",
    "Determines whether one or more keys exist.", "O(N) where N is the number of keys to check.",
)  # fmt: skip
def exists(ctx: Ctx, args: list[bytes]) -> Reply:
    return sum(1 for key in args if ctx.db.contains(key, ctx.now_ms))
