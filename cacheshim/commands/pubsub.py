"""Pub/sub commands (Redis pubsub.c), Redis 7.0's replies and errors.

PUBLISH and SPUBLISH go through the log (``logged=True``): Redis flags them ``pubsub``, not
``write``, and COMMAND shows Redis's flags, but here a message must reach the subscribers of
every shim in one order, so it travels as a record and each shim's apply delivers it to its
own subscribers (:class:`cacheshim.hub.Hub`). The reply is the number of clients that
received it on the publishing shim.

(P|S)SUBSCRIBE, (P|S)UNSUBSCRIBE and PUBSUB are local to the shim: they change or read this
shim's hub through the client's session, and are never logged. A subscription command answers
one frame per name, as one `Frames` reply, so they stay together and in place in a pipeline
and inside EXEC's array. CLIENT REPLY OFF|SKIP does not silence them, as in Redis 7.0 (see
`Connection._drop_reply`).
"""

from __future__ import annotations

from typing import Final

from cacheshim.commands import Ctx, command, container
from cacheshim.commands.connection import help_reply, session_of
from cacheshim.hub import CHANNELS, PATTERNS, SHARD_CHANNELS, Hub, Kind
from cacheshim.protocol import errors
from cacheshim.protocol.errors import CommandError
from cacheshim.protocol.resp import Frames, Reply

# The hub of a context with no shim around it (unit tests): nobody is subscribed.
_NOBODY: Final = Hub()

_FLAGS: Final = "pubsub noscript loading stale"
# The summaries below are Redis's words, unlike the rest of the table: the pub/sub tests
# compare COMMAND DOCS with redis-server's field by field.


def _hub(ctx: Ctx) -> Hub:
    """This shim's hub: apply's, or the one of the session's shim."""
    if ctx.pubsub is not None:
        return ctx.pubsub
    if ctx.session is not None:
        return ctx.session.shim.pubsub
    return _NOBODY


def _subscribe(ctx: Ctx, name: str, kind: Kind, args: list[bytes]) -> Reply:
    session = session_of(ctx, name)
    return Frames(session.shim.pubsub.subscribe(session, kind, args))


def _unsubscribe(ctx: Ctx, name: str, kind: Kind, args: list[bytes]) -> Reply:
    session = session_of(ctx, name)
    return Frames(session.shim.pubsub.unsubscribe(session, kind, args))


# -- channels -------------------------------------------------------------------------------


@command(
    "subscribe", -2, _FLAGS, (0, 0, 0), "pubsub slow", "pubsub", "2.0.0",
    "Listen for messages published to the given channels",
    "O(N) where N is the number of channels to subscribe to.",
)  # fmt: skip
def subscribe(ctx: Ctx, args: list[bytes]) -> Reply:
    return _subscribe(ctx, "SUBSCRIBE", CHANNELS, args)


@command(
    "unsubscribe", -1, _FLAGS, (0, 0, 0), "pubsub slow", "pubsub", "2.0.0",
    "Stop listening for messages posted to the given channels",
    "O(N) where N is the number of clients already subscribed to a channel.",
)  # fmt: skip
def unsubscribe(ctx: Ctx, args: list[bytes]) -> Reply:
    return _unsubscribe(ctx, "UNSUBSCRIBE", CHANNELS, args)


@command(
    "psubscribe", -2, _FLAGS, (0, 0, 0), "pubsub slow", "pubsub", "2.0.0",
    "Listen for messages published to channels matching the given patterns",
    "O(N) where N is the number of patterns the client is already subscribed to.",
)  # fmt: skip
def psubscribe(ctx: Ctx, args: list[bytes]) -> Reply:
    return _subscribe(ctx, "PSUBSCRIBE", PATTERNS, args)


@command(
    "punsubscribe", -1, _FLAGS, (0, 0, 0), "pubsub slow", "pubsub", "2.0.0",
    "Stop listening for messages posted to channels matching the given patterns",
    "O(N+M) where N is the number of patterns the client is already subscribed and M is the "
    "number of total patterns subscribed in the system (by any client).",
)  # fmt: skip
def punsubscribe(ctx: Ctx, args: list[bytes]) -> Reply:
    return _unsubscribe(ctx, "PUNSUBSCRIBE", PATTERNS, args)


@command(
    "publish", 3, "pubsub loading stale fast", (0, 0, 0), "pubsub fast", "pubsub", "2.0.0",
    "Post a message to a channel",
    "O(N+M) where N is the number of clients subscribed to the receiving channel and M is the "
    "total number of subscribed patterns (by any client).",
    logged=True,
)  # fmt: skip
def publish(ctx: Ctx, args: list[bytes]) -> Reply:
    # Runs in apply, on every shim: each delivers to its own subscribers.
    return 0 if ctx.pubsub is None else ctx.pubsub.publish(args[0], args[1])


# -- shard channels (Redis 7.0; one shard here: every shim serves every slot) ---------------


