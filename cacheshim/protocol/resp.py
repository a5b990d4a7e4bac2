"""RESP2/RESP3 without I/O: a request parser and a reply encoder, byte-exact with Redis 7.0.

Requests
--------
:class:`RequestParser` takes bytes as they arrive (:meth:`RequestParser.feed`) and hands out
complete commands one at a time (:meth:`RequestParser.next_command`), so pipelined input
yields many commands from one read and a half-sent command waits for more bytes. It reads
the two request forms Redis reads (``networking.c`` ``processInputBuffer``):

- multibulk, when the request starts with ``*``: ``*<n>\\r\\n`` then ``n`` times
  ``$<len>\\r\\n<len bytes>\\r\\n``. ``*0`` and negative counts are skipped, as Redis skips
  them.
- inline, otherwise: one line up to ``\\n`` (a ``\\r`` before it is dropped), split with the
  rules of Redis's ``sdssplitargs``: blanks separate arguments; ``"..."`` understands
  ``\\n \\r \\t \\b \\a \\xHH`` and backslash before any other byte; ``'...'`` understands
  only ``\\'``; a closing quote must be followed by a blank or the end of the line. Empty
  lines are skipped.

Malformed input raises :class:`~.errors.ProtocolError` whose ``message`` is Redis's
exact text; the server replies with it and closes the connection, as Redis does. The parser
then stays failed. Redis's quirks are kept on purpose, so clients see the same thing:

- number lines follow ``string2ll``: no sign ``+``, no leading zeros, no ``-0``;
- the byte after ``\\r`` of a header line and the two bytes after a bulk payload are skipped
  without being checked;
- the line search stops at a NUL byte (``strchr``): a NUL before the line end means the line
  never ends, until the too-big limit closes the connection (``protocol.tcl`` desync tests).

One deliberate difference: Redis checks the inline limit only while a line's end is
missing, so it accepts a longer line when all of it happens to arrive in one read; here a
line longer than the limit is always refused. That bounds the (pure Python) work spent
splitting one inline line, and makes every outcome independent of how the input is chunked.

This parser is Python (about 3 us per pipelined ``SET``), with one shortcut: a canonical
request complete in the buffer is read by the C extension (``_fastread.parse_request``, well
under 1 us), whose every acceptance the Python reader would read the same way; everything
else, every error included, is read here. ``hiredis.Reader`` parses replies, not requests,
and cannot produce Redis's request error texts or inline commands.

Limits (:class:`ParserLimits`) default to Redis's: ``proto-max-bulk-len`` 512 MiB,
``PROTO_INLINE_MAX_SIZE`` 64 KiB for inline lines and header lines, ``INT_MAX`` arguments,
``client-query-buffer-limit`` 1 GiB of unparsed input. A declared length is checked before
anything is allocated for it, and memory only ever holds bytes that were actually received.
While :attr:`RequestParser.auth_required` is set (a password is configured and the
connection has not authenticated), Redis's tighter limits apply: 10 arguments, 16 KiB per
argument.

Replies: the value model
------------------------
Handlers return plain Python values; :func:`encode` and :class:`Encoder` render them in
RESP2 or RESP3, byte for byte as Redis's ``addReply*`` functions do:

==========================  ==========================  ================================
value                       RESP2                       RESP3
==========================  ==========================  ================================
``bytes``, ``bytearray``    bulk ``$3\\r\\nfoo\\r\\n``    same
``str``, ``Status(text)``   simple ``+OK\\r\\n``          same
``Error(message)``          ``-ERR ...\\r\\n``            same
``int`` (64-bit)            ``:1\\r\\n``                  same
``None``                    null bulk ``$-1\\r\\n``       null ``_\\r\\n``
``NULL_ARRAY``              null array ``*-1\\r\\n``      null ``_\\r\\n``
``bool``                    ``:1`` / ``:0``             ``#t`` / ``#f``
``float``                   bulk, ``%.17g``             double ``,%.17g``
``list``, ``tuple``         array ``*N``                same
``dict``                    flat array ``*2N``          map ``%N``
``set``, ``SetReply(...)``  array ``*N``                set ``~N``
``Push(items)``             array ``*N``                push ``>N``
``KeyedRows(rows)``         array of ``*2`` rows        map ``%N``
``Verbatim(text, "txt")``   bulk of the text            ``=N\\r\\ntxt:...``
``BigNumber(value)``        bulk of the digits          ``(digits``
``DoubleText(text)``        bulk of the text            double ``,text``
==========================  ==========================  ================================

Floats print as Redis 7.0's ``addReplyDouble``: ``inf``/``-inf`` spelled out, everything
else ``%.17g`` (``0.1`` is ``0.10000000000000001``; NaN ``nan``/``-nan`` as glibc prints it).
Error texts keep client bytes through ``surrogateescape`` (see ``protocol.errors``); CR and
LF inside an error become spaces, as in Redis's ``addReplyErrorFormat``. A status containing
CR or LF, an ``int`` outside 64 bits (use ``BigNumber``) or a value of another type raises.
Python ``set`` iteration order is arbitrary (and differs between processes for ``bytes``):
return ``SetReply`` with a list when the order matters.

Over 500 lines: both directions of one wire format, the reply value types and their
encodings in RESP2 and RESP3; kept together so the protocol's quirks are read in one place.
"""

