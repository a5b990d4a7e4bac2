"""Lua scripting (issue 19): EVAL & co. against redis-server 7.0.15 byte for byte (RESP2 and
RESP3, errors included), and what memlog adds: a script that may write runs at apply on
every shim, with the record's time and index-seeded randomness, under an instruction budget.
"""

from __future__ import annotations

import hashlib
import io
import os
import random
import time
from collections.abc import Iterator

import pytest
import redis
from redis.lock import Lock

from cacheshim.apply import Applier
from cacheshim.commands import load_all
from cacheshim.protocol.resp import Error
from cacheshim.scripting.engine import BUDGET_EXCEEDED
from cacheshim.snapshot.rdb import read_rdb, restore, snapshot_state, write_rdb
from cacheshim.v1 import record_pb2
from tests.cacheshim.harness import (
    Memlog,
    RedisServer,
    client,
    compare,
    execute,
    same_index,
)
from tests.cacheshim.lua_cmsgpack import cmsgpack_fuzz
from tests.cacheshim.lua_patterns import pattern_fuzz
from tests.cacheshim.rawresp import RawConnection, compare_raw

# Each case: a script (run with EVAL ... 0 unless it names keys) whose reply must be the same
# bytes from both servers.
SCRIPTS: list[list[str]] = [
    ["return {err='x y'}", "0"],
    ["return redis.error_reply('My err')", "0"],
    ["return redis.error_reply('-My err')", "0"],
    ["return redis.error_reply('foo')", "0"],
    ["return redis.status_reply('FINE')", "0"],
    ["return redis.status_reply()", "0"],
    ["return {1,2.7,'a',true,false,nil,3}", "0"],
    ["return true", "0"],
    ["return false", "0"],
    ["return nil", "0"],
    ["return 3.99", "0"],
    ["return -3.99", "0"],
    ["return 1e20", "0"],
    ["return {ok='fine'}", "0"],
    ["return {1, 2, {err='x'}}", "0"],
    ["return {1,{2,{3}}}", "0"],
    ["redis.setresp(3); return {double=3.5}", "0"],
    ["redis.setresp(3); return {map={a=1}}", "0"],
    ["redis.setresp(3); return {set={a=true}}", "0"],
    ["redis.setresp(3); return {big_number='123'}", "0"],
    ["redis.setresp(3); return {verbatim_string={format='txt',string='hi'}}", "0"],
    ["redis.setresp(3); return true", "0"],
    ["redis.setresp(3); return false", "0"],
    ["redis.setresp(3); return nil", "0"],
    ["return redis.setresp(4)", "0"],
    ["return redis.call('get','nokey')", "0"],
    ["return type(redis.call('get','nokey'))", "0"],
    ["redis.setresp(3); return type(redis.call('get','nokey'))", "0"],
    ["redis.call('hset','hh','f','v'); redis.setresp(3); return redis.call('hgetall','hh')", "0"],
    ["redis.call('hset','h','f','v') redis.setresp(3) return redis.call('hgetall','h').map.f", "0"],
    ["redis.call('zadd','z',1.5,'a'); redis.setresp(3); return redis.call('zscore','z','a')", "0"],
    ["redis.call('zadd','zz',1.5,'a'); return redis.call('zscore','zz','a')", "0"],
    ["return redis.pcall('incr','a','b')", "0"],
    ["local t = redis.pcall('incr','a','b'); return t['err']", "0"],
    ["return redis.sha1hex('')", "0"],
    ["return redis.sha1hex(5)", "0"],
    ["return redis.sha1hex()", "0"],
    ["return redis.REDIS_VERSION_NUM", "0"],
    ["return redis.breakpoint()", "0"],
    ["return redis.replicate_commands()", "0"],
    ["return redis.set_repl(redis.REPL_ALL)", "0"],
    ["return redis.set_repl(99)", "0"],
    ["return redis.log(redis.LOG_WARNING, 'hi')", "0"],
    ["return redis.log()", "0"],
    ["return redis.acl_check_cmd('get','x')", "0"],
    ["return redis.acl_check_cmd('nosuch')", "0"],
    ["return {pcall(error, 'x')}", "0"],
    ["error({err='custom'})", "0"],
    ["error('plain')", "0"],
    ["local function f()\n  error('x')\nend\n\nf()", "0"],
    ["\n\nlocal a = nil + 1", "0"],
    ["error(redis.error_reply('foo bar'))", "0"],
    ["redis.call('set','str','x'); return redis.call('incr','str')", "0"],
    ["redis.call('set','str','x'); return redis.pcall('incr','str')", "0"],
    ["return redis.call('set','k')", "0"],
    ["return redis.call()", "0"],
    ["return redis.call(1)", "0"],
    ["return redis.call({})", "0"],
    ["return redis.call('get', 1.5)", "0"],
    ["return redis.call('nosuch')", "0"],
    ["local ok, e = pcall(redis.call, 'nosuch'); return e", "0"],
    ["local ok, e = pcall(function() error('zz') end); return e", "0"],
    ["return redis.call('multi')", "0"],
    ["return redis.call('eval','return 1','0')", "0"],
    ["return redis.call('client','list')", "0"],
    ["return redis.call('blpop','l', 0)", "0"],
    ["return redis.call('select', 5)", "0"],
    ["return KEYS[1]..ARGV[1]", "1", "a", "b"],
    ["return {KEYS[1], KEYS[2], ARGV[1]}", "2", "k1", "k2", "a1"],
    ["return x", "0"],
    ["x = 1", "0"],
    ["_G.x = 1", "0"],
    ["rawset(_G, 'y', 1)", "0"],
    ["setmetatable(_G, nil)", "0"],
    ["redis.call = nil", "0"],
    ["cjson.encode = nil", "0"],
    ["return type(os)", "0"],
    ["return type(io)", "0"],
    ["return type(loadfile)", "0"],
    ["return type(dofile)", "0"],
    ["return type(require)", "0"],
    ["return type(debug)", "0"],
    ["print('x')", "0"],
    ["return loadstring('return 5')()", "0"],
    ["local t = {} ; for k in pairs(_G) do t[#t+1]=k end ; table.sort(t) ; return t", "0"],
    ["local t = {} ; for k in pairs(redis) do t[#t+1]=k end ; table.sort(t) ; return t", "0"],
    ["return string.format('%d', 3)", "0"],
    ["return cjson.encode({a=1})", "0"],
    ["return cjson.encode({1,2,'x',{y=true}})", "0"],
    ["return cjson.encode({})", "0"],
    ["return cjson.encode('a/b\"c')", "0"],
    ["return cjson.decode('[1,2,\"x\"]')", "0"],
    ['return cjson.decode(\'{"a":[1,2,{"b":"c"}]}\').a[3].b', "0"],
    ["return struct.pack('>I', 5)", "0"],
    ["return struct.pack('<i2Bd', -2, 7, 1.5)", "0"],
    ["return {struct.unpack('>I', struct.pack('>I', 70000))}", "0"],
    ["return struct.size('>iIhd')", "0"],
    ["return cmsgpack.pack({1,2})", "0"],
    ["return cmsgpack.pack({a=1})", "0"],
    ["return cmsgpack.pack('abc', 300, -5, -200, 70000, true)", "0"],
    ["return {cmsgpack.unpack(cmsgpack.pack({1,2,'x'}, 7))}", "0"],
    ["return bit.band(5,3)", "0"],
    ["return {bit.bor(1,2,4), bit.bxor(7,2), bit.bnot(0), bit.lshift(1,31)}", "0"],
    ["return {bit.rshift(-1,28), bit.rol(1, 33), bit.ror(1, 1), bit.bswap(1)}", "0"],
    ["return {bit.arshift(-256,4), bit.tohex(255), bit.tohex(-1, -4), bit.tobit(2^32+5)}", "0"],
    ["#!lua\nreturn 1", "0"],
    ["#!lua flags=no-writes\nreturn 1", "0"],
    ["#!lua flags=bad\nreturn 1", "0"],
    ["#!lua foo=bar\nreturn 1", "0"],
    ["#!luax\nreturn 1", "0"],
    ["#!lua", "0"],
    ["#!lua flags=no-writes\nerror('x')", "0"],
    ["#!lua flags=no-writes\nreturn redis.call('set','a','b')", "0"],
    ["#!lua\nreturn redis.call('set','a','b')", "0"],
    ["return 1", "notanumber"],
    ["return 1", "-1"],
    ["return 1", "5", "a"],
    ["syntax error here", "0"],
    # Stock Lua 5.1's unpack crashed on these ranges (Redis patches it; the shim died here).
    ["return {unpack({1,2,3}, -2, 2147483647)}", "0"],
    ["return {unpack({1,2,3}, 0, 2147483647)}", "0"],
    ["return {unpack({1,2,3}, -2147483648, -2)}", "0"],
    ["return {unpack({1,2,3}, -1, -2)}", "0"],
    ["return {unpack({1,2,3})}", "0"],
    # cjson's settings (reset before every script here), cmsgpack's nesting and offsets.
    ['cjson.decode_max_depth(1) return {pcall(cjson.decode, \'{"o": {"a": [1]}}\')}', "0"],
    ["cjson.encode_max_depth(1) return {pcall(cjson.encode, {a={1}})}", "0"],
    ["return {pcall(cjson.encode, {n=0/0})}", "0"],
    ["cjson.encode_invalid_numbers(true) return {pcall(cjson.encode, {n=0/0})}", "0"],
    ["local m = {} m[false] = 1 return {pcall(cjson.encode, m)}", "0"],
    ["return table.concat(cjson.decode('[0.0, -5e3, -1, 0.3e-3, 1023.2, 0e10]'), ' ')", "0"],
    ["local a = {y=5} a.x = {x=a} return cmsgpack.pack(a)", "0"],
    ["return cmsgpack.pack(0.1, -1099511627776)", "0"],
    ["return cmsgpack.pack(-2^63, 2^63, 2^64, 1e300, 1/0, -1/0, 0/0, -0.0, 2^53 + 1)", "0"],
    ["return {cmsgpack.unpack(cmsgpack.pack(-2^63, 2^63, 1e300, 0.1, {1, {2, {}}}))}", "0"],
    [
        "local t = {} for i = 1, 70000 do t[i] = i % 300 end local m = {} "
        "for i = 1, 70 do m['k' .. i] = {i, 'v'} end "
        "local p = cmsgpack.pack(t, m, string.rep('x', 70000)) "
        "local a, b, c = cmsgpack.unpack(p) "
        "return {#p, redis.sha1hex(p), #a, a[70000], b.k7[1], #c}",
        "0",
    ],
    ["return {cmsgpack.unpack_limit(cmsgpack.pack(1, 2, 3), 2, 1)}", "0"],
    ["return {pcall(cmsgpack.unpack, '\\145')}", "0"],
    ["return {pcall(cmsgpack.unpack, '\\193')}", "0"],
    ["return {pcall(cmsgpack.pack)}", "0"],
    ["return {pcall(cmsgpack.unpack_limit, 'ab', 1, 5)}", "0"],
    ["return {pcall(cmsgpack.unpack_limit, 'ab', 1, -1)}", "0"],
    ["return cmsgpack.pack()", "0"],
    ["return {cmsgpack.unpack_limit(cmsgpack.pack('a', 'b', 'c'), 2, 0)}", "0"],
    ["return {cmsgpack.unpack_one(cmsgpack.pack('a', 'b'), 2)}", "0"],
    # Holes of the sandbox a script could change other scripts through, closed.
    ["return loadstring(string.dump(function() return 1 end))()", "0"],
    ["local g = getmetatable(_G) g.__index = {}", "0"],
    ["getmetatable(nil).__index = function() return 1 end", "0"],
    ["return getmetatable(setmetatable({}, {__index={a=1}})).__index.a", "0"],
    [
        "math.randomseed(ARGV[1]) local a = math.random() math.randomseed(ARGV[1]) "
        "return a == math.random()",
        "0",
        "10",
    ],
    # A returned table is read raw: its metatable never runs.
    ["local a = {}; setmetatable(a,{__index=function() foo() end}) return a", "0"],
    [
        "local a = {}; setmetatable(a,{__index=function() redis.call('set','x','1') end}) return a",
        "0",
    ],
]


