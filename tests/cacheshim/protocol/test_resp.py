"""Exact-bytes tests of the sans-I/O RESP layer.

Every expected byte string below is what a real Redis 7.0.15 sent for the same input (probed
over a socket), or what Redis's own tests/unit/protocol.tcl asserts.

Over 500 lines: the exact bytes of every request and reply form, both directions of the
protocol in one place, like the module it tests.
"""

from __future__ import annotations

import enum
import time
import tracemalloc
from typing import cast

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cacheshim.protocol import errors
from cacheshim.protocol.errors import CommandError, ProtocolError, QueryBufferLimitError
from cacheshim.protocol.resp import (
    NULL_ARRAY,
    OK,
    BigNumber,
    Encoder,
    Error,
    Frames,
    Pairs,
    ParserLimits,
    Push,
    Reply,
    RequestParser,
    SetReply,
    Status,
    Verbatim,
    encode,
    encode_command,
    split_inline_args,
)

Commands = list[list[bytes]]


def parse(
    data: bytes, *, chunk: int | None = None, limits: ParserLimits | None = None
) -> tuple[Commands, str | None]:
    """Feed ``data`` (whole, or ``chunk`` bytes at a time), draining commands after every
    feed. Returns the commands and the protocol error's message (None if still waiting)."""
    parser = RequestParser(limits)
    commands: Commands = []
    pieces = [data] if chunk is None else [data[i : i + chunk] for i in range(0, len(data), chunk)]
    try:
        for piece in pieces:
            parser.feed(piece)
            while (command := parser.next_command()) is not None:
                commands.append(command)
    except ProtocolError as exc:
        return commands, exc.message
    return commands, None


# A pipeline of every request shape, one complete command per entry of PIPELINE_COMMANDS.
PIPELINE = (
    b"*3\r\n$3\r\nSET\r\n$3\r\nkey\r\n$5\r\nvalue\r\n"
    b"PING\r\n"
    b"\r\n"  # empty inline line: skipped
    b"*0\r\n"  # empty multibulk: skipped
    b"*-1\r\n"  # negative count: skipped
    b"*-10\r\n"
    b"ECHO \"quoted \\x41\\n\" 'single \\'q'\n"
    b"   \t  \r\n"  # blanks only: skipped
    b"*2\r\n$4\r\nECHO\r\n$6\r\na\r\nb\x00c\r\n"  # CR, LF, NUL inside a bulk are data
    b"*2\r\n$3\r\nGET\r\n$0\r\n\r\n"  # empty argument
    b"GET k\n"  # bare LF ends an inline line
)
PIPELINE_COMMANDS = [
    [b"SET", b"key", b"value"],
    [b"PING"],
    [b"ECHO", b"quoted A\n", b"single 'q"],
    [b"ECHO", b"a\r\nb\x00c"],
    [b"GET", b""],
    [b"GET", b"k"],
]


# --- The parser: commands, pipelining, partial input -----------------------------------------


def test_pipeline_of_every_shape_parses_in_order() -> None:
    assert parse(PIPELINE) == (PIPELINE_COMMANDS, None)


def test_one_byte_at_a_time_gives_the_same_commands() -> None:
    assert parse(PIPELINE, chunk=1) == (PIPELINE_COMMANDS, None)


@pytest.mark.parametrize("split", range(len(PIPELINE) + 1))
def test_every_split_point_gives_the_same_commands(split: int) -> None:
    parser = RequestParser()
    commands: Commands = []
    for piece in (PIPELINE[:split], PIPELINE[split:]):
        parser.feed(piece)
        while (command := parser.next_command()) is not None:
            commands.append(command)
    assert commands == PIPELINE_COMMANDS
    assert parser.buffered_bytes == 0


def test_half_sent_command_waits_for_the_rest() -> None:
    parser = RequestParser()
    parser.feed(b"*2\r\n$3\r\nGET\r\n$5\r\nhel")
    assert parser.next_command() is None
    assert parser.next_command() is None  # asking again changes nothing
    parser.feed(b"lo\r")
    assert parser.next_command() is None  # the trailing CRLF has not fully arrived
    parser.feed(b"\n*1\r\n$4\r\nPI")
    assert parser.next_command() == [b"GET", b"hello"]
    assert parser.next_command() is None
    assert parser.buffered_bytes == len(b"PI")
    parser.feed(b"NG\r\n")
    assert parser.next_command() == [b"PING"]
    assert parser.next_command() is None
    assert parser.buffered_bytes == 0


def test_inline_line_waits_for_its_newline() -> None:
    parser = RequestParser()
    parser.feed(b"SET a b\r")
    assert parser.next_command() is None
    parser.feed(b"\n")
    assert parser.next_command() == [b"SET", b"a", b"b"]


def test_empty_queries_are_skipped() -> None:
    # protocol.tcl "Handle an empty query", "Negative multibulk length".
    assert parse(b"\r\n\n*0\r\n*-10\r\n*-1\r\nPING\r\n") == ([[b"PING"]], None)
    # The most negative count string2ll accepts is skipped too.
    assert parse(b"*-9223372036854775808\r\nPING\r\n") == ([[b"PING"]], None)


