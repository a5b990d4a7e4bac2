"""Option specs (cacheshim.commands.argspec): the rules at the unit level, word for word, and
the commands whose loops they replaced beside redis-server, on lines with two faults each,
where only the order Redis reads in decides which error comes back."""

from __future__ import annotations

import pytest

from cacheshim.commands.args import parse_int
from cacheshim.commands.argspec import (
    PER_KEY,
    ArgSpec,
    Conflict,
    multi,
    one_of,
    option,
    raw,
    token,
    valued,
)
from cacheshim.protocol import errors
from cacheshim.protocol.errors import CommandError
from tests.cacheshim.harness import compare
from tests.cacheshim.rawresp import Pair, without_callbacks

NX, XX, GT, LT = token("NX"), token("XX"), token("GT"), token("LT")
COUNT = valued("COUNT", parse_int)
LIMIT = multi("LIMIT", 2, parse_int)
STORE = raw("STORE")


def error_of(spec: ArgSpec, *words: str, numkeys: int = 0) -> str:
    with pytest.raises(CommandError) as caught:
        spec.parse([w.encode() for w in words], numkeys=numkeys)
    return caught.value.message


def parse(spec: ArgSpec, *words: str, numkeys: int = 0) -> object:
    return spec.parse([w.encode() for w in words], numkeys=numkeys)


def test_words_are_matched_as_redis_compares_them() -> None:
    assert option(b"withScores") == b"WITHSCORES"
    assert option(b"nx\x00anything") == b"NX"  # strcasecmp stops at the NUL
    parsed = ArgSpec(NX, COUNT).parse([b"nX\x00junk", b"count", b"7"])
    assert NX in parsed and parsed.get(COUNT) == 7
    assert parsed.end == 3


def test_values_are_converted_and_the_last_one_wins() -> None:
    spec = ArgSpec(COUNT, LIMIT, STORE)
    parsed = ArgSpec(COUNT, LIMIT, STORE).parse(
        [b"COUNT", b"1", b"LIMIT", b"0", b"-5", b"STORE", b"a", b"COUNT", b"2", b"STORE", b"b"]
    )
    assert parsed.get(COUNT) == 2 and parsed.all(COUNT) == [1, 2]
    assert parsed.get(LIMIT) == [0, -5]
    assert parsed.get(STORE) == b"b" and parsed.all(STORE) == [b"a", b"b"]
    empty = spec.parse([])
    assert empty.get(COUNT) is None and empty.get(COUNT, 10) == 10 and COUNT not in empty


def test_unknown_words_and_missing_values_are_syntax_errors() -> None:
    spec = ArgSpec(NX, COUNT, LIMIT)
    assert error_of(spec, "FOO") == "ERR syntax error"
    assert error_of(spec, "COUNT") == "ERR syntax error"
    assert error_of(spec, "LIMIT", "1") == "ERR syntax error"
    # a word the spec names another error for (EXPIRE's)
    expire = ArgSpec(NX, unknown=errors.unsupported_option)
    assert error_of(expire, "NX", "foo\x00bar") == "ERR Unsupported option foo"
    assert error_of(expire, "NX", "NX", "COUNT") == "ERR Unsupported option COUNT"


def test_a_bad_value_is_reported_when_the_loop_meets_it() -> None:
    spec = ArgSpec(NX, COUNT, LIMIT)
    # the value comes first on the line: its error, not the unknown word after it
    assert error_of(spec, "COUNT", "x", "FOO") == "ERR value is not an integer or out of range"
    assert error_of(spec, "LIMIT", "1", "y", "FOO") == errors.NOT_AN_INTEGER
    # the unknown word comes first: a syntax error, the value is never read
    assert error_of(spec, "FOO", "COUNT", "x") == "ERR syntax error"


def test_once_options_and_exclusive_groups_refuse_as_unknown_words() -> None:
    by_lex, by_score = token("BYLEX", once=True), token("BYSCORE", once=True)
    spec = ArgSpec(NX, XX, by_lex, by_score, exclusive=[(NX, XX), (by_lex, by_score)])
    assert NX in spec.parse([b"NX", b"nx"])  # the same member of a group twice is fine
    assert error_of(spec, "NX", "XX") == "ERR syntax error"
    assert error_of(spec, "XX", "NX") == "ERR syntax error"
    assert error_of(spec, "BYLEX", "BYLEX") == "ERR syntax error"  # once
    assert error_of(spec, "BYSCORE", "BYLEX") == "ERR syntax error"
    narrower = spec.without(NX)  # keeps the other groups; NX is then an unknown word
    assert error_of(narrower, "BYSCORE", "BYLEX") == "ERR syntax error"
    assert error_of(narrower, "XX", "NX") == "ERR syntax error"
    assert XX in narrower.parse([b"XX"])
    mpop = ArgSpec(valued("COUNT", parse_int, once=True))
    assert error_of(mpop, "COUNT", "1", "COUNT", "x") == "ERR syntax error"


