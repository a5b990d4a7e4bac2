"""Connection commands that need no session state (the rest live in cacheshim.session)."""

from __future__ import annotations

from cacheshim import errors
from cacheshim.commands import Ctx, command
from cacheshim.errors import CommandError
from cacheshim.resp import Reply, Status


@command(
    "ping", -1, "fast", (0, 0, 0), "fast connection", "connection", "1.0.0",
    "Returns the server's liveliness response.",
)  # fmt: skip
def ping(ctx: Ctx, args: list[bytes]) -> Reply:
    if len(args) > 1:
        raise CommandError(errors.wrong_number_of_arguments("ping"))
    return args[0] if args else Status("PONG")


@command(
    "echo", 2, "fast", (0, 0, 0), "fast connection", "connection", "1.0.0",
    "Returns the given string.",
)  # fmt: skip
def echo(ctx: Ctx, args: list[bytes]) -> Reply:
    return args[0]
