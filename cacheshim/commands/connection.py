"""Connection commands (Redis networking.c): PING, ECHO and CLIENT.

HELLO, SELECT, QUIT and RESET change the connection's protocol state and are carried out by
the connection itself (see cacheshim.commands.session). CLIENT reads and changes the state of
this connection and of the shim's others through ``ctx.session`` (a
:class:`cacheshim.commands.serverview.Session`); it is introspection, local to the shim,
never logged.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Final

from cacheshim.commands import Ctx, command, container
from cacheshim.commands.args import parse_int
from cacheshim.commands.serverview import Session
from cacheshim.protocol import errors
from cacheshim.protocol.errors import CommandError, text_from_bytes
from cacheshim.protocol.resp import OK, Reply, SetReply, Status, Verbatim

CLIENT_NAME_INVALID: Final = (
    "ERR Client names cannot contain spaces, newlines or special characters."
)
NO_SUCH_CLIENT: Final = "ERR No such client"
INVALID_CLIENT_ID: Final = "ERR Invalid client ID"
CLIENT_ID_NOT_POSITIVE: Final = "ERR client-id should be greater than 0"
UNKNOWN_CLIENT_TYPE: Final = "ERR Unknown client type '%s'"
NO_SUCH_USER: Final = "ERR No such user '%s'"
PAUSE_TIMEOUT_NOT_INTEGER: Final = "ERR timeout is not an integer or out of range"
PAUSE_TIMEOUT_NEGATIVE: Final = "ERR timeout is negative"
PAUSE_MODE: Final = "ERR CLIENT PAUSE mode must be WRITE or ALL"
UNBLOCK_REASON: Final = "ERR CLIENT UNBLOCK reason should be TIMEOUT or ERROR"
CACHING_WITHOUT_TRACKING: Final = (
    "ERR CLIENT CACHING can be called only when the client is in tracking mode with OPTIN or "
    "OPTOUT mode enabled"
)
CACHING_YES_NEEDS_OPTIN: Final = (
    "ERR CLIENT CACHING YES is only valid when tracking is enabled in OPTIN mode."
)
CACHING_NO_NEEDS_OPTOUT: Final = (
    "ERR CLIENT CACHING NO is only valid when tracking is enabled in OPTOUT mode."
)
REDIRECT_TWICE: Final = "ERR A client can only redirect to a single other client"
REDIRECT_UNKNOWN: Final = "ERR The client ID you want redirect to does not exist"
PREFIX_NEEDS_BCAST: Final = "ERR PREFIX option requires BCAST mode to be enabled"
BCAST_SWITCH: Final = (
    "ERR You can't switch BCAST mode on/off before disabling tracking for this client, and "
    "then re-enabling it with a different mode."
)
OPT_WITH_BCAST: Final = "ERR OPTIN and OPTOUT are not compatible with BCAST"
OPTIN_AND_OPTOUT: Final = "ERR You can't specify both OPTIN mode and OPTOUT mode"
OPT_SWITCH: Final = (
    "ERR You can't switch OPTIN/OPTOUT mode before disabling tracking for this client, and "
    "then re-enabling it with a different mode."
)
PREFIX_OVERLAPS_EXISTING: Final = (
    "ERR Prefix '%s' overlaps with an existing prefix '%s'. Prefixes for a single client "
    "must not overlap."
)
PREFIX_OVERLAPS_GIVEN: Final = (
    "ERR Prefix '%s' overlaps with another provided prefix '%s'. Prefixes for a single "
    "client must not overlap."
)
NEEDS_CONNECTION: Final = (
    "ERR memlog: %s needs the client's connection; it cannot run inside a MULTI/EXEC "
    "transaction that also writes"
)
# Client types CLIENT LIST TYPE and CLIENT KILL TYPE accept; a shim client is "pubsub" while
# subscribed, else "normal".
CLIENT_TYPES: Final = frozenset({b"normal", b"master", b"slave", b"replica", b"pubsub"})
DEFAULT_USER: Final = b"default"


def session_of(ctx: Ctx, command_name: str) -> Session:
    """The connection a command was sent on; an error inside apply (a transaction that
    writes runs in the log's apply loop, where no connection exists)."""
    if ctx.session is not None:
        return ctx.session
    raise CommandError(NEEDS_CONNECTION % command_name)


def help_reply(lines: Iterable[str]) -> Reply:
    """HELP's answer: a list of status lines, as Redis's addReplyHelp sends it."""
    return [Status(line) for line in lines]


@command(
    "ping", -1, "fast", (0, 0, 0), "fast connection", "connection", "1.0.0",
    "Answers PONG, or its argument.",
    tips="request_policy:all_shards response_policy:all_succeeded",
)  # fmt: skip
def ping(ctx: Ctx, args: list[bytes]) -> Reply:
    if len(args) > 1:
        raise CommandError(errors.wrong_number_of_arguments("ping"))
    if _restricted_by_pubsub(ctx):  # a subscribed RESP2 client: ["pong", arg or ""]
        return [b"pong", args[0] if args else b""]
    return args[0] if args else Status("PONG")


def _restricted_by_pubsub(ctx: Ctx) -> bool:
    session = ctx.session
    return session is not None and session.shim.pubsub.restricts(session)


@command(
    "echo", 2, "loading stale fast", (0, 0, 0), "fast connection", "connection", "1.0.0",
    "Answers its argument.",
)  # fmt: skip
def echo(ctx: Ctx, args: list[bytes]) -> Reply:
    return args[0]


# -- CLIENT ---------------------------------------------------------------------------------

container(
    "client", -2, "slow", "connection", "2.4.0",
    "Reads and changes the state of this shim's client connections.",
)  # fmt: skip


def client_line(session: Session, now_ms: int) -> str:
    """One line of CLIENT LIST / CLIENT INFO, fields in Redis's order."""
    subscriptions = session.shim.pubsub.counts(session.id)
    flags = "P" if any(subscriptions) else ""
    if session.in_multi:
        flags += "x"
    if session.shim.blocking.is_blocked(session.id):
        flags += "b"
    tracking = session.tracking
    if tracking.on:
        flags += "t"
    if tracking.broken_redirect:
        flags += "R"
    if tracking.bcast:
        flags += "B"
    if session.closing:
        flags += "c"
    if session.no_evict:
        flags += "e"
    multi_mem = sum(len(arg) for args in session.queued for arg in args)
    omem = session.output_bytes() if session.output_bytes is not None else 0
    return (
        f"id={session.id} addr={session.addr} laddr={session.laddr} fd={session.fd} "
        f"name={text_from_bytes(session.name)} age={(now_ms - session.created_ms) // 1000} "
        f"idle={max(0, now_ms - session.last_active_ms) // 1000} flags={flags or 'N'} "
        f"db={session.db} sub={subscriptions[0]} psub={subscriptions[1]} "
        f"ssub={subscriptions[2]} "
        f"multi={len(session.queued) if session.in_multi else -1} qbuf=0 qbuf-free=0 "
        f"argv-mem=0 multi-mem={multi_mem} rbs=0 rbp=0 obl=0 oll=0 omem={omem} "
        f"tot-mem={multi_mem + omem} events=r cmd={session.last_command} "
        f"user={text_from_bytes(session.user)} "
        f"redir={tracking.redirect if tracking.on else -1} "
        f"resp={session.protocol}\n"
    )


def _sessions(session: Session) -> list[Session]:
    return sorted(session.shim.sessions.values(), key=lambda s: s.id)


def _type_of(session: Session) -> bytes:
    """The client's type for CLIENT LIST/KILL TYPE: "pubsub" while subscribed."""
    return b"pubsub" if session.shim.pubsub.subscribed(session.id) else b"normal"


def _client_type(arg: bytes) -> bytes:
    kind = arg.lower()
    if kind not in CLIENT_TYPES:
        raise CommandError(UNKNOWN_CLIENT_TYPE % text_from_bytes(arg))
    return kind


@command(
    "id", 2, "noscript loading stale", (0, 0, 0), "slow connection", "connection", "5.0.0",
    "Answers this connection's numeric id.", container="client",
)  # fmt: skip
def client_id(ctx: Ctx, args: list[bytes]) -> Reply:
    return session_of(ctx, "CLIENT ID").id


@command(
    "info", 2, "noscript loading stale", (0, 0, 0), "slow connection", "connection", "6.2.0",
    "Answers one CLIENT LIST line describing this connection.", container="client",
    tips="nondeterministic_output",
)  # fmt: skip
def client_info(ctx: Ctx, args: list[bytes]) -> Reply:
    session = session_of(ctx, "CLIENT INFO")
    return Verbatim(client_line(session, ctx.now_ms).encode("utf-8", "surrogateescape"))


@command(
    "list", -2, "admin noscript loading stale", (0, 0, 0), "admin slow dangerous connection",
    "connection", "2.4.0", "Answers one line per connection to this shim (TYPE and ID narrow the "
    "list).",
    "O(N) where N is the number of client connections", container="client",
    tips="nondeterministic_output",
)  # fmt: skip
def client_list(ctx: Ctx, args: list[bytes]) -> Reply:
    session = session_of(ctx, "CLIENT LIST")
    chosen = _sessions(session)
    if len(args) == 2 and args[0].lower() == b"type":
        kind = _client_type(args[1])
        chosen = [s for s in chosen if _type_of(s) == kind]
    elif len(args) >= 2 and args[0].lower() == b"id":
        by_id = {s.id: s for s in chosen}
        chosen = []
        for arg in args[1:]:
            try:
                wanted = parse_int(arg)
            except CommandError:
                raise CommandError(INVALID_CLIENT_ID) from None
            if wanted in by_id:
                chosen.append(by_id[wanted])
    elif args:
        raise CommandError(errors.SYNTAX_ERROR)
    text = "".join(client_line(s, ctx.now_ms) for s in chosen)
    return Verbatim(text.encode("utf-8", "surrogateescape"))


def _positive_int(arg: bytes, message: str) -> int:
    try:
        value = parse_int(arg)
    except CommandError:
        raise CommandError(message) from None
    if value <= 0:
        raise CommandError(message)
    return value


@command(
    "setname", 3, "noscript loading stale", (0, 0, 0), "slow connection", "connection",
    "2.6.9", "Gives this connection a name.", container="client",
)  # fmt: skip
def client_setname(ctx: Ctx, args: list[bytes]) -> Reply:
    session = session_of(ctx, "CLIENT SETNAME")
    session.name = valid_client_name(args[0])
    return OK


def valid_client_name(name: bytes) -> bytes:
    """A name CLIENT SETNAME and HELLO SETNAME accept: printable ASCII without spaces."""
    if any(byte < 0x21 or byte > 0x7E for byte in name):
        raise CommandError(CLIENT_NAME_INVALID)
    return name


@command(
    "getname", 2, "noscript loading stale", (0, 0, 0), "slow connection", "connection",
    "2.6.9", "Answers this connection's name (nil when it has none).", container="client",
)  # fmt: skip
def client_getname(ctx: Ctx, args: list[bytes]) -> Reply:
    name = session_of(ctx, "CLIENT GETNAME").name
    return name or None


@command(
    "kill", -3, "admin noscript loading stale", (0, 0, 0), "admin slow dangerous connection",
    "connection", "2.4.0", "Closes the connections that match a filter (or an address).",
    "O(N) where N is the number of client connections", container="client",
)  # fmt: skip
def client_kill(ctx: Ctx, args: list[bytes]) -> Reply:
    session = session_of(ctx, "CLIENT KILL")
    if len(args) == 1:  # the old form, CLIENT KILL addr:port: OK or an error
        addr = text_from_bytes(args[0])
        for other in _sessions(session):
            if other.addr == addr:
                _kill(session, other)
                return OK
        raise CommandError(NO_SUCH_CLIENT)
    if len(args) % 2:
        raise CommandError(errors.SYNTAX_ERROR)
    wanted = _KillFilter()
    for option, value in zip(args[::2], args[1::2], strict=True):
        name = option.lower()
        if name == b"id":
            wanted.id = _positive_int(value, CLIENT_ID_NOT_POSITIVE)
        elif name == b"type":
            wanted.type = _client_type(value)
        elif name == b"addr":
            wanted.addr = text_from_bytes(value)
        elif name == b"laddr":
            wanted.laddr = text_from_bytes(value)
        elif name == b"user":
            if ctx.acl is not None and ctx.acl.get(value) is None:
                raise CommandError(NO_SUCH_USER % text_from_bytes(value))
            wanted.user = value
        elif name == b"skipme":
            if value.lower() not in (b"yes", b"no"):
                raise CommandError(errors.SYNTAX_ERROR)
            wanted.skip_me = value.lower() == b"yes"
        else:
            raise CommandError(errors.SYNTAX_ERROR)
    killed = 0
    for other in _sessions(session):
        if (other is session and wanted.skip_me) or not wanted.matches(other):
            continue
        _kill(session, other)
        killed += 1
    return killed


@dataclass
class _KillFilter:
    """CLIENT KILL's filters; a connection is killed when it matches all of them."""

    id: int | None = None
    addr: str | None = None
    laddr: str | None = None
    type: bytes | None = None  # normal or pubsub; the other types match no shim client
    user: bytes | None = None
    skip_me: bool = True

    def matches(self, session: Session) -> bool:
        return (
            (self.type is None or _type_of(session) == self.type)
            and (self.id is None or session.id == self.id)
            and (self.addr is None or session.addr == self.addr)
            and (self.laddr is None or session.laddr == self.laddr)
            and (self.user is None or session.user == self.user)
        )


def _kill(session: Session, victim: Session) -> None:
    if victim is session:
        victim.closing = True  # closed after this reply, as Redis's CLOSE_AFTER_REPLY
    elif victim.kill is not None:
        victim.kill()


@command(
    "reply", 3, "noscript loading stale", (0, 0, 0), "slow connection", "connection", "3.2.0",
    "Turns replies to this connection off, on, or off for the next command "
    "only.", container="client",
)  # fmt: skip
def client_reply(ctx: Ctx, args: list[bytes]) -> Reply:
    session = session_of(ctx, "CLIENT REPLY")
    mode = args[0].lower()
    if mode == b"on":
        session.reply_off = session.reply_skip_next = session.reply_skip_current = False
    elif mode == b"off":
        session.reply_off = True
    elif mode == b"skip":
        if not session.reply_off:
            session.reply_skip_next = True
        session.reply_skip_current = True  # SKIP itself gets no reply either
    else:
        raise CommandError(errors.SYNTAX_ERROR)
    return OK


@command(
    "no-evict", 3, "admin noscript loading stale", (0, 0, 0),
    "admin slow dangerous connection", "connection", "7.0.0",
    "Marks this connection as exempt from client eviction, or not.", container="client",
)  # fmt: skip
def client_no_evict(ctx: Ctx, args: list[bytes]) -> Reply:
    session = session_of(ctx, "CLIENT NO-EVICT")
    mode = args[0].lower()
    if mode not in (b"on", b"off"):
        raise CommandError(errors.SYNTAX_ERROR)
    session.no_evict = mode == b"on"
    return OK


@command(
    "pause", -3, "admin noscript loading stale", (0, 0, 0), "admin slow dangerous connection",
    "connection", "3.0.0", "Holds every command, or only the writes, of the shim's clients for "
    "some milliseconds.", container="client",
)  # fmt: skip
def client_pause(ctx: Ctx, args: list[bytes]) -> Reply:
    session = session_of(ctx, "CLIENT PAUSE")
    try:
        timeout_ms = parse_int(args[0])
    except CommandError:
        raise CommandError(PAUSE_TIMEOUT_NOT_INTEGER) from None
    if timeout_ms < 0:
        raise CommandError(PAUSE_TIMEOUT_NEGATIVE)
    pause_all = True
    if len(args) == 2:
        mode = args[1].lower()
        if mode not in (b"write", b"all"):
            raise CommandError(PAUSE_MODE)
        pause_all = mode == b"all"
    elif len(args) > 2:
        raise CommandError(errors.SYNTAX_ERROR)
    session.shim.client_pause.pause(ctx.now_ms + timeout_ms, pause_all)
    return OK


@command(
    "unpause", 2, "admin noscript loading stale", (0, 0, 0), "admin slow dangerous connection",
    "connection", "6.2.0", "Ends a CLIENT PAUSE early.",
    "O(N) Where N is the number of paused clients", container="client",
)  # fmt: skip
def client_unpause(ctx: Ctx, args: list[bytes]) -> Reply:
    session_of(ctx, "CLIENT UNPAUSE").shim.client_pause.unpause()
    return OK


@command(
    "unblock", -3, "admin noscript loading stale", (0, 0, 0),
    "admin slow dangerous connection", "connection", "5.0.0",
    "Wakes a connection waiting in a blocking command, with a timeout or an error.",
    "O(log N) where N is the number of client connections", container="client",
)  # fmt: skip
def client_unblock(ctx: Ctx, args: list[bytes]) -> Reply:
    if len(args) > 2:
        raise CommandError(errors.subcommand_syntax_error(b"client", b"unblock"))
    if len(args) == 2 and args[1].lower() not in (b"timeout", b"error"):
        raise CommandError(UNBLOCK_REASON)
    client_id = parse_int(args[0])
    error = len(args) == 2 and args[1].lower() == b"error"
    # A client of this shim blocked in BLPOP & co. (see cacheshim.blocking).
    return int(session_of(ctx, "CLIENT UNBLOCK").shim.blocking.unblock(client_id, error))


@command(
    "tracking", -3, "noscript loading stale", (0, 0, 0), "slow connection", "connection",
    "6.0.0", "Turns client-side caching invalidations for this connection on or off.",
    "O(1). Some options may introduce additional complexity.", container="client",
)  # fmt: skip
def client_tracking(ctx: Ctx, args: list[bytes]) -> Reply:
    """CLIENT TRACKING ON|OFF [REDIRECT id] [PREFIX p ...] [BCAST] [OPTIN] [OPTOUT] [NOLOOP],
    checked in Redis's order with its errors (cacheshim.tracking does the rest)."""
    session = session_of(ctx, "CLIENT TRACKING")
    redirect = 0
    bcast = optin = optout = noloop = False
    prefixes: list[bytes] = []
    i = 1
    while i < len(args):
        option = args[i].lower()
        more = i + 1 < len(args)
        if option == b"redirect" and more:
            i += 1
            if redirect:
                raise CommandError(REDIRECT_TWICE)
            redirect = parse_int(args[i])
            if redirect not in session.shim.sessions:
                raise CommandError(REDIRECT_UNKNOWN)
        elif option == b"bcast":
            bcast = True
        elif option == b"optin":
            optin = True
        elif option == b"optout":
            optout = True
        elif option == b"noloop":
            noloop = True
        elif option == b"prefix" and more:
            i += 1
            prefixes.append(args[i])
        else:
            raise CommandError(errors.SYNTAX_ERROR)
        i += 1
    mode = args[0].lower()
    state = session.tracking
    if mode == b"on":
        if prefixes and not bcast:
            raise CommandError(PREFIX_NEEDS_BCAST)
        if state.on and state.bcast != bcast:
            raise CommandError(BCAST_SWITCH)
        if bcast and (optin or optout):
            raise CommandError(OPT_WITH_BCAST)
        if optin and optout:
            raise CommandError(OPTIN_AND_OPTOUT)
        if (optin and state.optout) or (optout and state.optin):
            raise CommandError(OPT_SWITCH)
        if bcast:
            _check_prefixes(list(state.prefixes), prefixes)
        session.shim.tracking.enable(session, redirect, bcast, optin, optout, noloop, prefixes)
    elif mode == b"off":
        session.shim.tracking.disable(session)
    else:
        raise CommandError(errors.SYNTAX_ERROR)
    return OK


def _check_prefixes(existing: list[bytes], wanted: list[bytes]) -> None:
    """BCAST prefixes of one client must not overlap (one a prefix of another): Redis's
    checkPrefixCollisionsOrReply, first against those it has, then among the new ones."""
    for i, prefix in enumerate(wanted):
        for old in existing:
            if old.startswith(prefix) or prefix.startswith(old):
                raise CommandError(PREFIX_OVERLAPS_EXISTING % (_c_text(prefix), _c_text(old)))
        for other in wanted[i + 1 :]:
            if other.startswith(prefix) or prefix.startswith(other):
                raise CommandError(PREFIX_OVERLAPS_GIVEN % (_c_text(prefix), _c_text(other)))


def _c_text(value: bytes) -> str:
    """A prefix as Redis's %s prints it: up to its first NUL byte."""
    return text_from_bytes(value.split(b"\0", 1)[0])


@command(
    "caching", 3, "noscript loading stale", (0, 0, 0), "slow connection", "connection",
    "6.0.0", "Client-side caching in OPTIN or OPTOUT mode: whether the next command's keys "
    "are tracked.", container="client",
)  # fmt: skip
def client_caching(ctx: Ctx, args: list[bytes]) -> Reply:
    state = session_of(ctx, "CLIENT CACHING").tracking
    if not state.on:
        raise CommandError(CACHING_WITHOUT_TRACKING)
    choice = args[0].lower()
    if choice == b"yes":
        if not state.optin:
            raise CommandError(CACHING_YES_NEEDS_OPTIN)
    elif choice == b"no":
        if not state.optout:
            raise CommandError(CACHING_NO_NEEDS_OPTOUT)
    else:
        raise CommandError(errors.SYNTAX_ERROR)
    state.caching = True
    return OK


@command(
    "getredir", 2, "noscript loading stale", (0, 0, 0), "slow connection", "connection",
    "6.0.0", "Answers the client id tracking invalidations are redirected to (0: none, -1: "
    "tracking is off).", container="client",
)  # fmt: skip
def client_getredir(ctx: Ctx, args: list[bytes]) -> Reply:
    state = session_of(ctx, "CLIENT GETREDIR").tracking
    return state.redirect if state.on else -1


@command(
    "trackinginfo", 2, "noscript loading stale", (0, 0, 0), "slow connection", "connection",
    "6.2.0", "Answers this connection's client-side caching state: flags, redirect, prefixes.",
    container="client",
)  # fmt: skip
def client_trackinginfo(ctx: Ctx, args: list[bytes]) -> Reply:
    state = session_of(ctx, "CLIENT TRACKINGINFO").tracking
    flags: list[bytes] = [b"on" if state.on else b"off"]
    if state.bcast:
        flags.append(b"bcast")
    if state.optin:
        flags.append(b"optin")
        if state.caching:
            flags.append(b"caching-yes")
    if state.optout:
        flags.append(b"optout")
        if state.caching:
            flags.append(b"caching-no")
    if state.noloop:
        flags.append(b"noloop")
    if state.broken_redirect:
        flags.append(b"broken_redirect")
    return {
        b"flags": SetReply(flags),
        b"redirect": state.redirect if state.on else -1,
        b"prefixes": sorted(state.prefixes),
    }


@command(
    "help", 2, "loading stale", (0, 0, 0), "slow connection", "connection", "5.0.0",
    "Lists the CLIENT subcommands.", container="client",
)  # fmt: skip
def client_help(ctx: Ctx, args: list[bytes]) -> Reply:
    return help_reply(
        [
            "CLIENT <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
            "ID",
            "    The ID of this connection.",
            "INFO",
            "    This connection's line of CLIENT LIST.",
            "LIST [TYPE (NORMAL|MASTER|REPLICA|PUBSUB)] [ID <id> [<id> ...]]",
            "    One line per open connection.",
            "SETNAME <name>",
            "    Name this connection.",
            "GETNAME",
            "    This connection's name.",
            "KILL <ip:port>",
            "    Close the connection from <ip:port>.",
            "KILL <filter> <value> [<filter> <value> ...]",
            "    Close the connections that match every filter; filters are",
            "    ID <id>, ADDR <ip:port>, LADDR <ip:port>, TYPE <type>, USER <user>,",
            "    SKIPME (YES|NO) (YES by default: this connection is spared).",
            "REPLY (ON|OFF|SKIP)",
            "    Turn replies to this connection on or off, or skip the next one.",
            "NO-EVICT (ON|OFF)",
            "    Exempt this connection from client eviction.",
            "PAUSE <timeout> [WRITE|ALL]",
            "    Hold the commands of every client (or only writes) for <timeout> ms.",
            "UNPAUSE",
            "    End a pause now.",
            "UNBLOCK <id> [TIMEOUT|ERROR]",
            "    Unblock a client blocked in a blocking command.",
            "TRACKING (ON|OFF) [REDIRECT <id>] [BCAST] [PREFIX <prefix> [...]]",
            "         [OPTIN] [OPTOUT] [NOLOOP]",
            "    Client-side caching: invalidation messages for the keys this connection",
            "    reads (or, BCAST, for every key under its prefixes) when they change.",
            "CACHING (YES|NO)",
            "    OPTIN/OPTOUT: whether the next command's keys are tracked.",
            "GETREDIR",
            "    The client id invalidations go to (0: this one, -1: tracking is off).",
            "TRACKINGINFO",
            "    This connection's tracking flags, redirect and prefixes.",
            "HELP",
            "    This text.",
        ]
    )