def test_bytes_after_cr_and_after_a_payload_are_not_checked() -> None:
    # Redis skips two bytes after "\r" of a header and after a payload without looking.
    assert parse(b"*1\rx$4\rxPINGxx") == ([[b"PING"]], None)
    assert parse(b"*1\r\n$4\r\nPINGxx*1\r\n$4\r\nPING\r\n") == ([[b"PING"], [b"PING"]], None)


def test_inline_cr_before_lf_is_dropped_and_other_crs_are_blanks() -> None:
    assert parse(b"ECHO x\r\r\n") == ([[b"ECHO", b"x"]], None)
    assert parse(b"ECHO x\ry\r\n") == ([[b"ECHO", b"x", b"y"]], None)


def test_binary_arguments_survive() -> None:
    every_byte = bytes(range(256))
    assert parse(encode_command([b"SET", every_byte, every_byte])) == (
        [[b"SET", every_byte, every_byte]],
        None,
    )


def test_feed_accepts_any_bytes_like() -> None:
    parser = RequestParser()
    parser.feed(bytearray(b"PI"))
    parser.feed(memoryview(b"NG\r\n"))
    assert parser.next_command() == [b"PING"]


def test_buffer_is_released_once_consumed() -> None:
    parser = RequestParser()
    parser.feed(encode_command([b"SET", b"k", b"v" * 100_000]))
    assert parser.next_command() == [b"SET", b"k", b"v" * 100_000]
    assert parser.buffered_bytes == 0
    parser.feed(b"PING\r\n")
    assert parser.next_command() == [b"PING"]


# --- Protocol errors: exact text, exact reply ---------------------------------------------------

TOO_BIG = errors.PROTOCOL_TOO_BIG_INLINE_REQUEST
TOO_BIG_MBULK = errors.PROTOCOL_TOO_BIG_MBULK_COUNT
TOO_BIG_BULK = errors.PROTOCOL_TOO_BIG_BULK_COUNT
BAD_MBULK = errors.PROTOCOL_INVALID_MULTIBULK_LENGTH
BAD_BULK = errors.PROTOCOL_INVALID_BULK_LENGTH
QUOTES = errors.PROTOCOL_UNBALANCED_QUOTES
SET_X = b"*3\r\n$3\r\nSET\r\n$1\r\nx\r\n"


@pytest.mark.parametrize(
    ("data", "message"),
    [
        # tests/unit/protocol.tcl
        (b"*3000000000\r\n", BAD_MBULK),
        (SET_X + b"fooz\r\n", "ERR Protocol error: expected '$', got 'f'"),
        (SET_X + b"$-10\r\n", BAD_BULK),
        (SET_X + b"$2000000000\r\n", BAD_BULK),
        (SET_X + b"$blabla\r\n", BAD_BULK),
        (b"*1\r\nfoo\r\n", "ERR Protocol error: expected '$', got 'f'"),
        # Counts: string2ll is strict, INT_MAX is the ceiling.
        (b"*2147483648\r\n", BAD_MBULK),
        (b"*99999999999999999999\r\n", BAD_MBULK),
        (b"*-9223372036854775809\r\n", BAD_MBULK),
        (b"*-0\r\n", BAD_MBULK),
        (b"*+1\r\n", BAD_MBULK),
        (b"*01\r\n", BAD_MBULK),
        (b"* 1\r\n", BAD_MBULK),
        (b"*1 \r\n", BAD_MBULK),
        (b"*\r\n", BAD_MBULK),
        # Bulk lengths: proto-max-bulk-len is 512 MiB.
        (b"*1\r\n$536870913\r\n", BAD_BULK),
        (b"*1\r\n$2147483648\r\n", BAD_BULK),
        (b"*1\r\n$-1\r\n", BAD_BULK),
        (b"*1\r\n$\r\n", BAD_BULK),
        (b"*1\r\n$04\r\n", BAD_BULK),
        (b"*1\r\n$" + b"9" * 5000 + b"\r\n", BAD_BULK),
        (b"*1\r\n\r\n", "ERR Protocol error: expected '$', got '\r'"),
        (b"*1\r\n\x80\r\n", "ERR Protocol error: expected '$', got '\udc80'"),
        # Inline quoting.
        (b'ECHO "a"b\r\n', QUOTES),
        (b"ECHO 'a'b\r\n", QUOTES),
        (b'ECHO a"b c"d\r\n', QUOTES),
        (b'ECHO "ab\r\n', QUOTES),
        (b'ECHO "ab\\"\r\n', QUOTES),
        (b'ECHO "a\\\r\n', QUOTES),
        (b"ECHO 'ab\r\n", QUOTES),
        # Lines longer than PROTO_INLINE_MAX_SIZE (64 KiB).
        (b"x" * 65537, TOO_BIG),
        (b"*" + b"1" * 65536, TOO_BIG_MBULK),
        (b"*1\r\n$" + b"1" * 65536, TOO_BIG_BULK),
        # Refused even when the line end arrives in the same chunk, so the outcome does
        # not depend on chunking (Redis refuses these only when they arrive slowly).
        (b"x" * 65537 + b"\r\n", TOO_BIG),
        (b"*1\r\n$" + b"1" * 65536 + b"\r\n", TOO_BIG_BULK),
        # protocol.tcl "Protocol desync regression test": a NUL hides the line end.
        (b"\x00" + b"A\n" * 32768, TOO_BIG),
        (b"*\x00" + b"\r\n" * 32768, TOO_BIG_MBULK),
        (b"$\x00" + b"A\n" * 32768, TOO_BIG),
    ],
)
def test_protocol_error_text(data: bytes, message: str) -> None:
    assert parse(data) == ([], message)


