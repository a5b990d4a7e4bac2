"""COMMAND and its subcommands (Redis server.c): everything is derived from the command
table in :mod:`cacheshim.commands`, so what COMMAND reports is what the shim does.

Flags and ACL categories come out in Redis's order whatever order a declaration lists them
in, and the ACL categories Redis implies from the flags (``write`` -> ``@write``, not
``fast`` -> ``@slow``, ...) are added. Key specs are derived from each command's key range:
a ``begin_search`` at the first key and a ``find_keys`` range, with the access flags the
declaration gives (``key_flags=``, one set per key spec), else ``RO access`` for read-only
commands and ``RW update`` for writes. Tips are the declaration's (``tips=``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Final

from cacheshim.commands import COMMANDS, Command, Ctx, command, lookup
from cacheshim.commands.args import parse_int
from cacheshim.commands.connection import help_reply
from cacheshim.protocol import errors
from cacheshim.protocol.errors import CommandError, text_from_bytes
from cacheshim.protocol.resp import Reply, SetReply, Status
from cacheshim.types import glob

INVALID_COMMAND: Final = "ERR Invalid command specified"
INVALID_ARGUMENT_COUNT: Final = "ERR Invalid number of arguments specified for command"
NO_KEY_ARGUMENTS: Final = "ERR The command has no key arguments"

# The flags COMMAND shows, in Redis's order; others (may_replicate, ...) stay hidden.
FLAG_ORDER: Final = (
    "write",
    "readonly",
    "denyoom",
    "module",
    "admin",
    "pubsub",
    "noscript",
    "blocking",
    "loading",
    "stale",
    "skip_monitor",
    "skip_slowlog",
    "asking",
    "fast",
    "no_auth",
    "no_mandatory_keys",
    "no_async_loading",
    "no_multi",
    "movablekeys",
    "allow_busy",
)
# ACL categories in Redis's order.
ACL_CATEGORY_ORDER: Final = (
    "keyspace",
    "read",
    "write",
    "set",
    "sortedset",
    "list",
    "hash",
    "string",
    "bitmap",
    "hyperloglog",
    "geo",
    "stream",
    "pubsub",
    "admin",
    "fast",
    "slow",
    "blocking",
    "dangerous",
    "connection",
    "transaction",
    "scripting",
)
# Categories a flag implies (Redis's setImplicitACLCategories).
_IMPLIED_CATEGORIES: Final = {
    "write": ("write",),
    "admin": ("admin", "dangerous"),
    "pubsub": ("pubsub",),
    "fast": ("fast",),
    "blocking": ("blocking",),
}


def command_flags(spec: Command) -> list[str]:
    return [flag for flag in FLAG_ORDER if flag in spec.flags]


def acl_categories(spec: Command) -> list[str]:
    """The command's ACL categories (without '@'), implied ones included, in Redis's order."""
    categories = {c.lstrip("@") for c in spec.acl_categories}
    for flag in spec.flags:
        categories.update(_IMPLIED_CATEGORIES.get(flag, ()))
    if "readonly" in spec.flags and "scripting" not in categories:
        categories.add("read")
    if "fast" not in categories:
        categories.add("slow")
    return [c for c in ACL_CATEGORY_ORDER if c in categories]


def key_flag_specs(spec: Command) -> tuple[tuple[str, ...], ...]:
    """The access flags of each key spec, in key order: the declaration's, else derived."""
    if spec.key_flag_specs:
        return spec.key_flag_specs
    return (("RW", "update"),) if spec.is_write else (("RO", "access"),)


def key_flags_at(spec: Command, ordinal: int) -> tuple[str, ...]:
    """The access flags of the command's ordinal-th key (0: the first): its key spec's, the
    last spec covering every key after the others."""
    specs = key_flag_specs(spec)
    return specs[min(ordinal, len(specs) - 1)]


