"""Random sequences of string and key commands against redis-server and memlog at once.

Every reply is compared: exactly where Redis's reply is fixed; as sorted lists where Redis
leaves the order open (KEYS, a whole SCAN walk); with a tolerance where it depends on each
server's clock (TTL of a relative expiry); by nil-ness and membership for RANDOMKEY. Relative
expiries are long (no key expires during a run) and never compared against each other with
GT/LT, since two servers' clocks differ; absolute ones are compared exactly.

A failure prints the shrunk sequence of steps and a @reproduce_failure blob (print_blob).
"""

from __future__ import annotations

import time
from collections.abc import Sequence

import hypothesis.strategies as st
import redis
from hypothesis import HealthCheck, settings
from hypothesis.stateful import RuleBasedStateMachine, initialize, rule, run_state_machine_as_test

from tests.cacheshim.harness import Memlog, Outcome, RedisServer, execute, outcome
from tests.cacheshim.rawresp import Pair, without_callbacks

LLONG_MAX = 2**63 - 1
KEYS = [b"k0", b"k1", b"k2", b"k3", b""]
VALUES = [
    b"", b"0", b"1", b"-5", b"100", b"9999", b"10000", b"%d" % LLONG_MAX, b"1.5", b"-0.25",
    b"abc", b"x" * 45, b"12345678901234567890", b"ohmytext", b"mynewtext", b" 7", b"\x00\xff",
]  # fmt: skip
# Relative expiries (seconds / milliseconds): far enough that nothing expires in a run.
RELATIVE_S = [b"1000", b"2000"]
RELATIVE_MS = [b"1500000", b"2500000"]

key = st.sampled_from(KEYS)
value = st.sampled_from(VALUES)
small_int = st.sampled_from([b"0", b"1", b"-1", b"5", b"-100", b"%d" % LLONG_MAX, b"x", b"2.5"])
offset = st.sampled_from([b"0", b"1", b"3", b"10", b"-1", b"-3", b"100"])
floats = st.sampled_from([b"0.1", b"-2.5", b"1e3", b"3", b"0x10", b"abc", b"inf", b"1e-20"])


def cmd(*parts: st.SearchStrategy[bytes] | bytes) -> st.SearchStrategy[list[bytes]]:
    return st.tuples(*(p if isinstance(p, st.SearchStrategy) else st.just(p) for p in parts)).map(
        list
    )


def with_options(
    base: st.SearchStrategy[list[bytes]], options: st.SearchStrategy[list[bytes]]
) -> st.SearchStrategy[list[bytes]]:
    return st.tuples(base, options).map(lambda t: t[0] + t[1])