@pytest.mark.parametrize(
    "data",
    [
        b"x" * 65536,
        b"*" + b"1" * 65535,
        b"*1\r\n$" + b"1" * 65535,
        b"\x00" + b"A\n" * 32767,  # a NUL-blocked line under the limit just waits
        b"*2147483647\r\n",
        b"*1\r\n$536870912\r\n",
    ],
)
def test_just_under_a_limit_waits(data: bytes) -> None:
    assert parse(data) == ([], None)


@pytest.mark.parametrize("chunk", [1, 7, 4096])
def test_limits_hold_whatever_the_chunking(chunk: int) -> None:
    assert parse(b"x" * 65537 + b"\r\n", chunk=chunk) == ([], TOO_BIG)
    assert parse(b"\x00" + b"A\n" * 32768, chunk=chunk) == ([], TOO_BIG)


def test_commands_before_an_error_come_out_first() -> None:
    # Redis runs and answers them, then the error, then closes.
    assert parse(b"PING\r\n*2\r\n$4\r\nECHO\r\nfoo\r\nPING\r\n") == (
        [[b"PING"]],
        "ERR Protocol error: expected '$', got 'f'",
    )


@pytest.mark.parametrize(
    ("message", "wire"),
    [
        (BAD_MBULK, b"-ERR Protocol error: invalid multibulk length\r\n"),
        (BAD_BULK, b"-ERR Protocol error: invalid bulk length\r\n"),
        (TOO_BIG, b"-ERR Protocol error: too big inline request\r\n"),
        (TOO_BIG_MBULK, b"-ERR Protocol error: too big mbulk count string\r\n"),
        (TOO_BIG_BULK, b"-ERR Protocol error: too big bulk count string\r\n"),
        (QUOTES, b"-ERR Protocol error: unbalanced quotes in request\r\n"),
        (
            errors.PROTOCOL_UNAUTHENTICATED_MULTIBULK_LENGTH,
            b"-ERR Protocol error: unauthenticated multibulk length\r\n",
        ),
        (
            errors.PROTOCOL_UNAUTHENTICATED_BULK_LENGTH,
            b"-ERR Protocol error: unauthenticated bulk length\r\n",
        ),
        (errors.expected_dollar(ord("f")), b"-ERR Protocol error: expected '$', got 'f'\r\n"),
        # CR becomes a space; a non-UTF-8 byte goes back out unchanged.
        (errors.expected_dollar(0x0D), b"-ERR Protocol error: expected '$', got ' '\r\n"),
        (errors.expected_dollar(0x80), b"-ERR Protocol error: expected '$', got '\x80'\r\n"),
    ],
)
def test_protocol_error_reply_bytes(message: str, wire: bytes) -> None:
    assert encode(Error(message), 2) == wire
    assert encode(Error(message), 3) == wire


def test_failure_is_final() -> None:
    parser = RequestParser()
    parser.feed(b"*x\r\n")
    with pytest.raises(ProtocolError) as first:
        parser.next_command()
    assert first.value.send_reply
    assert parser.failed is first.value
    with pytest.raises(ProtocolError) as again:
        parser.next_command()
    assert again.value is first.value
    with pytest.raises(ProtocolError):
        parser.feed(b"PING\r\n")


# --- Limits ---------------------------------------------------------------------------------


def test_huge_declared_lengths_allocate_nothing() -> None:
    tracemalloc.start()
    try:
        accepted = RequestParser()
        accepted.feed(b"*2147483647\r\n$536870912\r\n")  # both at their ceilings
        assert accepted.next_command() is None
        refused = RequestParser()
        refused.feed(b"*1\r\n$2147483648\r\n")
        with pytest.raises(ProtocolError, match="invalid bulk length"):
            refused.next_command()
        _, peak_bytes = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak_bytes < 256 * 1024
    assert accepted.buffered_bytes == 0


def test_configured_limits() -> None:
    limits = ParserLimits(bulk_bytes_max=5, inline_bytes_max=8, multibulk_args_max=3)
    assert parse(b"*3\r\n$5\r\nhello\r\n$0\r\n\r\n$1\r\nx\r\n", limits=limits) == (
        [[b"hello", b"", b"x"]],
        None,
    )
    assert parse(b"*4\r\n", limits=limits) == ([], BAD_MBULK)
    assert parse(b"*1\r\n$6\r\n", limits=limits) == ([], BAD_BULK)
    # The CR counts: Redis measures what is buffered while the LF has not arrived.
    assert parse(b"GET abc\r\n", limits=limits) == ([[b"GET", b"abc"]], None)
    assert parse(b"GET abcd\r\n", limits=limits) == ([], TOO_BIG)
    assert parse(b"GET abcd\n", limits=limits) == ([[b"GET", b"abcd"]], None)
    assert parse(b"*1\r\n$" + b"1" * 8, limits=limits) == ([], TOO_BIG_BULK)
    assert parse(b"*" + b"1" * 8, limits=limits) == ([], TOO_BIG_MBULK)


