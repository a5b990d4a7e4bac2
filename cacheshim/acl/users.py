"""ACL users as Redis 7.0 has them (acl.c): a user is flags (on/off, nopass), hashed passwords
and selectors; a selector is key patterns, channel patterns and command rules. `User.apply`
takes one SETUSER modifier, `describe` gives the ACL LIST line, `check` answers whether a
command line may run.

A selector's command rules are applied as they come to the set of commands it allows (Redis's
command bits); ACL LIST and GETUSER regenerate the rules from that set as Redis 7.0.15 does
(`Selector.describe_commands`), so what they show is exactly what is enforced. Commands are
listed in the table's order where Redis's order is its hash table's (random per process).
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Final

from cacheshim.commands import COMMANDS, Command
from cacheshim.commands.introspect import ACL_CATEGORY_ORDER, acl_categories, command_keys
from cacheshim.types import glob

READ: Final = 1
WRITE: Final = 2
READ_WRITE: Final = READ | WRITE

SYNTAX: Final = "Syntax error"
UNKNOWN_NAME: Final = "Unknown command or category name in ACL"
KEYS_AFTER_ALL: Final = (
    "Adding a pattern after the * pattern (or the 'allkeys' flag) is not valid and does not "
    "have any effect. Try 'resetkeys' to start with an empty list of patterns"
)
CHANNELS_AFTER_ALL: Final = (
    "Adding a pattern after the * pattern (or the 'allchannels' flag) is not valid and does "
    "not have any effect. Try 'resetchannels' to start with an empty list of channels"
)
NO_SUCH_PASSWORD: Final = "The password you are trying to remove from the user does not exist"
BAD_HASH: Final = (
    "The password hash must be exactly 64 characters and contain only lowercase hexadecimal "
    "characters"
)
FIRST_ARG_OF_SUBCOMMAND: Final = "Allowing first-arg of a subcommand is not supported"
SETUSER_ERROR: Final = "ERR Error in ACL SETUSER modifier '%s': %s"
UNMATCHED_PARENTHESIS: Final = "ERR Unmatched parenthesis in acl selector starting at '%s'."

# Why a command is refused (Redis's ACL_DENIED_*; the larger wins between selectors).
DENIED_CMD: Final = 1
DENIED_KEY: Final = 2
DENIED_AUTH: Final = 3
DENIED_CHANNEL: Final = 4

# Commands whose arguments name channels: position rule and whether they are patterns.
# (PUBLISH/SPUBLISH: the first argument; the subscribe commands: every argument.)
_CHANNEL_COMMANDS: Final = {
    "publish": (False, False),
    "spublish": (False, False),
    "subscribe": (True, False),
    "ssubscribe": (True, False),
    "psubscribe": (True, True),
}


class AclError(Exception):
    """A SETUSER modifier refused: `reason` is one of the texts above."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def hash_password(password: bytes) -> str:
    return hashlib.sha256(password).hexdigest()


def _valid_hash(text: str) -> bool:
    return len(text) == 64 and all(c in "0123456789abcdef" for c in text)


# -- the command table, as ACL rules see it ---------------------------------------------------


def all_specs() -> Iterator[Command]:
    """Every command and subcommand (containers too: they carry categories, as in Redis)."""
    for spec in COMMANDS.values():
        yield spec
        yield from spec.subcommands.values()


def categories() -> tuple[str, ...]:
    return ACL_CATEGORY_ORDER


def commands_in(category: str) -> list[str]:
    return [s.full_name for s in all_specs() if category in acl_categories(s)]


