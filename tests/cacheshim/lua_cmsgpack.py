"""A random comparison of memlog's two cmsgpack libraries: the C one scripts use
(cacheshim/scripting/_lstr.c) and its Python twin (cacheshim/scripting/libs.py, for installs
without the C extensions). Random Lua values are packed by both (the bytes must be equal) and
random or damaged msgpack data is unpacked by both (the values or the errors must be equal)."""

from __future__ import annotations

import os
import random
from typing import Any

import pytest
from lupa import lua51  # type: ignore[import-untyped]

from cacheshim.scripting import libs
from cacheshim.scripting.engine import _counted_patterns

_COMPARE = r"""
function(path, py, source, data)
  local c = package.loadlib(path, "luaopen_memlog_cmsgpack")()
  local function show(v, depth)
    local kind = type(v)
    if kind == "string" then return string.format("%q", v) end
    if kind ~= "table" then return tostring(v) end
    if depth > 40 then return "..." end
    local keys = {}
    for k in pairs(v) do keys[#keys + 1] = k end
    table.sort(keys, function(a, b)
      if type(a) ~= type(b) then return type(a) < type(b) end
      return a < b
    end)
    local parts = {}
    for _, k in ipairs(keys) do
      parts[#parts + 1] = show(k, depth) .. "=" .. show(v[k], depth + 1)
    end
    return "{" .. table.concat(parts, ",") .. "}"
  end
  local function run(f, ...)
    local r = {pcall(f, ...)}
    local parts = {}
    for i = 1, table.maxn(r) do parts[#parts + 1] = show(r[i], 0) end
    return table.concat(parts, " | ")
  end
  if source then
    local values = {loadstring("return " .. source)()}
    local n = select("#", loadstring("return " .. source)())
    local ok, packed = pcall(c.pack, unpack(values, 1, n))
    return run(py.pack, unpack(values, 1, n)), run(c.pack, unpack(values, 1, n)),
           ok and packed or ""
  end
  return run(py.unpack, data) .. " / " .. run(py.unpack_limit, data, 2, 1) .. " / "
           .. run(py.unpack_one, data, 1),
         run(c.unpack, data) .. " / " .. run(c.unpack_limit, data, 2, 1) .. " / "
           .. run(c.unpack_one, data, 1)
end
"""

# Errors of the Python twin that are Python's own (a short float, deep recursion), where the
# C library answers with its own text: left out of the comparison.
_PYTHON_ONLY = (
    "struct.error",
    "RecursionError",
    "unpack requires",
    "maximum recursion",
    "too large to convert",
)


def _value(rng: random.Random, depth: int) -> str:
    if depth == 0 and rng.random() < 0.05:  # nested past lua-cmsgpack's 16 levels
        return "{" * 20 + "1" + "}" * 20
    kind = rng.randrange(10 if depth < 3 else 7)
    if kind == 0:
        return rng.choice(["nil", "true", "false"])
    if kind in (1, 2):
        return str(rng.choice([0, 1, 127, 128, 255, 256, 65535, 65536, 2**32, 2**40, -1, -32,
                               -33, -128, -129, -32768, -32769, -(2**31), -(2**31) - 1,
                               -(2**40), rng.randrange(-(10**6), 10**6)]))  # fmt: skip
    if kind == 3:
        return rng.choice(["0.5", "0.1", "-2.5", "1e300", "-1e-300", "3.25", "2^53", "2^63"])
    if kind in (4, 5, 6):
        n = rng.choice([0, 1, 5, 31, 32, 255, 256, 65535, 65536, 70000] if depth < 2 else [3])
        return f"string.rep('{rng.choice('ab')}', {n})"
    n = rng.choice([0, 1, 3, 15, 16, 17] if depth == 0 else [0, 1, 3])
    items = [_value(rng, depth + 1) for _ in range(n)]
    if kind == 7:
        return "{" + ", ".join(items) + "}"
    if kind == 8:
        return "{" + ", ".join(f"k{i}={v}" for i, v in enumerate(items)) + "}"
    keys = [rng.choice(["1", "2", "3", "5", "1.5", "-1", "0", "'x'", "true"]) for _ in items]
    return "{" + ", ".join(f"[{k}]={v}" for k, v in zip(keys, items, strict=True)) + "}"


def cmsgpack_fuzz(seed: int, cases: int) -> list[tuple[Any, ...]]:
    """The cases on which the two libraries disagree."""
    path = _counted_patterns()
    if path is None:
        if os.environ.get("MEMLOG_PURE_PYTHON") == "1":
            pytest.skip("installed with MEMLOG_PURE_PYTHON=1: no C extension")
        raise AssertionError("cacheshim.scripting._lstr is not built")
    lua = lua51.LuaRuntime(encoding=None, unpack_returned_tuples=True)
    py = libs.cmsgpack_table(lua)
    compare = lua.eval(_COMPARE)
    rng = random.Random(seed)
    bad: list[tuple[Any, ...]] = []
    for _ in range(cases):
        source = ", ".join(_value(rng, 0) for _ in range(rng.randint(1, 3)))
        python, c, packed = compare(path, py, source.encode(), None)
        if python != c:
            bad.append(("pack", source, python[:300], c[:300]))
        # Random data: packed values cut short or with bytes changed, and random bytes.
        if rng.random() < 0.5:
            data = bytes(rng.randrange(256) for _ in range(rng.randint(1, 40)))
        else:
            data = bytes(packed[: rng.randint(0, len(packed))])
        python, c = compare(path, py, None, data)
        if python != c and not any(word.encode() in python for word in _PYTHON_ONLY):
            bad.append(("unpack", data, python[:300], c[:300]))
    return bad
