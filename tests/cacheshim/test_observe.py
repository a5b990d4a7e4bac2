"""INFO's counters (stats, commandstats, errorstats, latencystats), CONFIG RESETSTAT,
SLOWLOG and LATENCY (issue 22), beside redis-server where Redis's numbers are deterministic:
calls, rejected and failed calls, error replies by code, keyspace hits and misses. Times
are not deterministic; their shapes are checked."""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator, Sequence

import pytest
import redis

from cacheshim.observe.commandstats import Histogram, error_code
from cacheshim.observe.slowlog import redacted, trimmed
from tests.cacheshim.harness import Memlog, RedisServer, client, wait_until
from tests.cacheshim.rawresp import RawConnection as Raw

Command = Sequence[bytes | str | int]


@pytest.fixture
def raws(oracle_server: RedisServer, memlog: Memlog) -> Iterator[tuple[Raw, Raw]]:
    """Raw connections (no client handshake: nothing counted but what a test sends), with
    both servers' keyspaces flushed and their counters reset."""
    oracle, subject = Raw(oracle_server.port), Raw(memlog.shim_ports[0])
    for conn in (oracle, subject):
        conn.call("FLUSHALL")
        conn.call("CONFIG", "RESETSTAT")
    try:
        yield oracle, subject
    finally:
        oracle.close()
        subject.close()


def info(conn: Raw, section: str) -> dict[str, str]:
    reply = conn.call("INFO", section)
    body = reply[reply.index(b"\r\n") + 2 : -2].decode()
    out: dict[str, str] = {}
    for line in body.split("\r\n"):
        if line and not line.startswith("#"):
            key, _, value = line.partition(":")
            out[key] = value
    return out


def counts(stats: dict[str, str]) -> dict[str, dict[str, str]]:
    """commandstats lines without their times."""
    out: dict[str, dict[str, str]] = {}
    for name, value in stats.items():
        parts = dict(item.split("=") for item in value.split(","))
        out[name] = {
            k: v for k, v in parts.items() if k in ("calls", "rejected_calls", "failed_calls")
        }
    return out


def send_both(raws: tuple[Raw, Raw], commands: Sequence[Command], pipelined: bool) -> None:
    for conn in raws:
        if pipelined:
            conn.send(*commands)
            conn.replies(len(commands))
        else:
            for args in commands:
                conn.send(args)
                conn.replies(1)


WORKLOAD: list[Command] = [
    ["SET", "a", "1"],
    ["SET", "s", "x" * 40],
    ["GET", "a"],
    ["GET", "missing"],
    ["MGET", "a", "missing", "s"],
    ["EXISTS", "a", "missing"],
    ["STRLEN", "s"],
    ["INCR", "a"],
    ["LPUSH", "a", "x"],  # WRONGTYPE: a failed call
    ["GET", "a", "b"],  # arity: a rejected call
    ["FOOBAR", "x"],  # unknown: no command, an ERR reply
    ["CONFIG", "NOSUCH"],  # unknown subcommand: the same
    ["HSET", "h", "f", "v"],
    ["HGET", "h", "f"],
    ["HGET", "h", "g"],
    ["HGET", "nohash", "g"],
    ["LRANGE", "nolist", "0", "-1"],
    ["INCR", "s"],  # not an integer: failed
    ["MULTI"],
    ["SET", "t", "1"],
    ["INCR", "s"],
    ["EXEC"],
    ["MULTI"],
    ["GET"],  # rejected in MULTI
    ["EXEC"],  # EXECABORT
    ["TTL", "a"],
    ["PTTL", "missing"],
]


@pytest.mark.parametrize("pipelined", [False, True], ids=["one-by-one", "pipelined"])
def test_counters_as_redis(raws: tuple[Raw, Raw], pipelined: bool) -> None:
    send_both(raws, WORKLOAD, pipelined)
    oracle, subject = raws
    want, got = counts(info(oracle, "commandstats")), counts(info(subject, "commandstats"))
    assert got == want
    assert info(subject, "errorstats") == info(oracle, "errorstats")
    mine, theirs = info(subject, "stats"), info(oracle, "stats")
    for field in ("keyspace_hits", "keyspace_misses", "total_error_replies"):
        assert (field, mine[field]) == (field, theirs[field])