@dataclass
class _Perms:
    """What a selector's command rules allow: command full names, and the first arguments
    allowed of commands that are not allowed whole (+select|0)."""

    allowed: set[str] = field(default_factory=set)
    first_args: dict[str, list[bytes]] = field(default_factory=dict)

    def copy(self) -> _Perms:
        return _Perms(set(self.allowed), {k: list(v) for k, v in self.first_args.items()})

    def change(self, spec: Command, allow: bool) -> None:
        for one in (spec, *spec.subcommands.values()):
            if allow:
                self.allowed.add(one.full_name)
            else:
                self.allowed.discard(one.full_name)
            self.first_args.pop(one.full_name, None)

    def apply(self, rule: str) -> None:
        """One rule already validated (+get, -@read, +config|get, +select|0)."""
        allow = rule[0] == "+"
        name = rule[1:]
        if name.startswith("@"):
            category = name[1:]
            for spec in all_specs():
                if category == "all" or category in acl_categories(spec):
                    self.change(spec, allow)
            return
        top, _, sub = name.partition("|")
        spec = COMMANDS[top]
        if not sub:
            self.change(spec, allow)
        elif spec.subcommands:
            self.change(spec.subcommands[sub], allow)
        else:
            first = self.first_args.setdefault(spec.full_name, [])
            if sub.encode() not in first:
                first.append(sub.encode())


def _command_count() -> int:
    return sum(1 for _ in all_specs())


def _all_perms() -> _Perms:
    perms = _Perms()
    perms.apply("+@all")
    return perms


def _normal_rule(op: str) -> str:
    """A +/- command or category rule checked and lower-cased, or AclError."""
    rule = op.lower()
    allow = rule[0] == "+"
    name = rule[1:]
    if name.startswith("@"):
        if name[1:] != "all" and name[1:] not in ACL_CATEGORY_ORDER:
            raise AclError(UNKNOWN_NAME)
        return rule
    top, bar, sub = name.partition("|")
    spec = COMMANDS.get(top)
    if spec is None:
        raise AclError(UNKNOWN_NAME)
    if not bar:
        return rule
    if "|" in sub:
        first, _, _ = sub.partition("|")
        if allow and spec.subcommands and first in spec.subcommands:
            raise AclError(FIRST_ARG_OF_SUBCOMMAND)
        raise AclError(UNKNOWN_NAME)
    if spec.subcommands:
        if sub not in spec.subcommands:
            raise AclError(UNKNOWN_NAME)
        return rule
    if not allow:  # a first argument can only be allowed
        raise AclError(UNKNOWN_NAME)
    if not sub:
        raise AclError(SYNTAX)
    return rule


@dataclass
class KeyPattern:
    flags: int  # READ, WRITE or both
    pattern: bytes


