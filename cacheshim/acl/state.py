"""The ACL users of a shim: replicated state, changed only at apply (ACL SETUSER, DELUSER,
LOAD, CONFIG SET requirepass and the ACL file's seed are log records), so every shim holds
the same users at the same log index, and a snapshot carries them (`dump`, `load_dump`).

Besides the users it keeps `requirepass` as last set (CONFIG GET answers it, as Redis keeps
the configured text) and whether any ACL record was applied yet (`seeded`): the ACL file seeds
the users only while none was (see `seed`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Final

from cacheshim.acl.users import (
    SETUSER_ERROR,
    AclError,
    User,
    default_user,
    merge_selector_args,
)

DEFAULT: Final = b"default"
DUMP_VERSION: Final = 1
BAD_USERNAME: Final = "ERR Usernames can't contain spaces or null characters"
CANNOT_DELETE_DEFAULT: Final = "ERR The 'default' user cannot be removed"


class AclFileError(ValueError):
    """An ACL file that cannot be loaded; the message says where, as Redis's does."""


@dataclass
class Users:
    users: dict[bytes, User] = field(default_factory=lambda: {DEFAULT: default_user()})
    requirepass: bytes = b""
    seeded: bool = False
    # Grows with every change; connections and the fast path cache per generation.
    generation: int = 0
    # Users deleted or replaced since the server last looked (their clients are closed), and
    # users whose channel rules changed (their subscribed clients are checked again).
    dropped: set[bytes] = field(default_factory=set)
    rechannelled: set[bytes] = field(default_factory=set)

    @property
    def default(self) -> User:
        return self.users[DEFAULT]

    def get(self, name: bytes) -> User | None:
        return self.users.get(name)

    def names(self) -> list[bytes]:
        return sorted(self.users)

    def _changed(self) -> None:
        self.generation += 1
        self.seeded = True

    # -- the changes (at apply) ------------------------------------------------------------

    def setuser(self, name: bytes, ops: list[bytes]) -> None:
        """ACL SETUSER: all modifiers or none; raises ValueError with Redis's error text."""
        if b" " in name or b"\x00" in name:
            raise ValueError(BAD_USERNAME)
        merged = merge_selector_args(ops)
        existing = self.users.get(name)
        user = existing.copy() if existing is not None else User(name)
        for op in merged:
            try:
                user.apply(op)
            except AclError as exc:
                text = op.decode("utf-8", "surrogateescape")
                raise ValueError(SETUSER_ERROR % (text, exc.reason)) from None
        if existing is not None and _channels(existing) != _channels(user):
            self.rechannelled.add(name)
        self.users[name] = user
        self._changed()

    def deluser(self, names: list[bytes]) -> int:
        deleted = 0
        for name in names:
            if name == DEFAULT:
                if deleted:
                    self._changed()
                raise ValueError(CANNOT_DELETE_DEFAULT)
            if self.users.pop(name, None) is not None:
                self.dropped.add(name)
                deleted += 1
        self._changed()
        return deleted

    def set_requirepass(self, password: bytes) -> None:
        """CONFIG SET requirepass, as Redis 7 does it: the default user's passwords become
        this one (nopass when it is empty)."""
        self.requirepass = password
        user = self.default
        user.apply(b"resetpass")
        user.apply(b">" + password if password else b"nopass")
        self._changed()

    def load(self, text: bytes, source: str) -> None:
        """ACL LOAD: every user from an ACL file's text, all or nothing. The default user
        is reset to its defaults when the file does not name it."""
        users = parse_acl_file(text, source)
        for name in self.users:
            if name != DEFAULT:
                self.dropped.add(name)
        if DEFAULT not in users:
            users[DEFAULT] = default_user()
        self.users = dict(sorted(users.items()))
        self._changed()

    def seed(self, text: bytes, source: str) -> bool:
        """The ACL file's users at bootstrap: loaded only if no ACL record was applied yet
        (the first seed record in the log wins; later ones change nothing)."""
        if self.seeded:
            return False
        self.load(text, source)
        return True

    # -- files and snapshots ---------------------------------------------------------------

    def acl_file_text(self) -> bytes:
        """ACL SAVE's text: one "user" line per user, as ACL LIST shows them."""
        return b"".join(b"%s\n" % line for line in self.list_lines())

    def list_lines(self) -> list[bytes]:
        return [
            b"user " + name + b" " + self.users[name].describe().encode("utf-8", "surrogateescape")
            for name in self.names()
        ]

    def dump(self) -> bytes:
        """The state for a snapshot (versioned JSON; users as their ACL LIST lines, which
        hold hashes, never passwords)."""
        return json.dumps(
            {
                "version": DUMP_VERSION,
                "users": [line.decode("utf-8", "surrogateescape") for line in self.list_lines()],
                "requirepass": self.requirepass.decode("utf-8", "surrogateescape"),
                "seeded": self.seeded,
            }
        ).encode()

    def load_dump(self, blob: bytes) -> None:
        """The state `dump` wrote, or ValueError (an unknown version, a damaged field)."""
        try:
            state = json.loads(blob)
            if state.get("version") != DUMP_VERSION:
                raise ValueError(f"ACL state of version {state.get('version')}")
            text = "\n".join(state["users"]).encode("utf-8", "surrogateescape")
            users = parse_acl_file(text, "snapshot")
            requirepass = state["requirepass"].encode("utf-8", "surrogateescape")
            seeded = bool(state["seeded"])
        except (KeyError, TypeError, AttributeError) as exc:
            raise ValueError(f"damaged ACL state in the snapshot ({exc!r})") from None
        users.setdefault(DEFAULT, default_user())
        self.users, self.requirepass, self.seeded = users, requirepass, seeded
        self.generation += 1


def _channels(user: User) -> list[tuple[bool, list[bytes]]]:
    return [(s.all_channels, s.channels) for s in user.selectors]


def parse_acl_file(text: bytes, source: str) -> dict[bytes, User]:
    """An ACL file (one "user <name> <modifier> ..." per line; blank lines and # comments
    skipped), or AclFileError naming the file and line as Redis does."""
    users: dict[bytes, User] = {}
    for number, raw in enumerate(text.split(b"\n"), start=1):
        line = raw.strip()
        if not line or line.startswith(b"#"):
            continue
        words = line.split()
        if words[0] != b"user" or len(words) < 2:
            raise AclFileError(f"{source}:{number}: line should start with user keyword")
        name = words[1]
        if name in users:
            shown = name.decode("utf-8", "replace")
            raise AclFileError(f"{source}:{number}: Duplicate user '{shown}' found")
        user = User(name)
        try:
            ops = merge_selector_args(words[2:])
        except ValueError as exc:
            raise AclFileError(f"{source}:{number}: {exc}") from None
        for op in ops:
            try:
                user.apply(op)
            except AclError as exc:
                raise AclFileError(f"{source}:{number}: {exc.reason}. ") from None
        users[name] = user
    return users