from __future__ import annotations

import enum
import math
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from collections.abc import Set as AbstractSet
from dataclasses import dataclass
from typing import Any, Final, Literal, TypeAlias, cast

from cacheshim.protocol import errors
from cacheshim.protocol.errors import ProtocolError, QueryBufferLimitError

__all__ = [
    "NULL_ARRAY",
    "OK",
    "BigNumber",
    "DoubleText",
    "Encoder",
    "Error",
    "KeyedRows",
    "NullArray",
    "ParserLimits",
    "Push",
    "Reply",
    "RequestParser",
    "SetReply",
    "Status",
    "Verbatim",
    "encode",
    "encode_command",
    "split_inline_args",
]

# --- Limits (Redis's names in comments) -----------------------------------------------------

BULK_BYTES_MAX_DEFAULT: Final = 512 * 1024 * 1024  # proto-max-bulk-len
INLINE_BYTES_MAX_DEFAULT: Final = 64 * 1024  # PROTO_INLINE_MAX_SIZE
MULTIBULK_ARGS_MAX_DEFAULT: Final = 2**31 - 1  # INT_MAX
QUERY_BUFFER_BYTES_MAX_DEFAULT: Final = 1024 * 1024 * 1024  # client-query-buffer-limit
UNAUTHENTICATED_ARGS_MAX: Final = 10
UNAUTHENTICATED_BULK_BYTES_MAX: Final = 16384

_LLONG_MAX: Final = 2**63 - 1
_LLONG_MIN: Final = -(2**63)
_LONG_STR_SIZE: Final = 21  # string2ll refuses strings this long or longer
# The consumed prefix of the input buffer is dropped once it is this big and at least half
# the buffer, so dropping costs amortized O(1) per byte.
_COMPACT_BYTES_MIN: Final = 64 * 1024
# A consumed input buffer larger than this is given back (RequestParser.release).
_RELEASE_BYTES_MIN: Final = 1024 * 1024
# Header lines ("*3", "$5") are looked for in this many bytes first; longer or incomplete
# ones take the path that remembers how far it searched, so a trickled line is scanned once.
_HEADER_WINDOW_BYTES: Final = 32


@dataclass(frozen=True, slots=True)
class ParserLimits:
    """Request limits; the defaults are Redis 7.0's."""

    # proto-max-bulk-len: the longest single argument.
    bulk_bytes_max: int = BULK_BYTES_MAX_DEFAULT
    # PROTO_INLINE_MAX_SIZE: the longest inline line, "*<n>" line and "$<len>" line.
    inline_bytes_max: int = INLINE_BYTES_MAX_DEFAULT
    # The most arguments a multibulk request may declare (INT_MAX in Redis).
    multibulk_args_max: int = MULTIBULK_ARGS_MAX_DEFAULT
    # client-query-buffer-limit: the most unparsed input held for one connection.
    query_buffer_bytes_max: int = QUERY_BUFFER_BYTES_MAX_DEFAULT

    def validate(self) -> None:
        """Raise ``ValueError`` naming the first limit that cannot work."""
        for name in (
            "bulk_bytes_max",
            "inline_bytes_max",
            "multibulk_args_max",
            "query_buffer_bytes_max",
        ):
            value = getattr(self, name)
            if type(value) is not int or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
            if value > _LLONG_MAX:
                raise ValueError(f"{name} must fit in a signed 64-bit integer, got {value}")


def _string2ll(digits: bytes | bytearray) -> int | None:
    """Redis's ``string2ll``: a strict signed 64-bit decimal, or None."""
    size = len(digits)
    if size == 0 or size >= _LONG_STR_SIZE:
        return None
    if digits.isdigit():  # ASCII digits only, for bytes
        if digits[0] == 0x30 and size > 1:
            return None
        value = int(digits)
        return value if value <= _LLONG_MAX else None
    if digits[0] == 0x2D and size > 1:
        magnitude = digits[1:]
        if magnitude.isdigit() and magnitude[0] != 0x30:
            value = -int(magnitude)
            return value if value >= _LLONG_MIN else None
    return None


# --- Inline requests (sdssplitargs) ---------------------------------------------------------

_ISSPACE: Final = frozenset(b" \t\n\v\f\r")  # C isspace() in the C locale
_TOKEN_END: Final = frozenset(b" \n\r\t\0")  # what ends an unquoted argument
_HEX_DIGITS: Final = frozenset(b"0123456789abcdefABCDEF")
_ESCAPES: Final = {ord("n"): 0x0A, ord("r"): 0x0D, ord("t"): 0x09, ord("b"): 0x08, ord("a"): 0x07}
_BACKSLASH: Final = 0x5C
_DQUOTE: Final = 0x22
_SQUOTE: Final = 0x27