def test_fast_reads_counted(raws: tuple[Raw, Raw]) -> None:
    """A pipeline of plain GETs and MGETs (the C fast path) is counted like any read."""
    setup: list[Command] = [["SET", f"k{i}", f"v\r\n$-1\r\n{i}"] for i in range(5)]
    send_both(raws, setup, pipelined=True)
    reads: list[Command] = [["GET", f"k{i}"] for i in range(10)]
    reads += [["MGET", "k1", "k7", "k2"], ["GET", "k3"], ["EXISTS", "k1", "k9"]]
    for pipelined in (True, False):
        send_both(raws, reads, pipelined)
    oracle, subject = raws
    assert counts(info(subject, "commandstats")) == counts(info(oracle, "commandstats"))
    mine, theirs = info(subject, "stats"), info(oracle, "stats")
    assert (mine["keyspace_hits"], mine["keyspace_misses"]) == (
        theirs["keyspace_hits"],
        theirs["keyspace_misses"],
    )


def test_resetstat_and_shapes(raws: tuple[Raw, Raw]) -> None:
    _, subject = raws
    subject.send(*[["SET", "x", "1"], ["GET", "x"], ["GET", "y"]])
    subject.replies(3)
    stats = info(subject, "commandstats")
    assert re.fullmatch(
        r"calls=1,usec=\d+,usec_per_call=\d+\.\d\d,rejected_calls=0,failed_calls=0",
        stats["cmdstat_set"],
    )
    latency = info(subject, "latencystats")
    assert re.fullmatch(
        r"p50=\d+\.\d{3},p99=\d+\.\d{3},p99\.9=\d+\.\d{3}", latency["latency_percentiles_usec_get"]
    )
    assert int(info(subject, "stats")["total_commands_processed"]) >= 3
    subject.call("CONFIG", "RESETSTAT")
    assert set(info(subject, "commandstats")) == {"cmdstat_config|resetstat"}
    assert info(subject, "stats")["keyspace_hits"] == "0"


def test_histogram_as_hdr() -> None:
    """Percentiles as Redis's HdrHistogram (2 significant figures) prints them."""
    histogram = Histogram()
    histogram.record(1000)  # 1000 ns: in the bucket 1000..1003
    assert histogram.value_at(50) == 1003
    histogram.record(200)  # below 256 ns: exact
    assert histogram.value_at(50) == 200
    assert histogram.value_at(99) == 1003
    for _ in range(98):
        histogram.record(5_000_000)
    assert histogram.value_at(99.9) == 5_013_503  # 5 ms bucket: 16384 ns wide
    assert histogram.buckets_by_power_of_two() == [(1, 2), (8388, 100)]


def test_error_codes_and_slowlog_arguments() -> None:
    assert error_code("WRONGTYPE Operation against a key") == "WRONGTYPE"
    assert error_code("ERR syntax error") == "ERR"
    assert error_code("NOSPACEINTHEFIRST32CHARACTERS_____________ x") == "ERR"
    assert redacted([b"AUTH", b"u", b"p"]) == [b"AUTH", b"(redacted)", b"(redacted)"]
    assert redacted([b"HELLO", b"3", b"AUTH", b"u", b"p"])[3:] == [b"(redacted)"] * 2
    long = [b"SADD", b"k", *[b"m%d" % i for i in range(40)]]
    kept = trimmed(long)
    assert len(kept) == 32 and kept[-1] == b"... (11 more arguments)"
    assert trimmed([b"SET", b"k", b"v" * 130])[2] == b"v" * 128 + b"... (2 more bytes)"


def test_replication_tells_of_the_log(memlog: Memlog) -> None:
    conn = Raw(memlog.shim_ports[0])
    try:
        conn.call("SET", "r", "1")

        def nodes_known() -> bool:
            fields = info(conn, "replication")
            return fields.get("memlog_log_nodes") == "3" and all(
                "status=up" in fields[f"memlog_log_node{i}"] for i in range(3)
            )

        wait_until(nodes_known, 10, "the three log nodes in INFO replication")
        fields = info(conn, "replication")
        assert fields["role"] == "master"
        roles = sorted(re.search(r"role=(\w+)", fields[f"memlog_log_node{i}"])[1] for i in range(3))  # type: ignore[index]
        assert roles == ["follower", "follower", "leader"]
        assert int(fields["master_repl_offset"]) == int(fields["memlog_applied_index"]) > 0
        assert fields["memlog_lag_records"] == "0" or int(fields["memlog_staleness_ms"]) >= 0
    finally:
        conn.close()


