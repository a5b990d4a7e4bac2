"""Random sequences of string and key commands against redis-server and memlog at once.

Every reply is compared: exactly where Redis's reply is fixed; as sorted lists where Redis
leaves the order open (KEYS, a whole SCAN walk); with a tolerance where it depends on each
server's clock (TTL of a relative expiry); by nil-ness and membership for RANDOMKEY. Relative
expiries are long (no key expires during a run) and never compared against each other with
GT/LT, since two servers' clocks differ; absolute ones are compared exactly.

Transactions run on a connection of their own (the watcher) on each server: WATCH, UNWATCH,
MULTI ... EXEC or DISCARD, between which the other rules change keys, flush databases, and
let keys expire (a key set to expire soon, watched, then given the time to expire: the only
expiries that pass during a run, always whole before the next step).

A failure prints the shrunk sequence of steps and a @reproduce_failure blob (print_blob).

Over 500 lines: the command generators, the comparison rules and the runs are one randomized
test.
"""

from __future__ import annotations

import os
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
# Hash fields and set members: integers and others, long ones (over the listpack and
# intset limits) to reach the hashtable encodings.
field = st.sampled_from([b"f1", b"f2", b"f3", b"", b"F" * 70])
member = st.sampled_from([b"1", b"2", b"-3", b"10", b"01", b"a", b"", b"x" * 70, b"1.5"])
# Sorted sets: scores as Redis parses them (and some it refuses), range bounds, ZADD options.
score = st.sampled_from([b"0", b"1", b"-1", b"2.5", b"-0", b"inf", b"-inf", b"1e-3", b"x", b"nan"])
score_bound = st.sampled_from([b"-inf", b"+inf", b"0", b"(0", b"1", b"(2.5", b"x", b"(inf"])
lex_bound = st.sampled_from([b"-", b"+", b"[a", b"(a", b"[1", b"(10", b"x"])
aggregate = st.sampled_from([b"SUM", b"MIN", b"MAX"])
ZADD_OPTIONS = st.sampled_from(
    [[], [b"NX"], [b"XX"], [b"GT", b"CH"], [b"LT"], [b"INCR"], [b"XX", b"CH"], [b"NX", b"GT"]]
)


def cmd(*parts: st.SearchStrategy[bytes] | bytes) -> st.SearchStrategy[list[bytes]]:
    return st.tuples(*(p if isinstance(p, st.SearchStrategy) else st.just(p) for p in parts)).map(
        list
    )


def with_options(
    base: st.SearchStrategy[list[bytes]], options: st.SearchStrategy[list[bytes]]
) -> st.SearchStrategy[list[bytes]]:
    return st.tuples(base, options).map(lambda t: t[0] + t[1])


# What a transaction queues: reads (EXEC served from the shim's memory) and writes (applied).
queued = st.one_of(
    cmd(b"GET", key),
    cmd(b"EXISTS", key),
    cmd(b"SET", key, value),
    cmd(b"INCR", key),
    cmd(b"DEL", key),
    cmd(b"PING"),
)