def test_conflicts_are_checked_after_the_line_in_their_order() -> None:
    spec = ArgSpec(
        NX, XX, GT, LT, COUNT,
        conflicts=[
            Conflict(NX, (XX,), errors.ZADD_XX_AND_NX),
            Conflict(NX, (GT, LT), errors.ZADD_GT_LT_NX),
            Conflict(GT, (LT,), errors.ZADD_GT_LT_NX),
        ],
    )  # fmt: skip
    assert error_of(spec, "NX", "XX") == "ERR XX and NX options at the same time are not compatible"
    assert error_of(spec, "GT", "NX", "XX") == errors.ZADD_XX_AND_NX  # the first conflict
    assert error_of(spec, "LT", "GT") == (
        "ERR GT, LT, and/or NX options at the same time are not compatible"
    )
    # a bad value anywhere on the line comes before any conflict
    assert error_of(spec, "NX", "XX", "COUNT", "x") == errors.NOT_AN_INTEGER
    assert error_of(spec, "NX", "XX", "FOO") == errors.SYNTAX_ERROR
    parsed = spec.parse_leading([b"key", b"xx", b"NX", b"1", b"m"], 1)
    assert parsed.end == 3 and XX in parsed  # stops at the first word that is no option
    with pytest.raises(CommandError, match="XX and NX"):
        spec.check(parsed)


def test_per_key_values_and_enumerations() -> None:
    weights = multi("WEIGHTS", PER_KEY, float)
    aggregate = valued("AGGREGATE", one_of("SUM", "MIN", "MAX"))
    spec = ArgSpec(weights, aggregate)
    parsed = spec.parse([b"WEIGHTS", b"1", b"2.5", b"AGGREGATE", b"min"], numkeys=2)
    assert parsed.get(weights) == [1.0, 2.5] and parsed.get(aggregate) == b"MIN"
    assert error_of(spec, "WEIGHTS", "1", numkeys=2) == "ERR syntax error"
    assert error_of(spec, "AGGREGATE", "avg") == "ERR syntax error"


def test_last_tells_which_of_several_came_last_and_without_drops_options() -> None:
    asc, desc = token("ASC"), token("DESC")
    spec = ArgSpec(asc, desc, STORE, exclusive=[(asc, STORE)])
    assert spec.parse([b"DESC", b"ASC", b"DESC"]).last(asc, desc) is desc
    assert spec.parse([b"STORE", b"k"]).last(asc, desc) is None
    readonly = spec.without(STORE)
    assert error_of(readonly, "STORE", "k") == "ERR syntax error"
    assert readonly.parse([b"ASC"]).last(asc, desc) is asc
    with pytest.raises(ValueError, match="declared twice"):
        ArgSpec(NX, token("NX"))


@pytest.fixture
def raw_pair(pair: Pair) -> Pair:
    oracle, subject = pair
    return without_callbacks(oracle), without_callbacks(subject)