# Lua pattern matching (string.find, match, gmatch, gsub), which memlog runs through its own
# counted matcher (cacheshim/scripting/_lstr.c): the same answers, errors included, as Lua
# 5.1.5's in redis-server.
PATTERNS: list[str] = [
    "return {string.find('hello world', 'o w')}",
    "return {string.find('hello world', 'o', 6)}",
    "return {string.find('hello', 'l', -2)}",
    "return {string.find('a.b', '.', 1, true)}",
    "return {string.find('abc', '', 10)}",
    "return {string.find('key:123:x', '(%a+):(%d+)')}",
    "return {string.find('  trim  ', '^%s*(.-)%s*$')}",
    "return string.match('key:123', '^key:(%d+)$')",
    "return {string.match('2024-01-05', '(%d+)-(%d+)-(%d+)')}",
    "return {string.match('hello', '()ll()')}",
    "return string.match('THE (quick) fox', '%((%a+)%)')",
    "return string.match('f(a(b)c)d', '%b()')",
    "return string.match('THE (quick) fox', '%f[%a]%a+%f[%A]', 5)",
    "return string.match('x = 10', '^(%w+)%s*=%s*(%w+)$')",
    "return string.match('[[x]]', '%[%[(.*)%]%]')",
    "return string.match('abc', '[^%a]')",
    "return string.match('a-b_c9', '[%w_%-]+')",
    "return string.match('hello hello', '(h%a+) %1')",
    "return string.match('\\0a\\0', '%z(a)%z')",
    "return {string.gsub('hello world', '(o)', '[%1]')}",
    "return {string.gsub('hello world', 'o', '0', 1)}",
    "return {string.gsub('abc', '', '-')}",
    "return {string.gsub('hello world', '%w+', '%0 %0')}",
    "return {string.gsub('$name is $age', '%$(%w+)', {name='bob', age=7})}",
    "return {string.gsub('a,b,,c', '([^,]*)', function(x) return '<' .. x .. '>' end)}",
    "return {string.gsub('abc', '%w', function(c) if c == 'b' then return nil end "
    "return c:upper() end)}",
    "return {string.gsub('abc', '^a', 'X')}",
    "return {string.gsub('100%', '%%', ' percent')}",
    "return {string.gsub('x', 'x', '%2')}",
    "return {string.gsub('x', 'x', function() return {} end)}",
    "return {string.gsub('x', 'x', true)}",
    "local t = {} for k, v in string.gmatch('a=1, b=2', '(%w+)=(%w+)') do "
    "t[#t+1] = k .. v end return t",
    "local t = {} for w in ('one two  three'):gmatch('%S+') do t[#t+1] = w end return t",
    "local t = {} for p in ('abc'):gmatch('()') do t[#t+1] = p end return t",
    "return string.find('a', '%')",
    "return string.find('a', '[a')",
    "return string.find('a', '(a')",
    "return string.find('a', 'a)')",
    "return string.find('a', '%1')",
    "return string.find('a', '%ba')",
    "return string.find('a', '%fx')",
    "return string.find(nil, 'a')",
    "return ('x'):find({})",
    "return string.gsub('x', 'x')",
    "return string.gsub('x', 'x', 'y', 'z')",
    "return string.rep('ab', 3):find('(b)(a)')",
]