class WatchCommands(RuleBasedStateMachine):
    """Transactions and WATCH against writes, flushes and expiry: the rules of issue 14,
    run on their own (so that they meet often) and within DataCommands."""

    def __init__(self, pair: Pair, db1: Pair, watchers: Pair | None = None) -> None:
        super().__init__()
        self.oracle, self.subject = pair
        self.oracle1, self.subject1 = db1
        # One connection each (WATCH belongs to a connection), for the transaction rules.
        self.watchers = watchers

    @initialize()
    def flush(self) -> None:
        for conn in (self.oracle, self.subject):
            execute(conn, "FLUSHALL")
        if self.watchers is not None:
            for conn in self.watchers:
                execute(conn, "UNWATCH")

    def check(self, conns: tuple[redis.Redis, redis.Redis], args: Sequence[bytes]) -> Outcome:
        want = outcome(conns[0], args)
        got = outcome(conns[1], args)
        assert got == want, f"{list(args)!r}: redis-server said {want!r}, memlog said {got!r}"
        return got

    @rule(
        args=st.one_of(
            cmd(b"SET", key, value),
            cmd(b"INCR", key),
            cmd(b"DEL", key),
            cmd(b"APPEND", key, value),
            cmd(b"EXPIRE", key, b"1000"),
            cmd(b"PERSIST", key),
            cmd(b"RENAME", key, key),
            cmd(b"MOVE", key, b"1"),
            cmd(b"GET", key),
        )
    )
    def writes(self, args: list[bytes]) -> None:
        self.check((self.oracle, self.subject), args)

    # -- transactions, WATCH, flushes and expiry (issue 14) ----------------------------------

    @rule(keys=st.lists(key, min_size=1, max_size=3))
    def watch(self, keys: list[bytes]) -> None:
        if self.watchers is not None:
            self.check(self.watchers, [b"WATCH", *keys])

    @rule()
    def unwatch(self) -> None:
        if self.watchers is not None:
            self.check(self.watchers, [b"UNWATCH"])

    @rule(commands=st.lists(queued, max_size=3), end=st.sampled_from([b"EXEC", b"DISCARD"]))
    def transaction(self, commands: list[list[bytes]], end: bytes) -> None:
        """MULTI, the commands, then EXEC (nil if a watched key changed) or DISCARD; both
        forget the watched keys."""
        if self.watchers is None:
            return
        for args in [[b"MULTI"], *commands, [end]]:
            want, got = (_errors_as_text(outcome(conn, args)) for conn in self.watchers)
            assert got == want, f"{args!r}: redis-server said {want!r}, memlog said {got!r}"

    @rule(args=st.sampled_from([[b"FLUSHALL"], [b"FLUSHDB"], [b"FLUSHALL", b"SYNC"]]))
    def flushes(self, args: list[bytes]) -> None:
        self.check((self.oracle, self.subject), args)

    @rule(args=st.sampled_from([[b"FLUSHDB"], [b"SET", b"k1", b"db1"]]))
    def db1_changes(self, args: list[bytes]) -> None:
        self.check((self.oracle1, self.subject1), args)

    @rule(k=key, v=value, watch=st.booleans())
    def expire_soon(self, k: bytes, v: bytes, watch: bool) -> None:
        """A key set to expire soon (maybe watched while it lives), then time for it to
        expire on both servers: at the next step it is gone (or due) everywhere."""
        self.check((self.oracle, self.subject), [b"SET", k, v, b"PX", b"300"])
        if watch and self.watchers is not None:
            self.check(self.watchers, [b"WATCH", k])
        time.sleep(0.4)


