"""The command table: one declaration per command, from which everything else derives.

A handler module (one per Redis type, like Redis's `t_string.c`) declares each command
with `@command(...)`: its arity, flags, key positions, ACL categories and docs. Routing
(write or read), the central checks (unknown command, arity) and `COMMAND`,
`COMMAND COUNT|INFO|DOCS|LIST|GETKEYS` all read this table.

Handlers take a `Ctx` and the arguments after the command name, and return a plain reply
value (see `protocol.resp`) or raise `CommandError` with Redis's exact text. Write handlers
run only inside apply, where `ctx.now_ms` is the record's time and `ctx.rng` is seeded by
the log index: they must not read the clock or any other source of nondeterminism.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING

from cacheshim.protocol.resp import Reply

if TYPE_CHECKING:
    from cacheshim.acl.state import Users
    from cacheshim.commands.serverview import ConnectionHandler, Session
    from cacheshim.hub import Hub
    from cacheshim.scripting.state import ScriptingState
    from cacheshim.types.keyspace import Database, Keyspace


@dataclass
class Ctx:
    keyspace: Keyspace
    db_index: int
    now_ms: int
    # The log index of the record being applied (0 for a read served from memory).
    index: int = 0
    rng: random.Random | None = None
    # Filled in for reads served to a connection (server and connection commands).
    session: Session | None = None
    # Inside MULTI/EXEC: blocking commands answer at once instead of blocking (as in Redis).
    in_transaction: bool = False
    # Apply runs the command of a blocked client again, because this key it waits for
    # changed (cacheshim.blocking): XREAD and XREADGROUP then answer for this key alone, as
    # Redis 7.0 serves them, and XREADGROUP that its stream or group went away.
    serving_blocked: bytes | None = None
    # Inside apply: the shim's pub/sub hub, to which PUBLISH hands its message (a side
    # effect outside the keyspace; None in unit tests). See cacheshim.hub.
    pubsub: Hub | None = None
    # The ACL users (replicated state, cacheshim.acl): changed only inside apply.
    acl: Users | None = None
    # The script cache and Lua engine of the applied state (cacheshim.scripting), for EVAL
    # and FCALL; None where no command needs it (unit tests).
    scripts: ScriptingState | None = None
    # The ACL user whose rules a script's redis.call is checked against (Redis checks the
    # calling client's user): the connection's user for a script run locally, the record's
    # `user` inside apply. None: no check (an internal call, or a record from before the
    # field). The refusals, (reason, object, username), are noted in `acl_denied` for the
    # caller to put in the ACL LOG (context "lua"): at apply only the proposing shim does.
    user: bytes | None = None
    acl_denied: list[tuple[int, bytes, bytes]] | None = None
    # Whether a script call here may move to the script thread (run again from its start:
    # not a large record's last piece, whose pieces are used up; cacheshim.server.busy).
    script_movable: bool = True
    # Inside a script's redis.call (SORT of a set without sorting sorts it then, as Redis).
    in_script: bool = False
    # A script run in this context called a read-only command: a tracking client remembers
    # the script's declared keys (cacheshim.tracking).
    script_read: bool = False

    @property
    def db(self) -> Database:
        return self.keyspace.dbs[self.db_index]

    def random(self) -> random.Random:
        """Inside apply: a generator seeded by the log index, made on first use (seeding
        costs more than most commands). For reads: the shim's own generator."""
        if self.rng is None:
            if self.index == 0:
                raise RuntimeError("randomness is only available inside apply")
            self.rng = random.Random(self.index)
        return self.rng


Handler = Callable[[Ctx, list[bytes]], Reply]
ProposeAs = Callable[["Session", list[bytes]], "list[bytes] | None"]


