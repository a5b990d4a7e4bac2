"""The Lua engine: one Lua 5.1 state (lupa's `lua51`) with Redis 7.0's sandbox and `redis`
library, and the conversions between Lua values and replies.

Determinism. A script that may write runs inside apply on every shim, so everything it can
observe must be the same everywhere: commands run through the same handlers with the
record's time and the index-seeded generator (the `Ctx` of the record), `math.random` draws
from that generator, and the only limit on a script is counted in Lua VM instructions (a
count hook), never in wall time: a script that loops forever ends with the same error, at
the same instruction, on every shim (`INSTRUCTIONS_MAX`).

The sandbox, as redis-server 7.0.15 has it (checked against it): the globals are exactly
Redis's list (no `os`, `io`, `debug`, `print`, `loadfile`, `dofile`, `require`, ...); the
global table and the library tables are read-only ("Attempt to modify a readonly table");
reading a missing global is an error ("Script attempted to access nonexistent global
variable"). Stock Lua 5.1 has no read-only tables, so each protected table is a proxy whose
metatable forwards reads and refuses writes, and the few functions that could get around a
metatable (`rawset`, `rawget`, `setmetatable`, `next`, `pairs`, `ipairs`, `loadstring`,
`load`) see through proxies or refuse them.

The module is long (over 1,000 lines) because the Lua boot code, the Python side of the
`redis` library and the reply conversions share one Lua state and its private functions;
the libraries that need none of that live in `libs.py`.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from lupa import lua51  # type: ignore[import-untyped]

from cacheshim.acl.check import sort_refusal
from cacheshim.acl.users import DENIED_CHANNEL, DENIED_CMD, DENIED_KEY, User
from cacheshim.commands import Command, Flag, lookup
from cacheshim.protocol.resp import (
    BigNumber,
    Error,
    Reply,
    SetReply,
    Status,
    Verbatim,
    encode,
)
from cacheshim.scripting import libs

if TYPE_CHECKING:
    from cacheshim.commands import Ctx

log = logging.getLogger("cacheshim.scripting")

# The instruction budget of one script or function call: Lua VM instructions, counted by a
# hook every INSTRUCTIONS_STEP instructions. Part of the log's format (every shim must use the
# same value, or a script near the limit would end differently on different shims). About a
# quarter of a second of a busy loop on a 2020s core (more on a loaded one).
INSTRUCTIONS_MAX = 50_000_000
INSTRUCTIONS_STEP = 10_000

# A script's nesting of reply tables (Redis stops at its Lua C stack; deeper here would
# strain the recursive encoder).
REPLY_DEPTH_MAX = 200
# The Lua state's memory limit: a script that allocates without bound (string.rep of a
# terabyte) gets Lua's "not enough memory" error instead of exhausting the machine, and of
# every shim at once (they all run it). A script near the limit could end differently on a
# shim whose state holds more (compiled scripts): far above what scripts use.
MEMORY_BYTES_MAX = 1 << 30

REDIS_VERSION = "7.0.15"
REDIS_VERSION_NUM = 0x07000F

# A call that runs this many steps (of INSTRUCTIONS_STEP: 200,000 instructions, or 400
# redis.calls, 1-4 ms of Lua) without having changed anything leaves the event loop: at
# apply it is deferred (DEFERRED, then a preview on its shim), a local one runs again from its
# start on the shim's script thread (`MoveOffLoop`). Deferring changes what a record does, so
# this is part of the log's format, like INSTRUCTIONS_MAX: every shim must use the same value.
MOVE_STEPS = 20

# Each redis.call/pcall counts as this many instructions (it costs far more time than one).
CALL_INSTRUCTIONS = 500
CALLS_MAX = INSTRUCTIONS_MAX // CALL_INSTRUCTIONS
SPECS_MAX = 4096  # (LuaEngine._specs: names as spelled, so bounded)
MOVE_CALLS = MOVE_STEPS * INSTRUCTIONS_STEP // CALL_INSTRUCTIONS

BUDGET_EXCEEDED = (
    f"ERR Script exceeded memlog's budget of {INSTRUCTIONS_MAX} Lua instructions "
    "(see docs/decisions/0004-lua.md)"
)
KILLED = "ERR Script killed by user with SCRIPT KILL..."
_MOVE = b"memlog: move off the event loop"
_DEFER = b"memlog: deferred"
_WANTS_WRITE = b"memlog: the preview wants to write"
# The reply of a record whose script ran MOVE_STEPS at apply without changing anything: on
# every shim alike, nothing changed, and the shim that proposed it runs it as a preview
# (cacheshim.server.replica): killable, and proposed again to run to its end if it writes.
DEFERRED = Error("ERR memlog: the script was deferred (docs/decisions/0004-lua.md)")
# Commands that change something outside the keyspace (a call of one makes a script as
# unrepeatable as a write does).
_SIDE_EFFECTS = frozenset(("publish", "spublish"))
UNKNOWN_COMMAND = "ERR Unknown Redis command called from script"
WRONG_ARITY = "ERR Wrong number of args calling Redis command from script"
NOT_ALLOWED = "ERR This Redis command is not allowed from script"
WRITE_IN_READONLY = "ERR Write commands are not allowed from read-only scripts."
NO_ARGUMENTS = "ERR Please specify at least one argument for this redis lib call"
BAD_ARGUMENT = "ERR Lua redis lib command arguments must be strings or integers"
# A redis.call the calling user's ACL rules refuse (Redis's scriptVerifyACL: an ERR, not a
# NOPERM, and these words), by the reason of the refusal.
ACL_DENIED = {
    DENIED_CMD: "ERR The user executing the script can't run this command or subcommand",
    DENIED_KEY: "ERR The user executing the script can't access at least one of the keys "
    "mentioned in the command arguments",
    DENIED_CHANNEL: "ERR The user executing the script can't publish to the channel "
    "mentioned in the command",
}

# The globals a script sees, as redis-server 7.0.15 lists them (`pairs(_G)`).
_ALLOWED_GLOBALS = (
    "ARGV KEYS _G _VERSION __redis__err__handler assert bit cjson cmsgpack collectgarbage "
    "coroutine error gcinfo getmetatable ipairs load loadstring math next pairs pcall "
    "rawequal rawget rawset redis select setmetatable string struct table tonumber "
    "tostring type unpack xpcall"
)

# Run once in a fresh Lua state, with the Python side's functions as arguments. Returns the
# functions the Python side calls: compile, call, compile_library, load_library.
_BOOT = r"""
local pyredis, pylibs, allowed, step, budget_steps = ...
local dbg = debug
local real_G = _G
local rawget_, rawset_, setmetatable_, getmetatable_ = rawget, rawset, setmetatable, getmetatable
local next_, pairs_, ipairs_, type_, error_, tostring_ = next, pairs, ipairs, type, error, tostring
local loadstring_, load_, setfenv_, select_, unpack_ = loadstring, load, setfenv, select, unpack
local cocreate, coresume = coroutine.create, coroutine.resume