@dataclass
class Selector:
    root: bool = False
    all_keys: bool = False
    # (READ/WRITE flags, pattern), in the order given
    patterns: list[KeyPattern] = field(default_factory=list)
    all_channels: bool = False
    channels: list[bytes] = field(default_factory=list)
    # +@all (allcommands) was the last word on every command: commands added later would be
    # allowed too (Redis's reserved command bit); ACL LIST then starts from +@all.
    future_commands: bool = False
    perms: _Perms = field(default_factory=_Perms)

    def copy(self) -> Selector:
        patterns = [KeyPattern(p.flags, p.pattern) for p in self.patterns]
        return Selector(
            self.root, self.all_keys, patterns, self.all_channels, list(self.channels),
            self.future_commands, self.perms.copy(),
        )  # fmt: skip

    # -- command rules --

    def set_all_commands(self, allow: bool) -> None:
        self.future_commands = allow
        self.perms = _all_perms() if allow else _Perms()

    def add_rule(self, op: str) -> None:
        self.perms.apply(_normal_rule(op))

    def describe_commands(self) -> str:
        """The command rules, regenerated from what is allowed as Redis 7.0 does it: the base
        (+@all when commands added later would be allowed), then, greedily, the category
        that best fits what is still unexplained (more commands in common than apart, the
        fewest apart, then the most in common), then each command that still differs and
        the first arguments allowed of commands not allowed whole."""
        additive = not self.future_commands
        rules = ["-@all" if additive else "+@all"]
        fake = _Perms() if additive else _all_perms()
        unexplained = self.perms.copy()
        members = {c: [s.full_name for s in all_specs() if c in acl_categories(s)]
                   for c in ACL_CATEGORY_ORDER}  # fmt: skip
        applied: set[str] = set()
        while True:
            best, fewest_apart, most_common = "", 1 << 60, 0
            for category in ACL_CATEGORY_ORDER:
                if category in applied:
                    continue
                on = sum(1 for name in members[category] if name in unexplained.allowed)
                off = len(members[category]) - on
                apart, common = (off, on) if additive else (on, off)
                if common > apart and (
                    apart < fewest_apart or (apart == fewest_apart and common > most_common)
                ):
                    best, fewest_apart, most_common = category, apart, common
            if not best:
                break
            rule = ("+@" if additive else "-@") + best
            fake.apply(rule)
            unexplained.apply(("-@" if additive else "+@") + best)
            rules.append(rule)
            applied.add(best)
        allowed = self.perms.allowed
        for spec in COMMANDS.values():
            for one in (spec, *spec.subcommands.values()):
                mine = one.full_name in allowed
                if mine != (one.full_name in fake.allowed):
                    rules.append(("+" if mine else "-") + one.full_name)
                    fake.change(one, mine)
            for one in (*spec.subcommands.values(), spec):
                if one.full_name not in allowed:
                    for arg in self.perms.first_args.get(one.full_name, ()):
                        rules.append(f"+{one.full_name}|{arg.decode('utf-8', 'surrogateescape')}")
        return " ".join(rules)

    # -- keys and channels --

    def describe_keys(self) -> str:
        if self.all_keys:
            return "~*"
        return " ".join(_pattern_text(p.flags, p.pattern) for p in self.patterns)

    def describe_channels(self) -> str:
        if self.all_channels:
            return "&*"
        return " ".join("&" + c.decode("utf-8", "surrogateescape") for c in self.channels)

    def describe(self) -> str:
        parts = []
        keys = self.describe_keys()
        if keys or self.patterns:
            parts.append(keys)
        if self.all_channels:
            parts.append("&*")
        else:
            parts.append("resetchannels")
            if self.channels:
                parts.append(self.describe_channels())
        parts.append(self.describe_commands())
        return " ".join(parts)

    def apply(self, op: bytes) -> None:
        """One selector modifier (keys, channels, commands), or AclError."""
        lowered = op.lower()
        if lowered in (b"allkeys", b"~*"):
            self.all_keys = True
            self.patterns = []
        elif lowered == b"resetkeys":
            self.all_keys = False
            self.patterns = []
        elif lowered in (b"allchannels", b"&*"):
            self.all_channels = True
            self.channels = []
        elif lowered == b"resetchannels":
            self.all_channels = False
            self.channels = []
        elif lowered in (b"allcommands", b"+@all"):
            self.set_all_commands(True)
        elif lowered in (b"nocommands", b"-@all"):
            self.set_all_commands(False)
        elif op[:1] in (b"~", b"%"):
            self._add_pattern(op)
        elif op[:1] == b"&":
            if self.all_channels:
                raise AclError(CHANNELS_AFTER_ALL)
            if op[1:] not in self.channels:
                self.channels.append(op[1:])
        elif op[:1] in (b"+", b"-") and len(op) > 1:
            try:
                text = op.decode("ascii")
            except UnicodeDecodeError:
                raise AclError(UNKNOWN_NAME) from None
            self.add_rule(text)
        else:
            raise AclError(SYNTAX)

    def _add_pattern(self, op: bytes) -> None:
        if op[:1] == b"~":
            flags, offset = READ_WRITE, 1
        else:
            flags, offset = 0, 1
            while offset < len(op):
                c = op[offset : offset + 1].upper()
                if c == b"R":
                    flags |= READ
                elif c == b"W":
                    flags |= WRITE
                elif c == b"~":
                    offset += 1
                    break
                else:
                    raise AclError(SYNTAX)
                offset += 1
            if not flags:
                raise AclError(SYNTAX)
        pattern = op[offset:]
        if pattern == b"*" and flags == READ_WRITE:
            self.all_keys = True
            self.patterns = []
            return
        if self.all_keys:
            raise AclError(KEYS_AFTER_ALL)
        for entry in self.patterns:
            if entry.pattern == pattern:
                entry.flags |= flags
                return
        self.patterns.append(KeyPattern(flags, pattern))

    # -- checks --

    def check(self, spec: Command, args: list[bytes]) -> tuple[int, int]:
        """(0, 0) if this selector allows the command line, else (why, argument index)."""
        perms = self.perms
        if spec.full_name not in perms.allowed and "no_auth" not in spec.flags:
            first = perms.first_args.get(spec.full_name)
            at = 2 if spec.container else 1
            if first is None or len(args) <= at or args[at].lower() not in first:
                return DENIED_CMD, 0
        if not self.all_keys:
            for position, flags in command_keys(spec, args):
                if not self.key_allowed(args[position], flags):
                    return DENIED_KEY, position
        if not self.all_channels:
            for position, is_pattern in channel_positions(spec, args):
                if not self.channel_allowed(args[position], is_pattern):
                    return DENIED_CHANNEL, position
        return 0, 0

    def reads_every_key(self) -> bool:
        """allkeys, or a "*" pattern that reads (SORT's BY and GET need it)."""
        return self.all_keys or any(
            pattern == b"*" and int(flags) & READ
            for flags, pattern in ((p.flags, p.pattern) for p in self.patterns)
        )

    def key_allowed(self, key: bytes, key_flags: tuple[str, ...]) -> bool:
        if self.all_keys:
            return True
        wanted = 0
        if "access" in key_flags:
            wanted |= READ
        if "insert" in key_flags or "delete" in key_flags or "update" in key_flags:
            wanted |= WRITE
        return any(
            p.flags & wanted == wanted and _compiled(p.pattern).match(key) for p in self.patterns
        )

    def channel_allowed(self, channel: bytes, is_pattern: bool) -> bool:
        if self.all_channels:
            return True
        for allowed in self.channels:
            if (is_pattern and allowed == channel) or (
                not is_pattern and _compiled(allowed).match(channel)
            ):
                return True
        return False