class Flag(StrEnum):
    """A command flag, as Redis names it (COMMAND INFO shows them). Some decide behaviour
    here: WRITE routes a command through the log, BLOCKING lets it wait, NO_MULTI refuses it
    inside MULTI. A declaration naming a flag not in this list fails at import."""

    WRITE = "write"
    READONLY = "readonly"
    DENYOOM = "denyoom"
    MODULE = "module"
    ADMIN = "admin"
    PUBSUB = "pubsub"
    NOSCRIPT = "noscript"
    BLOCKING = "blocking"
    LOADING = "loading"
    STALE = "stale"
    SKIP_MONITOR = "skip_monitor"
    SKIP_SLOWLOG = "skip_slowlog"
    ASKING = "asking"
    FAST = "fast"
    NO_AUTH = "no_auth"
    MAY_REPLICATE = "may_replicate"
    SENTINEL = "sentinel"
    ONLY_SENTINEL = "only_sentinel"
    NO_MANDATORY_KEYS = "no_mandatory_keys"
    NO_PROPAGATE = "no_propagate"
    ALLOW_BUSY = "allow_busy"
    NO_ASYNC_LOADING = "no_async_loading"
    NO_MULTI = "no_multi"
    MOVABLEKEYS = "movablekeys"


def parse_flags(command_name: str, flags: str) -> tuple[Flag, ...]:
    """The flags of a declaration, in its order; an unknown word is an error (a typo in
    "write" would otherwise serve a write from local memory)."""
    parsed = []
    for word in flags.split():
        try:
            parsed.append(Flag(word))
        except ValueError:
            raise ValueError(f"command {command_name}: unknown flag {word!r}") from None
    return tuple(parsed)


@dataclass
class Command:
    name: str  # lower case, as Redis reports it; "container|sub" for subcommands
    arity: int  # Redis's: >0 exact count (with the name), <0 at least -arity
    flags: tuple[Flag, ...]
    first_key: int
    last_key: int
    key_step: int
    acl_categories: tuple[str, ...]
    group: str
    since: str
    summary: str
    complexity: str
    handler: Handler | None
    subcommands: dict[str, Command] = field(default_factory=dict)
    container: str | None = None
    # COMMAND INFO's tips ("nondeterministic_output", "request_policy:all_shards", ...) and
    # the access flags of its key specs, in key order ("RW access delete", "RW insert" for
    # LMOVE's source and destination): the last one covers every key after the others.
    # Empty: derived from the flags.
    tips: tuple[str, ...] = ()
    key_flag_specs: tuple[tuple[str, ...], ...] = ()
    # Goes through the log although Redis does not flag it "write" (PUBLISH, SPUBLISH: a
    # message must reach the subscribers of every shim, in one order).
    logged: bool = False
    # A session command (HELLO, SELECT, MULTI, ...): the connection runs this instead of
    # `handler`, which only runs when EXEC runs the command queued in a transaction.
    on_connection: ConnectionHandler | None = None
    # Some commands are proposed to the log as another record after checks on the
    # connection (ACL LOAD carries the file's text; CONFIG SET requirepass): given the
    # session and the arguments, the record's arguments, or None to run the command as
    # usual. Raises CommandError to refuse it.
    propose_as: ProposeAs | None = None
    # A logged command that a given call cannot make write (EVAL of a `no-writes` script):
    # called with the applied scripting state and the arguments, True sends this call to the
    # read path instead of the log (cacheshim.commands.scripting).
    local_when: Callable[[object, list[bytes]], bool] | None = None

    @property
    def is_write(self) -> bool:
        """A write in the log's sense: the command becomes a record, applied by every shim
        (Redis's "write" flag, or logged=True). COMMAND shows the flags, not this."""
        return self.logged or Flag.WRITE in self.flags

    @property
    def key_spec_flags(self) -> tuple[str, ...]:
        """The access flags of the first key spec (empty if none is declared)."""
        return self.key_flag_specs[0] if self.key_flag_specs else ()

    @property
    def full_name(self) -> str:
        return f"{self.container}|{self.name}" if self.container else self.name

    def arity_ok(self, argc: int) -> bool:
        return argc == self.arity if self.arity > 0 else argc >= -self.arity

    def key_positions(self, argc: int) -> list[int]:
        if self.first_key == 0:
            return []
        last = self.last_key if self.last_key >= 0 else argc + self.last_key
        return list(range(self.first_key, last + 1, self.key_step))