@command(
    "ssubscribe", -2, _FLAGS, (1, -1, 1), "pubsub slow", "pubsub", "7.0.0",
    "Listen for messages published to the given shard channels",
    "O(N) where N is the number of shard channels to subscribe to.", key_flags="not_key",
)  # fmt: skip
def ssubscribe(ctx: Ctx, args: list[bytes]) -> Reply:
    # Inside MULTI/EXEC (Redis: a client that may not block). In a transaction that only
    # reads, EXEC runs the queued commands on the connection with its name as last command.
    if ctx.in_transaction:
        raise CommandError(errors.SSUBSCRIBE_DENY_BLOCKING)
    session = session_of(ctx, "SSUBSCRIBE")
    if session.last_command == "exec":
        raise CommandError(errors.SSUBSCRIBE_DENY_BLOCKING)
    return Frames(session.shim.pubsub.subscribe(session, SHARD_CHANNELS, args))


@command(
    "sunsubscribe", -1, _FLAGS, (1, -1, 1), "pubsub slow", "pubsub", "7.0.0",
    "Stop listening for messages posted to the given shard channels",
    "O(N) where N is the number of clients already subscribed to a shard channel.",
    key_flags="not_key",
)  # fmt: skip
def sunsubscribe(ctx: Ctx, args: list[bytes]) -> Reply:
    return _unsubscribe(ctx, "SUNSUBSCRIBE", SHARD_CHANNELS, args)


@command(
    "spublish", 3, "pubsub loading stale fast", (1, 1, 1), "pubsub fast", "pubsub", "7.0.0",
    "Post a message to a shard channel",
    "O(N) where N is the number of clients subscribed to the receiving shard channel.",
    key_flags="not_key", logged=True,
)  # fmt: skip
def spublish(ctx: Ctx, args: list[bytes]) -> Reply:
    return 0 if ctx.pubsub is None else ctx.pubsub.spublish(args[0], args[1])


# -- PUBSUB: this shim's subscriptions (as a Redis Cluster node answers for itself) ---------

container("pubsub", -2, "slow", "pubsub", "2.8.0", "A container for Pub/Sub commands")

_INTROSPECTION: Final = "pubsub loading stale"


def _optional_pattern(args: list[bytes], subcommand: bytes) -> bytes | None:
    if len(args) > 1:
        raise CommandError(errors.subcommand_syntax_error(b"pubsub", subcommand))
    return args[0] if args else None


@command(
    "channels", -2, _INTROSPECTION, (0, 0, 0), "pubsub slow", "pubsub", "2.8.0",
    "List active channels",
    "O(N) where N is the number of active channels, and assuming constant time pattern "
    "matching (relatively short channels and patterns)", container="pubsub",
)  # fmt: skip
def pubsub_channels(ctx: Ctx, args: list[bytes]) -> Reply:
    pattern = _optional_pattern(args, b"CHANNELS")
    return list(_hub(ctx).names(CHANNELS, pattern))


@command(
    "numsub", -2, _INTROSPECTION, (0, 0, 0), "pubsub slow", "pubsub", "2.8.0",
    "Get the count of subscribers for channels",
    "O(N) for the NUMSUB subcommand, where N is the number of requested channels",
    container="pubsub",
)  # fmt: skip
def pubsub_numsub(ctx: Ctx, args: list[bytes]) -> Reply:
    return _hub(ctx).numsub(CHANNELS, args)


@command(
    "numpat", 2, _INTROSPECTION, (0, 0, 0), "pubsub slow", "pubsub", "2.8.0",
    "Get the count of unique patterns pattern subscriptions", container="pubsub",
)  # fmt: skip
def pubsub_numpat(ctx: Ctx, args: list[bytes]) -> Reply:
    return _hub(ctx).active(PATTERNS)


@command(
    "shardchannels", -2, _INTROSPECTION, (0, 0, 0), "pubsub slow", "pubsub", "7.0.0",
    "List active shard channels",
    "O(N) where N is the number of active shard channels, and assuming constant time pattern "
    "matching (relatively short shard channels).", container="pubsub",
)  # fmt: skip
def pubsub_shardchannels(ctx: Ctx, args: list[bytes]) -> Reply:
    pattern = _optional_pattern(args, b"SHARDCHANNELS")
    return list(_hub(ctx).names(SHARD_CHANNELS, pattern))


@command(
    "shardnumsub", -2, _INTROSPECTION, (0, 0, 0), "pubsub slow", "pubsub", "7.0.0",
    "Get the count of subscribers for shard channels",
    "O(N) for the SHARDNUMSUB subcommand, where N is the number of requested shard channels",
    container="pubsub",
)  # fmt: skip
def pubsub_shardnumsub(ctx: Ctx, args: list[bytes]) -> Reply:
    return _hub(ctx).numsub(SHARD_CHANNELS, args)


@command(
    "help", 2, "loading stale", (0, 0, 0), "slow", "pubsub", "6.2.0",
    "Show helpful text about the different subcommands", container="pubsub",
)  # fmt: skip
def pubsub_help(ctx: Ctx, args: list[bytes]) -> Reply:
    return help_reply(
        [
            "PUBSUB <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
            "CHANNELS [<pattern>]",
            "    The channels with at least one subscriber on this shim, all of them or",
            "    those matching <pattern>.",
            "NUMPAT",
            "    How many distinct patterns clients of this shim are subscribed to.",
            "NUMSUB [<channel> ...]",
            "    Each channel with its number of subscribers on this shim (pattern",
            "    subscriptions not counted).",
            "SHARDCHANNELS [<pattern>]",
            "    The shard channels with at least one subscriber on this shim.",
            "SHARDNUMSUB [<shardchannel> ...]",
            "    Each shard channel with its number of subscribers on this shim.",
            "HELP",
            "    This text.",
        ]
    )