def test_query_buffer_limit_closes_without_reply() -> None:
    parser = RequestParser(ParserLimits(query_buffer_bytes_max=16))
    parser.feed(b"*1\r\n$20\r\n")  # headers are parsed: nothing left unparsed
    assert parser.next_command() is None
    parser.feed(b"a" * 10)
    assert parser.next_command() is None
    parser.feed(b"b" * 6)  # 16 unparsed bytes: at the limit, allowed
    assert parser.next_command() is None
    assert parser.buffered_bytes == 16
    with pytest.raises(QueryBufferLimitError) as exc:
        parser.feed(b"g")
    assert not exc.value.send_reply
    assert (exc.value.buffered_bytes, exc.value.limit_bytes) == (17, 16)
    assert exc.value.message == errors.QUERY_BUFFER_LIMIT_REACHED
    with pytest.raises(QueryBufferLimitError):
        parser.next_command()


def test_query_buffer_limit_counts_only_unparsed_bytes() -> None:
    parser = RequestParser(ParserLimits(query_buffer_bytes_max=16))
    for _ in range(100):
        parser.feed(b"PING\r\nPING\r\n")
        assert parser.next_command() == [b"PING"]
        assert parser.next_command() == [b"PING"]
        assert parser.next_command() is None


@pytest.mark.parametrize(
    "field",
    ["bulk_bytes_max", "inline_bytes_max", "multibulk_args_max", "query_buffer_bytes_max"],
)
def test_limits_validate(field: str) -> None:
    ParserLimits().validate()
    for bad in (0, -1, 2**63):
        limits = ParserLimits(**{field: bad})
        with pytest.raises(ValueError, match=field):
            limits.validate()
        with pytest.raises(ValueError, match=field):
            RequestParser(limits)


def test_unauthenticated_connections_get_redis_smaller_limits() -> None:
    parser = RequestParser(auth_required=True)
    parser.feed(encode_command([b"AUTH", b"x" * 16384]) + b"*10\r\n")
    assert parser.next_command() == [b"AUTH", b"x" * 16384]
    assert parser.next_command() is None
    for header, message in [
        (b"*11\r\n", errors.PROTOCOL_UNAUTHENTICATED_MULTIBULK_LENGTH),
        (b"*2\r\n$4\r\nAUTH\r\n$16385\r\n", errors.PROTOCOL_UNAUTHENTICATED_BULK_LENGTH),
    ]:
        parser = RequestParser(auth_required=True)
        parser.feed(header)
        with pytest.raises(ProtocolError) as exc:
            parser.next_command()
        assert exc.value.message == message
    parser = RequestParser(auth_required=True)
    parser.auth_required = False  # after AUTH succeeds
    parser.feed(b"*11\r\n")
    assert parser.next_command() is None


# --- Inline requests: sdssplitargs --------------------------------------------------------------


@pytest.mark.parametrize(
    ("line", "args"),
    [
        (b"SET a b", [b"SET", b"a", b"b"]),
        (b"  SET \t a   b  ", [b"SET", b"a", b"b"]),
        (b"", []),
        (b"   ", []),
        (b'ECHO "a\\x41\\x4g\\n\\q"', [b"ECHO", b"aAx4g\nq"]),
        (b'ECHO "\\x4"', [b"ECHO", b"x4"]),
        (b'ECHO "\\xff" "\\xFf"', [b"ECHO", b"\xff", b"\xff"]),
        (b'ECHO "\\a\\b\\t\\r"', [b"ECHO", b"\x07\x08\t\r"]),
        (b'ECHO "\\"q\\\\"', [b"ECHO", b'"q\\']),
        (b"ECHO 'a\\'b'", [b"ECHO", b"a'b"]),
        (b"ECHO 'a\\nb'", [b"ECHO", b"a\\nb"]),
        (b"ECHO 'a\\\\b'", [b"ECHO", b"a\\\\b"]),
        (b"ECHO 'a\"b'", [b"ECHO", b'a"b']),
        (b'ECHO "a\'b"', [b"ECHO", b"a'b"]),
        (b'ECHO a"b c"', [b"ECHO", b"ab c"]),
        (b"ECHO a'b c'", [b"ECHO", b"ab c"]),
        (b'ECHO ""', [b"ECHO", b""]),
        (b'ECHO "" ""', [b"ECHO", b"", b""]),
        (b"ECHO '' ", [b"ECHO", b""]),
        (b'ECHO "a"\t', [b"ECHO", b"a"]),
        (b'ECHO "a\rb"', [b"ECHO", b"a\rb"]),
        # isspace() skips \v and \f between arguments, but they do not end one.
        (b"ECHO\x0bx", [b"ECHO\x0bx"]),
        (b"ECHO \x0bx", [b"ECHO", b"x"]),
        (b"ECHO x\x0b\x0by", [b"ECHO", b"x\x0b\x0by"]),
        (b"ECHO \x0cx\x0c", [b"ECHO", b"x\x0c"]),
        (b'ECHO "x"\x0b', [b"ECHO", b"x"]),
        (b'ECHO "x"\x0cz', [b"ECHO", b"x", b"z"]),
        (b"ECHO \x80\xff", [b"ECHO", b"\x80\xff"]),
        (b"SET a b\x00c d", [b"SET", b"a", b"b"]),  # a NUL ends the C string
    ],
)
def test_inline_splitting(line: bytes, args: list[bytes]) -> None:
    assert split_inline_args(line) == args
    if 0 not in line and 0x0A not in line:
        assert parse(line + b"\r\n") == ([args] if args else [], None)