def test_the_first_fault_on_a_line_decides_the_error_as_in_redis(raw_pair: Pair) -> None:
    """Each line has two faults (or a fault and a conflict); Redis reports the one its loop
    meets first, and so must the specs that replaced the hand-written loops."""
    compare(*raw_pair, [
        ["SET", "s", "v"], ["ZADD", "z", "1", "a", "2", "b"], ["RPUSH", "l", "a", "b", "a"],
        ["SADD", "t", "a"],
        # SET / GETEX: syntax errors before the expiry's value; conflicts refused in the loop
        ["SET", "s", "v", "EX", "abc", "NX", "XX"], ["SET", "s", "v", "EX", "abc"],
        ["SET", "s", "v", "EX", "10", "PX", "10"], ["SET", "s", "v", "EX", "10", "EX", "20"],
        ["SET", "s", "v", "KEEPTTL", "EX", "1"], ["SET", "s", "v", "PERSIST"],
        ["SET", "s", "v", "xx", "nx"], ["SET", "s", "v", "GET", "GET", "NX"],
        ["GETEX", "s", "PERSIST", "EX", "1"], ["GETEX", "s", "KEEPTTL"], ["GETEX", "s", "EX"],
        ["GETEX", "s", "PX", "-1", "FOO"], ["GETEX", "s", "EXAT", "0"],
        # LCS: values in the loop, LEN with IDX after it
        ["LCS", "s", "s", "LEN", "IDX", "MINMATCHLEN", "x"], ["LCS", "s", "s", "LEN", "IDX"],
        ["LCS", "s", "s", "IDX", "FOO"], ["LCS", "s", "s", "MINMATCHLEN"],
        # EXPIRE: the unknown word, then conflicts, then the time
        ["EXPIRE", "s", "abc", "NX", "XX"], ["EXPIRE", "s", "10", "GT", "LT", "FOO"],
        ["EXPIRE", "s", "10", "NX", "GT", "LT"],
        # COPY: DB's value when met
        ["COPY", "s", "d", "DB", "x", "FOO"], ["COPY", "s", "d", "FOO", "DB", "x"],
        ["COPY", "s", "d", "DB", "99", "REPLACE"], ["COPY", "s", "s", "DB"],
        # LPOS: RANK 0, negative COUNT and MAXLEN as met
        ["LPOS", "l", "a", "RANK", "0", "COUNT", "-1"],
        ["LPOS", "l", "a", "COUNT", "-1", "RANK", "0"],
        ["LPOS", "l", "a", "MAXLEN", "-1", "FOO"], ["LPOS", "l", "a", "RANK", "-1", "COUNT", "0"],
        # SINTERCARD, ZINTERCARD: LIMIT's value; LMPOP, ZMPOP: COUNT once
        ["SINTERCARD", "1", "t", "LIMIT", "-1", "FOO"],
        ["SINTERCARD", "1", "t", "LIMIT", "1", "LIMIT", "0"],
        ["ZINTERCARD", "1", "z", "LIMIT", "-1"], ["ZINTERCARD", "1", "z", "WITHSCORES"],
        ["LMPOP", "1", "l", "LEFT", "COUNT", "1", "COUNT", "0"],
        ["LMPOP", "1", "l", "LEFT", "COUNT", "0"],
        ["ZMPOP", "1", "z", "MIN", "COUNT", "x", "FOO"],
        ["ZMPOP", "1", "z", "MAX", "COUNT", "1", "COUNT", "1"],
        # SCAN family: COUNT below 1 is a syntax error; TYPE only for SCAN
        ["SCAN", "0", "COUNT", "0", "MATCH"], ["SCAN", "0", "COUNT", "x", "FOO"],
        ["SSCAN", "t", "0", "TYPE", "set"], ["ZSCAN", "z", "0", "MATCH", "*", "COUNT", "-1"],
        # SORT: LIMIT's values as met; SORT_RO has no STORE; last of ASC/DESC wins
        ["SORT", "l", "LIMIT", "0", "x", "FOO"], ["SORT", "l", "FOO", "LIMIT", "0", "x"],
        ["SORT_RO", "l", "ALPHA", "STORE", "d"], ["SORT", "l", "ALPHA", "DESC", "ASC"],
        ["SORT", "l", "ALPHA", "ASC", "DESC", "LIMIT", "0", "2"],
        ["SORT", "l", "BY", "nosort", "BY", "w*", "DESC"],
        # ZADD: the pairs before the conflicts, then XX/NX before GT/LT/NX before INCR
        ["ZADD", "z", "NX", "XX", "GT"], ["ZADD", "z", "NX", "XX", "GT", "1", "a"],
        ["ZADD", "z", "GT", "LT", "INCR", "1", "a", "2", "b"],
        ["ZADD", "z", "INCR", "1", "a", "2", "b"],
        ["ZADD", "z", "NX", "CH", "x", "a"], ["ZADD", "z", "xx", "ch", "gt", "5", "a"],
        ["ZINCRBY", "z", "NX", "a"],
        # ZRANGE: LIMIT's values as met, a second BY or REV refused, LIMIT by rank after
        ["ZRANGE", "z", "0", "-1", "LIMIT", "0", "x", "FOO"],
        ["ZRANGE", "z", "0", "-1", "LIMIT", "0", "1"],
        ["ZRANGE", "z", "0", "1", "BYSCORE", "BYLEX"],
        ["ZRANGE", "z", "0", "1", "BYSCORE", "BYSCORE"],
        ["ZRANGE", "z", "0", "1", "REV", "REV"],
        ["ZRANGE", "z", "(1", "+inf", "BYSCORE", "LIMIT", "0", "1", "WITHSCORES"],
        ["ZRANGE", "z", "[a", "[z", "BYLEX", "WITHSCORES"],
        ["ZRANGE", "z", "+", "-", "BYLEX", "REV"],
        ["ZRANGESTORE", "d", "z", "0", "-1", "WITHSCORES"],
        ["ZRANGESTORE", "d", "z", "0", "-1", "REV"],
        ["ZREVRANGE", "z", "0", "-1", "REV"], ["ZRANGEBYSCORE", "z", "-inf", "+inf", "BYSCORE"],
        ["ZREVRANGEBYSCORE", "z", "+inf", "-inf", "WITHSCORES", "LIMIT", "1", "1"],
        # ZUNION & co: WEIGHTS per key, AGGREGATE's value, options of other commands refused
        ["ZUNION", "2", "z", "t", "WEIGHTS", "1", "x", "FOO"],
        ["ZUNION", "2", "z", "t", "WEIGHTS", "1"],
        ["ZUNION", "2", "z", "t", "AGGREGATE", "avg", "WEIGHTS", "x", "1"],
        ["ZINTER", "2", "z", "t", "WEIGHTS", "2", "3", "AGGREGATE", "max", "WITHSCORES"],
        ["ZUNIONSTORE", "d", "1", "z", "WITHSCORES"], ["ZDIFF", "2", "z", "t", "WEIGHTS", "1", "1"],
        ["ZDIFF", "2", "z", "t", "WITHSCORES"], ["ZDIFFSTORE", "d", "1", "z", "WITHSCORES"],
    ])  # fmt: skip