-- Budget: the hook counts steps of `step` instructions; past the budget it raises at every
-- instruction, so a pcall in the script cannot swallow it for long. From step `watch_at` on,
-- it also asks the Python side (`interrupt`) at every step: true goes on, false goes on and
-- stops asking, a string ends the script with that error (killed, or moved off the event
-- loop), raised as the budget's error is.
local steps, killed, watch_at = 0, nil, 0
local interrupt = pyredis.interrupt
local hook
local own_source = dbg.getinfo(1, "S").source
hook = function()
  if killed then
    -- Raised in the script's code only: this file's own functions (the error handler,
    -- `run` itself) must finish.
    local info = dbg.getinfo(2, "S")
    if info and info.source ~= own_source then error_(killed, 0) end
    return
  end
  steps = steps + 1
  if steps > budget_steps then
    killed = pyredis.budget_message
    dbg.sethook(hook, "", 1)
    error_(killed, 0)
  end
  if steps >= watch_at then
    local verdict = interrupt(steps)
    if verdict == false then
      watch_at = budget_steps + 1
    elseif verdict ~= true then
      killed = verdict
      dbg.sethook(hook, "", 1)
      error_(killed, 0)
    end
  end
end

local readonly = "Attempt to modify a readonly table"
local real_of = setmetatable_({}, {__mode = "k"})
local function refuse_write() error_(readonly, 2) end
-- What getmetatable shows of a protected table: an empty table that refuses writes too.
local sealed = setmetatable_({}, {__newindex = refuse_write, __metatable = false})
local function protect(t)
  local proxy = {}
  real_of[proxy] = t
  setmetatable_(proxy, {__index = t, __newindex = refuse_write, __metatable = sealed})
  return proxy
end

-- The script's globals: Redis's list, nothing else; a missing name is an error.
local G = {}

local lib = {}
for _, name in ipairs_({"string", "math", "table", "coroutine"}) do lib[name] = real_G[name] end
local pyrandom, pyrandomseed = pylibs.random, pylibs.randomseed
lib.math.random = function(...)
  local ok, v = pyrandom(...)
  if not ok then error_(v, 2) end
  return v
end
lib.math.randomseed = function(...) pyrandomseed(...) end
lib.coroutine = {
  create = function(f)
    local co = cocreate(f)
    dbg.sethook(co, hook, "", step)
    return co
  end,
  resume = coresume,
  yield = coroutine.yield,
  status = coroutine.status,
  running = coroutine.running,
  wrap = function(f)
    local co = cocreate(f)
    dbg.sethook(co, hook, "", step)
    return function(...)
      local r = {coresume(co, ...)}
      if not r[1] then error_(r[2], 0) end
      return unpack_(r, 2, table.maxn(r))
    end
  end,
}
lib.cjson = pylibs.cjson
lib.bit = pylibs.bit
lib.struct = pylibs.struct
lib.cmsgpack = pylibs.cmsgpack

local redis = {}
-- Python callables: C functions to Lua, so `return redis.call(...)` keeps the script's frame
-- (a Lua wrapper would be tail-called away, and the error would lose its line).
redis.call = pyredis.call
redis.pcall = pyredis.pcall
redis.error_reply = function(...)
  local msg = ...
  if select_("#", ...) ~= 1 or type_(msg) ~= "string" then
    return {err = "ERR wrong number or type of arguments"}
  end
  return {err = pyredis.error_text(msg)}
end
redis.status_reply = function(...)
  local msg = ...
  if select_("#", ...) ~= 1 or type_(msg) ~= "string" then
    return {err = "ERR wrong number or type of arguments"}
  end
  return {ok = msg}
end
redis.sha1hex = pyredis.sha1hex
redis.log = pyredis.log
redis.setresp = pyredis.setresp
redis.set_repl = pyredis.set_repl
redis.replicate_commands = function() return true end
redis.breakpoint = function() return false end
redis.debug = function() end
redis.acl_check_cmd = pyredis.acl_check_cmd
redis.REDIS_VERSION = pyredis.version
redis.REDIS_VERSION_NUM = pyredis.version_num
redis.LOG_DEBUG, redis.LOG_VERBOSE, redis.LOG_NOTICE, redis.LOG_WARNING = 0, 1, 2, 3
redis.REPL_NONE, redis.REPL_AOF, redis.REPL_ALL = 0, 1, 3
redis.REPL_SLAVE, redis.REPL_REPLICA = 2, 2
lib.redis = redis

-- The error handler: the error as a table {err=, source=, line=}, the position being the
-- innermost frame of the user's code. A string raised by redis.call keeps its own code;
-- any other string gets "ERR " (as in Redis).
local function err_handler(err)
  local where
  for level = 2, 60 do
    local info = dbg.getinfo(level, "Sl")
    if not info then break end
    if info.source == "@user_script" or info.source == "@user_function" then
      where = info
      break
    end
  end
  local t
  if killed then
    t = {err = killed}
  elseif type_(err) == "table" then
    t = {err = rawget_(real_of[err] or err, "err")}
  elseif type_(err) == "userdata" then  -- raised by redis.call (a Python callable)
    t = {err = tostring_(err)}
  else
    t = {err = "ERR " .. tostring_(err)}
  end
  if where then
    t.source = where.source
    t.line = where.currentline
  end
  return t