def test_instantaneous_ops_move(memlog: Memlog) -> None:
    conn = Raw(memlog.shim_ports[0])
    try:

        def busy() -> bool:
            conn.send(*[["GET", "x"]] * 200)
            conn.replies(200)
            return int(info(conn, "stats")["instantaneous_ops_per_sec"]) > 0

        wait_until(busy, 10, "instantaneous_ops_per_sec above 0 under a workload")
    finally:
        conn.close()


SLOW_COMMANDS: list[Command] = [
    ["SET", "k", "v" * 130],
    ["GET", "k"],
    ["MGET", "k", "nokey"],
    ["SADD", "s", *[f"m{i}" for i in range(40)]],
    ["AUTH", "someone", "secret"],
    ["HELLO", "2", "AUTH", "someone", "secret"],
    ["CONFIG", "SET", "slowlog-max-len", "128"],
    ["LPUSH", "k", "x"],
]


def test_slowlog_as_redis(oracle_server: RedisServer, memlog: Memlog) -> None:
    """With slowlog-log-slower-than 0 every command is an entry, its arguments trimmed and
    redacted as Redis does; fast reads too."""
    logged: list[list[bytes]] = []
    for port in (oracle_server.port, memlog.shim_ports[0]):
        conn = client(port)
        try:
            conn.flushall()
            conn.config_set("slowlog-log-slower-than", 0)
            conn.slowlog_reset()
            for args in SLOW_COMMANDS:
                with contextlib.suppress(redis.RedisError):
                    conn.execute_command(*args)  # type: ignore[no-untyped-call]
            entries = conn.slowlog_get(-1)
            logged.append([entry["command"] for entry in entries])
            assert all(entry["duration"] >= 0 and entry["client_address"] for entry in entries)
            conn.config_set("slowlog-max-len", 2)
            conn.set("one", "more")
            assert conn.slowlog_len() == 2
            conn.config_set("slowlog-log-slower-than", 10000)
            conn.config_set("slowlog-max-len", 128)
        finally:
            conn.close()
    assert logged[1] == logged[0]


def test_latency_monitor(memlog: Memlog) -> None:
    """A write waits for the log's commit: with a 1 ms threshold it shows as a spike."""
    conn = client(memlog.shim_ports[0])
    try:
        conn.execute_command("LATENCY", "RESET")  # type: ignore[no-untyped-call]
        conn.config_set("latency-monitor-threshold", 1)

        def spiked() -> bool:
            conn.set("w", "1")
            return bool(conn.execute_command("LATENCY", "LATEST"))  # type: ignore[no-untyped-call]

        wait_until(spiked, 10, "a latency spike of a write")
        latest = conn.execute_command("LATENCY", "LATEST")  # type: ignore[no-untyped-call]
        event, when, last_ms, max_ms = latest[0]
        assert event == b"command" and last_ms >= 1 and max_ms >= last_ms and when > 0
        history = conn.execute_command("LATENCY", "HISTORY", "command")  # type: ignore[no-untyped-call]
        assert history and all(len(item) == 2 for item in history)
        assert b"command" in conn.execute_command("LATENCY", "GRAPH", "command")  # type: ignore[no-untyped-call]
        assert b"command:" in conn.execute_command("LATENCY", "DOCTOR")  # type: ignore[no-untyped-call]
        histogram = conn.execute_command("LATENCY", "HISTOGRAM", "set")  # type: ignore[no-untyped-call]
        assert histogram[0] == b"set" and histogram[1][:2] == [b"calls", histogram[1][1]]
        with pytest.raises(redis.ResponseError, match="No samples available for event 'x'"):
            conn.execute_command("LATENCY", "GRAPH", "x")  # type: ignore[no-untyped-call]
        assert conn.execute_command("LATENCY", "RESET") == 1  # type: ignore[no-untyped-call]
        assert conn.execute_command("LATENCY", "LATEST") == []  # type: ignore[no-untyped-call]
    finally:
        conn.config_set("latency-monitor-threshold", 0)
        conn.close()