@pytest.mark.parametrize(
    "line", [b'ECHO "a"b', b"ECHO 'a'b", b'ECHO "ab', b"ECHO 'ab", b'ECHO "ab\\"', b'"\\']
)
def test_inline_unbalanced_quotes(line: bytes) -> None:
    with pytest.raises(ProtocolError) as exc:
        split_inline_args(line)
    assert exc.value.message == QUOTES


def test_inline_nul_waits_like_redis() -> None:
    # strchr() stops at the NUL: the newline is never seen.
    parser = RequestParser()
    parser.feed(b"ECHO ab\x00cd\r\nPING\r\n")
    assert parser.next_command() is None
    assert parser.buffered_bytes == 18


# --- Speed: linear, not quadratic -------------------------------------------------------------


# The speed checks below catch work that grows faster than the input (a quadratic parse): they
# time this process's CPU, not the wall clock, so other processes on a busy machine do not
# count; their bounds are 25 to 50 times what the parse takes here (0.02-0.04 s for 10,000).
def test_ten_thousand_pipelined_commands_parse_fast() -> None:
    data = b"".join(encode_command([b"SET", b"key:%d" % i, b"value"]) for i in range(10_000))
    started = time.process_time()
    commands, error = parse(data)
    elapsed = time.process_time() - started
    assert error is None
    assert len(commands) == 10_000
    assert commands[9_999] == [b"SET", b"key:9999", b"value"]
    assert elapsed < 1.0, f"10k commands took {elapsed:.3f}s"


def test_ten_thousand_inline_commands_parse_fast() -> None:
    data = b"".join(b"SET key:%d value\r\n" % i for i in range(10_000))
    started = time.process_time()
    commands, error = parse(data)
    assert time.process_time() - started < 1.0
    assert (len(commands), error) == (10_000, None)


def test_big_argument_in_small_chunks_is_linear() -> None:
    value = bytes(range(256)) * (32 * 1024)  # 8 MiB
    data = encode_command([b"SET", b"k", value])
    started = time.process_time()
    commands, error = parse(data, chunk=4096)
    elapsed = time.process_time() - started
    assert (commands, error) == ([[b"SET", b"k", value]], None)
    assert elapsed < 1.0, f"8 MiB in 4 KiB chunks took {elapsed:.3f}s"


@pytest.mark.parametrize(
    ("data", "result"),
    [
        (b"x" * 30_000 + b"\r\n", ([[b"x" * 30_000]], None)),
        (b"*" + b"0" * 30_000, ([], None)),
        (b"*1\r\n$" + b"1" * 30_000, ([], None)),
    ],
)
def test_long_line_fed_byte_by_byte_is_scanned_once(
    data: bytes, result: tuple[Commands, str | None]
) -> None:
    started = time.process_time()
    assert parse(data, chunk=1) == result
    assert time.process_time() - started < 2.0


# --- Encoder: every type, both protocols, exact bytes -------------------------------------------


class Color(enum.IntEnum):
    RED = 7


class Word(enum.StrEnum):
    PONG = "PONG"


HELLO_3 = {
    b"server": b"redis",
    b"version": b"7.0.15",
    b"proto": 3,
    b"id": 92,
    b"mode": b"standalone",
    b"role": b"master",
    b"modules": [],
}