end

for name, value in pairs_(lib) do G[name] = protect(value) end
-- Memory counts differ between shims (a restored shim compiles its scripts later): a script
-- sees none, so its result cannot depend on them.
local collect = collectgarbage
G.gcinfo = function() return 0 end
G.collectgarbage = function(opt)
  if opt == nil or opt == "collect" then collect("collect") end
  return 0
end
for _, name in ipairs_({"assert", "error", "getmetatable",
                        "rawequal", "select", "tonumber", "tostring", "type",
                        "_VERSION"}) do
  G[name] = real_G[name]
end
G.__redis__err__handler = err_handler
local pcall_, xpcall_0 = pcall, xpcall
local maxn = table.maxn
local function as_text(ok, ...)
  if not ok then
    local e = ...
    if type_(e) == "userdata" then return false, tostring_(e) end
  end
  return ok, ...
end
G.pcall = function(f, ...) return as_text(pcall_(f, ...)) end
G.xpcall = function(f, h)
  return xpcall_0(f, function(e)
    if type_(e) == "userdata" then e = tostring_(e) end
    return h(e)
  end)
end
-- Stock Lua 5.1's unpack overflows its count for ranges near 2^31 (Redis patches it): the
-- range is checked here first, with Lua's own text.
G.unpack = function(...)
  local t, i, j = ...
  if type_(t) ~= "table" then
    error_("bad argument #1 to 'unpack' (table expected, got " .. type_(t) .. ")", 2)
  end
  local first = i == nil and 1 or tonumber(i)
  local last = j == nil and #(real_of[t] or t) or tonumber(j)
  if first and last and last - first >= 7999 then
    error_("too many results to unpack", 2)
  end
  return unpack_(...)  -- (the same arguments: each one takes a place on Lua's stack)
end
-- Only tables show a metatable (strings' would let a script change every string).
G.getmetatable = function(v)
  if type_(v) ~= "table" then return nil end
  return getmetatable_(v)
end
-- tostring of a table, function, coroutine or userdata names an address, which differs
-- between shims: here it names the value's place in the order the running script first
-- printed such values ("table: 0x00000001"), the same everywhere.
local printed, printed_count = setmetatable_({}, {__mode = "k"}), 0
G.tostring = function(v)
  local kind = type_(v)
  if kind == "table" or kind == "function" or kind == "thread" or kind == "userdata" then
    local mt = getmetatable(v)
    if kind == "table" and type_(mt) == "table" and rawget_(mt, "__tostring") then
      return tostring_(v)
    end
    if not printed then printed = setmetatable_({}, {__mode = "k"}) end
    local id = printed[v]
    if not id then
      printed_count = printed_count + 1
      id = printed_count
      printed[v] = id
    end
    return string.format("%s: 0x%08x", kind, id)
  end
  return tostring_(v)
end
-- Inside apply, `next` over a table keyed by tables, functions, coroutines or userdata would
-- follow their addresses, which differ between shims: refused there, at the start of an
-- iteration (the same error at the same place on every shim). Keys of the other types hash
-- by value in Lua 5.1 (no per-process seed), so their order is the same everywhere.
local deterministic = false
local unordered = "memlog: pairs/next over a table keyed by tables, functions or coroutines "
  .. "has no order that is the same on every shim (docs/decisions/0004-lua.md)"
local function check_order(t)
  if type_(t) ~= "table" then return end
  for k in next_, t do
    local kind = type_(k)
    if kind == "table" or kind == "function" or kind == "thread" or kind == "userdata" then
      error_(unordered, 3)
    end
  end
end
G.next = function(t, k)
  local real = real_of[t] or t
  if deterministic and k == nil then check_order(real) end
  return next_(real, k)
end
G.pairs = function(t)
  local real = real_of[t] or t
  if deterministic then check_order(real) end
  return next_, real, nil
end
G.ipairs = function(t) return ipairs_(real_of[t] or t) end
G.rawget = function(t, k) return rawget_(real_of[t] or t, k) end
G.rawset = function(t, k, v)
  if real_of[t] or t == G then error_(readonly, 0) end
  return rawset_(t, k, v)
end
-- A weak table's contents depend on when the collector runs, which depends on the state's
-- memory (not the same on every shim): refused inside apply.
local weak = "memlog: weak tables (__mode) empty at times that differ between shims; not "
  .. "allowed in a script that may write (docs/decisions/0004-lua.md)"
G.setmetatable = function(t, mt)
  if real_of[t] or t == G then error_(readonly, 0) end
  if deterministic and type_(mt) == "table" and rawget_(mt, "__mode") ~= nil then
    error_(weak, 2)
  end
  return setmetatable_(t, mt)
end
local proxy_G = protect(G)
G._G = proxy_G
G.loadstring = function(s, name)
  if type_(s) == "string" and s:byte(1) == 27 then  -- precompiled code: refused, as in Redis
    return nil, "binary chunks are not allowed"
  end
  local f, e = loadstring_(s, name)
  if f then setfenv_(f, proxy_G) end
  return f, e
end
G.load = function(f, name)
  local fn, e = load_(f, name)
  if fn then setfenv_(fn, proxy_G) end
  return fn, e
end
setmetatable_(G, {__index = function(_, k)
  error_("Script attempted to access nonexistent global variable '" .. tostring_(k) .. "'", 2)
end})
for name in pairs_(G) do
  if not allowed[name] then rawset_(G, name, nil) end
end

-- The budget spent by the Python side (redis.call counts as CALL_INSTRUCTIONS): from now
-- on, the script's code raises at every instruction.
local function kill(message)
  killed = message or pyredis.budget_message
  dbg.sethook(hook, "", 1)
end

local function compile(body, chunkname)
  local f, e = loadstring_(body, chunkname)
  if not f then return nil, e end
  setfenv_(f, proxy_G)
  return f, false
end

-- Run f(...) under the budget: true and its first result, or false and the error table.
local xpcall_ = xpcall
local function run(f, ...)
  steps, killed, watch_at, deterministic = 0, nil, budget_steps + 1, true
  local args, n = {...}, select_("#", ...)
  dbg.sethook(hook, "", step)
  local ok, result = xpcall_(function() return f(unpack_(args, 1, n)) end, err_handler)
  dbg.sethook()
  killed = nil
  return ok, result
end

-- EVAL/EVALSHA (as_function false: KEYS and ARGV set as globals) and FCALL (the function
-- called with them): the first `nkeys` arguments are the keys. One call from Python.
local function call(f, as_function, watch_from, at_apply, nkeys, ...)
  printed, printed_count = nil, 0  -- (made by the first tostring that needs it)
  local all, n = {...}, select_("#", ...)
  local keys, argv = {}, {}
  for i = 1, nkeys do keys[i] = all[i] end
  for i = nkeys + 1, n do argv[i - nkeys] = all[i] end
  steps, killed, watch_at, deterministic = 0, nil, watch_from, at_apply
  local ok, result
  dbg.sethook(hook, "", step)
  if as_function then
    ok, result = xpcall_(function() return f(keys, argv) end, err_handler)
  else
    rawset_(G, "KEYS", keys)
    rawset_(G, "ARGV", argv)
    ok, result = xpcall_(f, err_handler)
  end
  dbg.sethook()
  killed = nil
  return ok, result
end

-- Functions (FUNCTION LOAD, FCALL): Redis 7.0's function globals (the script's, without
-- KEYS, ARGV and the error handler; `redis` without breakpoint, debug, replicate_commands).
-- While a library loads, its code sees only `redis` with register_function, log and the
-- constants. One proxy serves both phases: `active` says which globals it shows.
local F = {}
for name, value in pairs_(G) do F[name] = value end
F.KEYS, F.ARGV, F.__redis__err__handler = nil, nil, nil
local redis_fn = {}
for name, value in pairs_(redis) do redis_fn[name] = value end
redis_fn.breakpoint, redis_fn.debug, redis_fn.replicate_commands = nil, nil, nil
F.redis = protect(redis_fn)
local loading = {register_function = pyredis.register_function, log = redis.log}
for _, name in ipairs_({"LOG_DEBUG", "LOG_VERBOSE", "LOG_NOTICE", "LOG_WARNING",
                        "REDIS_VERSION", "REDIS_VERSION_NUM"}) do
  loading[name] = redis[name]
end
setmetatable_(loading, {__index = function(_, k)
  error_("Script attempted to access nonexistent global variable '" .. tostring_(k) .. "'", 2)
end})
local L = {redis = protect(loading)}
local active = F
local proxy_F = {}
real_of[proxy_F] = F
setmetatable_(proxy_F, {
  __index = function(_, k)
    local v = active[k]
    if v == nil then
      error_("Script attempted to access nonexistent global variable '" .. tostring_(k) .. "'", 2)
    end
    return v
  end,
  __newindex = refuse_write,
  __metatable = sealed,
})
F._G = proxy_F

local function compile_library(body)
  local f, e = loadstring_(body, "@user_function")
  if not f then return nil, e end
  setfenv_(f, proxy_F)
  return f, false
end

local function load_library(f)
  active = L
  local ok, result = run(f)
  active = F
  return ok, result
end

return compile, call, compile_library, load_library, kill
"""


class WantsWrite(BaseException):
    """Raised out of a preview (a deferred script run on its shim only) at its first write."""


class MoveOffLoop(BaseException):
    """Raised out of a script call on the event loop that ran MOVE_STEPS without changing
    anything: whoever runs the command (the replica's apply, a read) runs it again from its
    start on the script thread. A BaseException, so the guards that turn a handler's bugs
    into error replies let it through."""


@dataclass
class Invocation:
    """What the running script's `redis.call` needs: the command context (the record's,
    inside apply), whether writes are refused, and the protocol set by `redis.setresp`."""

    ctx: Ctx
    readonly: bool
    resp: int = 2
    # Whose ACL rules the script's commands are checked against: None, no check (no
    # `ctx.user`, or that user may run anything); `acl_deleted` when the user is gone.
    acl_user: User | None = None
    acl_deleted: bool = False
    # Whether it may be moved off the event loop (`MoveOffLoop`), and whether it has run a
    # command that changed something (then it is not run again from its start, and SCRIPT
    # KILL cannot end it).
    movable: bool = False
    dirty: bool = False
    name: str = ""
    # At apply and not in a transaction: a call that runs MOVE_STEPS without changing
    # anything is deferred (DEFERRED), on every shim alike, wherever it runs.
    deferrable: bool = False


FUNCTION_FLAGS = ("no-writes", "allow-oom", "allow-stale", "no-cluster", "allow-cross-slot-keys")
# (Redis 7.0 answers a bad function name with the library's text too.)
INVALID_NAME = (
    "ERR Library names can only contain letters, numbers, or underscores(_) and must be at "
    "least one character long"
)


def valid_name(name: str) -> bool:
    return bool(name) and all(c.isascii() and (c.isalnum() or c == "_") for c in name)


@dataclass(frozen=True)
class Registered:
    """A function a library registered (redis.register_function)."""

    name: str
    fn: Any
    flags: frozenset[str]
    description: bytes | None


class CallError(Exception):
    """redis.call's error, raised into Lua: Lua sees it as a userdata whose tostring is the
    error text (the sandbox's pcall, xpcall and error handler turn it into that text)."""


class ScriptError(Exception):
    """A script or library that does not compile, with Redis's text."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class LuaEngine:
    """One Lua state and the Python side of its `redis` library.

    `runner` runs one command, looked up and checked, in a Ctx (cacheshim.apply.run_spec):
    the same path as every other command, so a script's commands are applied like any
    other."""

    def __init__(self, runner: Callable[[Ctx, Command, list[bytes]], Reply]) -> None:
        self._runner = runner
        # redis.call's command names as scripts spell them -> their table entries (commands
        # without subcommands only): one dict lookup instead of a decode and lower per call.
        self._specs: dict[bytes, Command] = {}
        self._current: Invocation | None = None
        self._calls = 0  # redis.call/pcall in the running script (the budget counts them)
        # Set by the shim: whether a call may move off the event loop (a serving shim, not a
        # replay or the snapshotter); whether this call runs on the script thread; whether
        # SCRIPT KILL or FUNCTION KILL asked the running call to end.
        self.offload = False
        self.threaded = False
        self.kill_requested = False
        self.preview = False  # running a deferred script as a preview (no writes)
        # Calls that ran long after changing something (so could not move): the next call of
        # the same script or function moves at once (where it runs, never what it does).
        self.long_names: set[str] = set()
        self.lua = lua51.LuaRuntime(
            encoding=None, unpack_returned_tuples=True, register_eval=False,
            register_builtins=False, max_memory=MEMORY_BYTES_MAX,
        )  # fmt: skip
        self._table_from = self.lua.table_from
        self._rawget = self.lua.eval("rawget")
        pyredis = self.lua.table_from(
            {
                b"budget_message": BUDGET_EXCEEDED.encode(),
                b"interrupt": self._interrupt,
                b"call": self._redis_call,
                b"register_function": self._register_function,
                b"pcall": self._redis_pcall,
                b"error_text": _error_text,
                b"sha1hex": _sha1hex,
                b"log": _log,
                b"setresp": self._setresp,
                b"set_repl": _set_repl,
                b"acl_check_cmd": self._acl_check_cmd,
                b"version": REDIS_VERSION.encode(),
                b"version_num": REDIS_VERSION_NUM,
            }
        )
        cjson, self._reset_cjson = libs.cjson_table(self.lua)
        pylibs = self.lua.table_from(
            {
                b"random": self._random,
                b"randomseed": self._randomseed,
                b"cjson": cjson,
                b"bit": libs.bit_table(self.lua),
                b"struct": libs.struct_table(self.lua),
                b"cmsgpack": libs.cmsgpack_table(self.lua),
            }
        )
        allowed = self.lua.table_from({name.encode(): True for name in _ALLOWED_GLOBALS.split()})
        boot = self.lua.eval(_BOOT_FN)
        self._registering: list[Registered] | None = None
        (
            self._compile, self._call_lua, self._compile_library, self._load_library,
            self._kill,
        ) = boot(
            pyredis, pylibs, allowed, INSTRUCTIONS_STEP,
            INSTRUCTIONS_MAX // INSTRUCTIONS_STEP,
        )  # fmt: skip

    # -- compiling and running ------------------------------------------------------------

    def compile(self, body: bytes, chunkname: bytes) -> Any:
        """A Lua function made from body, or ScriptError with Lua's message."""
        fn, err = self._compile(body, chunkname)
        if not fn:
            raise ScriptError(_text(err))
        return fn

    def call(
        self,
        fn: Any,
        ctx: Ctx,
        keys: list[bytes],
        argv: list[bytes],
        readonly: bool,
        name: str,
        as_function: bool = False,
    ) -> Reply:
        """Run a compiled script (KEYS and ARGV set) or function (called with them): its
        reply, or its error as Redis words it ("... script: <name>, on @user_script:1.")."""
        invocation = Invocation(ctx, readonly)
        if ctx.user is not None and ctx.acl is not None:
            user = ctx.acl.get(ctx.user)
            if user is None:
                invocation.acl_deleted = True
            elif not user.unrestricted():
                invocation.acl_user = user
        invocation.name = name
        invocation.deferrable = ctx.index != 0 and not ctx.in_transaction
        if self.threaded:
            watch_from = 1  # SCRIPT KILL is looked for at every step
        elif self.offload and ctx.script_movable:
            invocation.movable = True
            if name in self.long_names:
                raise MoveOffLoop
            watch_from = MOVE_STEPS
        elif invocation.deferrable:
            watch_from = MOVE_STEPS
        else:
            watch_from = INSTRUCTIONS_MAX // INSTRUCTIONS_STEP + 1
        self._current = invocation
        db_index = ctx.db_index  # a SELECT inside the script does not move its caller
        self._reset_cjson()
        self._calls = 0
        ctx.in_script = True
        try:
            ok, result = self._call_lua(
                fn, as_function, watch_from, ctx.index != 0, len(keys), *keys, *argv
            )
        finally:
            self._current = None
            ctx.db_index = db_index
            ctx.in_script = False
        if ok:
            return self.to_reply(result, invocation.resp)
        if lua51.lua_type(result) == "table":
            err = result[b"err"]
            if err == _MOVE:
                raise MoveOffLoop
            if err == _DEFER:
                return DEFERRED
            if err == _WANTS_WRITE:
                raise WantsWrite
        return _error_reply(result, name)

    def dirty(self) -> bool:
        """Whether the running call has changed something (SCRIPT KILL cannot end it)."""
        current = self._current
        return current is not None and current.dirty

    def _interrupt(self, steps: int) -> bool | bytes:
        """The count hook's question, past `watch_from`: go on (True), go on without asking
        again (False), or end the call with this error. Deferring depends only on the
        steps and on whether the call changed anything: the same on every shim."""
        invocation = self._current
        if invocation is None:
            return False
        if steps >= MOVE_STEPS and invocation.deferrable and not invocation.dirty:
            return _DEFER
        if self.threaded:
            return KILLED.encode() if self.kill_requested else True
        if invocation.movable and not invocation.dirty:
            return _MOVE
        self.long_names.add(invocation.name)  # it stalls the loop this time, not the next
        return False

    def load_library(self, body: bytes) -> list[Registered]:
        """Run a library's code (FUNCTION LOAD): the functions it registered, or
        ScriptError with Redis's text."""
        fn, err = self._compile_library(body)
        if not fn:
            raise ScriptError("ERR Error compiling function: " + _text(err))
        self._registering = []
        try:
            ok, result = self._load_library(fn)
            registered = self._registering
        finally:
            self._registering = None
        if not ok:
            err = _text(result[b"err"] if lua51.lua_type(result) == "table" else result)
            if err == BUDGET_EXCEEDED:
                err = "FUNCTION LOAD timeout: " + err
            raise ScriptError("ERR Error registering functions: " + err)
        return registered

    def _register_function(self, *args: Any) -> None:
        if self._registering is None:
            raise CallError(
                "ERR redis.register_function can only be called on FUNCTION LOAD command"
            )
        description: bytes | None = None
        flags: Any = None
        if len(args) == 1:
            table = args[0]
            if lua51.lua_type(table) != "table":
                raise CallError(
                    "ERR calling redis.register_function with a single argument is only "
                    "applicable to Lua table (representing named arguments)."
                )
            name = fn = None
            for key, value in table.items():
                if key == b"function_name":
                    if type(value) is not bytes:
                        raise CallError(
                            "ERR function_name argument given to redis.register_function "
                            "must be a string"
                        )
                    name = value
                elif key == b"callback":
                    if lua51.lua_type(value) != "function":
                        raise CallError(
                            "ERR callback argument given to redis.register_function must be "
                            "a function"
                        )
                    fn = value
                elif key == b"flags":
                    if lua51.lua_type(value) != "table":
                        raise CallError(
                            "ERR flags argument to redis.register_function must be a table "
                            "representing function flags"
                        )
                    flags = value
                elif key == b"description":
                    if type(value) is not bytes:
                        raise CallError(
                            "ERR description argument given to redis.register_function must "
                            "be a string"
                        )
                    description = value
                else:
                    raise CallError("ERR unknown argument given to redis.register_function")
            if name is None:
                raise CallError("ERR redis.register_function must get a function name argument")
            if fn is None:
                raise CallError("ERR redis.register_function must get a callback argument")
        elif len(args) == 2:
            name, fn = args
            if type(name) is not bytes:
                raise CallError("ERR first argument to redis.register_function must be a string")
        else:
            raise CallError("ERR wrong number of arguments to redis.register_function")
        if lua51.lua_type(fn) != "function":
            raise CallError("ERR second argument to redis.register_function must be a function")
        text = _text(name)
        if not valid_name(text):
            raise CallError(INVALID_NAME)
        if any(r.name == text for r in self._registering):
            raise CallError("ERR Function already exists in the library")
        parsed: set[str] = set()
        if flags is not None:
            for flag in flags.values():
                if type(flag) is not bytes or _text(flag) not in FUNCTION_FLAGS:
                    raise CallError("ERR unknown flag given")
                parsed.add(_text(flag))
        self._registering.append(Registered(text, fn, frozenset(parsed), description))

    # -- redis.call and friends -----------------------------------------------------------

    def _redis_call(self, *args: Any) -> Any:
        ok, value = self._call(args)
        if not ok:
            raise CallError(value.decode("utf-8", "surrogateescape"))
        return value

    def _redis_pcall(self, *args: Any) -> Any:
        ok, value = self._call(args)
        if not ok:
            return self._table_from({b"err": value})
        return value

    def _call(self, args: tuple[Any, ...]) -> tuple[bool, Any]:
        invocation = self._current
        if invocation is None:
            return False, b"ERR redis.call/pcall can only be called inside a script invocation"
        self._calls += 1
        if self._calls > CALLS_MAX:  # a loop of redis.call spends little Lua but much time
            self._kill()
            raise CallError(BUDGET_EXCEEDED)
        if self._calls == MOVE_CALLS and not invocation.dirty:
            # As many instructions as MOVE_STEPS, spent in calls: it runs long.
            if invocation.deferrable:
                self._kill(_DEFER)
                raise CallError(_DEFER.decode())
            if invocation.movable and not self.threaded:
                self._kill(_MOVE)
                raise CallError(_MOVE.decode())
        if not args:
            return False, NO_ARGUMENTS.encode()
        argv: list[bytes] = []
        for arg in args:
            kind = type(arg)
            if kind is bytes:
                argv.append(arg)
            elif kind is int or kind is float:
                argv.append(b"%.17g" % arg)
            else:
                return False, BAD_ARGUMENT.encode()
        spec = self._specs.get(argv[0])
        if spec is None:
            spec = lookup(argv)
            if spec is None:
                return False, UNKNOWN_COMMAND.encode()
            if not spec.subcommands and not spec.container and len(self._specs) < SPECS_MAX:
                self._specs[argv[0]] = spec
        if not spec.arity_ok(len(argv)) or spec.handler is None:
            return False, WRONG_ARITY.encode()
        if Flag.NOSCRIPT in spec.flags or (
            spec.on_connection is not None and spec.name != "select"
        ):
            return False, NOT_ALLOWED.encode()
        if invocation.acl_user is not None or invocation.acl_deleted:
            refused = self._acl_refusal(invocation, spec, argv)
            if refused is not None:
                return False, refused.encode()
        writes = (spec.is_write and not _reads_this_time(spec, argv)) or spec.name in _SIDE_EFFECTS
        if self.preview and writes:
            self._kill(_WANTS_WRITE)  # it runs again at apply, on every shim
            raise CallError(_WANTS_WRITE.decode())
        if invocation.readonly and spec.is_write and not _reads_this_time(spec, argv):
            return False, WRITE_IN_READONLY.encode()
        if writes:
            invocation.dirty = True
        ctx = invocation.ctx
        db_index = ctx.db_index
        if Flag.READONLY in spec.flags:
            ctx.script_read = True  # client-side caching tracks the script's keys
        reply = self._runner(ctx, spec, argv)
        if spec.name == "select" and isinstance(reply, Error):
            ctx.db_index = db_index
        if isinstance(reply, Error):
            return False, reply.message.encode("utf-8", "surrogateescape")
        return True, self.to_lua(reply, invocation.resp)

    @property
    def running(self) -> bool:
        """Whether a script is running (its redis.call reaches a command handler)."""
        return self._current is not None

    def _acl_refusal(self, invocation: Invocation, spec: Command, argv: list[bytes]) -> str | None:
        """The calling user's ACL check of one redis.call (Redis checks the command, its
        keys and its channels as at the top level): the error, noted for the ACL LOG, or
        None. SORT's BY and GET are SORT's own refusal, as at the top level."""
        ctx = invocation.ctx
        user = invocation.acl_user
        if user is None:  # deleted since the script was sent: nothing is allowed
            why, at = DENIED_CMD, 0
        else:
            why, at = user.check(spec, argv)
            if why == 0:
                if spec.full_name in ("sort", "sort_ro"):
                    return sort_refusal(user, spec, argv)
                return None
        if ctx.acl_denied is not None and ctx.user is not None:
            obj = spec.full_name.encode() if why == DENIED_CMD else argv[at]
            ctx.acl_denied.append((why, obj, ctx.user))
        return ACL_DENIED[why]

    def _setresp(self, *args: Any) -> None:
        if len(args) != 1:
            raise CallError("ERR redis.setresp() requires one argument.")
        if args[0] not in (2, 3) or type(args[0]) is bool:
            raise CallError("ERR RESP version must be 2 or 3.")
        if self._current is not None:
            self._current.resp = int(args[0])

    def _acl_check_cmd(self, *args: Any) -> bool:
        """redis.acl_check_cmd: whether the calling user's rules allow this command line
        (command, keys, channels), as redis.call would check it; nothing is logged."""
        if not args:
            raise CallError(NO_ARGUMENTS)
        if any(type(a) not in (bytes, int, float) for a in args):
            raise CallError(BAD_ARGUMENT)
        argv = [a if type(a) is bytes else b"%.17g" % a for a in args]
        spec = lookup(argv)
        if spec is None:
            raise CallError("ERR Invalid command passed to redis.acl_check_cmd()")
        invocation = self._current
        if invocation is None or (invocation.acl_user is None and not invocation.acl_deleted):
            return True
        user = invocation.acl_user
        if user is None:
            return False
        try:
            return user.check(spec, argv)[0] == 0
        except IndexError:  # too few arguments for the command's keys: Redis checks what is there
            return True

    def _random(self, *args: Any) -> tuple[bool, Any]:
        """Lua 5.1's math.random ([0,1), [1,m] or [m,n], with its error texts), drawing
        from the command context's generator: index-seeded inside apply."""
        if self._current is None:
            return False, b"math.random can only be called inside a script invocation"
        if any(type(a) not in (int, float) for a in args):
            return False, b"bad argument #1 to 'random' (number expected)"
        value = self._current.ctx.random().random()
        if not args:
            return True, value
        if len(args) == 1:
            low, high = 1, int(args[0])
        elif len(args) == 2:
            low, high = int(args[0]), int(args[1])
        else:
            return False, b"wrong number of arguments"
        if low > high:
            return False, b"bad argument #%d to 'random' (interval is empty)" % len(args)
        return True, low + int(value * (high - low + 1))

    def _randomseed(self, *args: Any) -> None:
        if self._current is None or not args:
            return
        seed = args[0]
        if type(seed) is bytes:  # Lua takes a numeric string as its number
            try:
                seed = float(seed)
            except ValueError:
                return
        if type(seed) in (int, float):
            self._current.ctx.random().seed(int(seed))

    # -- conversions ----------------------------------------------------------------------

    def to_lua(self, reply: Reply, resp: int) -> Any:
        """A command's reply as Redis hands it to Lua (the rules of redisProtocolToLuaType
        for the script's protocol), through its RESP encoding so every reply type converts
        as its wire form does."""
        kind = type(reply)
        if kind is bytes or kind is int:
            return reply
        if reply is None:
            return False if resp == 2 else None
        if kind is Status:
            return self._table_from({b"ok": reply.text.encode()})  # type: ignore[union-attr]
        if kind is list and all(type(item) is bytes for item in reply):  # type: ignore[union-attr]
            return self._table_from(reply)
        data = encode(reply, resp)
        value, _ = self._parse(data, 0, resp)
        return value

    def _parse(self, data: bytes, pos: int, resp: int) -> tuple[Any, int]:
        kind = data[pos : pos + 1]
        end = data.index(b"\r\n", pos)
        line = data[pos + 1 : end]
        pos = end + 2
        if kind == b"$":
            n = int(line)
            if n < 0:
                return False, pos
            return data[pos : pos + n], pos + n + 2
        if kind == b":":
            return int(line), pos
        if kind == b"+":
            return self._table_from({b"ok": line}), pos
        if kind == b"-":
            return self._table_from({b"err": line}), pos
        if kind == b"*" or kind == b"~" or kind == b"%" or kind == b">":
            n = int(line)
            if n < 0:
                return False, pos
            items = []
            for _ in range(n * 2 if kind == b"%" else n):
                item, pos = self._parse(data, pos, resp)
                items.append(item)
            if kind == b"%":
                inner = self.lua.table()
                for i in range(0, len(items), 2):
                    inner[items[i]] = items[i + 1]
                return self._table_from({b"map": inner}), pos
            if kind == b"~":
                inner = self.lua.table()
                for item in items:
                    inner[item] = True
                return self._table_from({b"set": inner}), pos
            table = self.lua.table()
            for i, item in enumerate(items, 1):
                table[i] = item
            return table, pos
        if kind == b"_":
            return None, pos
        if kind == b"#":
            return line == b"t", pos
        if kind == b",":
            return self._table_from({b"double": float(line)}), pos
        if kind == b"(":
            return self._table_from({b"big_number": line}), pos
        if kind == b"=":
            n = int(line)
            text = data[pos : pos + n]
            verbatim = self._table_from({b"format": text[:3], b"string": text[4:]})
            return self._table_from({b"verbatim_string": verbatim}), pos + n + 2
        raise ValueError(f"unexpected reply type {kind!r}")

    def to_reply(self, value: Any, resp: int, depth: int = 0) -> Reply:
        """A script's return value as a reply (Redis's luaReplyToRedisReply). Tables are
        read raw (a metatable's __index never runs here), and nesting stops at
        REPLY_DEPTH_MAX with Redis's "reached lua stack limit" error in the innermost place
        (a table that holds itself)."""
        kind = type(value)
        if kind is bytes:
            return bytes(value)
        if kind is bool:
            if resp == 2:
                return 1 if value else None
            return bool(value)
        if kind is int or kind is float:
            return _to_long_long(value)
        if lua51.lua_type(value) != "table":
            return None
        if depth >= REPLY_DEPTH_MAX:
            return Error("ERR reached lua stack limit")
        get = self._rawget
        err = get(value, b"err")
        if type(err) is bytes:
            return Error(_text(err))
        ok = get(value, b"ok")
        if type(ok) is bytes:
            return Status(_text(ok).replace("\r", " ").replace("\n", " "))
        double = get(value, b"double")
        if type(double) in (int, float):
            return float(double)
        big = get(value, b"big_number")
        if type(big) is bytes:
            try:
                return BigNumber(int(big))
            except ValueError:
                return big
        verbatim = get(value, b"verbatim_string")
        if lua51.lua_type(verbatim) == "table":
            fmt, text = get(verbatim, b"format"), get(verbatim, b"string")
            if type(fmt) is bytes and type(text) is bytes and len(fmt) == 3:
                return Verbatim(text, _text(fmt))
        deeper = depth + 1
        mapping = get(value, b"map")
        if lua51.lua_type(mapping) == "table":
            return _LuaMap(
                [
                    (self.to_reply(k, resp, deeper), self.to_reply(v, resp, deeper))
                    for k, v in mapping.items()
                ]
            ).as_reply()
        members = get(value, b"set")
        if lua51.lua_type(members) == "table":
            return SetReply([self.to_reply(k, resp, deeper) for k in members.keys()])  # noqa: SIM118
        items: list[Reply] = []
        i = 1
        while True:
            item = get(value, i)
            if item is None:
                break
            items.append(self.to_reply(item, resp, deeper))
            i += 1
        return items


@dataclass
class _LuaMap:
    pairs: list[tuple[Reply, Reply]]

    def as_reply(self) -> Reply:
        result: dict[Any, Reply] = {}
        for key, value in self.pairs:
            result[_hashable(key)] = value
        return result


def _hashable(value: Reply) -> Any:
    if isinstance(value, list):
        return tuple(_hashable(v) for v in value)
    return value


def _to_long_long(value: float) -> int:
    """C's (long long) cast of a double as x86-64 does it: out of range and NaN give the
    smallest long long."""
    if value != value:
        return -(2**63)
    number = int(value)
    if not -(2**63) <= number < 2**63:
        return -(2**63)
    return number


def _text(value: Any) -> str:
    if isinstance(value, bytes):
        return value.decode("utf-8", "surrogateescape")
    return str(value)


def _error_text(msg: bytes) -> bytes:
    """redis.error_reply's message: one leading '-' dropped; the first word is the code, or
    "ERR" is added when there is no space; CR and LF trimmed from the ends."""
    if not msg.startswith(b"-"):
        msg = b"-" + msg
    code, space, rest = msg[1:].partition(b" ")
    if not space:
        return b"ERR " + code.strip(b"\r\n")
    return code + b" " + rest.strip(b"\r\n")


def _sha1hex(*args: Any) -> bytes:
    if len(args) != 1:
        raise CallError("ERR wrong number of arguments")
    data = args[0]
    if type(data) in (int, float):
        data = b"%.14g" % data
    elif type(data) is not bytes:
        data = b""
    return hashlib.sha1(data).hexdigest().encode()


def _log(*args: Any) -> None:
    if len(args) < 2:
        raise CallError("ERR redis.log() requires two arguments or more.")
    level = args[0]
    if type(level) not in (int, float):
        raise CallError("ERR First argument must be a number (log level).")
    if not 0 <= level <= 3:
        raise CallError("ERR Invalid debug level.")
    parts = [
        _text(a) if type(a) is bytes else f"{a:.14g}"
        for a in args[1:]
        if type(a) in (bytes, int, float)
    ]
    levels = (logging.DEBUG, logging.INFO, logging.INFO, logging.WARNING)
    log.log(levels[int(level)], "script: %s", " ".join(parts))


def _set_repl(*args: Any) -> None:
    if len(args) != 1:
        raise CallError("ERR redis.set_repl() requires two arguments.")
    flags = args[0]
    if type(flags) not in (int, float) or flags not in (0, 1, 2, 3):
        raise CallError(
            "ERR Invalid replication flags. Use REPL_AOF, REPL_REPLICA, REPL_ALL or REPL_NONE."
        )


def _error_reply(info: Any, name: str) -> Error:
    """The reply to a script that raised, as Redis 7.0 words it:
    "<err> script: <name>, on <source>:<line>."."""
    if lua51.lua_type(info) != "table":
        return Error(f"ERR Error running script (call to {name}): {_text(info)}")
    err = info[b"err"]
    message = _text(err) if isinstance(err, bytes) else "ERR unknown error"
    source, line = info[b"source"], info[b"line"]
    if source is not None and line is not None:
        message += f" script: {name}, on {_text(source)}:{int(line)}."
    return Error(message)


_BOOT_FN = "function(...)\n" + _BOOT + "\nend"


def _reads_this_time(spec: Command, argv: list[bytes]) -> bool:
    """A command Redis flags readonly that memlog logs only to let it wait (XREAD with
    BLOCK): a script's call never waits, so it is a read there."""
    return spec.local_when is not None and Flag.READONLY in spec.flags
