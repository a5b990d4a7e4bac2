"""CONFIG (Redis config.c): the shim's parameters, local to the shim like a Redis node's.

The parameters themselves, their validation and storage live in
:class:`cacheshim.config.serverconfig.ServerConfig`; this module is the command surface.
"""

from __future__ import annotations

from typing import Final

from cacheshim.commands import Ctx, command, container
from cacheshim.commands.connection import help_reply, session_of
from cacheshim.commands.serverview import Session
from cacheshim.config.serverconfig import DUPLICATE_PARAMETER, SET_FAILED
from cacheshim.protocol import errors
from cacheshim.protocol.errors import CommandError, text_from_bytes
from cacheshim.protocol.resp import OK, Reply
from cacheshim.types import glob

NO_CONFIG_FILE: Final = "ERR The server is running without a config file"
REQUIREPASS_IN_READ_ONLY_EXEC: Final = (
    "ERR memlog: CONFIG SET requirepass cannot run inside a MULTI/EXEC transaction that only "
    "reads (it is a write of the log)"
)
REQUIREPASS: Final = b"requirepass"
# Parameters apply reads (a stream's node layout decides what a "~" trim removes): set
# through the log like requirepass, so every shim shapes its streams alike; kept in the
# keyspace (Keyspace.stream_node_max_bytes, _entries) and read back from there.
STREAM_NODE_PARAMS: Final = {
    b"stream-node-max-bytes": "stream_node_max_bytes",
    b"stream-node-max-entries": "stream_node_max_entries",
}
STREAM_NODE_IN_READ_ONLY_EXEC: Final = (
    "ERR memlog: CONFIG SET stream-node-max-bytes/entries cannot run inside a MULTI/EXEC "
    "transaction that only reads (it is a write of the log)"
)
_GLOB_CHARS: Final = frozenset(b"[*?")

container(
    "config", -2, "slow", "server", "2.0.0",
    "Reads and changes the server's configuration parameters.",
)  # fmt: skip


@command(
    "get", -3, "admin noscript loading stale", (0, 0, 0), "admin slow dangerous", "server",
    "2.0.0", "Returns the values of the configuration parameters that match the patterns.",
    "O(N) when N is the number of configuration parameters provided", container="config",
)  # fmt: skip
def config_get(ctx: Ctx, args: list[bytes]) -> Reply:
    settings = session_of(ctx, "CONFIG GET").shim.server_config
    found: dict[str, tuple[bytes, str]] = {}  # lower-case name -> (name as shown, value)
    for pattern in args:
        if not _GLOB_CHARS.intersection(pattern):
            # A plain name is looked up (aliases too) and shown as the client spelled it.
            name = text_from_bytes(pattern)
            value = settings.get(name)
            if value is not None and name.lower() not in found:
                found[name.lower()] = (pattern, value)
            continue
        for name in settings.names():
            if name not in found and glob.match(pattern, name.encode(), nocase=True):
                found[name] = (name.encode(), settings.get(name) or "")
    if "requirepass" in found and ctx.acl is not None:  # replicated, with the ACL users
        found["requirepass"] = (found["requirepass"][0], text_from_bytes(ctx.acl.requirepass))
    for raw_name, attribute in STREAM_NODE_PARAMS.items():  # replicated, in the keyspace
        name = raw_name.decode()
        if name in found:
            found[name] = (found[name][0], str(getattr(ctx.keyspace, attribute)))
    return {shown: value.encode("utf-8", "surrogateescape") for shown, value in found.values()}