def split_inline_args(line: bytes) -> list[bytes]:
    """Split one inline request line into arguments, as Redis's ``sdssplitargs`` does.

    Raises :class:`ProtocolError` (unbalanced quotes) like Redis. A NUL byte ends the line,
    as it ends the C string.
    """
    nul = line.find(0)
    if nul >= 0:
        line = line[:nul]
    if b'"' not in line and b"'" not in line and b"\v" not in line and b"\f" not in line:
        # Only space, tab, CR and LF remain as blanks: bytes.split() splits on exactly those.
        return line.split()
    return _split_quoted(line)


def _split_quoted(line: bytes) -> list[bytes]:
    size = len(line)

    def at(index: int) -> int:
        return line[index] if index < size else 0

    args: list[bytes] = []
    i = 0
    while True:
        while i < size and line[i] in _ISSPACE:
            i += 1
        if i >= size:
            return args
        current = bytearray()
        in_double = in_single = done = False
        while not done:
            char = at(i)
            if in_double:
                if (
                    char == _BACKSLASH
                    and at(i + 1) == 0x78  # x
                    and at(i + 2) in _HEX_DIGITS
                    and at(i + 3) in _HEX_DIGITS
                ):
                    current.append(int(line[i + 2 : i + 4], 16))
                    i += 3
                elif char == _BACKSLASH and at(i + 1):
                    i += 1
                    escaped = line[i]
                    current.append(_ESCAPES.get(escaped, escaped))
                elif char == _DQUOTE:
                    if at(i + 1) and at(i + 1) not in _ISSPACE:
                        raise ProtocolError(errors.PROTOCOL_UNBALANCED_QUOTES)
                    done = True
                elif char == 0:
                    raise ProtocolError(errors.PROTOCOL_UNBALANCED_QUOTES)
                else:
                    current.append(char)
            elif in_single:
                if char == _BACKSLASH and at(i + 1) == _SQUOTE:
                    i += 1
                    current.append(_SQUOTE)
                elif char == _SQUOTE:
                    if at(i + 1) and at(i + 1) not in _ISSPACE:
                        raise ProtocolError(errors.PROTOCOL_UNBALANCED_QUOTES)
                    done = True
                elif char == 0:
                    raise ProtocolError(errors.PROTOCOL_UNBALANCED_QUOTES)
                else:
                    current.append(char)
            elif char in _TOKEN_END:
                done = True
            elif char == _DQUOTE:
                in_double = True
            elif char == _SQUOTE:
                in_single = True
            else:
                current.append(char)
            if at(i):
                i += 1
        args.append(bytes(current))


# --- The request parser ---------------------------------------------------------------------

_REQ_NONE: Final = 0
_REQ_INLINE: Final = 1
_REQ_MULTIBULK: Final = 2


# The C reader of canonical requests (`_fastread.parse_request`: `*N` then N `$len` bulk
# strings, lengths spelled without sign or leading zero, every payload followed by CRLF, all
# of it in the buffer) for RequestParser; its Python twin and specification is
# cacheshim.protocol.fastreads.parse_request_py, and what it accepts the Python reader below
# reads to the same arguments. Requests over these bounds take the Python reader.
CANONICAL_ARGS_MAX = 1024
CANONICAL_ARG_BYTES_MAX = 64 * 1024
_ParseCanonical = Callable[[bytearray, int, int, int], "tuple[list[bytes], int] | None"]


def _canonical_reader() -> _ParseCanonical | None:
    try:
        from cacheshim.protocol import _fastread  # type: ignore[attr-defined]
    except ImportError:  # MEMLOG_PURE_PYTHON=1: the extension is not built
        return None
    reader: _ParseCanonical = _fastread.parse_request
    return reader


_parse_canonical: _ParseCanonical | None = _canonical_reader()