def _variable_key_flags(spec: Command, args: list[bytes]) -> tuple[str, ...] | None:
    """Flags that depend on the arguments (Redis's variable_flags key specs): SET with GET
    reads the old value (RW access update), without it only overwrites (OW update)."""
    if spec.full_name == "set":
        if any(arg.lower() == b"get" for arg in args[3:]):
            return ("RW", "access", "update")
        return ("OW", "update")
    if spec.full_name == "bitfield":
        return ("RO", "access") if _bitfield_reads_only(args) else ("RW", "access", "update")
    return None


def _bitfield_reads_only(args: list[bytes]) -> bool:
    """Redis's bitfieldGetKeys: only GET and OVERFLOW (a malformed list counts as a write)."""
    i = 2
    while i < len(args):
        word, left = args[i].lower(), len(args) - i - 1
        if word == b"get" and left >= 2:
            i += 3
        elif word == b"overflow" and left >= 1:
            i += 2
        else:
            return False
    return True


def key_specs(spec: Command) -> list[Reply]:
    keyword = KEYWORD_KEY_SPECS.get(spec.full_name)
    if keyword is not None:  # keys after a keyword, in the first half of what follows it
        return [
            {
                b"flags": SetReply([Status(f) for f in key_flag_specs(spec)[0]]),
                b"begin_search": {
                    b"type": b"keyword",
                    b"spec": {b"keyword": keyword[0], b"startfrom": keyword[1]},
                },
                b"find_keys": {
                    b"type": b"range",
                    b"spec": {b"lastkey": -1, b"keystep": 1, b"limit": 2},
                },
            }
        ]
    if spec.full_name in KEYNUM_KEY_SPECS:
        keynum: dict[Reply, Reply] = {}
        if spec.full_name in ("eval", "eval_ro", "fcall", "fcall_ro"):
            # The key spec's notes, as Redis's COMMAND INFO shows them (an interface text).
            worst = "RO and ACCESS" if spec.full_name.endswith("_ro") else "RW and UPDATE"
            keynum[b"notes"] = (
                "We cannot tell how the keys will be used so we assume the worst, " + worst
            ).encode()
        return [
            {
                **keynum,
                b"flags": SetReply([Status(f) for f in key_flag_specs(spec)[0]]),
                b"begin_search": {b"type": b"index", b"spec": {b"index": 2}},
                b"find_keys": {
                    b"type": b"keynum",
                    b"spec": {b"keynumidx": 0, b"firstkey": 1, b"keystep": 1},
                },
            }
        ]
    if spec.first_key <= 0:
        return []
    specs = key_flag_specs(spec)
    replies: list[Reply] = []
    notes = KEY_SPEC_NOTES.get(spec.full_name)
    for ordinal, flags in enumerate(specs):
        begin = spec.first_key + ordinal * spec.key_step
        if ordinal and "movablekeys" in spec.flags:  # found by other arguments: not a range
            unknown: Reply = {b"type": b"unknown", b"spec": {}}
            replies.append(
                {
                    b"flags": SetReply([Status(f) for f in flags]),
                    b"begin_search": unknown,
                    b"find_keys": unknown,
                }
            )
            continue
        if ordinal < len(specs) - 1:  # a spec of one key
            last = 0
        else:  # the last spec: from its key to the command's last key
            last = spec.last_key - begin if spec.last_key >= 0 else spec.last_key
        replies.append(
            {
                **({b"notes": notes.encode()} if notes is not None and not ordinal else {}),
                b"flags": SetReply([Status(f) for f in flags]),
                b"begin_search": {b"type": b"index", b"spec": {b"index": begin}},
                b"find_keys": {
                    b"type": b"range",
                    b"spec": {b"lastkey": last, b"keystep": spec.key_step, b"limit": 0},
                },
            }
        )
    return replies


def command_info(spec: Command) -> Reply:
    """One entry of COMMAND / COMMAND INFO, in Redis 7's ten fields."""
    return [
        spec.full_name.encode(),
        spec.arity,
        SetReply([Status(f) for f in command_flags(spec)]),
        spec.first_key,
        spec.last_key,
        spec.key_step,
        SetReply([Status(f"@{c}") for c in acl_categories(spec)]),
        SetReply([t.encode() for t in spec.tips]),
        SetReply(key_specs(spec)),
        SetReply([command_info(sub) for sub in spec.subcommands.values()]),
    ]