@pytest.fixture
def raw_pair(
    oracle_server: RedisServer, memlog: Memlog, request: pytest.FixtureRequest
) -> Iterator[tuple[RawConnection, RawConnection]]:
    protocol = getattr(request, "param", 2)
    oracle = RawConnection(oracle_server.port, protocol)
    subject = RawConnection(memlog.shim_ports[0], protocol)
    for conn in (oracle, subject):
        conn.call("FLUSHALL")
        conn.call("SCRIPT", "FLUSH")
    try:
        yield oracle, subject
    finally:
        oracle.close()
        subject.close()


@pytest.mark.parametrize("raw_pair", [2, 3], indirect=True, ids=["resp2", "resp3"])
def test_scripts_answer_as_redis_does(raw_pair: tuple[RawConnection, RawConnection]) -> None:
    oracle, subject = raw_pair
    commands = []
    for case in SCRIPTS:
        commands.append(["FLUSHALL"])
        commands.append(["EVAL", *case])
    compare_raw(oracle, subject, commands)


def test_lua_patterns_answer_as_redis_does(raw_pair: tuple[RawConnection, RawConnection]) -> None:
    oracle, subject = raw_pair
    compare_raw(oracle, subject, [["EVAL", script, "0"] for script in PATTERNS])


def test_many_arguments_answer_as_redis_does(raw_pair: tuple[RawConnection, RawConnection]) -> None:
    """More keys and arguments than Lua's stack holds (8,000) reach the script, and a
    redis.call takes as many as unpack gives (7,999 and the command), as in Redis; unpack keeps
    its limit."""
    oracle, subject = raw_pair
    many = [f"a{i}" for i in range(10_000)]
    library = "#!lua name=many\nredis.register_function('f', function(k, a) return {#k, #a} end)"
    compare_raw(
        oracle,
        subject,
        [
            ["EVAL", "return {#KEYS, #ARGV, KEYS[#KEYS], ARGV[#ARGV]}", "0", *many],
            ["EVAL", "return {#KEYS, #ARGV, KEYS[#KEYS], ARGV[#ARGV]}", "6000", *many],
            ["EVAL", "return redis.call('sadd', 's', unpack(ARGV))", "0", *many[:7999]],
            ["EVAL", "return redis.pcall('sadd', 's', {}, unpack(ARGV))", "0", *many[:7998]],
            ["EVAL", "return redis.pcall('nosuch', unpack(ARGV))", "0", *many[:7999]],
            ["EVAL", "return redis.call('sadd', 's', unpack(ARGV))", "0", *many[:9000]],
            ["FUNCTION", "LOAD", "REPLACE", library],
            ["FCALL", "f", "5000", *many],
            ["FUNCTION", "DELETE", "many"],
        ],
    )


