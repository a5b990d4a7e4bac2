"""What a script at apply may observe is the same on every shim (issue 19): iteration orders
that would follow Lua's addresses are refused, and inputs that crashed or hung the process
(every shim at once, and again at every replay) end in an error instead. Replayed in fresh
interpreters with different hash seeds (and so different addresses)."""

from __future__ import annotations

import pytest

from cacheshim.apply import Applier
from cacheshim.commands import load_all
from cacheshim.protocol.resp import Error
from cacheshim.v1 import record_pb2
from tests.cacheshim.harness import replay

load_all()

# Scripts whose results would follow addresses, and what apply answers instead.
ADDRESS_ORDERED = [
    "local t = {} for i = 1, 50 do t[{}] = i end local s = '' "
    "for k, v in pairs(t) do s = s .. v .. ',' end return s",
    "local t = {} for i = 1, 20 do t[function() return i end] = i end "
    "local k, v = next(t) return v",
    "local t = {a = 1} t[coroutine.create(function() end)] = 2 for k in pairs(t) do end",
    "local t = setmetatable({}, {__mode = 'k'}) return 1",
]
# Orders that are the same everywhere: keys hashed by value.
VALUE_ORDERED = [
    "local t = {} for i = 1, 200 do t['k' .. i] = i; t[i * 1.5] = i end local s = '' "
    "for k, v in pairs(t) do s = s .. tostring(k) .. '=' .. v .. ',' end return s",
    "local t = {x = 1, y = 2, [true] = 3} local out = {} for k, v in pairs(t) do "
    "out[#out + 1] = tostring(k) end return out",
]


def apply_script(body: str) -> object:
    applier = Applier()
    record = record_pb2.Record(db=0, time_ms=1_700_000_000_000)
    record.commands.add(args=[b"EVAL", body.encode(), b"0"])
    return applier.apply(1, record.SerializeToString())[1]


@pytest.mark.parametrize("body", ADDRESS_ORDERED)
def test_orders_that_follow_addresses_are_refused_at_apply(body: str) -> None:
    reply = apply_script(body)
    assert isinstance(reply, Error), reply
    assert "memlog: " in reply.message and "docs/decisions/0004-lua.md" in reply.message


def test_every_process_agrees_on_each_script() -> None:
    log = [[["EVAL", body, "0"]] for body in ADDRESS_ORDERED + VALUE_ORDERED]
    first, second = replay(log, "1"), replay(log, "4242")
    assert first == second
    assert not any(reply.startswith(b"-") for reply, _ in first[len(ADDRESS_ORDERED) :])


@pytest.mark.parametrize(
    ("body", "error"),
    [
        ("return struct.pack('>i2147483647', 1)", "integral size 2147483647 is larger than"),
        ("return struct.pack('i99999999999', 1)", "integral size overflow"),
        ("return struct.pack('c2147483647', 'a')", "bad argument #3 to 'pack' (string too short)"),
        ("local function f() return 1 + f() end return f()", "stack overflow"),
        ("return string.format('%99999d', 1)", "invalid format"),
        ("local t = setmetatable({}, {__index = function(t, k) return t[k + 1] end}) "
         "return t[1]", "C stack overflow"),
        ("return cjson.decode(string.rep('[', 100000))", "too many nested data structures"),
        ("return unpack({}, 1, 2^31)", "too many results to unpack"),
    ],
)  # fmt: skip
def test_inputs_that_would_crash_or_hang_end_in_an_error(body: str, error: str) -> None:
    reply = apply_script(body)
    assert isinstance(reply, Error), reply
    assert error in reply.message