def command_docs(spec: Command) -> Reply:
    docs: dict[Reply, Reply] = {
        b"summary": spec.summary.encode(),
        b"since": spec.since.encode(),
        b"group": spec.group.encode(),
        b"complexity": spec.complexity.encode(),
    }
    if spec.subcommands:
        docs[b"subcommands"] = {
            sub.full_name.encode(): command_docs(sub) for sub in spec.subcommands.values()
        }
    return docs


def all_commands() -> Iterator[Command]:
    """Every command and subcommand of the table, containers before their subcommands."""
    for spec in COMMANDS.values():
        yield spec
        yield from spec.subcommands.values()


def find_command(name: bytes) -> Command | None:
    """A command by name, or a subcommand by ``container|sub`` (any case)."""
    container_name, _, sub = text_from_bytes(name).lower().partition("|")
    spec = COMMANDS.get(container_name)
    if spec is None or not sub:
        return spec
    return spec.subcommands.get(sub)


@command(
    "command", -1, "loading stale", (0, 0, 0), "slow connection", "server", "2.8.13",
    "Describes every command this server knows.",
    "O(N) where N is the total number of Redis commands",
    tips="nondeterministic_output_order",
)  # fmt: skip
def command_(ctx: Ctx, args: list[bytes]) -> Reply:
    # Reached with arguments only when they name no subcommand.
    if args:
        raise CommandError(errors.unknown_subcommand(b"command", args[0]))
    return [command_info(spec) for spec in COMMANDS.values()]


@command(
    "count", 2, "loading stale", (0, 0, 0), "slow connection", "server", "2.8.13",
    "Answers how many commands this server knows.", container="command",
)  # fmt: skip
def command_count(ctx: Ctx, args: list[bytes]) -> Reply:
    return len(COMMANDS)


@command(
    "info", -2, "loading stale", (0, 0, 0), "slow connection", "server", "2.8.13",
    "Describes the named commands (or all): arity, flags, keys, categories.",
    "O(N) where N is the number of commands to look up", container="command",
    tips="nondeterministic_output_order",
)  # fmt: skip
def command_info_(ctx: Ctx, args: list[bytes]) -> Reply:
    if not args:
        return [command_info(spec) for spec in COMMANDS.values()]
    out: list[Reply] = []
    for name in args:
        spec = find_command(name)
        out.append(None if spec is None else command_info(spec))
    return out


@command(
    "docs", -2, "loading stale", (0, 0, 0), "slow connection", "server", "7.0.0",
    "Answers the documentation of the named commands (or all).",
    "O(N) where N is the number of commands to look up", container="command",
    tips="nondeterministic_output_order",
)  # fmt: skip
def command_docs_(ctx: Ctx, args: list[bytes]) -> Reply:
    chosen = list(COMMANDS.values()) if not args else [find_command(a) for a in args]
    return {spec.full_name.encode(): command_docs(spec) for spec in chosen if spec is not None}


@command(
    "list", -2, "loading stale", (0, 0, 0), "slow connection", "server", "7.0.0",
    "Answers the names of the commands (FILTERBY MODULE, ACLCAT or "
    "PATTERN).", "O(N) where N is the total number of Redis commands",
    container="command", tips="nondeterministic_output_order",
)  # fmt: skip
def command_list(ctx: Ctx, args: list[bytes]) -> Reply:
    names = [spec.full_name for spec in all_commands()]
    if not args:
        return [n.encode() for n in names]
    if len(args) != 3 or args[0].lower() != b"filterby":
        raise CommandError(errors.SYNTAX_ERROR)
    kind, value = args[1].lower(), args[2]
    if kind == b"module":
        return []  # no modules
    if kind == b"aclcat":
        category = text_from_bytes(value).lower()
        return [s.full_name.encode() for s in all_commands() if category in acl_categories(s)]
    if kind == b"pattern":
        return [n.encode() for n in names if glob.match(value, n.encode(), nocase=True)]
    raise CommandError(errors.SYNTAX_ERROR)


