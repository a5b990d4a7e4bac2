"""ACL and AUTH (Redis acl.c), over the users of `cacheshim.acl`.

The users are replicated state: ACL SETUSER, ACL DELUSER and ACL LOAD go through the log
(`logged=True`) and change the users inside apply, the same on every shim at the same index.
ACL LOAD reads the ACL file on the shim that got it and proposes its text as a
`MEMLOG ACLLOAD` record (`propose_as`), so every shim loads the same users whatever files
they have. The reads (GETUSER, LIST, USERS, CAT, DRYRUN, WHOAMI, GENPASS, LOG) answer from
this shim's copy; ACL LOG is this shim's own (see `cacheshim.acl.log`); ACL SAVE writes this
shim's ACL file. AUTH changes only the connection.
"""

from __future__ import annotations

import os
import secrets
from typing import Final

from cacheshim.acl import check
from cacheshim.acl.state import AclFileError, Users
from cacheshim.acl.users import all_specs, commands_in
from cacheshim.commands import Ctx, command, container, lookup
from cacheshim.commands import memlog as _memlog  # noqa: F401  (the MEMLOG container first)
from cacheshim.commands.args import parse_int
from cacheshim.commands.connection import help_reply, session_of
from cacheshim.commands.introspect import ACL_CATEGORY_ORDER
from cacheshim.commands.serverview import Session
from cacheshim.protocol import errors
from cacheshim.protocol.errors import CommandError, text_from_bytes
from cacheshim.protocol.resp import OK, Reply, SetReply

NO_ACL_FILE: Final = (
    "ERR This Redis instance is not configured to use an ACL file. You may want to specify "
    "users via the ACL SETUSER command and then issue a CONFIG REWRITE (assuming you have a "
    "Redis configuration file set) in order to store users in the Redis configuration."
)
AUTH_WITHOUT_PASSWORD: Final = (
    "ERR AUTH <password> called without any password configured for the default user. Are "
    "you sure your configuration is correct?"
)
GENPASS_BITS: Final = (
    "ERR ACL GENPASS argument must be the number of bits for the output password, a positive "
    "number up to 4096"
)
UNKNOWN_CATEGORY: Final = "ERR Unknown category '%s'"
USER_NOT_FOUND: Final = "ERR User '%s' not found"
COMMAND_NOT_FOUND: Final = "ERR Command '%s' not found"
SAVE_FAILED: Final = (
    "ERR There was an error trying to save the ACLs. Please check the server logs for more "
    "information (%s)"
)
APPLY_ONLY: Final = "ERR memlog: %s runs only as a log record"


def users_of(ctx: Ctx) -> Users:
    if ctx.acl is None:
        raise CommandError("ERR memlog: ACL users are not available here")
    return ctx.acl


container("acl", -2, "slow", "server", "6.0.0", "Reads and changes the ACL users.")


# -- changes: log records --------------------------------------------------------------------


@command(
    "setuser", -3, "admin noscript loading stale", (0, 0, 0), "admin slow dangerous",
    "server", "6.0.0", "Creates a user, or changes its rules.",
    "O(N). Where N is the number of rules provided.", container="acl", logged=True,
)  # fmt: skip
def acl_setuser(ctx: Ctx, args: list[bytes]) -> Reply:
    try:
        users_of(ctx).setuser(args[0], args[1:])
    except ValueError as exc:
        raise CommandError(str(exc)) from None
    return OK


@command(
    "deluser", -3, "admin noscript loading stale", (0, 0, 0), "admin slow dangerous",
    "server", "6.0.0", "Deletes users and closes their connections.",
    "O(1) amortized time considering the typical user.", container="acl", logged=True,
)  # fmt: skip
def acl_deluser(ctx: Ctx, args: list[bytes]) -> Reply:
    try:
        return users_of(ctx).deluser(args)
    except ValueError as exc:
        raise CommandError(str(exc)) from None


def _aclfile(session: Session) -> str:
    path = session.shim.config.aclfile
    if not path:
        raise CommandError(NO_ACL_FILE)
    return path


def read_acl_file(path: str) -> bytes:
    """The file's text, checked (AclFileError or CommandError with Redis's words)."""
    from cacheshim.acl.state import parse_acl_file

    try:
        with open(path, "rb") as f:
            text = f.read()
    except OSError as exc:
        raise CommandError(
            f"ERR Error loading ACLs, opening file '{path}': {exc.strerror}"
        ) from None
    try:
        parse_acl_file(text, path)
    except AclFileError as exc:
        raise CommandError(f"ERR Error loading ACLs: {exc}") from None
    return text


def _load_record(session: Session, args: list[bytes]) -> list[bytes]:
    path = _aclfile(session)
    return [b"MEMLOG", b"ACLLOAD", path.encode(), read_acl_file(path)]