COMMANDS: dict[str, Command] = {}


def command(
    name: str,
    arity: int,
    flags: str = "",
    keys: tuple[int, int, int] = (0, 0, 0),
    acl: str = "",
    group: str = "generic",
    since: str = "1.0.0",
    summary: str = "",
    complexity: str = "O(1)",
    container: str | None = None,
    tips: str = "",
    key_flags: str = "",
    logged: bool = False,
    on_connection: ConnectionHandler | None = None,
    propose_as: ProposeAs | None = None,
    local_when: Callable[[object, list[bytes]], bool] | None = None,
) -> Callable[[Handler], Handler]:
    """Declare a command (or, with container=, a subcommand) and register its handler.

    key_flags: the access flags of each key spec, "|" between specs, in key order (the last
    one for every key after the others): "RW access delete|RW insert" (LMOVE)."""

    def register(handler: Handler) -> Handler:
        spec = Command(
            name=name.lower(),
            arity=arity,
            flags=parse_flags(name, flags),
            first_key=keys[0],
            last_key=keys[1],
            key_step=keys[2],
            acl_categories=tuple(f"@{c}" for c in acl.split()),
            group=group,
            since=since,
            summary=summary,
            complexity=complexity,
            handler=handler,
            container=container,
            tips=tuple(tips.split()),
            key_flag_specs=tuple(tuple(part.split()) for part in key_flags.split("|") if part),
            logged=logged,
            on_connection=on_connection,
            propose_as=propose_as,
            local_when=local_when,
        )
        if container is None:
            existing = COMMANDS.get(spec.name)
            if existing is not None and existing.handler is not None:
                raise ValueError(f"command {name} declared twice")
            if existing is not None:  # a container declared by its subcommands first
                spec.subcommands = existing.subcommands
            COMMANDS[spec.name] = spec
        else:
            parent = COMMANDS.get(container)
            if parent is None:
                raise ValueError(f"declare container {container} before its subcommands")
            parent.subcommands[spec.name] = spec
        return handler

    return register


def container(
    name: str,
    arity: int = -2,
    acl: str = "",
    group: str = "server",
    since: str = "1.0.0",
    summary: str = "",
) -> None:
    """Declare a command that only holds subcommands (CLIENT, CONFIG, ...)."""
    COMMANDS[name] = Command(
        name=name,
        arity=arity,
        flags=(),
        first_key=0,
        last_key=0,
        key_step=0,
        acl_categories=tuple(f"@{c}" for c in acl.split()),
        group=group,
        since=since,
        summary=summary,
        complexity="Depends on subcommand.",
        handler=None,
    )


def lookup(args: list[bytes]) -> Command | None:
    """The command (or subcommand) that args name, or None if unknown."""
    spec = COMMANDS.get(args[0].lower().decode("utf-8", "surrogateescape"))
    if spec is None or not spec.subcommands or len(args) < 2:
        return spec
    return spec.subcommands.get(args[1].lower().decode("utf-8", "surrogateescape"), spec)


def load_all() -> None:
    """Import every handler module so that its commands are registered."""
    from cacheshim.commands import (  # noqa: F401
        acl,
        admin,
        bitmaps,
        configcmd,
        connection,
        dump,
        functions,
        geo,
        hashes,
        hyperloglog,
        info,
        introspect,
        keys,
        lists,
        memlog,
        observe,
        pubsub,
        scripting,
        session,
        sets,
        sort,
        streamgroups,
        streaminfo,
        streamread,
        streams,
        strings,
        swapdb,
        zpops,
        zranges,
        zsetops,
        zsets,
    )