@pytest.mark.parametrize(
    ("value", "resp2", "resp3"),
    [
        (b"Hello World", b"$11\r\nHello World\r\n", b"$11\r\nHello World\r\n"),
        (b"", b"$0\r\n\r\n", b"$0\r\n\r\n"),
        (b"a\r\nb", b"$4\r\na\r\nb\r\n", b"$4\r\na\r\nb\r\n"),
        (bytearray(b"ab"), b"$2\r\nab\r\n", b"$2\r\nab\r\n"),
        (memoryview(b"ab"), b"$2\r\nab\r\n", b"$2\r\nab\r\n"),
        ("OK", b"+OK\r\n", b"+OK\r\n"),
        (OK, b"+OK\r\n", b"+OK\r\n"),
        (Status("QUEUED"), b"+QUEUED\r\n", b"+QUEUED\r\n"),
        (Word.PONG, b"+PONG\r\n", b"+PONG\r\n"),
        (Error(errors.SYNTAX_ERROR), b"-ERR syntax error\r\n", b"-ERR syntax error\r\n"),
        (Error("ERR a\r\nb\n"), b"-ERR a  b\r\n", b"-ERR a  b\r\n"),
        (12345, b":12345\r\n", b":12345\r\n"),
        (0, b":0\r\n", b":0\r\n"),
        (-1, b":-1\r\n", b":-1\r\n"),
        (2**63 - 1, b":9223372036854775807\r\n", b":9223372036854775807\r\n"),
        (-(2**63), b":-9223372036854775808\r\n", b":-9223372036854775808\r\n"),
        (Color.RED, b":7\r\n", b":7\r\n"),
        (None, b"$-1\r\n", b"_\r\n"),
        (NULL_ARRAY, b"*-1\r\n", b"_\r\n"),
        (True, b":1\r\n", b"#t\r\n"),
        (False, b":0\r\n", b"#f\r\n"),
        (3.141, b"$5\r\n3.141\r\n", b",3.141\r\n"),
        (0.1, b"$19\r\n0.10000000000000001\r\n", b",0.10000000000000001\r\n"),
        (1e20, b"$5\r\n1e+20\r\n", b",1e+20\r\n"),
        (1e-5, b"$22\r\n1.0000000000000001e-05\r\n", b",1.0000000000000001e-05\r\n"),
        (
            123456789012345678.0,
            b"$22\r\n1.2345678901234568e+17\r\n",
            b",1.2345678901234568e+17\r\n",
        ),
        (0.0, b"$1\r\n0\r\n", b",0\r\n"),
        (-0.0, b"$2\r\n-0\r\n", b",-0\r\n"),
        (float("inf"), b"$3\r\ninf\r\n", b",inf\r\n"),
        (float("-inf"), b"$4\r\n-inf\r\n", b",-inf\r\n"),
        (float("nan"), b"$3\r\nnan\r\n", b",nan\r\n"),
        (-float("nan"), b"$4\r\n-nan\r\n", b",-nan\r\n"),
        ([0, 1, 2], b"*3\r\n:0\r\n:1\r\n:2\r\n", b"*3\r\n:0\r\n:1\r\n:2\r\n"),
        ((), b"*0\r\n", b"*0\r\n"),
        ([], b"*0\r\n", b"*0\r\n"),
        (
            {0: False, 1: True, 2: False},
            b"*6\r\n:0\r\n:0\r\n:1\r\n:1\r\n:2\r\n:0\r\n",
            b"%3\r\n:0\r\n#f\r\n:1\r\n#t\r\n:2\r\n#f\r\n",
        ),
        ({}, b"*0\r\n", b"%0\r\n"),
        (SetReply([0, 1, 2]), b"*3\r\n:0\r\n:1\r\n:2\r\n", b"~3\r\n:0\r\n:1\r\n:2\r\n"),
        (
            Pairs([(b"a", 1.5), (b"b", 2.0)]),
            b"*4\r\n$1\r\na\r\n$3\r\n1.5\r\n$1\r\nb\r\n$1\r\n2\r\n",
            b"*2\r\n*2\r\n$1\r\na\r\n,1.5\r\n*2\r\n$1\r\nb\r\n,2\r\n",
        ),
        (Pairs([]), b"*0\r\n", b"*0\r\n"),
        (
            Frames([Push([b"a", 1]), Push([b"b", 2])]),
            b"*2\r\n$1\r\na\r\n:1\r\n*2\r\n$1\r\nb\r\n:2\r\n",
            b">2\r\n$1\r\na\r\n:1\r\n>2\r\n$1\r\nb\r\n:2\r\n",
        ),
        ([Frames([1, 2])], b"*1\r\n:1\r\n:2\r\n", b"*1\r\n:1\r\n:2\r\n"),
        ({b"m"}, b"*1\r\n$1\r\nm\r\n", b"~1\r\n$1\r\nm\r\n"),
        (frozenset(), b"*0\r\n", b"~0\r\n"),
        (
            Push([b"server-cpu-usage", 42]),
            b"*2\r\n$16\r\nserver-cpu-usage\r\n:42\r\n",
            b">2\r\n$16\r\nserver-cpu-usage\r\n:42\r\n",
        ),
        (
            Push(["message", b"chan", b"hi"]),
            b"*3\r\n+message\r\n$4\r\nchan\r\n$2\r\nhi\r\n",
            b">3\r\n+message\r\n$4\r\nchan\r\n$2\r\nhi\r\n",
        ),
        (
            Verbatim(b"This is a verbatim\nstring"),
            b"$25\r\nThis is a verbatim\nstring\r\n",
            b"=29\r\ntxt:This is a verbatim\nstring\r\n",
        ),
        (Verbatim(b"# x", "mkd"), b"$3\r\n# x\r\n", b"=7\r\nmkd:# x\r\n"),
        (
            BigNumber(1234567999999999999999999999999999999),
            b"$37\r\n1234567999999999999999999999999999999\r\n",
            b"(1234567999999999999999999999999999999\r\n",
        ),
        (BigNumber(-(2**64)), b"$21\r\n-18446744073709551616\r\n", b"(-18446744073709551616\r\n"),
        (
            [b"a", [1, [None, NULL_ARRAY]], {b"k": [1.5]}],
            b"*3\r\n$1\r\na\r\n*2\r\n:1\r\n*2\r\n$-1\r\n*-1\r\n*2\r\n$1\r\nk\r\n*1\r\n$3\r\n1.5\r\n",
            b"*3\r\n$1\r\na\r\n*2\r\n:1\r\n*2\r\n_\r\n_\r\n%1\r\n$1\r\nk\r\n*1\r\n,1.5\r\n",
        ),
        (
            HELLO_3,
            b"*14\r\n$6\r\nserver\r\n$5\r\nredis\r\n$7\r\nversion\r\n$6\r\n7.0.15\r\n"
            b"$5\r\nproto\r\n:3\r\n$2\r\nid\r\n:92\r\n$4\r\nmode\r\n$10\r\nstandalone\r\n"
            b"$4\r\nrole\r\n$6\r\nmaster\r\n$7\r\nmodules\r\n*0\r\n",
            b"%7\r\n$6\r\nserver\r\n$5\r\nredis\r\n$7\r\nversion\r\n$6\r\n7.0.15\r\n"
            b"$5\r\nproto\r\n:3\r\n$2\r\nid\r\n:92\r\n$4\r\nmode\r\n$10\r\nstandalone\r\n"
            b"$4\r\nrole\r\n$6\r\nmaster\r\n$7\r\nmodules\r\n*0\r\n",
        ),
    ],
)
def test_encode_exact_bytes(value: Reply, resp2: bytes, resp3: bytes) -> None:
    assert encode(value, 2) == resp2
    assert encode(value, 3) == resp3
    assert encode(value) == resp2  # RESP2 is the default, as for a new connection