class DataCommands(RuleBasedStateMachine):
    def __init__(self, pair: Pair, db1: Pair) -> None:
        super().__init__()
        self.oracle, self.subject = pair
        self.oracle1, self.subject1 = db1
        # Absolute expiry times, in the future of this run by a wide margin.
        self.base_s = time.time_ns() // 1_000_000_000 + 100_000

    @initialize()
    def flush(self) -> None:
        for conn in (self.oracle, self.subject):
            execute(conn, "FLUSHALL")

    def check(self, conns: tuple[redis.Redis, redis.Redis], args: Sequence[bytes]) -> Outcome:
        want = outcome(conns[0], args)
        got = outcome(conns[1], args)
        assert got == want, f"{list(args)!r}: redis-server said {want!r}, memlog said {got!r}"
        return got

    def absolute(self) -> st.SearchStrategy[list[bytes]]:
        s = self.base_s
        return st.sampled_from([
            [b"EXAT", b"%d" % (s + 1000)], [b"EXAT", b"%d" % (s + 2000)],
            [b"PXAT", b"%d" % (s * 1000 + 1_234_567)], [b"EXAT", b"1"], [b"PXAT", b"1"],
        ])  # fmt: skip

    # -- exact replies ---------------------------------------------------------------------

    @rule(
        args=with_options(
            cmd(b"SET", key, value),
            st.sampled_from(
                [
                    [],
                    [b"NX"],
                    [b"XX"],
                    [b"GET"],
                    [b"NX", b"GET"],
                    [b"XX", b"GET"],
                    [b"KEEPTTL"],
                    [b"EX", RELATIVE_S[0]],
                    [b"PX", RELATIVE_MS[1]],
                    [b"EXAT", b"1"],
                    [b"PXAT", b"1"],
                    [b"EX", b"0"],
                    [b"KEEPTTL", b"EX", b"5"],
                    [b"BOGUS"],
                ]
            ),
        )
    )
    def set_(self, args: list[bytes]) -> None:
        self.check((self.oracle, self.subject), args)

    @rule(args=st.data())
    def set_absolute(self, args: st.DataObject) -> None:
        command = [b"SET", args.draw(key), args.draw(value), *args.draw(self.absolute())]
        self.check((self.oracle, self.subject), command)

    @rule(
        args=st.one_of(
            cmd(b"GET", key),
            cmd(b"STRLEN", key),
            cmd(b"GETDEL", key),
            cmd(b"TYPE", key),
            cmd(b"GETSET", key, value),
            cmd(b"SETNX", key, value),
            cmd(b"APPEND", key, value),
            cmd(b"MGET", key, key, key),
            cmd(b"MSET", key, value, key, value),
            cmd(b"MSETNX", key, value, key, value),
        )
    )
    def strings(self, args: list[bytes]) -> None:
        self.check((self.oracle, self.subject), args)

    @rule(
        args=st.one_of(
            cmd(b"INCR", key),
            cmd(b"DECR", key),
            cmd(b"INCRBY", key, small_int),
            cmd(b"DECRBY", key, small_int),
            cmd(b"INCRBYFLOAT", key, floats),
        )
    )
    def counters(self, args: list[bytes]) -> None:
        self.check((self.oracle, self.subject), args)

    @rule(
        args=st.one_of(
            cmd(b"GETRANGE", key, offset, offset),
            cmd(b"SUBSTR", key, offset, offset),
            cmd(b"SETRANGE", key, offset, value),
            with_options(
                cmd(b"LCS", key, key),
                st.sampled_from(
                    [
                        [],
                        [b"LEN"],
                        [b"IDX"],
                        [b"IDX", b"WITHMATCHLEN"],
                        [b"IDX", b"MINMATCHLEN", b"2"],
                    ]
                ),
            ),
            cmd(b"OBJECT", b"ENCODING", key),
            cmd(b"OBJECT", b"REFCOUNT", key),
        )
    )
    def parts(self, args: list[bytes]) -> None:
        self.check((self.oracle, self.subject), args)

    @rule(
        args=st.one_of(
            cmd(b"EXISTS", key, key),
            cmd(b"TOUCH", key, key),
            cmd(b"DEL", key, key),
            cmd(b"UNLINK", key),
            cmd(b"RENAME", key, key),
            cmd(b"RENAMENX", key, key),
            cmd(b"MOVE", key, b"1"),
            with_options(
                cmd(b"COPY", key, key),
                st.sampled_from([[], [b"REPLACE"], [b"DB", b"1"], [b"DB", b"0"]]),
            ),
        )
    )
    def keyspace(self, args: list[bytes]) -> None:
        self.check((self.oracle, self.subject), args)

    @rule(
        args=st.one_of(
            cmd(b"SETEX", key, st.sampled_from([*RELATIVE_S, b"0", b"x"]), value),
            cmd(b"PSETEX", key, st.sampled_from(RELATIVE_MS), value),
            cmd(b"PERSIST", key),
            with_options(
                cmd(b"GETEX", key),
                st.sampled_from(
                    [
                        [],
                        [b"PERSIST"],
                        [b"EX", RELATIVE_S[1]],
                        [b"PXAT", b"1"],
                        [b"EXAT", b"1"],
                        [b"EX", b"0"],
                    ]
                ),
            ),
            with_options(
                cmd(b"EXPIRE", key, st.sampled_from([*RELATIVE_S, b"-1"])),
                st.sampled_from([[], [b"NX"], [b"XX"]]),
            ),
            with_options(
                cmd(b"PEXPIRE", key, st.sampled_from(RELATIVE_MS)),
                st.sampled_from([[], [b"NX"], [b"XX"]]),
            ),
        )
    )
    def expiry(self, args: list[bytes]) -> None:
        self.check((self.oracle, self.subject), args)

    @rule(args=st.data())
    def expire_at(self, args: st.DataObject) -> None:
        s = self.base_s
        name = args.draw(st.sampled_from([b"EXPIREAT", b"PEXPIREAT"]))
        when = args.draw(st.sampled_from([s + 1000, s + 2000, s + 3000, 1]))
        if name == b"PEXPIREAT":
            when = when * 1000 + 777
        options = args.draw(
            st.sampled_from([[], [b"NX"], [b"XX"], [b"GT"], [b"LT"], [b"XX", b"GT"]])
        )
        k = args.draw(key)
        command = [name, k, b"%d" % when, *options]
        changed = self.check((self.oracle, self.subject), command) == ("ok", 1)
        for absolute in (b"EXPIRETIME", b"PEXPIRETIME"):
            if changed:  # the absolute time just set (or no key, if it was in the past)
                self.check((self.oracle, self.subject), [absolute, k])
            else:  # an earlier expiry, maybe a relative one: each server's clock
                self.close_enough(absolute, k)

    @rule(args=st.one_of(cmd(b"GET", key), cmd(b"MOVE", key, b"0"), cmd(b"TYPE", key)))
    def db1(self, args: list[bytes]) -> None:
        self.check((self.oracle1, self.subject1), args)

    # -- replies that depend on the clock or are unordered --------------------------------

    @rule(name=st.sampled_from([b"TTL", b"PTTL", b"EXPIRETIME", b"PEXPIRETIME"]), k=key)
    def ttl(self, name: bytes, k: bytes) -> None:
        self.close_enough(name, k)

    def close_enough(self, name: bytes, k: bytes) -> None:
        want = execute(self.oracle, name, k)
        got = execute(self.subject, name, k)
        assert isinstance(want, int) and isinstance(got, int), (want, got)
        tolerance = 2000 if name.startswith(b"P") else 2
        if want < 0 or got < 0:
            assert got == want, f"{name!r} {k!r}: redis-server {want}, memlog {got}"
        else:
            assert abs(got - want) <= tolerance, f"{name!r} {k!r}: redis {want}, memlog {got}"

    @rule(pattern=st.sampled_from([b"*", b"k*", b"k[0-1]", b"?", b"k?", b"*1*", b"[^k]*", b""]))
    def keys(self, pattern: bytes) -> None:
        for conns in ((self.oracle, self.subject), (self.oracle1, self.subject1)):
            want = execute(conns[0], "KEYS", pattern)
            got = execute(conns[1], "KEYS", pattern)
            assert isinstance(want, list) and isinstance(got, list)
            assert sorted(got) == sorted(want), f"KEYS {pattern!r}: redis {want}, memlog {got}"

    @rule(
        count=st.sampled_from([[], [b"COUNT", b"1"], [b"COUNT", b"3"]]),
        match=st.sampled_from([[], [b"MATCH", b"k[12]"], [b"MATCH", b"*"]]),
        type_=st.sampled_from([[], [b"TYPE", b"string"], [b"TYPE", b"hash"]]),
    )
    def scan(self, count: list[bytes], match: list[bytes], type_: list[bytes]) -> None:
        options = [*count, *match, *type_]
        want, got = (set(_full_scan(c, options)) for c in (self.oracle, self.subject))
        assert got == want, f"SCAN {options}: redis {sorted(want)}, memlog {sorted(got)}"

    @rule()
    def randomkey(self) -> None:
        want = execute(self.oracle, "RANDOMKEY")
        got = execute(self.subject, "RANDOMKEY")
        assert (got is None) == (want is None), (want, got)
        if isinstance(got, bytes):
            assert execute(self.subject, "EXISTS", got) == 1


def _full_scan(conn: redis.Redis, options: list[bytes]) -> list[bytes]:
    cursor: bytes = b"0"
    found: list[bytes] = []
    for _ in range(10_000):
        reply = execute(conn, "SCAN", cursor, *options)
        assert isinstance(reply, list)
        cursor, keys = reply
        found += keys
        if cursor == b"0":
            return found
    raise AssertionError("SCAN never ended")


def test_random_command_sequences_match_redis(
    pair: Pair, oracle_server: RedisServer, memlog: Memlog
) -> None:
    oracle, subject = (without_callbacks(c) for c in pair)
    db1 = (
        without_callbacks(redis.Redis(port=oracle_server.port, db=1, socket_timeout=15)),
        without_callbacks(redis.Redis(port=memlog.shim_ports[0], db=1, socket_timeout=15)),
    )
    try:

        class BoundDataCommands(DataCommands):
            def __init__(self) -> None:
                super().__init__((oracle, subject), db1)

        run_state_machine_as_test(
            BoundDataCommands,
            settings=settings(
                max_examples=30,
                stateful_step_count=30,
                deadline=None,
                print_blob=True,
                suppress_health_check=[HealthCheck.too_slow],
            ),
        )
    finally:
        for conn in db1:
            conn.close()
