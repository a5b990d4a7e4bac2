"""The checks of a connection against the ACL users (Redis's processCommand and ACLCheckAllPerm):
authentication required (NOAUTH), then the user's permissions for the command, its keys and
its channels (NOPERM); AUTH and HELLO AUTH themselves. Refusals go to this shim's ACL LOG."""

from __future__ import annotations

import time
from typing import Final

from cacheshim.acl.state import Users
from cacheshim.acl.users import DENIED_AUTH, DENIED_CHANNEL, DENIED_CMD, DENIED_KEY, User
from cacheshim.commands import Command
from cacheshim.commands.connection import client_line
from cacheshim.commands.serverview import Session
from cacheshim.protocol import errors
from cacheshim.protocol.errors import CommandError

WRONGPASS: Final = "WRONGPASS invalid username-password pair or user is disabled."
NOPERM_COMMAND: Final = "NOPERM this user has no permissions to run the '%s' command"
NOPERM_KEY: Final = (
    "NOPERM this user has no permissions to access one of the keys used as arguments"
)
NOPERM_CHANNEL: Final = (
    "NOPERM this user has no permissions to access one of the channels used as arguments"
)
SORT_DENIED: Final = "ERR %s option of SORT denied due to insufficient ACL permissions."
DRYRUN_COMMAND: Final = "This user has no permissions to run the '%s' command"
DRYRUN_KEY: Final = "This user has no permissions to access the '%s' key"
DRYRUN_CHANNEL: Final = "This user has no permissions to access the '%s' channel"


def auth_required(session: Session, users: Users) -> bool:
    """Redis's authRequired: the default user needs a password (or is off) and this
    connection has not authenticated."""
    default = users.default
    return (not default.nopass or not default.enabled) and not session.authenticated


def refresh(session: Session, users: Users) -> None:
    """Bring the session's cached ACL view up to the users' generation: whether it may skip
    every check (the GET fast path and dispatch test `acl_free`)."""
    session.acl_generation = users.generation
    user = users.get(session.user)
    session.acl_free = (
        user is not None and user.unrestricted() and not auth_required(session, users)
    )


def refusal(session: Session, users: Users, spec: Command, args: list[bytes]) -> str | None:
    """NOAUTH or NOPERM for this command line on this connection (logged), or None."""
    if session.acl_generation != users.generation:
        refresh(session, users)
    if session.acl_free:
        return None
    if auth_required(session, users):
        return None if "no_auth" in spec.flags else errors.NOAUTH
    user = users.get(session.user)
    if user is None:  # deleted: its connections are being closed
        return NOPERM_COMMAND % spec.full_name
    why, at = user.check(spec, args)
    if why == 0:
        return sort_refusal(user, spec, args) if spec.full_name in ("sort", "sort_ro") else None
    obj = spec.full_name.encode() if why == DENIED_CMD else args[at]
    log_refusal(session, why, "multi" if session.in_multi else "toplevel", obj, session.user)
    if why == DENIED_KEY:
        return NOPERM_KEY
    if why == DENIED_CHANNEL:
        return NOPERM_CHANNEL
    return NOPERM_COMMAND % spec.full_name


def sort_refusal(user: User, spec: Command, args: list[bytes]) -> str | None:
    """SORT's BY and GET patterns read keys no key pattern was checked against: Redis allows
    them only to a user that may read every key with this command (its options read in
    order, as SORT reads them; other mistakes are left to SORT itself)."""
    if any(s.check(spec, args)[0] == 0 and s.reads_every_key() for s in user.selectors):
        return None
    i = 2
    while i < len(args):
        word = args[i].lower()
        if word == b"limit":
            i += 3
            continue
        if word in (b"by", b"get") and i + 1 < len(args):
            if word == b"get" or b"*" in args[i + 1]:
                return SORT_DENIED % word.upper().decode()
            i += 2
            continue
        i += 2 if word == b"store" else 1
    return None


def dryrun_text(why: int, spec: Command, args: list[bytes], at: int) -> str:
    if why == DENIED_KEY:
        return DRYRUN_KEY % args[at].decode("utf-8", "surrogateescape")
    if why == DENIED_CHANNEL:
        return DRYRUN_CHANNEL % args[at].decode("utf-8", "surrogateescape")
    return DRYRUN_COMMAND % spec.full_name


def _wall_ms() -> int:
    return time.time_ns() // 1_000_000


def log_refusal(session: Session, why: int, context: str, obj: bytes, username: bytes) -> None:
    shim = session.shim
    now_ms = _wall_ms()
    info = client_line(session, now_ms).rstrip("\n").encode("utf-8", "surrogateescape")
    shim.acl_log.add(
        why, context, obj, username, info, now_ms, shim.server_config.int_value("acllog-max-len")
    )


def authenticate(session: Session, users: Users, name: bytes, password: bytes) -> None:
    """AUTH / HELLO AUTH: the connection becomes this user's, or WRONGPASS (logged)."""
    user = users.get(name)
    if user is None or not user.check_password(password):
        log_refusal(session, DENIED_AUTH, "toplevel", b"AUTH", name)
        raise CommandError(WRONGPASS)
    session.user = name
    session.authenticated = True
    session.acl_generation = -1


__all__ = ["DENIED_CHANNEL", "DENIED_CMD", "DENIED_KEY", "auth_required", "authenticate"]