@pytest.mark.parametrize(
    ("value", "error"),
    [
        (Status("a\r\nb"), ValueError),
        ("x\n", ValueError),
        (2**63, ValueError),
        (-(2**63) - 1, ValueError),
        (Verbatim(b"x", "md"), ValueError),
        (object(), TypeError),
        ([b"ok", object()], TypeError),
    ],
)
def test_encode_refuses(value: object, error: type[Exception]) -> None:
    with pytest.raises(error):
        encode(cast(Reply, value), 3)


def test_protocol_must_be_2_or_3() -> None:
    with pytest.raises(ValueError, match="protocol"):
        encode(b"x", 4)
    with pytest.raises(ValueError, match="protocol"):
        Encoder(1)


def test_encoder_batches_many_replies_into_one_write() -> None:
    replies: list[Reply] = [OK, b"value", None, 7, [b"a", b"b"], Error(errors.WRONGTYPE)]
    encoder = Encoder()
    for reply in replies:
        encoder.write(reply)
    assert len(encoder) == sum(len(encode(reply)) for reply in replies)
    assert encoder.take() == b"".join(encode(reply) for reply in replies)
    assert len(encoder) == 0
    assert encoder.take() == b""


def test_encoder_switches_protocol_between_replies() -> None:
    encoder = Encoder(2)
    encoder.write(None)
    encoder.protocol = 3  # HELLO 3
    encoder.write(None)
    assert encoder.protocol == 3
    encoder.write_raw(b"+PONG\r\n")
    assert encoder.take() == b"$-1\r\n_\r\n+PONG\r\n"


def test_encoder_failed_write_leaves_no_partial_reply() -> None:
    encoder = Encoder(3)
    encoder.write(OK)
    with pytest.raises(TypeError):
        encoder.write(cast(Reply, [b"a", b"b", object()]))
    assert encoder.take() == b"+OK\r\n"


def test_encode_command() -> None:
    assert encode_command([b"GET", b"k"]) == b"*2\r\n$3\r\nGET\r\n$1\r\nk\r\n"
    assert encode_command([b"SET", b"k", b""]) == b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$0\r\n\r\n"
    # A command is an array of bulk strings: the reply encoder agrees.
    assert encode_command([b"a", b"b"]) == encode([b"a", b"b"])