@pytest.mark.parametrize("raw_pair", [2, 3], indirect=True, ids=["resp2", "resp3"])
def test_script_cache_commands(raw_pair: tuple[RawConnection, RawConnection]) -> None:
    oracle, subject = raw_pair
    sha = "e0e1f9fabfc9d4800c877a703b823ac0578ff8db"  # return 1
    compare_raw(
        oracle,
        subject,
        [
            ["EVALSHA", sha, "0"],
            ["EVALSHA", "abc", "notanumber"],
            ["SCRIPT", "EXISTS", sha, "abc"],
            ["SCRIPT", "LOAD", "return 1"],
            ["SCRIPT", "LOAD", "return ("],
            ["SCRIPT", "EXISTS", sha, sha.upper(), "abc"],
            ["EVALSHA", sha, "0"],
            ["EVALSHA", sha.upper(), "0"],
            ["EVALSHA_RO", sha, "0"],
            ["EVAL", "return redis.call('incr', KEYS[1])", "1", "n"],
            ["EVALSHA", "2bab3b661081db58bd2341920e0ba7cf5dc77b25", "1", "n"],
            ["EVAL_RO", "return redis.call('get', KEYS[1])", "1", "n"],
            ["EVAL_RO", "return redis.call('set', KEYS[1], 'x')", "1", "n"],
            ["SCRIPT", "FLUSH", "X"],
            ["SCRIPT", "FLUSH", "ASYNC"],
            ["SCRIPT", "EXISTS", sha],
            ["EVALSHA", sha, "0"],
            ["SCRIPT", "KILL"],
            ["SCRIPT", "FOO"],
            ["SCRIPT"],
            ["EVAL", "return 1"],
            ["COMMAND", "GETKEYS", "EVAL", "return 1", "0"],
            ["COMMAND", "GETKEYS", "EVAL", "return 1", "2", "a", "b", "c"],
            ["COMMAND", "GETKEYS", "EVALSHA_RO", "x", "1", "a"],
            ["COMMAND", "GETKEYS", "EVAL", "return 1", "3", "a"],
            ["COMMAND", "INFO", "eval", "evalsha", "eval_ro", "evalsha_ro"],
            ["COMMAND", "INFO", "script|load", "script|exists", "script|flush", "script|kill"],
        ],
    )