class RequestParser:
    """Sans-I/O parser of client requests (multibulk and inline), pipelining-aware.

    Usage: ``feed(data)`` after every read, then call ``next_command()`` until it returns
    None. Any :class:`ProtocolError` (from either call) is final: reply with its message
    unless ``send_reply`` is false, then close the connection.
    """

    __slots__ = (
        "_args",
        "_buf",
        "_bulk_len",
        "_failed",
        "_line_blocked",
        "_multibulk_len",
        "_pos",
        "_reqtype",
        "_scan",
        "auth_required",
        "limits",
    )

    def __init__(self, limits: ParserLimits | None = None, *, auth_required: bool = False):
        self.limits = limits if limits is not None else ParserLimits()
        self.limits.validate()
        # True while a password is required and the connection has not authenticated; the
        # server clears it after a successful AUTH/HELLO.
        self.auth_required = auth_required
        self._buf = bytearray()
        self._pos = 0  # start of the unparsed input in _buf
        self._reqtype = _REQ_NONE
        self._multibulk_len = 0  # arguments still to read in the current multibulk request
        self._bulk_len = -1  # length of the argument being read, -1 before its header
        self._args: list[bytes] = []
        self._scan = 0  # where to resume looking for the end of the current line
        self._line_blocked = False  # a NUL came before the end of the current line
        self._failed: ProtocolError | None = None

    def _canonical_bounds(self) -> tuple[int, int] | None:
        """(arguments, bytes per argument) the C reader of canonical requests may read, or
        None when it must not read the next request: it knows none of the unauthenticated
        limits, and its header lines (at most 11 bytes) must be within the inline limit."""
        limits = self.limits
        if self.auth_required or self._line_blocked or limits.inline_bytes_max < 16:
            return None
        return (
            min(CANONICAL_ARGS_MAX, limits.multibulk_args_max),
            min(CANONICAL_ARG_BYTES_MAX, limits.bulk_bytes_max),
        )

    @property
    def buffered_bytes(self) -> int:
        """Received bytes not yet consumed by a command (Redis's ``qbuf``)."""
        return len(self._buf) - self._pos

    @property
    def idle(self) -> bool:
        """Nothing received is pending: the next byte fed starts a new request."""
        return (
            self._reqtype == _REQ_NONE
            and self._pos >= len(self._buf)
            and self._failed is None
            and not self.auth_required
        )

    @property
    def failed(self) -> ProtocolError | None:
        """The error that ended this connection's input, if any."""
        return self._failed

    def feed(self, data: bytes | bytearray | memoryview) -> None:
        """Add received bytes. Raises :class:`QueryBufferLimitError` when unparsed input
        would exceed the query buffer limit (close without reply, as Redis does)."""
        if self._failed is not None:
            raise self._failed
        buf = self._buf
        pos = self._pos
        if pos:
            if pos >= len(buf):
                buf.clear()
                self._pos = self._scan = 0
            elif pos >= _COMPACT_BYTES_MIN and pos * 2 >= len(buf):
                del buf[:pos]
                self._pos = 0
                self._scan = max(0, self._scan - pos)
        pending = (
            len(buf) - self._pos + (data.nbytes if isinstance(data, memoryview) else len(data))
        )
        if pending > self.limits.query_buffer_bytes_max:
            self._failed = QueryBufferLimitError(pending, self.limits.query_buffer_bytes_max)
            raise self._failed
        buf += data

    def release(self) -> None:
        """Give back a big input buffer whose every byte was consumed: the buffer of a large
        argument, already copied out, would otherwise stay until the next command comes."""
        if self._pos >= len(self._buf) > _RELEASE_BYTES_MIN and self._reqtype == _REQ_NONE:
            self._buf = bytearray()
            self._pos = self._scan = 0

    def next_command(self) -> list[bytes] | None:
        """The next complete command (a non-empty list of arguments), or None until more
        input arrives. Raises :class:`ProtocolError` on malformed input."""
        if self._failed is not None:
            raise self._failed
        try:
            while True:
                buf = self._buf
                if self._pos >= len(buf):
                    if self._pos:
                        buf.clear()
                        self._pos = self._scan = 0
                    return None
                if self._reqtype == _REQ_NONE:
                    if (
                        buf[self._pos] == 0x2A
                        and _parse_canonical is not None
                        and (bounds := self._canonical_bounds()) is not None
                    ):
                        # A canonical request complete in the buffer (most are) is read in C;
                        # anything else (and every error) is read below, as before.
                        found = _parse_canonical(buf, self._pos, *bounds)
                        if found is not None:
                            self._pos = found[1]
                            return found[0]
                    self._reqtype = _REQ_MULTIBULK if buf[self._pos] == 0x2A else _REQ_INLINE
                if self._reqtype == _REQ_MULTIBULK:
                    command = self._parse_multibulk()
                else:
                    command = self._parse_inline()
                if command is None:
                    return None
                self._reqtype = _REQ_NONE
                if command:
                    return command
                # An empty line or "*0": Redis skips it.
        except ProtocolError as exc:
            self._failed = exc
            raise

    def _find_line_end(self, separator: int, limit_error: str) -> int:
        """Index of ``separator`` ending the line at ``_pos``, or -1 to wait for more.

        Like Redis's ``strchr``, a NUL byte hides everything after it. Raises when the line
        is longer than the inline limit, whether or not its end has arrived.
        """
        buf = self._buf
        pos = self._pos
        if self._line_blocked:
            end = -1
        else:
            start = self._scan if self._scan > pos else pos
            end = buf.find(separator, start)
            stop = len(buf) if end < 0 else end
            if buf.find(0, start, stop) >= 0:
                self._line_blocked = True
                end = -1
            self._scan = stop
        line_bytes = (len(buf) if end < 0 else end) - pos
        if line_bytes > self.limits.inline_bytes_max:
            raise ProtocolError(limit_error)
        return end

    def _parse_inline(self) -> list[bytes] | None:
        newline = self._find_line_end(0x0A, errors.PROTOCOL_TOO_BIG_INLINE_REQUEST)
        if newline < 0:
            return None
        buf = self._buf
        pos = self._pos
        end = newline - 1 if newline > pos and buf[newline - 1] == 0x0D else newline
        args = split_inline_args(bytes(buf[pos:end]))
        self._pos = newline + 1
        return args

    def _parse_multibulk(self) -> list[bytes] | None:
        buf = self._buf
        limits = self.limits
        if self._multibulk_len == 0:
            pos = self._pos
            cr = buf.find(0x0D, pos, pos + _HEADER_WINDOW_BYTES)
            if cr < 0 or cr + 1 >= len(buf) or buf.find(0, pos, cr) >= 0:
                cr = self._find_line_end(0x0D, errors.PROTOCOL_TOO_BIG_MBULK_COUNT)
                if cr < 0 or cr + 1 >= len(buf):
                    return None
            elif cr - pos > limits.inline_bytes_max:
                raise ProtocolError(errors.PROTOCOL_TOO_BIG_MBULK_COUNT)
            count = _string2ll(buf[pos + 1 : cr])
            if count is None or count > limits.multibulk_args_max:
                raise ProtocolError(errors.PROTOCOL_INVALID_MULTIBULK_LENGTH)
            if count > UNAUTHENTICATED_ARGS_MAX and self.auth_required:
                raise ProtocolError(errors.PROTOCOL_UNAUTHENTICATED_MULTIBULK_LENGTH)
            self._pos = cr + 2
            if count <= 0:
                return []
            self._multibulk_len = count
            self._args = []

        # The hot loop: locals only, state written back when it stops. The view copies each
        # argument out once (slicing the bytearray would copy twice); it is released before
        # the buffer can be resized.
        pos = self._pos
        size = len(buf)
        args = self._args
        remaining = self._multibulk_len
        bulk_len = self._bulk_len
        bulk_bytes_max = limits.bulk_bytes_max
        view = memoryview(buf)
        try:
            while remaining:
                if bulk_len < 0:
                    cr = buf.find(0x0D, pos, pos + _HEADER_WINDOW_BYTES)
                    if cr < 0 or cr + 1 >= size or buf.find(0, pos, cr) >= 0:
                        # Incomplete, long, or a NUL hides the line end: the careful path,
                        # which resumes its search where the last one stopped.
                        self._pos = pos
                        cr = self._find_line_end(0x0D, errors.PROTOCOL_TOO_BIG_BULK_COUNT)
                        if cr < 0 or cr + 1 >= size:
                            break
                    elif cr - pos > limits.inline_bytes_max:
                        raise ProtocolError(errors.PROTOCOL_TOO_BIG_BULK_COUNT)
                    if buf[pos] != 0x24:  # $
                        raise ProtocolError(errors.expected_dollar(buf[pos]))
                    digits = buf[pos + 1 : cr]
                    if cr - pos <= 20 and digits.isdigit() and (digits[0] != 0x30 or cr - pos == 2):
                        # Non-negative, no leading zero, at most 19 digits: what string2ll accepts.
                        length: int | None = int(digits)
                    else:
                        length = _string2ll(digits)
                    if length is None or length < 0 or length > bulk_bytes_max:
                        raise ProtocolError(errors.PROTOCOL_INVALID_BULK_LENGTH)
                    if length > UNAUTHENTICATED_BULK_BYTES_MAX and self.auth_required:
                        raise ProtocolError(errors.PROTOCOL_UNAUTHENTICATED_BULK_LENGTH)
                    pos = cr + 2
                    bulk_len = length
                end = pos + bulk_len
                if end + 2 > size:
                    break
                args.append(view[pos:end].tobytes())
                pos = end + 2
                bulk_len = -1
                remaining -= 1
        finally:
            view.release()
            self._pos = pos
            self._bulk_len = bulk_len
            self._multibulk_len = remaining
        if remaining:
            return None
        self._args = []
        return args