# --- Command-level error texts ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("message", "wire"),
    [
        (
            errors.unknown_command(b"FOO", []),
            b"-ERR unknown command 'FOO', with args beginning with: \r\n",
        ),
        (
            errors.unknown_command(b"FOO", [b"a", b"b"]),
            b"-ERR unknown command 'FOO', with args beginning with: 'a' 'b' \r\n",
        ),
        (
            errors.unknown_command(b"foo\r\nx", [b"a\nb"]),
            b"-ERR unknown command 'foo  x', with args beginning with: 'a b' \r\n",
        ),
        (
            errors.unknown_command(b"x" * 200, [b"y" * 200, b"z"]),
            b"-ERR unknown command '"
            + b"x" * 128
            + b"', with args beginning with: '"
            + b"y" * 128
            + b"' \r\n",
        ),
        (
            errors.unknown_command(b"FOO", [b"a" * 120, b"b" * 11, b"c"]),
            b"-ERR unknown command 'FOO', with args beginning with: '"
            + b"a" * 120
            + b"' 'bbbbb' \r\n",
        ),
        (
            errors.unknown_command(b"FOO", [b"a\x00b", b"c"]),
            b"-ERR unknown command 'FOO', with args beginning with: 'a' 'c' \r\n",
        ),
        (
            errors.unknown_command(b"\xff\xfe", [b"\x80"]),
            b"-ERR unknown command '\xff\xfe', with args beginning with: '\x80' \r\n",
        ),
        (
            errors.unknown_subcommand(b"config", b"GETX"),
            b"-ERR unknown subcommand 'GETX'. Try CONFIG HELP.\r\n",
        ),
        (
            errors.unknown_subcommand(b"client", b"nope"),
            b"-ERR unknown subcommand 'nope'. Try CLIENT HELP.\r\n",
        ),
        (
            errors.wrong_number_of_arguments("get"),
            b"-ERR wrong number of arguments for 'get' command\r\n",
        ),
        (
            errors.wrong_number_of_arguments("config|get"),
            b"-ERR wrong number of arguments for 'config|get' command\r\n",
        ),
        (
            errors.WRONGTYPE,
            b"-WRONGTYPE Operation against a key holding the wrong kind of value\r\n",
        ),
        (errors.NOT_AN_INTEGER, b"-ERR value is not an integer or out of range\r\n"),
        (errors.NOT_A_VALID_FLOAT, b"-ERR value is not a valid float\r\n"),
        (errors.SYNTAX_ERROR, b"-ERR syntax error\r\n"),
        (errors.NOAUTH, b"-NOAUTH Authentication required.\r\n"),
        (errors.NOPROTO, b"-NOPROTO unsupported protocol version\r\n"),
        (errors.DB_INDEX_OUT_OF_RANGE, b"-ERR DB index is out of range\r\n"),
    ],
)
def test_command_error_reply_bytes(message: str, wire: bytes) -> None:
    assert encode(Error(message), 2) == wire
    assert encode(Error(message), 3) == wire


def test_command_error_carries_its_message() -> None:
    exc = CommandError(errors.SYNTAX_ERROR)
    assert exc.message == str(exc) == "ERR syntax error"
    assert not isinstance(exc, ProtocolError)


# --- Properties -------------------------------------------------------------------------------

arguments = st.lists(st.binary(max_size=40), min_size=1, max_size=8)
pipelines = st.lists(arguments, min_size=1, max_size=6)


def split_into(data: bytes, sizes: list[int]) -> list[bytes]:
    """``data`` cut into consecutive pieces of the given sizes (cycled), never empty."""
    pieces: list[bytes] = []
    start = 0
    index = 0
    while start < len(data):
        size = sizes[index % len(sizes)]
        pieces.append(data[start : start + size])
        start += size
        index += 1
    return pieces


@settings(deadline=None)
@given(commands=pipelines, sizes=st.lists(st.integers(1, 64), min_size=1, max_size=16))
def test_multibulk_round_trip_in_random_chunks(commands: Commands, sizes: list[int]) -> None:
    parser = RequestParser()
    parsed: Commands = []
    for piece in split_into(b"".join(encode_command(c) for c in commands), sizes):
        parser.feed(piece)
        while (command := parser.next_command()) is not None:
            parsed.append(command)
    assert parsed == commands
    assert parser.buffered_bytes == 0


def quote_inline(args: list[bytes]) -> bytes:
    """Each argument as a double-quoted inline word with every byte as \\xHH."""
    return b" ".join(b'"' + b"".join(b"\\x%02x" % byte for byte in arg) + b'"' for arg in args)


@settings(deadline=None)
@given(commands=pipelines, sizes=st.lists(st.integers(1, 64), min_size=1, max_size=16))
def test_inline_round_trip_in_random_chunks(commands: Commands, sizes: list[int]) -> None:
    data = b"".join(quote_inline(c) + b"\r\n" for c in commands)
    parser = RequestParser()
    parsed: Commands = []
    for piece in split_into(data, sizes):
        parser.feed(piece)
        while (command := parser.next_command()) is not None:
            parsed.append(command)
    assert parsed == commands


# Bytes that steer the parser into every branch, plus whole headers.
TOKENS = [
    *(bytes((b,)) for b in b"*$\r\n0123-\"' \\xa\x00\t\x0b\x0c\xff"),
    b"\r\n",
    b"*1\r\n",
    b"*2\r\n",
    b"$0\r\n",
    b"$1\r\n",
    b"$3\r\n",
    b"*0\r\n",
    b"*-1\r\n",
    b'"a\\x4"',
    b"'a\\'b'",
]
SMALL_LIMITS = ParserLimits(bulk_bytes_max=40, inline_bytes_max=12, multibulk_args_max=6)


@settings(deadline=None)
@given(
    data=st.lists(st.sampled_from(TOKENS), max_size=30).map(b"".join),
    sizes=st.lists(st.integers(1, 8), min_size=1, max_size=8),
)
def test_outcome_does_not_depend_on_chunking(data: bytes, sizes: list[int]) -> None:
    """Any input, split anywhere, gives the same commands and the same error."""
    whole = parse(data, limits=SMALL_LIMITS)
    parser = RequestParser(SMALL_LIMITS)
    commands: Commands = []
    error: str | None = None
    try:
        for piece in split_into(data, sizes):
            parser.feed(piece)
            while (command := parser.next_command()) is not None:
                commands.append(command)
    except ProtocolError as exc:
        error = exc.message
    assert (commands, error) == whole