def test_redis_py_lock_taken_on_one_shim_released_on_the_other(two_shims: Memlog) -> None:
    first, second = (client(port) for port in two_shims.shim_ports[:2])
    for conn in (first, second):
        execute(conn, "SCRIPT", "FLUSH")
    name = f"lock-{os.getpid()}"
    lock = Lock(first, name, timeout=30)
    assert lock.acquire(blocking=False)
    token = lock.local.token
    same_index([first, second])
    other = Lock(second, name, timeout=30)
    assert not other.acquire(blocking=False)  # held: taken through the first shim
    other.local.token = token  # the same owner, through the second shim
    other.release()
    same_index([first, second])
    assert first.get(name) is None
    assert Lock(first, name, timeout=30).acquire(blocking=False)
    # redis-py's Script: EVALSHA (NOSCRIPT), then EVAL; the script cache is on both shims.
    incr_by = first.register_script("return redis.call('incrby', KEYS[1], ARGV[1])")
    assert incr_by(keys=["counter"], args=[5]) == 5
    same_index([first, second])
    assert execute(second, "SCRIPT", "EXISTS", incr_by.sha) == [1]
    assert second.register_script(incr_by.script)(keys=["counter"], args=[2]) == 7


WORKLOAD = [
    # math.random, TIME and RANDOMKEY inside scripts that write: the same everywhere.
    "redis.call('set', KEYS[1], tostring(math.random()) .. ':' .. math.random(1000)); return 1",
    "local t = redis.call('time'); redis.call('rpush', KEYS[1], t[1] .. '.' .. t[2]); return t",
    "local k = redis.call('randomkey'); if k then redis.call('sadd', 'picked', k) end; return k",
    "redis.call('sadd', KEYS[1], math.random(50), math.random(50)); "
    "return redis.call('spop', KEYS[1])",
    # tostring of a table names an address in Lua: not here.
    "return redis.call('set', KEYS[1], tostring({}) .. tostring(function() end))",
]


def test_two_shims_running_random_scripts_end_with_one_digest(two_shims: Memlog) -> None:
    seed = int(os.environ.get("SCRIPT_WORKLOAD_SEED", random.randrange(1 << 30)))
    print(f"seed={seed} (rerun with SCRIPT_WORKLOAD_SEED={seed})")
    rng = random.Random(seed)
    conns = [client(port) for port in two_shims.shim_ports[:2]]
    execute(conns[0], "FLUSHALL")
    for _ in range(60):
        conn = rng.choice(conns)
        kind = rng.randrange(len(WORKLOAD))  # (each script its own keys: their types differ)
        execute(conn, "EVAL", WORKLOAD[kind], "1", f"s{kind}:k{rng.randrange(8)}")
    same_index(conns)
    digests = {execute(c, "DEBUG", "DIGEST") for c in conns}
    assert len(digests) == 1 and digests != {b"0" * 40}, digests


def test_an_endless_script_ends_the_same_way_on_every_shim(two_shims: Memlog) -> None:
    first, second = (client(port) for port in two_shims.shim_ports[:2])
    execute(first, "DEL", "progress")
    script = "redis.call('set', 'progress', 'started'); while true do end"
    started = time.monotonic()
    with pytest.raises(redis.ResponseError) as raised:
        execute(first, "EVAL", script, "0")
    # (redis-py drops the "ERR " of an error's text)
    assert str(raised.value).startswith(BUDGET_EXCEEDED.removeprefix("ERR ") + " script: ")
    assert str(raised.value).endswith(", on @user_script:1.")
    print(f"the budget ended the loop after {time.monotonic() - started:.2f}s")
    same_index([first, second])
    # What the script did before the budget ended it stays, on both shims alike.
    assert first.get("progress") == second.get("progress") == b"started"
    assert execute(first, "DEBUG", "DIGEST") == execute(second, "DEBUG", "DIGEST")
    # A pcall cannot swallow the budget; a loop of calls spends it too (500 instructions
    # each), also when the calls' errors are caught.
    for endless in (
        "while true do pcall(function() while true do end end) end",
        "while true do redis.pcall('ping') end",
        "local f = function() while 1 do redis.call('ping') end end while 1 do pcall(f) end",
    ):
        with pytest.raises(redis.ResponseError, match="budget"):
            execute(first, "EVAL", endless, "0")


# Nested repetitions over a long subject: stock Lua's matcher would backtrack for hours in
# one instruction, beyond the reach of the count hook.
POISON_PATTERN = "string.find(string.rep('a', 30000), ('a*'):rep(3) .. 'b')"