def _requirepass_record(session: Session, args: list[bytes]) -> list[bytes] | None:
    """CONFIG SET with requirepass or stream-node-max-bytes/entries: the default user's
    password is replicated state (the ACL users), the stream node limits shape what apply
    stores, so these go to the log as their own CONFIG SET record, applied by every shim;
    the other parameters of the same command are this shim's, set here first (all checked
    before anything is proposed)."""
    pairs = args[2:]
    replicated = (REQUIREPASS, *STREAM_NODE_PARAMS)
    if len(pairs) % 2 or not any(name.lower() in replicated for name in pairs[::2]):
        return None
    password: bytes | None = None
    others: list[tuple[bytes, bytes]] = []
    for name, value in zip(pairs[::2], pairs[1::2], strict=True):
        if name.lower() == REQUIREPASS:
            if password is not None:
                raise CommandError(SET_FAILED % (text_from_bytes(name), DUPLICATE_PARAMETER))
            password = value
        else:
            others.append((name, value))
    settings = session.shim.server_config
    if others:
        settings.set_many(others)  # checks the stream parameters' values too
    record = [b"CONFIG", b"SET"]
    if password is not None:
        record += [b"requirepass", password]
    for name, _ in others:
        if name.lower() in STREAM_NODE_PARAMS:
            checked = settings.get(name.lower().decode())
            assert checked is not None
            record += [name.lower(), checked.encode()]
    return record


@command(
    "set", -4, "admin noscript loading stale", (0, 0, 0), "admin slow dangerous", "server",
    "2.0.0", "Sets configuration parameters; either all of them or none.",
    "O(N) when N is the number of configuration parameters provided", container="config",
    tips="request_policy:all_nodes response_policy:all_succeeded",
    propose_as=_requirepass_record,
)  # fmt: skip
def config_set(ctx: Ctx, args: list[bytes]) -> Reply:
    if len(args) % 2:
        raise CommandError(errors.SYNTAX_ERROR)
    names = [name.lower() for name in args[::2]]
    replicated = (REQUIREPASS, *STREAM_NODE_PARAMS)
    if ctx.session is None and ctx.acl is not None and all(n in replicated for n in names):
        # the record _requirepass_record proposed, its values checked then
        for name, value in zip(names, args[1::2], strict=True):
            if name == REQUIREPASS:
                ctx.acl.set_requirepass(value)
            else:
                setattr(ctx.keyspace, STREAM_NODE_PARAMS[name], int(value))
        return OK
    if REQUIREPASS in names:
        raise CommandError(REQUIREPASS_IN_READ_ONLY_EXEC)
    if any(name in STREAM_NODE_PARAMS for name in names):
        raise CommandError(STREAM_NODE_IN_READ_ONLY_EXEC)
    shim = session_of(ctx, "CONFIG SET").shim
    shim.server_config.set_many(list(zip(args[::2], args[1::2], strict=True)))
    if shim.tracking.table:  # a lower tracking-table-max-keys evicts now
        shim.tracking.enforce_limit()
    return OK


@command(
    "resetstat", 2, "admin noscript loading stale", (0, 0, 0), "admin slow dangerous",
    "server", "2.0.0", "Resets the counters that INFO reports.", container="config",
)  # fmt: skip
def config_resetstat(ctx: Ctx, args: list[bytes]) -> Reply:
    session_of(ctx, "CONFIG RESETSTAT").shim.stats.reset()
    return OK


@command(
    "rewrite", 2, "admin noscript loading stale", (0, 0, 0), "admin slow dangerous", "server",
    "2.8.0", "Writes the configuration back to the configuration file.", container="config",
)  # fmt: skip
def config_rewrite(ctx: Ctx, args: list[bytes]) -> Reply:
    # The shim is configured by flags and environment variables, never by a file.
    raise CommandError(NO_CONFIG_FILE)


@command(
    "help", 2, "loading stale", (0, 0, 0), "slow", "server", "5.0.0",
    "Lists the CONFIG subcommands.", container="config",
)  # fmt: skip
def config_help(ctx: Ctx, args: list[bytes]) -> Reply:
    return help_reply(
        [
            "CONFIG <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
            "GET <pattern> [<pattern> ...]",
            "    The parameters whose names match a glob-style pattern, with their values.",
            "SET <parameter> <value> [<parameter> <value> ...]",
            "    Set parameters: all of them, or none if one value is refused.",
            "RESETSTAT",
            "    Zero the counters INFO reports.",
            "REWRITE",
            "    Write the configuration file (the shim has none: flags configure it).",
            "HELP",
            "    This text.",
        ]
    )