MONITOR_LINE = re.compile(r"\+\d+\.\d{6} \[(\d+) ([^\]]+)\] (.*)")


def test_monitor_shows_served_and_applied(two_shims: Memlog) -> None:
    """A MONITOR client of shim 1 sees its commands (as Redis writes them), once each, and
    the writes other shims served, applied from the log, marked with the shim and index."""
    watcher = Raw(two_shims.shim_ports[0])
    mine, other = Raw(two_shims.shim_ports[0]), Raw(two_shims.shim_ports[1])
    try:
        assert watcher.call("MONITOR") == b"+OK\r\n"
        mine.call("SET", "mk", 'a "quoted"\n\x01 value')
        mine.call("GET", "mk")  # the fast path
        mine.call("CONFIG", "GET", "maxmemory")  # admin: not shown
        other.call("SELECT", "3")
        other.call("INCR", "counter")
        lines = [MONITOR_LINE.fullmatch(r.decode().rstrip("\r\n")) for r in watcher.replies(3)]
        seen = [(m[1], m[2], m[3]) for m in lines if m is not None]
        assert len(seen) == 3
        served = [item for item in seen if not item[1].startswith("log:")]
        applied = [item for item in seen if item[1].startswith("log:")]
        assert [item[2] for item in served] == [
            '"SET" "mk" "a \\"quoted\\"\\n\\x01 value"',
            '"GET" "mk"',
        ]
        assert [(db, source.split(":")[1], args) for db, source, args in applied] == [
            ("3", "shim-2", '"INCR" "counter"'),
        ]
        # Nothing more: shim 1's own SET did not show a second time as applied.
        mine.call("PING")
        last = MONITOR_LINE.fullmatch(watcher.replies(1)[0].decode().rstrip("\r\n"))
        assert last is not None and last[3] == '"PING"'
    finally:
        for conn in (watcher, mine, other):
            conn.close()


_SCRIPT = (
    "redis.call('SET', KEYS[1], 'v'); redis.call('SELECT', '2'); return redis.call('GET', KEYS[1])"
)
_READ_SCRIPT = "#!lua flags=no-writes\nreturn redis.call('EXISTS', KEYS[1])"


def _lua_lines(port: int) -> list[tuple[str, str, str]]:
    """The MONITOR lines a writing script and a reading one give: (db, source, args)."""
    watcher, conn = Raw(port), Raw(port)
    try:
        assert watcher.call("MONITOR") == b"+OK\r\n"
        conn.call("EVAL", _SCRIPT, "1", "lk")
        conn.call("EVAL", _READ_SCRIPT, "1", "lk")
        conn.call("PING")  # the last line to wait for
        seen: list[tuple[str, str, str]] = []
        while not seen or seen[-1][2] != '"PING"':
            match = MONITOR_LINE.fullmatch(watcher.replies(1)[0].decode().rstrip("\r\n"))
            assert match is not None
            if not match[2].startswith("log:"):  # (memlog's applied writes: tested above)
                seen.append((match[1], match[2] if match[2] == "lua" else "client", match[3]))
        return seen
    finally:
        watcher.close()
        conn.close()


def test_monitor_shows_the_commands_scripts_run_as_redis(
    oracle_server: RedisServer, memlog: Memlog
) -> None:
    """Redis shows each command a script runs as a "[<db> lua]" line, before the line of the
    EVAL itself; a script applied from the log shows them on every shim (not checked here)."""
    assert _lua_lines(memlog.shim_ports[0]) == _lua_lines(oracle_server.port)


def test_monitor_line_as_redis(oracle_server: RedisServer) -> None:
    """The quoting of arguments, beside redis-server's own MONITOR line."""
    from cacheshim.observe.monitor import line

    watcher, conn = Raw(oracle_server.port), Raw(oracle_server.port)
    args = [b"SET", b"mk", b'a "quoted"\n\x01\x7f\t\\ \xc3\xa9']
    try:
        watcher.call("MONITOR")
        conn.call(*args)
        theirs = MONITOR_LINE.fullmatch(watcher.replies(1)[0].decode().rstrip("\r\n"))
        assert theirs is not None
        ours = MONITOR_LINE.fullmatch("+" + line(0, "x", args))
        assert ours is not None and ours[3] == theirs[3]
    finally:
        watcher.close()
        conn.close()