def test_a_backtracking_pattern_ends_the_same_way_on_every_shim(two_shims: Memlog) -> None:
    first, second = (client(port) for port in two_shims.shim_ports[:2])
    execute(first, "DEL", "before", "after")
    script = f"redis.call('set', 'before', '1'); return {POISON_PATTERN}"
    with pytest.raises(redis.ResponseError) as raised:
        execute(first, "EVAL", script, "0")
    assert str(raised.value).startswith(BUDGET_EXCEEDED.removeprefix("ERR ") + " script: ")
    assert str(raised.value).endswith(", on @user_script:1.")
    # The shims go on serving reads and writes, and agree.
    assert first.set("after", "2") and second.get("before") in (b"1", None)
    same_index([first, second])
    assert first.get("before") == second.get("before") == b"1"
    assert second.get("after") == b"2"
    assert execute(first, "DEBUG", "DIGEST") == execute(second, "DEBUG", "DIGEST")
    # gsub, gmatch and match too, in a pcall or not; a script that has not written yet.
    for endless in (
        "return {pcall(string.gsub, string.rep('a', 30000), ('a*'):rep(3) .. 'b', '')}",
        "for x in string.rep('a', 30000):gmatch(('a-'):rep(3) .. 'b') do end",
        "redis.call('incr', 'n') while true do string.match(string.rep('(', 9000), '%b()') end",
    ):
        with pytest.raises(redis.ResponseError, match="budget"):
            execute(first, "EVAL", endless, "0")
    assert second.incr("after") == 3


def test_cmsgpack_in_c_agrees_with_its_python_twin() -> None:
    """Scripts use cmsgpack in C; installs without C extensions use the Python one: random
    values packed and random data unpacked by both give the same bytes, values and errors.
    Seeded (CMSGPACK_SEED)."""
    seed = int(os.environ.get("CMSGPACK_SEED", random.randrange(1 << 30)))
    print(f"seed={seed} (rerun with CMSGPACK_SEED={seed})")
    mismatches = cmsgpack_fuzz(seed, 100)
    assert not mismatches, mismatches[:3]


def test_counted_patterns_agree_with_lua() -> None:
    """The counted matcher against stock Lua 5.1.5's (lupa's) on random patterns and
    subjects: the same results and errors. Seeded (PATTERN_SEED)."""
    seed = int(os.environ.get("PATTERN_SEED", random.randrange(1 << 30)))
    print(f"seed={seed} (rerun with PATTERN_SEED={seed})")
    mismatches = pattern_fuzz(seed, 3000)
    assert not mismatches, mismatches[:5]


def test_read_only_scripts_run_locally_and_refuse_writes(
    pair: tuple[redis.Redis, redis.Redis],
) -> None:
    oracle, subject = pair
    for conn in (oracle, subject):
        execute(conn, "SET", "k", "v")
    compare(
        oracle,
        subject,
        [
            ["EVAL", "#!lua flags=no-writes\nreturn redis.call('get', KEYS[1])", "1", "k"],
            ["EVAL_RO", "return redis.call('get', KEYS[1])", "1", "k"],
            ["EVAL_RO", "return redis.call('del', KEYS[1])", "1", "k"],
            ["EVAL_RO", "return redis.pcall('del', KEYS[1])", "1", "k"],
            ["GET", "k"],
            # SELECT inside a script moves the script only, not its caller.
            ["EVAL", "redis.call('select', 3); return redis.call('set', 'in3', 'x')", "0"],
            ["EVAL_RO", "redis.call('select', 3); return redis.call('get', 'in3')", "0"],
            ["GET", "in3"],
            ["SELECT", "3"],
            ["GET", "in3"],
            ["DEL", "in3"],
            ["SELECT", "0"],
        ],
    )


def _record(args: list[bytes], time_ms: int) -> bytes:
    rec = record_pb2.Record(db=0, time_ms=time_ms)
    rec.commands.add(args=args)
    return rec.SerializeToString()


def test_the_script_cache_travels_in_the_snapshot() -> None:
    """SCRIPT LOAD and EVAL records fill the cache; a snapshot carries it, so a shim restored
    from it answers EVALSHA as the shim that applied the records does."""
    load_all()
    original = Applier()
    loaded_sha = hashlib.sha1(b"return redis.call('incr', KEYS[1])").hexdigest()
    records = [
        [b"SCRIPT", b"LOAD", b"return redis.call('incr', KEYS[1])"],
        [b"EVAL", b"return {KEYS[1], math.random(1000)}", b"1", b"k"],
        [b"EVALSHA", loaded_sha.encode(), b"1", b"n"],
        [b"FUNCTION", b"LOAD", LIBRARY.encode()],
    ]
    for i, args in enumerate(records, 1):
        original.apply(i, _record(args, 1_700_000_000_000 + i))
    out = io.BytesIO()
    write_rdb(original.keyspace, out, snapshot_state(original))
    result = read_rdb(io.BytesIO(out.getvalue()))
    fresh = Applier()
    restore(fresh, result)
    assert fresh.scripts.dump() == original.scripts.dump() and len(fresh.scripts.dump()) == 2
    assert fresh.scripts.dump_libraries() == [LIBRARY.encode()]
    eval_sha = hashlib.sha1(records[1][1]).hexdigest().encode()
    for args in (
        [b"EVALSHA", loaded_sha.encode(), b"1", b"n"],
        [b"EVALSHA", eval_sha, b"1", b"k"],
        [b"FCALL", b"myfunc", b"1", b"f", b"v"],
    ):
        index = original.applied_index + 1
        want = original.apply(index, _record(args, 1_700_000_001_000))[1]
        got = fresh.apply(index, _record(args, 1_700_000_001_000))[1]
        assert got == want and not isinstance(got, Error), (got, want)
    assert fresh.keyspace.digest() == original.keyspace.digest()