# --- Replies --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Status:
    """A simple string reply, ``+text``. Must not contain CR or LF."""

    text: str


@dataclass(frozen=True, slots=True)
class Error:
    """An error reply, ``-message``; the message starts with its code (``ERR ...``)."""

    message: str


@dataclass(frozen=True, slots=True)
class Verbatim:
    """A verbatim string (RESP3 ``=``), a plain bulk string in RESP2."""

    text: bytes
    format: str = "txt"  # exactly three characters: "txt" or "mkd"


@dataclass(frozen=True, slots=True)
class BigNumber:
    """An integer of any size (RESP3 ``(``), a bulk string of its digits in RESP2."""

    value: int


@dataclass(frozen=True, slots=True)
class DoubleText:
    """A double already written out, e.g. by Redis's addReplyHumanLongDouble (GEOPOS's
    coordinates): a bulk string in RESP2, a RESP3 double ``,text`` in RESP3."""

    text: bytes


@dataclass(frozen=True, slots=True)
class Push:
    """An out-of-band push (RESP3 ``>``), a plain array in RESP2 (pub/sub messages)."""

    items: Sequence[Reply]


@dataclass(frozen=True, slots=True)
class SetReply:
    """A set (RESP3 ``~``) whose members go out in the given order; an array in RESP2."""

    items: Sequence[Reply]


@dataclass(frozen=True, slots=True)
class Pairs:
    """Two-item rows: one flat array in RESP2, an array of two-item arrays in RESP3
    (WITHSCORES replies, ZPOPMIN with a count, HRANDFIELD WITHVALUES)."""

    items: Sequence[tuple[Reply, Reply]]


