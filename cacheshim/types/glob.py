"""Redis's glob-style patterns (util.c ``stringmatchlen``), for KEYS, SCAN MATCH and friends.

- ``*`` matches any run of bytes, ``?`` any one byte;
- ``[abc]``, ``[a-z]``, ``[^a-z]`` match one byte of (or not of) a class; ``\\x`` inside a
  class is the byte ``x``; an unclosed class runs to the end of the pattern;
- ``\\x`` outside a class is the byte ``x`` (a trailing backslash is itself);
- everything else matches itself, byte for byte.

Redis's quirks are kept on purpose, so a pattern selects the same keys here as there:

- an empty subject matches only the empty pattern (``*`` does not match ``""``; KEYS and SCAN
  treat a lone ``*`` as "everything" before they ever call the matcher);
- range bounds compare as C ``char``, which is signed on x86-64: ``[a-\\xff]`` is the range
  from -1 to 97, so it holds the bytes 0x00-0x61 and 0xff; bounds given backwards are swapped;
- ``[a-]`` ... a ``-`` after the first byte of a class always starts a range, even when the
  byte after it is ``]``, which then ends the range rather than the class;
- with ``nocase`` (CONFIG GET), ranges are swapped first and lower-cased after;
- Redis recurses once per run of stars and gives up (no match) past 1,000 levels: a pattern
  whose 1,001st run of stars is not its last token matches nothing (a last run of stars
  matches whatever is left without recursing).

The pattern is compiled once into tokens that each match one byte (a 256-entry table) or
any run (``*``); matching backtracks only to the last ``*``, so it takes O(len(pattern) *
len(subject)) at worst, never the exponential time of a naive recursive matcher.
"""

from __future__ import annotations

from typing import Final

_STAR: Final = None  # a token that matches any run of bytes
# stringmatchlen's nesting limit: the deepest run of stars it recurses into.
NESTING_MAX: Final = 1000
_BACKSLASH: Final = 0x5C

Table = bytes  # 256 entries, nonzero where the byte matches
Token = Table | None


def _signed(byte: int) -> int:
    return byte - 256 if byte >= 128 else byte


def _lower(byte: int) -> int:
    return byte + 32 if 0x41 <= byte <= 0x5A else byte


def _lower_signed(value: int) -> int:
    return value + 32 if 0x41 <= value <= 0x5A else value


def _table(members: set[int]) -> Table:
    return bytes(1 if b in members else 0 for b in range(256))


def _literal(byte: int, nocase: bool) -> Table:
    return _table(_literal_members(byte, nocase))


_ANY: Final = bytes([1]) * 256


class Pattern:
    """A compiled pattern; :meth:`match` tells whether a subject matches it."""

    __slots__ = ("_empty", "_hopeless", "_literal", "_tokens")

    def __init__(self, pattern: bytes, nocase: bool = False) -> None:
        self._empty = not pattern
        self._tokens = _compile(pattern, nocase)
        self._hopeless = _too_nested(self._tokens)
        literal = None
        if not nocase and all(t is not None and sum(t) == 1 for t in self._tokens):
            literal = bytes(t.index(1) for t in self._tokens if t is not None)
        self._literal = literal

    def match(self, subject: bytes) -> bool:
        if not subject:
            return self._empty
        if self._hopeless:
            return False
        if self._literal is not None:
            return subject == self._literal
        return _match(self._tokens, subject)


def match(pattern: bytes, subject: bytes, nocase: bool = False) -> bool:
    """Whether subject matches the Redis glob pattern."""
    return Pattern(pattern, nocase).match(subject)


def _too_nested(tokens: list[Token]) -> bool:
    """Whether Redis would have to recurse past NESTING_MAX runs of stars to match anything:
    a run of stars beyond the limit that is not the pattern's last token."""
    stars = 0
    for position, token in enumerate(tokens):
        if token is _STAR:
            stars += 1
            if stars > NESTING_MAX and position < len(tokens) - 1:
                return True
    return False


def _compile(pattern: bytes, nocase: bool) -> list[Token]:
    tokens: list[Token] = []
    n = len(pattern)
    i = 0
    while i < n:
        c = pattern[i]
        if c == 0x2A:  # '*': a run of stars is one star
            while i < n and pattern[i] == 0x2A:
                i += 1
            tokens.append(_STAR)
            continue
        if c == 0x3F:  # '?'
            tokens.append(_ANY)
            i += 1
        elif c == 0x5B:  # '['
            i += 1
            negate = i < n and pattern[i] == 0x5E  # '^'
            if negate:
                i += 1
            members: set[int] = set()
            while True:
                if i < n and pattern[i] == _BACKSLASH and n - i >= 2:
                    i += 1
                    members.update(_literal_members(pattern[i], nocase))
                elif i < n and pattern[i] == 0x5D:  # ']'
                    break
                elif i >= n:  # unclosed: the class ends with the pattern
                    i -= 1
                    break
                elif n - i >= 3 and pattern[i + 1] == 0x2D:  # 'x-y'
                    members.update(_range_members(pattern[i], pattern[i + 2], nocase))
                    i += 2
                else:
                    members.update(_literal_members(pattern[i], nocase))
                i += 1
            i += 1
            if negate:
                members = set(range(256)) - members
            tokens.append(_table(members))
        else:
            if c == _BACKSLASH and n - i >= 2:
                i += 1
            tokens.append(_literal(pattern[i], nocase))
            i += 1
    return tokens


def _literal_members(byte: int, nocase: bool) -> set[int]:
    if nocase:
        return {b for b in range(256) if _lower(b) == _lower(byte)}
    return {byte}


def _range_members(first: int, last: int, nocase: bool) -> set[int]:
    start, end = _signed(first), _signed(last)
    if start > end:
        start, end = end, start
    if nocase:
        start, end = _lower_signed(start), _lower_signed(end)
        return {b for b in range(256) if start <= _lower_signed(_signed(b)) <= end}
    return {b for b in range(256) if start <= _signed(b) <= end}


def _match(tokens: list[Token], subject: bytes) -> bool:
    """Glob matching that backtracks to the most recent star only."""
    count = len(tokens)
    size = len(subject)
    ti = si = 0
    star_ti = -1  # the last star seen, and where in the subject its run ends now
    star_si = 0
    while si < size:
        if ti < count:
            token = tokens[ti]
            if token is None:
                star_ti, star_si = ti, si
                ti += 1
                continue
            if token[subject[si]]:
                ti += 1
                si += 1
                continue
        if star_ti < 0:
            return False
        star_si += 1  # let the last star swallow one more byte and retry after it
        si = star_si
        ti = star_ti + 1
    while ti < count and tokens[ti] is None:
        ti += 1
    return ti == count