class DataCommands(WatchCommands):
    def __init__(self, pair: Pair, db1: Pair, watchers: Pair | None = None) -> None:
        super().__init__(pair, db1, watchers)
        # Absolute expiry times, in the future of this run by a wide margin.
        self.base_s = time.time_ns() // 1_000_000_000 + 100_000

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

    # -- hashes and sets (issue 5) ----------------------------------------------------------

    @rule(
        args=st.one_of(
            cmd(b"HSET", key, field, member),
            cmd(b"HSET", key, field, member, field, member),
            cmd(b"HMSET", key, field, member),
            cmd(b"HSETNX", key, field, member),
            cmd(b"HDEL", key, field, field),
            cmd(b"HGET", key, field),
            cmd(b"HMGET", key, field, field),
            cmd(b"HLEN", key),
            cmd(b"HEXISTS", key, field),
            cmd(b"HSTRLEN", key, field),
            cmd(b"HINCRBY", key, field, small_int),
            cmd(b"HINCRBYFLOAT", key, field, floats),
            cmd(b"HRANDFIELD", key, st.sampled_from([b"0", b"x"])),
            cmd(b"OBJECT", b"ENCODING", key),
        )
    )
    def hashes(self, args: list[bytes]) -> None:
        self.check((self.oracle, self.subject), args)

    @rule(
        args=st.one_of(
            cmd(b"SADD", key, member, member),
            cmd(b"SREM", key, member, member),
            cmd(b"SISMEMBER", key, member),
            cmd(b"SMISMEMBER", key, member, member),
            cmd(b"SCARD", key),
            cmd(b"SMOVE", key, key, member),
            cmd(b"SINTERCARD", b"2", key, key),
            cmd(b"SINTERSTORE", key, key, key),
            cmd(b"SUNIONSTORE", key, key, key),
            cmd(b"SDIFFSTORE", key, key, key),
            cmd(b"SPOP", key, st.sampled_from([b"0", b"-1", b"x"])),
            cmd(b"OBJECT", b"ENCODING", key),
        )
    )
    def sets(self, args: list[bytes]) -> None:
        self.check((self.oracle, self.subject), args)

    @rule(
        args=st.one_of(
            cmd(b"HGETALL", key),
            cmd(b"HKEYS", key),
            cmd(b"HVALS", key),
            cmd(b"SMEMBERS", key),
            cmd(b"SINTER", key, key),
            cmd(b"SUNION", key, key),
            cmd(b"SDIFF", key, key, key),
            cmd(b"HRANDFIELD", key, b"100", b"WITHVALUES"),
            cmd(b"SRANDMEMBER", key, b"100"),
            cmd(b"SPOP", key, b"100"),  # the whole set: the same on both sides
            cmd(b"HSCAN", key, b"0", b"COUNT", b"100"),
            cmd(b"SSCAN", key, b"0", b"COUNT", b"100"),
        )
    )
    def unordered(self, args: list[bytes]) -> None:
        """Replies in a hash table's order in Redis (and all of the collection): the same
        items, pairs kept together."""
        want = outcome(self.oracle, args)
        got = outcome(self.subject, args)
        assert _unordered(args, got) == _unordered(args, want), (
            f"{list(args)!r}: redis-server said {want!r}, memlog said {got!r}"
        )

    @rule(
        args=st.one_of(
            cmd(b"SORT", key),
            cmd(b"SORT", key, b"ALPHA"),
            cmd(b"SORT_RO", key, b"ALPHA", b"DESC", b"LIMIT", b"0", b"2"),
            cmd(b"SORT", key, b"ALPHA", b"GET", b"#", b"GET", b"k*"),
            cmd(b"SORT", key, b"BY", b"nosort", b"STORE", key),  # a set is sorted ALPHA
        )
    )
    def sort(self, args: list[bytes]) -> None:
        self.check((self.oracle, self.subject), args)

    @rule(k=key, count=st.sampled_from([b"1", b"-3", b"2"]))
    def random_members(self, k: bytes, count: bytes) -> None:
        """Random picks differ between servers: the same count of the same kind of item."""
        for name in (b"SRANDMEMBER", b"HRANDFIELD"):
            want = outcome(self.oracle, [name, k, count])
            got = outcome(self.subject, [name, k, count])
            if want[0] == "err" or not isinstance(want[1], list):
                assert got == want, (name, k, count, want, got)
                continue
            assert got[0] == "ok" and isinstance(got[1], list), (name, k, count, want, got)
            assert len(got[1]) == len(want[1]), (name, k, count, want, got)
            members = execute(self.subject, b"SMEMBERS" if name == b"SRANDMEMBER" else b"HKEYS", k)
            assert isinstance(members, list) and set(got[1]) <= set(members)

    # -- sorted sets (issue 5) ---------------------------------------------------------------

    @rule(
        args=st.one_of(
            st.tuples(cmd(b"ZADD", key), ZADD_OPTIONS, cmd(score, member, score, member)).map(
                lambda t: t[0] + t[1] + t[2]
            ),
            cmd(b"ZADD", key, score, member),
            cmd(b"ZINCRBY", key, score, member),
            cmd(b"ZREM", key, member, member),
            with_options(cmd(b"ZPOPMIN", key), st.sampled_from([[], [b"2"], [b"0"], [b"-1"]])),
            cmd(b"ZPOPMAX", key),
            cmd(b"ZMPOP", b"2", key, key, st.sampled_from([b"MIN", b"MAX"]), b"COUNT", b"2"),
            cmd(b"ZREMRANGEBYRANK", key, offset, offset),
            cmd(b"ZREMRANGEBYSCORE", key, score_bound, score_bound),
            cmd(b"ZRANGESTORE", key, key, offset, offset),
            cmd(b"ZUNIONSTORE", key, b"2", key, key, b"WEIGHTS", score, b"2"),
            cmd(b"ZINTERSTORE", key, b"2", key, key, b"AGGREGATE", aggregate),
            cmd(b"ZDIFFSTORE", key, b"2", key, key),
        )
    )
    def zset_writes(self, args: list[bytes]) -> None:
        self.check((self.oracle, self.subject), args)

    @rule(
        args=st.one_of(
            cmd(b"ZSCORE", key, member),
            cmd(b"ZMSCORE", key, member, member),
            cmd(b"ZCARD", key),
            cmd(b"ZCOUNT", key, score_bound, score_bound),
            cmd(b"ZRANK", key, member),
            cmd(b"ZREVRANK", key, member),
            with_options(
                cmd(b"ZRANGE", key, offset, offset),
                st.sampled_from([[], [b"WITHSCORES"], [b"REV", b"WITHSCORES"]]),
            ),
            cmd(b"ZRANGEBYSCORE", key, score_bound, score_bound, b"WITHSCORES"),
            cmd(b"ZREVRANGEBYSCORE", key, score_bound, score_bound, b"LIMIT", b"1", b"2"),
            cmd(b"ZRANGE", key, score_bound, score_bound, b"BYSCORE", b"REV", b"LIMIT", b"0", b"3"),
            cmd(b"ZUNION", b"2", key, key, b"WITHSCORES"),
            cmd(b"ZINTER", b"2", key, key, b"AGGREGATE", b"SUM", b"WITHSCORES"),
            cmd(b"ZDIFF", b"2", key, key),
            cmd(b"ZINTERCARD", b"2", key, key, b"LIMIT", b"1"),
            cmd(b"ZRANDMEMBER", key, b"100", b"WITHSCORES"),  # the whole set, in order
            cmd(b"OBJECT", b"ENCODING", key),
        )
    )
    def zset_reads(self, args: list[bytes]) -> None:
        self.check((self.oracle, self.subject), args)

    @rule(
        k=key,
        low=lex_bound,
        high=lex_bound,
        name=st.sampled_from([b"ZRANGEBYLEX", b"ZREVRANGEBYLEX", b"ZLEXCOUNT", b"ZREMRANGEBYLEX"]),
    )
    def zset_lex(self, k: bytes, low: bytes, high: bytes, name: bytes) -> None:
        """Lexicographic ranges and ZSCAN: exact while the set is a listpack (members of
        different scores make a skiplist's answer depend on Redis's random node levels)."""
        if execute(self.oracle, b"OBJECT", b"ENCODING", k) != b"listpack":
            return
        self.check((self.oracle, self.subject), [name, k, low, high])
        self.check((self.oracle, self.subject), [b"ZSCAN", k, b"0"])

    @rule(k=key, count=st.sampled_from([b"1", b"-3", b"2"]))
    def zset_random_members(self, k: bytes, count: bytes) -> None:
        want = outcome(self.oracle, [b"ZRANDMEMBER", k, count, b"WITHSCORES"])
        got = outcome(self.subject, [b"ZRANDMEMBER", k, count, b"WITHSCORES"])
        if want[0] == "err" or not isinstance(want[1], list):
            assert got == want, (k, count, want, got)
            return
        assert got[0] == "ok" and isinstance(got[1], list) and len(got[1]) == len(want[1])
        pairs = execute(self.subject, b"ZRANGE", k, b"0", b"-1", b"WITHSCORES")
        assert isinstance(pairs, list)
        scores = dict(zip(pairs[::2], pairs[1::2], strict=True))
        assert all(scores[m] == s for m, s in zip(got[1][::2], got[1][1::2], strict=True))

    # -- lists (issue 5) -----------------------------------------------------------------------

    @rule(
        args=st.one_of(
            cmd(b"LPUSH", key, value, value),
            cmd(b"RPUSH", key, value),
            cmd(b"LPUSHX", key, value),
            cmd(b"RPUSHX", key, value, value),
            with_options(cmd(b"LPOP", key), st.sampled_from([[], [b"0"], [b"2"], [b"-1"]])),
            with_options(cmd(b"RPOP", key), st.sampled_from([[], [b"1"], [b"100"]])),
            cmd(b"LSET", key, offset, value),
            cmd(b"LINSERT", key, st.sampled_from([b"BEFORE", b"AFTER"]), value, value),
            cmd(b"LREM", key, small_int, value),
            cmd(b"LTRIM", key, offset, offset),
            cmd(b"LMOVE", key, key, st.sampled_from([b"LEFT", b"RIGHT"]), st.just(b"LEFT")),
            cmd(b"RPOPLPUSH", key, key),
            cmd(b"LMPOP", b"2", key, key, st.sampled_from([b"LEFT", b"RIGHT"]), b"COUNT", b"2"),
        )
    )
    def list_writes(self, args: list[bytes]) -> None:
        self.check((self.oracle, self.subject), args)

    @rule(
        args=st.one_of(
            cmd(b"LLEN", key),
            cmd(b"LRANGE", key, offset, offset),
            cmd(b"LINDEX", key, offset),
            with_options(
                cmd(b"LPOS", key, value),
                st.sampled_from(
                    [[], [b"RANK", b"-1"], [b"COUNT", b"0"], [b"RANK", b"2", b"MAXLEN", b"9"]]
                ),
            ),
        )
    )
    def list_reads(self, args: list[bytes]) -> None:
        self.check((self.oracle, self.subject), args)

    @rule(
        args=st.one_of(
            cmd(b"BLPOP", key, key, b"0.01"),
            cmd(b"BRPOP", key, b"0.01"),
            cmd(b"BLMOVE", key, key, b"RIGHT", st.sampled_from([b"LEFT", b"RIGHT"]), b"0.01"),
            cmd(b"BRPOPLPUSH", key, key, b"0.01"),
            cmd(b"BLMPOP", b"0.01", b"2", key, key, b"LEFT", b"COUNT", b"3"),
        )
    )
    def list_blocking(self, args: list[bytes]) -> None:
        """Only where they do not wait: one of the keys they pop from exists (a list, so it
        has elements, or a value of another type)."""
        name = args[0]
        if name in (b"BLMOVE", b"BRPOPLPUSH"):
            sources = args[1:2]
        else:
            sources = args[3:5] if name == b"BLMPOP" else args[1:-1]
        if execute(self.oracle, b"EXISTS", *sources) != 0:
            self.check((self.oracle, self.subject), args)