@command(
    "load", 2, "admin noscript loading stale", (0, 0, 0), "admin slow dangerous", "server",
    "6.0.0", "Replaces every user by those of the ACL file.",
    "O(N). Where N is the number of configured users.", container="acl",
    propose_as=_load_record,
)  # fmt: skip
def acl_load(ctx: Ctx, args: list[bytes]) -> Reply:
    # On a connection, ACL LOAD becomes a MEMLOG ACLLOAD record (propose_as); queued in
    # MULTI it cannot read the file at apply.
    raise CommandError(APPLY_ONLY % "ACL LOAD from MULTI")


@command(
    "aclload", 4, "admin noscript loading stale", (0, 0, 0), "admin slow dangerous", "server",
    "0.1.0", "MEMLOG ACLLOAD source text: replaces every user by those of an ACL file's text "
    "(the record ACL LOAD proposes).", container="memlog", logged=True,
)  # fmt: skip
def memlog_aclload(ctx: Ctx, args: list[bytes]) -> Reply:
    try:
        users_of(ctx).load(args[1], text_from_bytes(args[0]))
    except AclFileError as exc:
        raise CommandError(f"ERR Error loading ACLs: {exc}") from None
    return OK


@command(
    "aclseed", 4, "admin noscript loading stale", (0, 0, 0), "admin slow dangerous", "server",
    "0.1.0", "MEMLOG ACLSEED source text: the ACL file's users at bootstrap, loaded only if no "
    "ACL record came before it in the log.", container="memlog", logged=True,
)  # fmt: skip
def memlog_aclseed(ctx: Ctx, args: list[bytes]) -> Reply:
    try:
        return int(users_of(ctx).seed(args[1], text_from_bytes(args[0])))
    except AclFileError as exc:
        raise CommandError(f"ERR Error loading ACLs: {exc}") from None


# -- reads -------------------------------------------------------------------------------------


@command(
    "save", 2, "admin noscript loading stale", (0, 0, 0), "admin slow dangerous", "server",
    "6.0.0", "Writes the users to this shim's ACL file.",
    "O(N). Where N is the number of configured users.", container="acl",
)  # fmt: skip
def acl_save(ctx: Ctx, args: list[bytes]) -> Reply:
    path = _aclfile(session_of(ctx, "ACL SAVE"))
    text = users_of(ctx).acl_file_text()
    temp = f"{path}.tmp-{os.getpid()}"
    try:
        with open(temp, "wb") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(temp, path)
    except OSError as exc:
        raise CommandError(SAVE_FAILED % exc.strerror) from None
    return OK


@command(
    "getuser", 3, "admin noscript loading stale", (0, 0, 0), "admin slow dangerous",
    "server", "6.0.0", "Answers a user's rules.",
    "O(N). Where N is the number of password, command and pattern rules that the user has.",
    container="acl",
)  # fmt: skip
def acl_getuser(ctx: Ctx, args: list[bytes]) -> Reply:
    user = users_of(ctx).get(args[0])
    if user is None:
        return None
    root = user.root
    return {
        b"flags": SetReply([f.encode() for f in user.flags()]),
        b"passwords": [p.encode() for p in user.passwords],
        b"commands": root.describe_commands().encode(),
        b"keys": root.describe_keys().encode("utf-8", "surrogateescape"),
        b"channels": root.describe_channels().encode("utf-8", "surrogateescape"),
        b"selectors": [
            {
                b"commands": s.describe_commands().encode(),
                b"keys": s.describe_keys().encode("utf-8", "surrogateescape"),
                b"channels": s.describe_channels().encode("utf-8", "surrogateescape"),
            }
            for s in user.selectors[1:]
        ],
    }


@command(
    "list", 2, "admin noscript loading stale", (0, 0, 0), "admin slow dangerous", "server",
    "6.0.0", "Answers every user's rules, one line each, as in an ACL file.",
    "O(N). Where N is the number of configured users.", container="acl",
)  # fmt: skip
def acl_list(ctx: Ctx, args: list[bytes]) -> Reply:
    return list(users_of(ctx).list_lines())


@command(
    "users", 2, "admin noscript loading stale", (0, 0, 0), "admin slow dangerous", "server",
    "6.0.0", "Answers every user's name.",
    "O(N). Where N is the number of configured users.", container="acl",
)  # fmt: skip
def acl_users(ctx: Ctx, args: list[bytes]) -> Reply:
    return list(users_of(ctx).names())


@command(
    "whoami", 2, "noscript loading stale", (0, 0, 0), "slow", "server", "6.0.0",
    "Answers the user this connection is authenticated as.", container="acl",
)  # fmt: skip
def acl_whoami(ctx: Ctx, args: list[bytes]) -> Reply:
    return session_of(ctx, "ACL WHOAMI").user


@command(
    "cat", -2, "noscript loading stale", (0, 0, 0), "slow", "server", "6.0.0",
    "Answers the ACL categories, or the commands of one.",
    "O(1) since the categories and commands are a fixed set.", container="acl",
)  # fmt: skip
def acl_cat(ctx: Ctx, args: list[bytes]) -> Reply:
    if not args:
        return [c.encode() for c in ACL_CATEGORY_ORDER]
    if len(args) > 1:
        raise CommandError(errors.subcommand_syntax_error(b"acl", b"cat"))
    category = text_from_bytes(args[0]).lower()
    if category not in ACL_CATEGORY_ORDER:
        raise CommandError(UNKNOWN_CATEGORY % text_from_bytes(args[0]))
    return [name.encode() for name in commands_in(category)]