@dataclass(frozen=True, slots=True)
class KeyedRows:
    """Two-item rows keyed by their first item: an array of two-item arrays in RESP2, a
    map in RESP3 (XREAD's streams, each with its entries)."""

    items: Sequence[tuple[Reply, Reply]]


@dataclass(frozen=True, slots=True)
class Picks:
    """Picks that may repeat, from a table of replies: the array of ``table[i]`` for each
    ``i`` of ``indexes`` (SRANDMEMBER, ZRANDMEMBER and HRANDFIELD with a negative count).
    Each entry of the table is encoded once and the reply is joined from those encodings, so
    a million picks among a thousand members cost a thousand encodings, not a million. With
    ``rows``, every entry is a two-item row, rendered as :class:`Pairs` renders its rows."""

    table: Sequence[Reply]
    indexes: Sequence[int]
    rows: bool = False


@dataclass(frozen=True, slots=True)
class Frames:
    """Several replies back to back, with no header: one command's answer in several frames
    (SUBSCRIBE a b confirms each channel in a frame of its own, also inside EXEC's array,
    where Redis writes them one after the other in the element's place)."""

    items: Sequence[Reply]


class _NullArrayType(enum.Enum):
    NULL_ARRAY = "NULL_ARRAY"

    def __repr__(self) -> str:
        return "NULL_ARRAY"


# The null array: ``*-1`` in RESP2 (e.g. BLPOP timing out), ``_`` in RESP3.
NULL_ARRAY: Final = _NullArrayType.NULL_ARRAY
NullArray: TypeAlias = Literal[_NullArrayType.NULL_ARRAY]

OK: Final = Status("OK")

Reply: TypeAlias = (
    bool
    | int
    | float
    | str
    | bytes
    | bytearray
    | Status
    | Error
    | Verbatim
    | BigNumber
    | DoubleText
    | Push
    | SetReply
    | Pairs
    | KeyedRows
    | Picks
    | Frames
    | NullArray
    | Sequence["Reply"]
    | Mapping["Reply", "Reply"]
    | AbstractSet["Reply"]
    | None
)

_CRLF: Final = b"\r\n"
_NULL_BULK: Final = b"$-1\r\n"
_NULL_ARRAY2: Final = b"*-1\r\n"
_NULL3: Final = b"_\r\n"
_NEWLINES: Final = re.compile(b"[\r\n]")


def _double_text(value: float) -> bytes:
    """Redis 7.0 ``addReplyDouble``: inf spelled out, otherwise ``%.17g`` (glibc for NaN)."""
    if math.isinf(value):
        return b"inf" if value > 0 else b"-inf"
    if math.isnan(value):
        return b"-nan" if math.copysign(1.0, value) < 0 else b"nan"
    return b"%.17g" % value


def _status_bytes(text: str) -> bytes:
    data = text.encode("utf-8", "surrogateescape")
    if b"\r" in data or b"\n" in data:
        raise ValueError(f"a status reply cannot contain CR or LF: {text!r}")
    return b"+" + data + _CRLF


def _error_bytes(message: str) -> bytes:
    # Like addReplyErrorFormat: trim CR/LF at both ends, turn the others into spaces.
    data = message.encode("utf-8", "surrogateescape").strip(b"\r\n")
    return b"-" + _NEWLINES.sub(b" ", data) + _CRLF


def _put_bulk(out: bytearray, data: bytes | bytearray, resp3: bool = False) -> None:
    out += b"$%d\r\n" % len(data)
    out += data
    out += _CRLF


def _put_int(out: bytearray, value: int, resp3: bool) -> None:
    if not _LLONG_MIN <= value <= _LLONG_MAX:
        raise ValueError(f"integer reply {value} does not fit in 64 bits: use BigNumber")
    out += b":%d\r\n" % value


def _put_none(out: bytearray, value: None, resp3: bool) -> None:
    out += _NULL3 if resp3 else _NULL_BULK


def _put_null_array(out: bytearray, value: NullArray, resp3: bool) -> None:
    out += _NULL3 if resp3 else _NULL_ARRAY2


def _put_array(out: bytearray, value: Sequence[Reply], resp3: bool) -> None:
    if len(value) >= _NATIVE_ITEMS_MIN and _put_native(out, value, resp3):
        return
    out += b"*%d\r\n" % len(value)
    _put_items(out, value, resp3)


def _native_encoder() -> Callable[[object, bool], bytes | None] | None:
    """The C encoder (cacheshim/protocol/_fastread.c: encode_reply), or None without the
    extension (MEMLOG_PURE_PYTHON=1). It writes exactly what this module writes for the
    values it takes (exact bytes, None, 64-bit ints, lists, tuples and dicts of those) and
    leaves everything else here (tests/cacheshim/protocol/test_fastreads.py)."""
    try:
        from cacheshim.protocol import _fastread  # type: ignore[attr-defined]
    except ImportError:
        return None
    encoder: Callable[[object, bool], bytes | None] = _fastread.encode_reply
    return encoder


_native_encode: Final = _native_encoder()
# From this many items on, a list or tuple (a set reply's items too) is offered to the C
# encoder first: big replies (SMEMBERS, SPOP with a count, ...) cost a tenth of the Python
# loop's time; below it the call is not worth it.
_NATIVE_ITEMS_MIN: Final = 64