def _errors_as_text(result: Outcome) -> Outcome:
    """EXEC's reply with the errors in it as text (redis-py hands them back as exceptions,
    which compare by identity)."""
    kind, reply = result
    if isinstance(reply, list):
        return kind, [f"err: {r}" if isinstance(r, Exception) else r for r in reply]
    return result


def _unordered(args: Sequence[bytes], result: Outcome) -> Outcome:
    kind, reply = result
    if kind != "ok" or not isinstance(reply, list):
        return result
    name = args[0].upper()
    if name in (b"HSCAN", b"SSCAN"):
        cursor, items = reply
        reply = [cursor, *items]
        if name == b"SSCAN":
            return kind, [reply[0], *sorted(reply[1:])]
        items = reply[1:]
        return kind, [reply[0], *sorted(zip(items[::2], items[1::2], strict=True))]
    if name in (b"HGETALL", b"HRANDFIELD"):
        return kind, sorted(zip(reply[::2], reply[1::2], strict=True))
    return kind, sorted(reply)


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


def _run_machine(
    machine: type[WatchCommands], pair: Pair, oracle_server: RedisServer, memlog: Memlog
) -> None:
    oracle, subject = (without_callbacks(c) for c in pair)
    db1 = (
        without_callbacks(redis.Redis(port=oracle_server.port, db=1, socket_timeout=15)),
        without_callbacks(redis.Redis(port=memlog.shim_ports[0], db=1, socket_timeout=15)),
    )
    watchers = tuple(
        without_callbacks(redis.Redis(port=port, socket_timeout=15, single_connection_client=True))
        for port in (oracle_server.port, memlog.shim_ports[0])
    )
    try:

        class Bound(machine):  # type: ignore[valid-type, misc]
            def __init__(self) -> None:
                super().__init__((oracle, subject), db1, watchers)

        run_state_machine_as_test(
            Bound,
            settings=settings(
                # CI's budget; a soak: STATE_MACHINE_EXAMPLES=500 STATE_MACHINE_STEPS=50.
                max_examples=int(os.environ.get("STATE_MACHINE_EXAMPLES", "30")),
                stateful_step_count=int(os.environ.get("STATE_MACHINE_STEPS", "30")),
                deadline=None,
                print_blob=True,
                suppress_health_check=[HealthCheck.too_slow],
            ),
        )
    finally:
        for conn in (*db1, *watchers):
            conn.close()


def test_random_command_sequences_match_redis(
    pair: Pair, oracle_server: RedisServer, memlog: Memlog
) -> None:
    _run_machine(DataCommands, pair, oracle_server, memlog)


def test_random_transactions_match_redis(
    pair: Pair, oracle_server: RedisServer, memlog: Memlog
) -> None:
    """WATCH, MULTI/EXEC/DISCARD, flushes and expiry, with only a few other rules."""
    _run_machine(WatchCommands, pair, oracle_server, memlog)