@command(
    "genpass", -2, "noscript loading stale", (0, 0, 0), "slow", "server", "6.0.0",
    "Answers a random password (256 bits, or as many as asked), in hex.", container="acl",
)  # fmt: skip
def acl_genpass(ctx: Ctx, args: list[bytes]) -> Reply:
    bits = 256
    if args:
        if len(args) > 1:
            raise CommandError(errors.subcommand_syntax_error(b"acl", b"genpass"))
        bits = parse_int(args[0])
        if bits <= 0 or bits > 4096:
            raise CommandError(GENPASS_BITS)
    chars = (bits + 3) // 4
    return secrets.token_hex((chars + 1) // 2)[:chars].encode()


@command(
    "log", -2, "admin noscript loading stale", (0, 0, 0), "admin slow dangerous", "server",
    "6.0.0", "Answers this shim's recent ACL refusals, or forgets them (RESET).",
    "O(N) with N being the number of entries shown.", container="acl",
)  # fmt: skip
def acl_log(ctx: Ctx, args: list[bytes]) -> Reply:
    log = session_of(ctx, "ACL LOG").shim.acl_log
    count = 10
    if len(args) > 1:
        raise CommandError(errors.subcommand_syntax_error(b"acl", b"log"))
    if args:
        if args[0].lower() == b"reset":
            log.reset()
            return OK
        count = max(0, parse_int(args[0]))
    return [entry.reply(ctx.now_ms) for entry in log.entries[:count]]


@command(
    "dryrun", -4, "admin noscript loading stale", (0, 0, 0), "admin slow dangerous",
    "server", "7.0.0", "Answers whether a user may run a command line, without running it.",
    container="acl",
)  # fmt: skip
def acl_dryrun(ctx: Ctx, args: list[bytes]) -> Reply:
    user = users_of(ctx).get(args[0])
    if user is None:
        raise CommandError(USER_NOT_FOUND % text_from_bytes(args[0]))
    line = args[1:]
    spec = lookup(line)
    if spec is None or (spec.handler is None and spec.subcommands):
        raise CommandError(COMMAND_NOT_FOUND % text_from_bytes(line[0]))
    if not spec.arity_ok(len(line)):
        raise CommandError(errors.wrong_number_of_arguments(spec.full_name))
    why, at = user.check(spec, line)
    if why == 0:
        return OK
    return check.dryrun_text(why, spec, line, at).encode("utf-8", "surrogateescape")


@command(
    "help", 2, "loading stale", (0, 0, 0), "slow", "server", "6.0.0",
    "Lists the ACL subcommands.", container="acl",
)  # fmt: skip
def acl_help(ctx: Ctx, args: list[bytes]) -> Reply:
    return help_reply(
        [
            "ACL <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
            "CAT [<category>]",
            "    List all commands that belong to <category>, or all command categories",
            "    when no category is specified.",
            "DELUSER <username> [<username> ...]",
            "    Delete a list of users.",
            "DRYRUN <username> <command> [<arg> ...]",
            "    Returns whether the user can execute the given command without executing the "
            "command.",
            "GETUSER <username>",
            "    Get the user's details.",
            "GENPASS [<bits>]",
            "    Generate a secure 256-bit user password. The optional `bits` argument can",
            "    be used to specify a different size.",
            "LIST",
            "    Show users details in config file format.",
            "LOAD",
            "    Reload users from the ACL file.",
            "LOG [<count> | RESET]",
            "    Show the ACL log entries.",
            "SAVE",
            "    Save the current config to the ACL file.",
            "SETUSER <username> <attribute> [<attribute> ...]",
            "    Create or modify a user with the specified attributes.",
            "USERS",
            "    List all the registered usernames.",
            "WHOAMI",
            "    Return the current connection username.",
            "HELP",
            "    Prints this help.",
        ]
    )


# -- AUTH ----------------------------------------------------------------------------------------


@command(
    "auth", -2, "noscript loading stale fast no_auth allow_busy", (0, 0, 0), "fast connection",
    "connection", "1.0.0", "Authenticates the connection as a user (default: \"default\").",
    "O(N) where N is the number of passwords defined for the user",
)  # fmt: skip
def auth(ctx: Ctx, args: list[bytes]) -> Reply:
    session = session_of(ctx, "AUTH")
    users = users_of(ctx)
    if len(args) > 2:
        raise CommandError(errors.SYNTAX_ERROR)
    if len(args) == 1:
        if users.default.nopass:
            raise CommandError(AUTH_WITHOUT_PASSWORD)
        name, password = b"default", args[0]
    else:
        name, password = args
    check.authenticate(session, users, name, password)
    return OK


def known_specs() -> int:
    """How many commands and subcommands ACL rules can name (for tests)."""
    return sum(1 for _ in all_specs())
