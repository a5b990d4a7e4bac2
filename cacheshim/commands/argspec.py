"""Declarative option parsing for command handlers, read the way Redis's own loops read.

Most Redis commands end in options: words (``NX``, ``WITHSCORES``), words followed by values
(``COUNT 10``, ``LIMIT 0 5``), in any order. Redis parses each with a hand-written loop, and
clients see its exact behaviour, so a spec here states the same rules as data:

- an `Arg` is one option: its word, how many values follow it, how they are converted (a
  converter raises `CommandError` with Redis's text, at the moment the loop meets the value,
  so a bad value is reported before anything later on the line);
- given twice, the last one wins (`Parsed.get`; `Parsed.all` has every one, in order),
  unless the option is ``once``: then a second one is an unknown word;
- ``exclusive`` groups: an option met after another member of its group was given is an
  unknown word (SET's ``NX ... XX``); the same option again is not a conflict;
- ``conflicts``: checked in order after the whole line is read, each with its own error
  (ZADD's "XX and NX options at the same time are not compatible");
- an unknown word, or an option without enough values after it, is ``ERR syntax error``
  unless the spec names another error (EXPIRE's "Unsupported option ...").

`ArgSpec.parse` reads everything from a position to the end; `ArgSpec.parse_leading` reads
options until the first word that is none and leaves the rest to the handler (ZADD's
score-member pairs), which then calls `ArgSpec.check` when Redis checks conflicts.
Handlers keep what Redis does around the loop (key lookups before it, checks of how the
options combine after it) in their own order.

Read by specs: SET, GETEX, LCS, EXPIRE & co., COPY, LPOS, SINTERCARD, SORT, SORT_RO, the SCAN
family, LMPOP/ZMPOP's COUNT, ZADD/ZINCRBY, ZRANGE and its family, ZUNION/ZINTER/ZDIFF and
their STORE forms, ZINTERCARD. Left as code, because a spec would not be shorter or would
need rules only one command has: ZRANDMEMBER's and HRANDFIELD's single trailing word;
CLIENT LIST (``TYPE t`` or ``ID`` followed by any number of ids); CLIENT KILL (filter-value
pairs counted before they are read, and the old one-address form); HELLO (a protocol
version first, AUTH with two values, its own error text that quotes the word); FUNCTION
LIST (a missing LIBRARYNAME value has its own error); SORT's key extraction for COMMAND
GETKEYS (Redis skips words there without checking them).

COMMAND DOCS shows no ``arguments`` for any command: a spec knows the options only, not the
positional arguments and the nested blocks Redis lists, so it would show less than Redis.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Final, Generic, TypeVar, cast, overload

from cacheshim.protocol import errors
from cacheshim.protocol.errors import CommandError

T = TypeVar("T")

# nargs of an option followed by one value per key of the command (ZUNION's WEIGHTS):
# the count is given to `ArgSpec.parse` as numkeys.
PER_KEY: Final = -1


def option(arg: bytes) -> bytes:
    """An option word as Redis compares it (strcasecmp on a C string): upper-cased, and
    cut at the first NUL byte."""
    nul = arg.find(0)
    return (arg if nul < 0 else arg[:nul]).upper()


@dataclass(frozen=True, eq=False)
class Arg(Generic[T]):
    """One option: `name` (upper case) and `nargs` values after it, made into a T by
    `convert` (which sees the values as a list)."""

    name: bytes
    nargs: int
    convert: Callable[[list[bytes]], T]
    once: bool = False

    def __repr__(self) -> str:
        return f"Arg({self.name.decode()})"


def _true(values: list[bytes]) -> bool:
    return True


def token(name: str, once: bool = False) -> Arg[bool]:
    """A word on its own (Redis's pure-token): its value is True."""
    return Arg(name.encode(), 0, _true, once)


def valued(name: str, convert: Callable[[bytes], T], once: bool = False) -> Arg[T]:
    """A word followed by one value, converted as the loop meets it."""
    return Arg(name.encode(), 1, lambda values: convert(values[0]), once)


def _first(values: list[bytes]) -> bytes:
    return values[0]


def raw(name: str, once: bool = False) -> Arg[bytes]:
    """A word followed by one value, kept as given (checked later, or a pattern or key)."""
    return Arg(name.encode(), 1, _first, once)


def multi(name: str, nargs: int, convert: Callable[[bytes], T], once: bool = False) -> Arg[list[T]]:
    """A word followed by nargs values (or one per key: `PER_KEY`), converted one by one in
    order (LIMIT offset count; WEIGHTS)."""
    return Arg(name.encode(), nargs, lambda values: [convert(v) for v in values], once)


def one_of(*words: str) -> Callable[[bytes], bytes]:
    """A converter for a value that must be one of words (any case): the word in upper
    case, else a syntax error (ZUNION's AGGREGATE SUM|MIN|MAX)."""
    allowed = frozenset(w.encode() for w in words)

    def convert(value: bytes) -> bytes:
        word = option(value)
        if word not in allowed:
            raise CommandError(errors.SYNTAX_ERROR)
        return word

    return convert


@dataclass(frozen=True)
class Conflict:
    """After the loop: `arg` with any of `others` is refused with `message`."""

    arg: Arg[Any]
    others: tuple[Arg[Any], ...]
    message: str


class Parsed:
    """What a spec read: every option given, with its values in order. `end` is where
    reading stopped (the end of the arguments, except after `ArgSpec.parse_leading`)."""

    __slots__ = ("_order", "_values", "end")

    def __init__(self) -> None:
        self._values: dict[Arg[Any], list[Any]] = {}
        self._order: list[Arg[Any]] = []
        self.end = 0

    def add(self, arg: Arg[Any], value: object) -> None:
        self._values.setdefault(arg, []).append(value)
        self._order.append(arg)

    def __contains__(self, arg: Arg[Any]) -> bool:
        return arg in self._values

    def isdisjoint(self, args: Sequence[Arg[Any]]) -> bool:
        """True when none of args was given."""
        return self._values.keys().isdisjoint(args)

    @overload
    def get(self, arg: Arg[T]) -> T | None: ...
    @overload
    def get(self, arg: Arg[T], default: T) -> T: ...
    def get(self, arg: Arg[T], default: T | None = None) -> T | None:
        """The value of the last `arg` given, or default."""
        values = self._values.get(arg)
        return default if values is None else cast(T, values[-1])

    def all(self, arg: Arg[T]) -> list[T]:
        """The values of every `arg` given, in order."""
        return list(self._values.get(arg, ()))

    def last(self, *args: Arg[Any]) -> Arg[Any] | None:
        """Which of args was given last (SORT's ASC or DESC), None if none was."""
        for arg in self._order[::-1]:
            if arg in args:
                return arg
        return None


class ArgSpec:
    """The options one command accepts, and how they may combine (see the module doc)."""

    def __init__(
        self,
        *args: Arg[Any],
        exclusive: Sequence[Sequence[Arg[Any]]] = (),
        conflicts: Sequence[Conflict] = (),
        unknown: Callable[[bytes], str] | None = None,
    ) -> None:
        self.args = args
        self.by_name = {arg.name: arg for arg in args}
        if len(self.by_name) != len(args):
            raise ValueError("an option is declared twice")
        self.exclusive: dict[Arg[Any], list[Arg[Any]]] = {}
        for group in exclusive:
            for arg in group:
                if arg not in args:
                    raise ValueError(f"{arg!r} in a group but not in the spec")
                self.exclusive.setdefault(arg, []).extend(a for a in group if a is not arg)
        self.conflicts = tuple(conflicts)
        self.unknown = unknown

    def without(self, *args: Arg[Any]) -> ArgSpec:
        """The same spec less some options (a command's variant that lacks them)."""
        kept = tuple(a for a in self.args if a not in args)
        groups = [
            [a for a in [arg, *others] if a in kept]
            for arg, others in self.exclusive.items()
            if arg in kept
        ]
        conflicts = [c for c in self.conflicts if c.arg in kept]
        return ArgSpec(*kept, exclusive=groups, conflicts=conflicts, unknown=self.unknown)

    def _refuse(self, word: bytes) -> CommandError:
        return CommandError(self.unknown(word) if self.unknown else errors.SYNTAX_ERROR)

    def _read(self, args: list[bytes], start: int, numkeys: int, leading: bool) -> Parsed:
        parsed = Parsed()
        i = start
        while i < len(args):
            arg = self.by_name.get(option(args[i]))
            nargs = 0 if arg is None else numkeys if arg.nargs == PER_KEY else arg.nargs
            if (
                arg is None
                or len(args) - i - 1 < nargs  # not enough values after it
                or (arg.once and arg in parsed)
                or not parsed.isdisjoint(self.exclusive.get(arg, ()))
            ):  # Redis's loop falls through to its last branch: an unknown word
                if leading:
                    break
                raise self._refuse(args[i])
            parsed.add(arg, arg.convert(args[i + 1 : i + 1 + nargs]))
            i += 1 + nargs
        parsed.end = i
        return parsed

    def parse(self, args: list[bytes], start: int = 0, numkeys: int = 0) -> Parsed:
        """Read args[start:] to the end, then check the conflicts."""
        parsed = self._read(args, start, numkeys, leading=False)
        self.check(parsed)
        return parsed

    def parse_leading(self, args: list[bytes], start: int = 0) -> Parsed:
        """Read options from args[start] until a word that is none (or the end); `end` is
        that word's position. Conflicts are left to `check`."""
        return self._read(args, start, 0, leading=True)

    def check(self, parsed: Parsed) -> None:
        """The first conflict among the options given, as its error."""
        for conflict in self.conflicts:
            if conflict.arg in parsed and not parsed.isdisjoint(conflict.others):
                raise CommandError(conflict.message)