LIBRARY = (
    "#!lua name=mylib\n"
    "redis.register_function('myfunc', function(keys, args) "
    "return redis.call('set', keys[1], args[1]) end)"
)
RO_LIBRARY = (
    "#!lua name=lib3\n"
    "redis.register_function{function_name='ro', callback=function(keys, args) "
    "return redis.call('get', keys[1]) end, flags={'no-writes'}, description='reads'}"
)


def _load(code: str) -> list[str]:
    return ["FUNCTION", "LOAD", code]


@pytest.mark.parametrize("raw_pair", [2, 3], indirect=True, ids=["resp2", "resp3"])
def test_functions_answer_as_redis_does(raw_pair: tuple[RawConnection, RawConnection]) -> None:
    oracle, subject = raw_pair
    bad_loads = [
        "return 1",
        "#!lua\nreturn 1",
        "#!lua name=x foo=bar\nreturn 1",
        "#!lua name=x\nreturn 1",
        "#!lua name=x\nredis.call('ping')",
        "#!lua name=x\nredis.register_function('a b', function() end)",
        "#!lua name=x\nredis.register_function('f', 5)",
        "#!lua name=x\nredis.register_function{function_name='f', callback=function() end, "
        "flags={'bad'}}",
        "#!lua name=x\nredis.register_function{function_name='f', callback=function() end, foo=1}",
        "#!lua name=x\nredis.register_function()",
        "#!lua name=x\nredis.register_function('a')",
        "#!lua name=x\nredis.register_function{}",
        "#!lua name=x\nsyntax error",
        "#!lua name=x\nerror('boom')",
        "#!lua name=x\nlocal a = y",
        "#!lua name=x\nz = 1",
        "#!luax name=x\nreturn 1",
        "#!lua name=b@d\nredis.register_function('f', function() end)",
        "#!lua name=x\nredis.register_function('f', function() end) "
        "redis.register_function('f', function() end)",
    ]
    compare_raw(
        oracle,
        subject,
        [
            ["FUNCTION", "FLUSH"],
            _load(LIBRARY),
            _load(LIBRARY),
            _load(LIBRARY.replace("mylib", "mylib2")),
            ["FUNCTION", "LIST"],
            ["FUNCTION", "LIST", "WITHCODE"],
            _load(RO_LIBRARY),
            ["FCALL", "myfunc", "1", "k", "v"],
            ["FCALL", "ro", "1", "k"],
            ["FCALL_RO", "ro", "1", "k"],
            ["FCALL_RO", "myfunc", "1", "k", "v"],
            ["FCALL", "nosuch", "0"],
            ["FCALL", "myfunc", "x"],
            ["FCALL", "myfunc", "5", "k"],
            ["FUNCTION", "LIST", "WITHCODE", "LIBRARYNAME", "lib*"],
            ["FUNCTION", "LIST", "LIBRARYNAME"],
            ["FUNCTION", "LIST", "FOO"],
            ["FUNCTION", "STATS"],
            *[_load(code) for code in bad_loads],
            _load("#!lua name=x\nredis.register_function('ff', function() error('inner') end)"),
            ["FCALL", "ff", "0"],
            _load("#!lua name=y\nredis.register_function('gg', function() x = 1 end)"),
            ["FCALL", "gg", "0"],
            _load(
                "#!lua name=z\nredis.register_function('hh', function(keys, args) "
                "return {#keys, #args, redis.call('ping')} end)"
            ),
            ["FCALL", "hh", "1", "a", "b", "c"],
            ["FUNCTION", "DELETE", "nosuch"],
            ["FUNCTION", "DELETE", "x"],
            ["FCALL", "ff", "0"],
            ["FUNCTION", "KILL"],
            ["FUNCTION", "FLUSH", "bad"],
            ["FUNCTION", "RESTORE", "bad"],
            _load(LIBRARY.replace("myfunc", "myfunc2")),
            ["FUNCTION", "LOAD", "REPLACE", LIBRARY.replace("myfunc", "myfunc2")],
            ["FCALL", "myfunc", "1", "k", "v"],
            ["FCALL", "myfunc2", "1", "k", "v"],
            ["FUNCTION", "LOAD", "REPLACE"],
            ["FUNCTION", "LOAD", "FOO", "x"],
            _load("#! name=test\nredis.register_function('f', function() return 1 end)"),
            _load('#!lua name="q"\nredis.register_function("fq", function() return 1 end)'),
            _load(
                "#!lua name=g\nredis.register_function('g', function() "
                "local g = getmetatable(_G) g.__index = {} end)"
            ),
            ["FCALL", "g", "0"],
            ["FCALL", "FQ", "0"],
            ["FUNCTION", "FLUSH", "SYNC"],
            ["FUNCTION", "LIST"],
            ["COMMAND", "GETKEYS", "FCALL", "f", "2", "a", "b", "c"],
            ["COMMAND", "INFO", "fcall", "fcall_ro"],
            ["COMMAND", "INFO", "function|load", "function|dump", "function|restore"],
        ],
    )