def _put_native(out: bytearray, value: object, resp3: bool, kind: bytes = b"*") -> bool:
    """Write value (a list or tuple) with the C encoder, its header's type byte replaced by
    kind; False (nothing written) for a value it leaves to Python."""
    if _native_encode is None:
        return False
    encoded = _native_encode(value, resp3)
    if encoded is None:
        return False
    mark = len(out)
    out += encoded
    if kind != b"*":
        out[mark] = kind[0]
    return True


def _put_items(out: bytearray, items: Iterable[Reply], resp3: bool) -> None:
    for item in items:
        if type(item) is bytes:  # most elements: members, fields, values (as _put_bulk)
            out += b"$%d\r\n%b\r\n" % (len(item), item)
        else:
            _put(out, item, resp3)


def _put_str(out: bytearray, value: str, resp3: bool) -> None:
    out += _status_bytes(value)


def _put_status(out: bytearray, value: Status, resp3: bool) -> None:
    out += _status_bytes(value.text)


def _put_error(out: bytearray, value: Error, resp3: bool) -> None:
    out += _error_bytes(value.message)


def _put_bool(out: bytearray, value: bool, resp3: bool) -> None:
    if resp3:
        out += b"#t\r\n" if value else b"#f\r\n"
    else:
        out += b":1\r\n" if value else b":0\r\n"


def _put_float(out: bytearray, value: float, resp3: bool) -> None:
    text = _double_text(value)
    if resp3:
        out += b"," + text + _CRLF
    else:
        _put_bulk(out, text)


def _put_double_text(out: bytearray, value: DoubleText, resp3: bool) -> None:
    if resp3:
        out += b"," + value.text + _CRLF
    else:
        _put_bulk(out, value.text)


def _put_map(out: bytearray, value: Mapping[Reply, Reply], resp3: bool) -> None:
    if resp3:
        out += b"%%%d\r\n" % len(value)
    else:
        out += b"*%d\r\n" % (2 * len(value))
    for key, item in value.items():
        _put(out, key, resp3)
        _put(out, item, resp3)


def _put_set_items(out: bytearray, items: Iterable[Reply], count: int, resp3: bool) -> None:
    if (
        count >= _NATIVE_ITEMS_MIN
        and type(items) in (list, tuple)
        and _put_native(out, items, resp3, b"~" if resp3 else b"*")
    ):
        return
    out += b"~%d\r\n" % count if resp3 else b"*%d\r\n" % count
    _put_items(out, items, resp3)


def _put_set(out: bytearray, value: AbstractSet[Reply], resp3: bool) -> None:
    _put_set_items(out, value, len(value), resp3)


def _put_set_reply(out: bytearray, value: SetReply, resp3: bool) -> None:
    _put_set_items(out, value.items, len(value.items), resp3)


def _put_push(out: bytearray, value: Push, resp3: bool) -> None:
    out += b">%d\r\n" % len(value.items) if resp3 else b"*%d\r\n" % len(value.items)
    for item in value.items:
        _put(out, item, resp3)


def _put_verbatim(out: bytearray, value: Verbatim, resp3: bool) -> None:
    text = bytes(value.text)
    if not resp3:
        _put_bulk(out, text)
        return
    fmt = value.format.encode("ascii")
    if len(fmt) != 3:
        raise ValueError(f"a verbatim format is three characters, got {value.format!r}")
    out += b"=%d\r\n" % (len(text) + 4)
    out += fmt + b":"
    out += text
    out += _CRLF


def _put_big_number(out: bytearray, value: BigNumber, resp3: bool) -> None:
    digits = b"%d" % value.value
    if resp3:
        out += b"(" + digits + _CRLF
    else:
        _put_bulk(out, digits)


def _put_pairs(out: bytearray, value: Pairs, resp3: bool) -> None:
    # Written row by row, with no list of rows in between: WITHSCORES and WITHVALUES
    # replies can have a million rows.
    items = value.items
    out += b"*%d\r\n" % (len(items) if resp3 else 2 * len(items))
    row = b"*2\r\n" if resp3 else b""
    for first, second in items:
        out += row
        if type(first) is bytes:
            out += b"$%d\r\n%b\r\n" % (len(first), first)
        else:
            _put(out, first, resp3)
        _put(out, second, resp3)


def _put_keyed_rows(out: bytearray, value: KeyedRows, resp3: bool) -> None:
    out += b"%%%d\r\n" % len(value.items) if resp3 else b"*%d\r\n" % len(value.items)
    for first, second in value.items:
        if not resp3:
            out += b"*2\r\n"
        _put(out, first, resp3)
        _put(out, second, resp3)


# How many picks are joined at a time: bounds the list of references a join takes.
_PICKS_CHUNK: Final = 65536


def _encoded(value: Reply, resp3: bool) -> bytes:
    out = bytearray()
    _put(out, value, resp3)
    return bytes(out)