@functools.lru_cache(maxsize=4096)
def _compiled(pattern: bytes) -> glob.Pattern:
    """A key or channel pattern, compiled once (compiling costs far more than matching; a
    script checks a pattern at each of its calls)."""
    return glob.Pattern(pattern)


def _pattern_text(flags: int, pattern: bytes) -> str:
    text = pattern.decode("utf-8", "surrogateescape")
    if flags == READ_WRITE:
        return "~" + text
    return ("%R~" if flags == READ else "%W~") + text


def channel_positions(spec: Command, args: list[bytes]) -> list[tuple[int, bool]]:
    found = _CHANNEL_COMMANDS.get(spec.full_name)
    if found is None:
        return []
    every, is_pattern = found
    if every:
        return [(i, is_pattern) for i in range(1, len(args))]
    return [(1, is_pattern)] if len(args) > 1 else []


@dataclass
class User:
    name: bytes
    enabled: bool = False
    nopass: bool = False
    sanitize: str = ""  # "", "sanitize-payload" or "skip-sanitize-payload"
    passwords: list[str] = field(default_factory=list)  # SHA-256 hex, in the order added
    selectors: list[Selector] = field(default_factory=lambda: [Selector(root=True)])

    @property
    def root(self) -> Selector:
        return self.selectors[0]

    def copy(self) -> User:
        return User(
            self.name, self.enabled, self.nopass, self.sanitize, list(self.passwords),
            [s.copy() for s in self.selectors],
        )  # fmt: skip

    def apply(self, op: bytes) -> None:
        """One SETUSER modifier (a whole "(...)" selector included), or AclError."""
        lowered = op.lower()
        if lowered == b"on":
            self.enabled = True
        elif lowered == b"off":
            self.enabled = False
        elif lowered == b"nopass":
            self.nopass = True
            self.passwords = []
        elif lowered == b"resetpass":
            self.nopass = False
            self.passwords = []
        elif lowered in (b"sanitize-payload", b"skip-sanitize-payload"):
            self.sanitize = lowered.decode()
        elif lowered == b"clearselectors":
            del self.selectors[1:]
        elif lowered == b"reset":
            for step in (b"resetpass", b"resetkeys", b"resetchannels", b"off", b"clearselectors",
                         b"-@all"):  # fmt: skip
                self.apply(step)
            self.sanitize = "sanitize-payload"
        elif op[:1] == b">":
            hashed = hash_password(op[1:])
            if hashed not in self.passwords:
                self.passwords.append(hashed)
            self.nopass = False
        elif op[:1] == b"<":
            hashed = hash_password(op[1:])
            if hashed not in self.passwords:
                raise AclError(NO_SUCH_PASSWORD)
            self.passwords.remove(hashed)
            self.nopass = False
        elif op[:1] in (b"#", b"!"):
            text = op[1:].decode("latin-1")
            if not _valid_hash(text):
                raise AclError(BAD_HASH)
            if op[:1] == b"#":
                if text not in self.passwords:
                    self.passwords.append(text)
            else:
                if text not in self.passwords:
                    raise AclError(NO_SUCH_PASSWORD)
                self.passwords.remove(text)
            self.nopass = False
        elif op[:1] == b"(" and op[-1:] == b")":
            selector = Selector()
            for part in op[1:-1].split():
                selector.apply(part)
            self.selectors.append(selector)
        else:
            self.root.apply(op)

    def describe(self) -> str:
        parts = ["on" if self.enabled else "off"]
        if self.nopass:
            parts.append("nopass")
        if self.sanitize:
            parts.append(self.sanitize)
        parts += ["#" + p for p in self.passwords]
        parts.append(self.root.describe())
        parts += [f"({s.describe()})" for s in self.selectors[1:]]
        return " ".join(parts)

    def flags(self) -> list[str]:
        flags = ["on" if self.enabled else "off"]
        if self.nopass:
            flags.append("nopass")
        if self.sanitize:
            flags.append(self.sanitize)
        return flags

    def check_password(self, password: bytes) -> bool:
        if not self.enabled:
            return False
        return self.nopass or hash_password(password) in self.passwords

    def check(self, spec: Command, args: list[bytes]) -> tuple[int, int]:
        """(0, 0) when some selector allows the command line; else the most relevant
        refusal as Redis picks it (the larger reason, then the later argument)."""
        worst, worst_at = DENIED_CMD, 0
        for selector in self.selectors:
            why, at = selector.check(spec, args)
            if why == 0:
                return 0, 0
            if why > worst or (why == worst and at > worst_at):
                worst, worst_at = why, at
        return worst, worst_at

    def channel_allowed(self, channel: bytes, is_pattern: bool) -> bool:
        return any(s.channel_allowed(channel, is_pattern) for s in self.selectors)

    def unrestricted(self) -> bool:
        """Every command on every key and channel (the GET fast path may serve it)."""
        root = self.root
        return (
            self.enabled
            and root.all_keys
            and root.all_channels
            and len(root.perms.allowed) == _command_count()
        )


def merge_selector_args(args: Iterable[bytes]) -> list[bytes]:
    """SETUSER's modifiers with each "(...)" selector spread over several arguments joined
    into one (Redis's ACLMergeSelectorArguments); raises CommandError-ready text via
    ValueError when a parenthesis is never closed."""
    merged: list[bytes] = []
    opening: bytes | None = None
    pending: list[bytes] = []
    for arg in args:
        if opening is None and arg[:1] == b"(" and arg[-1:] != b")":
            opening = arg
            pending = [arg]
            continue
        if opening is not None:
            pending.append(arg)
            if arg[-1:] == b")":
                merged.append(b" ".join(pending))
                opening = None
            continue
        merged.append(arg)
    if opening is not None:
        raise ValueError(UNMATCHED_PARENTHESIS % opening.decode("utf-8", "surrogateescape"))
    return merged


def default_user() -> User:
    user = User(b"default", enabled=True, nopass=True)
    user.root.all_keys = True
    user.root.all_channels = True
    user.root.set_all_commands(True)
    return user