def test_function_dump_payloads_move_between_memlog_and_redis(
    pair: tuple[redis.Redis, redis.Redis],
) -> None:
    oracle, subject = pair
    for conn in (oracle, subject):
        execute(conn, "FUNCTION", "FLUSH")
    execute(oracle, "FUNCTION", "LOAD", LIBRARY)
    execute(subject, "FUNCTION", "LOAD", RO_LIBRARY)
    from_redis = execute(oracle, "FUNCTION", "DUMP")
    from_memlog = execute(subject, "FUNCTION", "DUMP")
    assert execute(subject, "FUNCTION", "RESTORE", from_redis) == b"OK"
    assert execute(oracle, "FUNCTION", "RESTORE", from_memlog) == b"OK"
    for conn in (oracle, subject):
        names = sorted(str(lib[b"library_name"]) for lib in _libraries(conn))
        assert names == [str(b"lib3"), str(b"mylib")]
        assert execute(conn, "FCALL", "myfunc", "1", "k", "v") == b"OK"
        assert execute(conn, "FCALL_RO", "ro", "1", "k") == b"v"
    with pytest.raises(redis.ResponseError, match="already exists"):
        execute(subject, "FUNCTION", "RESTORE", from_redis)
    assert execute(subject, "FUNCTION", "RESTORE", from_redis, "REPLACE") == b"OK"
    assert execute(subject, "FUNCTION", "RESTORE", from_redis, "FLUSH") == b"OK"
    assert [lib[b"library_name"] for lib in _libraries(subject)] == [b"mylib"]
    assert isinstance(from_redis, bytes)
    damaged = from_redis[:-1] + bytes([from_redis[-1] ^ 1])
    for conn in (oracle, subject):
        with pytest.raises(redis.ResponseError, match="payload version or checksum are wrong"):
            execute(conn, "FUNCTION", "RESTORE", damaged)
        execute(conn, "FUNCTION", "FLUSH")


def _libraries(conn: redis.Redis) -> list[dict[bytes, object]]:
    reply = execute(conn, "FUNCTION", "LIST")
    assert isinstance(reply, list)
    libraries: list[dict[bytes, object]] = []
    for lib in reply:
        assert isinstance(lib, list)
        libraries.append(dict(zip(lib[::2], lib[1::2], strict=True)))
    return libraries


def test_functions_run_on_every_shim(two_shims: Memlog) -> None:
    first, second = (client(port) for port in two_shims.shim_ports[:2])
    execute(first, "FUNCTION", "FLUSH")
    execute(first, "FUNCTION", "LOAD", LIBRARY)
    execute(first, "FUNCTION", "LOAD", RO_LIBRARY)
    same_index([first, second])
    assert execute(second, "FCALL", "myfunc", "1", "fk", "fv") == b"OK"
    same_index([first, second])
    assert execute(first, "FCALL_RO", "ro", "1", "fk") == b"fv"
    assert execute(second, "FCALL", "ro", "1", "fk") == b"fv"
    assert execute(first, "DEBUG", "DIGEST") == execute(second, "DEBUG", "DIGEST")
    execute(first, "FUNCTION", "FLUSH")


def test_a_pipeline_mixing_logged_and_local_scripts_answers_in_order(
    pair: tuple[redis.Redis, redis.Redis],
) -> None:
    oracle, subject = pair
    read_only = "#!lua flags=no-writes\nreturn redis.call('get', KEYS[1])"
    for conn in (oracle, subject):
        execute(conn, "SCRIPT", "FLUSH")
        incr = conn.script_load("return redis.call('incr', KEYS[1])")
        pipe = conn.pipeline(transaction=False)
        for i in range(30):
            execute(pipe, "EVALSHA", incr, "1", "n")
            execute(pipe, "EVAL", read_only, "1", "n")
            if i % 7 == 0:
                execute(pipe, "EVALSHA", "0" * 40, "0")
        replies = pipe.execute(raise_on_error=False)
        assert [r if not isinstance(r, Exception) else str(r) for r in replies] == (
            [
                x
                for i in range(30)
                for x in (
                    [i + 1, str(i + 1).encode()]
                    + (["No matching script. Please use EVAL."] if i % 7 == 0 else [])
                )
            ]
        ), conn
