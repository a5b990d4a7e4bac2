"""A random comparison of memlog's counted Lua pattern functions (cacheshim/scripting/_lstr.c)
with stock Lua 5.1.5's (lupa's, the same lstrlib as redis-server's): random patterns built
from every kind of item, random subjects, every function and argument form."""

from __future__ import annotations

import os
import random
from typing import Any

import pytest
from lupa import lua51  # type: ignore[import-untyped]

from cacheshim.scripting.engine import _counted_patterns

_COMPARE = r"""
function(path, kind, s, p, a3, a4)
  local open = package.loadlib(path, "luaopen_memlog_lstr")
  local ours = open(function() end, 1000)
  local function pack(...) return {n = select('#', ...), ...} end
  local function show(r)
    local parts = {}
    for i = 1, r.n do parts[#parts + 1] = type(r[i]) .. ":" .. tostring(r[i]) end
    return table.concat(parts, "|")
  end
  local function each(f)
    local out = {}
    local ok, e = pcall(function()
      for a, b in f(s, p) do
        out[#out + 1] = tostring(a) .. "," .. tostring(b)
        if #out > 200 then break end
      end
    end)
    return tostring(ok) .. tostring(e) .. table.concat(out, ";")
  end
  if kind == "gmatch" then return each(string.gmatch), each(ours.gmatch) end
  local repl = a3
  if a3 == "FN" then
    repl = function(x, y)
      if x == "b" then return nil end
      return "<" .. tostring(x) .. tostring(y) .. ">"
    end
  elseif a3 == "TBL" then
    repl = {a = "A", b = false, c = 3}
  end
  return show(pack(pcall(string[kind], s, p, repl, a4))),
         show(pack(pcall(ours[kind], s, p, repl, a4)))
end
"""

ATOMS = [
    "a",
    "b",
    ".",
    "%a",
    "%d",
    "%s",
    "%w",
    "%p",
    "%x",
    "%u",
    "%l",
    "%c",
    "%z",
    "%A",
    "%D",
    "%S",
    "[ab]",
    "[^a]",
    "[a-c]",
    "[%d_]",
    "[]",
    "[^]",
    "%",
    "(",
    ")",
    "()",
    "%1",
    "%2",
    "%b()",
    "%f[%w]",
    "%f",
    "^",
    "$",
    "-",
    "*",
    "+",
    "?",
    "%%",
    "[%]]",
    "%.",
    "%b",
    "[a-",
    "[%a-z]",
    "\0",
    "\xe9",
]
QUANTIFIERS = ["", "", "*", "+", "-", "?"]
CHARS = "aabbc(d)1 2_%.\0\xe9\n-"


def pattern_fuzz(seed: int, cases: int) -> list[tuple[Any, ...]]:
    """The cases on which the two disagree: (function, subject, pattern, arguments,
    stock result, counted result)."""
    path = _counted_patterns()
    if path is None:
        if os.environ.get("MEMLOG_PURE_PYTHON") == "1":
            pytest.skip("installed with MEMLOG_PURE_PYTHON=1: no C extension")
        raise AssertionError("cacheshim.scripting._lstr is not built")
    lua = lua51.LuaRuntime(encoding=None)
    compare = lua.eval(_COMPARE)
    rng = random.Random(seed)
    bad = []
    for _ in range(cases):
        pattern = "".join(
            rng.choice(ATOMS) + rng.choice(QUANTIFIERS) for _ in range(rng.randint(0, 5))
        )
        subject = "".join(rng.choice(CHARS) for _ in range(rng.randint(0, 12)))
        kind = rng.choice(["find", "match", "gmatch", "gsub"])
        a3: Any = None
        a4: Any = None
        if kind in ("find", "match"):
            a3 = rng.choice([None, 1, 2, -1, -3, 0, 20, -20])
            if kind == "find":
                a4 = rng.choice([None, True, False])
        elif kind == "gsub":
            a3 = rng.choice([b"x", b"%0%1", b"%2", b"%%", b"%", b"[%1]", b"FN", b"TBL", 5])
            a4 = rng.choice([None, 0, 1, 2])
        s, p = subject.encode("latin-1"), pattern.encode("latin-1")
        stock, ours = compare(path, kind.encode(), s, p, a3, a4)
        if stock != ours:
            bad.append((kind, s, p, a3, a4, stock, ours))
    return bad