INVALID_ARGUMENTS: Final = "ERR Invalid arguments specified for command"


def _numkeys_keys(numkeys_at: int, first_keys: int = 0) -> Callable[[list[bytes]], list[int]]:
    """Keys counted by an argument (ZUNION numkeys k..., BLMPOP timeout numkeys k...), after
    `first_keys` fixed keys (ZUNIONSTORE's destination), as Redis's key specs find them."""

    def positions(args: list[bytes]) -> list[int]:
        try:
            count = parse_int(args[numkeys_at]) if numkeys_at < len(args) else 0
        except CommandError:
            count = 0
        first = numkeys_at + 1
        if count < 1 or first + count > len(args):
            raise CommandError(INVALID_ARGUMENTS)
        return list(range(1, 1 + first_keys)) + list(range(first, first + count))

    return positions


def _script_keys(args: list[bytes]) -> list[int]:
    """EVAL/FCALL-like: numkeys at 2, the keys after it; none when numkeys is not a number
    or counts more arguments than there are (Redis answers an empty list)."""
    try:
        count = parse_int(args[2])
    except CommandError:
        return []
    if count < 0 or 3 + count > len(args):
        return []
    return list(range(3, 3 + count))


# Commands whose keys follow a keyword (XREAD ... STREAMS k1 k2 id1 id2): the keyword and
# where Redis's key spec starts looking for it.
KEYWORD_KEY_SPECS: Final[dict[str, tuple[bytes, int]]] = {
    "xread": (b"STREAMS", 1),
    "xreadgroup": (b"STREAMS", 4),
}
# The notes of a command's first key spec, as COMMAND INFO shows them (interface texts).
KEY_SPEC_NOTES: Final[dict[str, str]] = {
    "xadd": "UPDATE instead of INSERT because of the optional trimming feature",
}

# Commands whose keys a keynum key spec finds (EVAL numkeys key ...): index of numkeys, in
# Redis's key spec terms (begin_search index, find_keys keynum).
KEYNUM_KEY_SPECS: Final = frozenset(
    ("eval", "evalsha", "eval_ro", "evalsha_ro", "fcall", "fcall_ro")
)


def _sort_keys(args: list[bytes]) -> list[int]:
    """SORT's key, and the destination of its last STORE (Redis's sortGetKeys: the
    arguments of LIMIT, GET and BY are skipped, a STORE with nothing after it is not one)."""
    store = 0
    skip = {b"limit": 2, b"get": 1, b"by": 1}
    i = 2
    while i < len(args):
        word = args[i].lower()
        if word in skip:
            i += skip[word]
        elif word == b"store" and i + 1 < len(args):
            store = i + 1
            i += 1
        i += 1
    return [1, store] if store else [1]


