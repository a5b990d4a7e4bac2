"""SWAPDB (Redis db.c): two databases trade their contents, as one write in the log.

Clients stay where they are: a client that selected database 0 sees the other keys from the
next command on, a WATCH of a key either database held breaks, and a client blocked on a key
the swap brings is served (see `Keyspace.swap`).
"""

from __future__ import annotations

from cacheshim.commands import Ctx, command
from cacheshim.commands.args import INT32_MAX, INT32_MIN
from cacheshim.protocol import errors
from cacheshim.protocol.errors import CommandError
from cacheshim.protocol.resp import OK, Reply
from cacheshim.types.keyspace import DATABASES, string_as_int


def _db_index(arg: bytes, message: str) -> int:
    """getIntFromObjectOrReply with its own message for a non-number and a non-int."""
    number = string_as_int(arg)
    if number is None or not INT32_MIN <= number <= INT32_MAX:
        raise CommandError(message)
    return number


@command(
    "swapdb", 3, "write fast", (0, 0, 0), "keyspace write fast dangerous", "server", "4.0.0",
    "Swaps the contents of two databases.",
    "O(N) where N is the count of clients watching or blocking on keys from both databases.",
)  # fmt: skip
def swapdb(ctx: Ctx, args: list[bytes]) -> Reply:
    first = _db_index(args[0], "ERR invalid first DB index")
    second = _db_index(args[1], "ERR invalid second DB index")
    if not (0 <= first < DATABASES and 0 <= second < DATABASES):
        raise CommandError(errors.DB_INDEX_OUT_OF_RANGE)
    ctx.keyspace.swap(first, second, ctx.index)
    return OK