def _put_picks(out: bytearray, value: Picks, resp3: bool) -> None:
    indexes = value.indexes
    if value.rows and not resp3:  # a flat array: member, score, member, score, ...
        out += b"*%d\r\n" % (2 * len(indexes))
        rows = cast(Sequence[Sequence[Reply]], value.table)
        encoded = [_encoded(row[0], resp3) + _encoded(row[1], resp3) for row in rows]
    else:
        out += b"*%d\r\n" % len(indexes)
        encoded = [_encoded(entry, resp3) for entry in value.table]
    pick = encoded.__getitem__
    for start in range(0, len(indexes), _PICKS_CHUNK):
        out += b"".join(map(pick, indexes[start : start + _PICKS_CHUNK]))


def _put_frames(out: bytearray, value: Frames, resp3: bool) -> None:
    for item in value.items:
        _put(out, item, resp3)


# One writer per exact type: a dict lookup instead of a chain of isinstance() calls.
_WRITERS: Final[dict[type, Callable[[bytearray, Any, bool], None]]] = {
    bytes: _put_bulk,
    bytearray: _put_bulk,
    int: _put_int,
    type(None): _put_none,
    list: _put_array,
    tuple: _put_array,
    str: _put_str,
    Status: _put_status,
    Error: _put_error,
    bool: _put_bool,
    float: _put_float,
    dict: _put_map,
    set: _put_set,
    frozenset: _put_set,
    SetReply: _put_set_reply,
    Pairs: _put_pairs,
    KeyedRows: _put_keyed_rows,
    Picks: _put_picks,
    Frames: _put_frames,
    Push: _put_push,
    Verbatim: _put_verbatim,
    BigNumber: _put_big_number,
    DoubleText: _put_double_text,
    _NullArrayType: _put_null_array,
}


def _put(out: bytearray, value: Reply, resp3: bool) -> None:
    writer = _WRITERS.get(type(value))
    if writer is not None:
        writer(out, value, resp3)
    else:
        _put_other(out, value, resp3)


def _put_other(out: bytearray, value: object, resp3: bool) -> None:
    """Subclasses (IntEnum, str enums, ...) and other collection types."""
    if isinstance(value, bool):
        _put_bool(out, value, resp3)
    elif isinstance(value, int):
        _put_int(out, int(value), resp3)
    elif isinstance(value, float):
        _put_float(out, float(value), resp3)
    elif isinstance(value, str):
        _put_str(out, str.__str__(value), resp3)  # the text, not an enum's str()
    elif isinstance(value, bytes | bytearray):
        _put_bulk(out, value)
    elif isinstance(value, memoryview):
        _put_bulk(out, value.tobytes())
    elif isinstance(value, Mapping):
        _put_map(out, value, resp3)
    elif isinstance(value, AbstractSet):
        _put_set(out, value, resp3)
    elif isinstance(value, Sequence):
        _put_array(out, value, resp3)
    else:
        raise TypeError(f"cannot encode {type(value).__name__} as a RESP reply: {value!r}")


def _resp3(protocol: int) -> bool:
    if protocol == 2:
        return False
    if protocol == 3:
        return True
    raise ValueError(f"protocol must be 2 or 3, got {protocol!r}")


def encode(value: Reply, protocol: int = 2) -> bytes:
    """One reply in RESP2 (``protocol=2``) or RESP3 (``protocol=3``)."""
    out = bytearray()
    _put(out, value, _resp3(protocol))
    return bytes(out)


class Encoder:
    """Appends many replies into one buffer, so one read's replies leave in one write.

    ``protocol`` may change between replies (``HELLO 3``).
    """

    __slots__ = ("_out", "_resp3")

    def __init__(self, protocol: int = 2) -> None:
        self._resp3 = _resp3(protocol)
        self._out = bytearray()

    @property
    def protocol(self) -> int:
        return 3 if self._resp3 else 2

    @protocol.setter
    def protocol(self, protocol: int) -> None:
        self._resp3 = _resp3(protocol)

    def write(self, value: Reply) -> None:
        """Append one reply. On error nothing of it is appended."""
        mark = len(self._out)
        try:
            _put(self._out, value, self._resp3)
        except BaseException:
            del self._out[mark:]
            raise

    def write_raw(self, data: bytes) -> None:
        """Append bytes that are already RESP (a reply encoded earlier)."""
        self._out += data

    def __len__(self) -> int:
        return len(self._out)

    def error_since(self, mark: int) -> str | None:
        """The text of the error reply written at mark, if the reply there is an error."""
        out = self._out
        if len(out) <= mark or out[mark] != 0x2D:  # "-"
            return None
        end = out.find(b"\r\n", mark)
        return out[mark + 1 : end].decode("utf-8", "replace")

    def take(self) -> bytes:
        """Everything appended so far; the buffer is emptied."""
        data = bytes(self._out)
        self._out.clear()
        return data


def encode_command(args: Iterable[bytes]) -> bytes:
    """A request as a multibulk array of bulk strings (what clients send)."""
    items = list(args)
    out = bytearray(b"*%d\r\n" % len(items))
    for arg in items:
        _put_bulk(out, arg)
    return bytes(out)