def _streams_keys(args: list[bytes]) -> list[int]:
    """XREAD/XREADGROUP: the first half of what follows the first STREAMS (the IDs are the
    other half), as Redis's keyword key spec finds them."""
    for at in range(1, len(args)):
        if args[at].upper() == b"STREAMS":
            rest = len(args) - at - 1
            if rest and rest % 2 == 0:
                return list(range(at + 1, at + 1 + rest // 2))
            break
    raise CommandError(INVALID_ARGUMENTS)


# Commands flagged movablekeys: their keys depend on other arguments.
MOVABLE_KEYS: Final[dict[str, Callable[[list[bytes]], list[int]]]] = {
    "sort": _sort_keys,
    "sort_ro": lambda args: [1],
    "zunion": _numkeys_keys(1),
    "zinter": _numkeys_keys(1),
    "zdiff": _numkeys_keys(1),
    "zintercard": _numkeys_keys(1),
    "sintercard": _numkeys_keys(1),
    "lmpop": _numkeys_keys(1),
    "zmpop": _numkeys_keys(1),
    "blmpop": _numkeys_keys(2),
    "bzmpop": _numkeys_keys(2),
    "xread": _streams_keys,
    "xreadgroup": _streams_keys,
    "zunionstore": _numkeys_keys(2, first_keys=1),
    "zinterstore": _numkeys_keys(2, first_keys=1),
    "zdiffstore": _numkeys_keys(2, first_keys=1),
    **{name: _script_keys for name in KEYNUM_KEY_SPECS},
}


def _keys_of(args: list[bytes]) -> tuple[Command, list[int]]:
    spec = lookup(args)
    if spec is None or spec.handler is None or (spec.subcommands and len(args) > 1):
        # (a container with arguments names a subcommand: an unknown one is no command)
        raise CommandError(INVALID_COMMAND)
    if not spec.arity_ok(len(args)):
        raise CommandError(INVALID_ARGUMENT_COUNT)
    movable = MOVABLE_KEYS.get(spec.full_name)
    if movable is not None:
        positions = movable(args)
    else:
        positions = [p for p in spec.key_positions(len(args)) if p < len(args)]
        specs = spec.key_flag_specs
        if len(specs) > 1 and spec.first_key + (len(specs) - 1) * spec.key_step >= len(args):
            # a key spec that begins past the arguments (PFMERGE with no source key)
            raise CommandError(INVALID_ARGUMENTS)
    if "not_key" in spec.key_spec_flags:  # a shard channel (SPUBLISH): declared, not a key
        positions = []
    if not positions and spec.full_name not in KEYNUM_KEY_SPECS:
        raise CommandError(NO_KEY_ARGUMENTS)
    return spec, positions


@command(
    "getkeys", -4, "loading stale", (0, 0, 0), "slow connection", "server", "2.8.13",
    "Answers which arguments of a command line are keys.",
    "O(N) where N is the number of arguments to the command", container="command",
)  # fmt: skip
def command_getkeys(ctx: Ctx, args: list[bytes]) -> Reply:
    _, positions = _keys_of(args)
    return [args[p] for p in positions]


@command(
    "getkeysandflags", -4, "loading stale", (0, 0, 0), "slow connection", "server", "7.0.0",
    "Answers which arguments of a command line are keys, with how each is used.",
    "O(N) where N is the number of arguments to the command", container="command",
)  # fmt: skip
def command_getkeysandflags(ctx: Ctx, args: list[bytes]) -> Reply:
    spec, positions = _keys_of(args)
    variable = _variable_key_flags(spec, args)
    return [
        [args[p], SetReply([Status(f) for f in variable or key_flags_at(spec, i)])]
        for i, p in enumerate(positions)
    ]


@command(
    "help", 2, "loading stale", (0, 0, 0), "slow connection", "server", "5.0.0",
    "Lists the COMMAND subcommands.", container="command",
)  # fmt: skip
def command_help(ctx: Ctx, args: list[bytes]) -> Reply:
    return help_reply(
        [
            "COMMAND <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
            "(no subcommand)",
            "    Details of every command.",
            "COUNT",
            "    How many commands there are.",
            "LIST [FILTERBY (MODULE <name>|ACLCAT <category>|PATTERN <pattern>)]",
            "    The names of the commands (and subcommands), optionally filtered.",
            "INFO [<command-name> ...]",
            "    Details of the given commands, or of every command.",
            "DOCS [<command-name> ...]",
            "    Documentation of the given commands, or of every command.",
            "GETKEYS <full-command>",
            "    The keys a full command would access.",
            "GETKEYSANDFLAGS <full-command>",
            "    The keys a full command would access, with their access flags.",
            "HELP",
            "    This text.",
        ]
    )


def command_keys(spec: Command, args: list[bytes]) -> list[tuple[int, tuple[str, ...]]]:
    """The key arguments of a command line with each one's access flags (what ACL key
    patterns are checked against); none when its key arguments are malformed."""
    try:
        movable = MOVABLE_KEYS.get(spec.full_name)
        if movable is not None:
            positions = movable(args)
        else:
            positions = [p for p in spec.key_positions(len(args)) if p < len(args)]
    except CommandError:
        return []
    if "not_key" in spec.key_spec_flags:
        return []
    variable = _variable_key_flags(spec, args)
    return [(p, variable or key_flags_at(spec, i)) for i, p in enumerate(positions)]