def test_maxmemory_noeviction_as_redis(raws: tuple[Raw, Raw]) -> None:
    """Over maxmemory, writes that may grow the data are refused before the log, with
    Redis's OOM error (in MULTI and at EXEC too); reads and deletes are served."""
    oracle, subject = raws
    before: list[Command] = [["SET", "keep", "1"], ["RPUSH", "list", "a"]]
    over: list[Command] = [
        ["SET", "k", "v"],
        ["GET", "keep"],
        ["LRANGE", "list", "0", "-1"],
        ["DEL", "keep"],
        ["LPUSH", "list", "b"],
        ["MULTI"],
        ["SET", "k", "v"],
        ["EXEC"],
        ["MULTI"],
        ["LPOP", "list"],
        ["EXEC"],
    ]
    try:
        for conn in raws:
            for args in before:
                conn.call(*args)
            assert conn.call("CONFIG", "SET", "maxmemory", "1") == b"+OK\r\n"
        for args in over:
            assert subject.call(*args) == oracle.call(*args), args
        assert info(subject, "errorstats") == info(oracle, "errorstats")
    finally:
        for conn in raws:
            conn.call("CONFIG", "SET", "maxmemory", "0")


def test_eviction_policies_refused_with_maxmemory(memlog: Memlog) -> None:
    conn = Raw(memlog.shim_ports[0])
    try:
        assert conn.call("CONFIG", "SET", "maxmemory-policy", "allkeys-lru") == b"+OK\r\n"
        reply = conn.call("CONFIG", "SET", "maxmemory", "100mb")
        assert reply.startswith(
            b"-ERR CONFIG SET failed (possibly related to argument 'maxmemory')"
        )
        assert b"only maxmemory-policy noeviction" in reply
        assert conn.call("CONFIG", "GET", "maxmemory").endswith(b"$1\r\n0\r\n")
        conn.call("CONFIG", "SET", "maxmemory-policy", "noeviction")
        assert conn.call("CONFIG", "SET", "maxmemory", "100mb") == b"+OK\r\n"
        reply = conn.call("CONFIG", "SET", "maxmemory-policy", "volatile-lfu")
        assert b"argument 'maxmemory-policy'" in reply
    finally:
        conn.call("CONFIG", "SET", "maxmemory", "0", "maxmemory-policy", "noeviction")
        conn.close()


def test_memlog_help(memlog: Memlog) -> None:
    conn = Raw(memlog.shim_ports[0])
    try:
        reply = conn.call("MEMLOG", "HELP")
        assert reply.startswith(b"*") and b"+READS [LINEARIZABLE|LOCAL]\r\n" in reply
        assert b"+STATUS\r\n" in reply and b"+HELP\r\n" in reply
    finally:
        conn.close()


def _multi_lines(port: int) -> list[str]:
    """The arguments of the MONITOR lines a transaction gives, up to a PING."""
    watcher, conn = Raw(port), Raw(port)
    try:
        assert watcher.call("MONITOR") == b"+OK\r\n"
        conn.call("MULTI")
        conn.call("SET", "mx", "bar")
        conn.call("INCR", "mc")
        conn.call("EXEC")
        conn.call("SET", "my", "1")
        conn.call("PING")
        seen: list[str] = []
        while not seen or seen[-1] != '"PING"':
            match = MONITOR_LINE.fullmatch(watcher.replies(1)[0].decode().rstrip("\r\n"))
            assert match is not None
            seen.append(match[3])
        return seen
    finally:
        watcher.close()
        conn.close()


def test_monitor_shows_a_transaction_as_redis(oracle_server: RedisServer, memlog: Memlog) -> None:
    """MULTI, then the queued commands as EXEC runs them, then EXEC; a single write once."""
    assert _multi_lines(memlog.shim_ports[0]) == _multi_lines(oracle_server.port)
