"""The C libraries Redis links into its Lua, which lupa's Lua 5.1 does not bundle: `bit`
(LuaBitOp), `cjson` (lua-cjson), `struct` (Roberto Ierusalimschy's struct) and `cmsgpack`
(lua-cmsgpack), written here in Python and exposed to Lua as tables of functions. Scripts
use the C twin of `cmsgpack` (cacheshim/scripting/_lstr.c, 5-7x faster on big tables,
compared with this one by tests/cacheshim/lua_cmsgpack.py) when the C extensions are built;
this one serves installs without them.

They follow the originals' behaviour for what scripts commonly use (checked against
redis-server 7.0.15 in tests/cacheshim/test_scripting.py); what they do not cover raises a
Lua error naming the gap rather than answering differently. Everything here is a pure
function of its arguments: nothing depends on the clock or on hash order (table order
comes from Lua's own `next`, the same on every shim for the same operations).
"""

from __future__ import annotations

import json
import math
import struct as pystruct
from collections.abc import Callable
from typing import Any

from lupa import lua51  # type: ignore[import-untyped]

_Lua = Any  # lupa.lua51.LuaRuntime (lupa ships no type hints)


class LibError(Exception):
    """An error a library function raises into Lua (as `error(message)`)."""


def _wrap(lua: _Lua, functions: dict[str, Any]) -> Any:
    """A Lua table of the functions, each raising a Lua error (with the text only) when the
    Python side raises LibError."""
    raw = lua.table_from({name.encode(): fn for name, fn in functions.items()})
    wrap = lua.eval(
        """function(raw)
          local t = {}
          for name, fn in pairs(raw) do
            t[name] = function(...)
              local r = {pcall(fn, ...)}
              if not r[1] then
                local e = r[2]
                if type(e) ~= "string" then e = tostring(e) end
                e = string.gsub(e, "^.-LibError: ", "")
                error(e, 2)
              end
              return unpack(r, 2, table.maxn(r))
            end
          end
          return t
        end"""
    )
    return wrap(raw)


def _lua_type_name(value: Any) -> str:
    """Lua's name for a value's type, as lupa hands the value to Python."""
    if value is None:
        return "nil"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, bytes):
        return "string"
    return str(lua51.lua_type(value) or "userdata")


def _is_table(value: Any) -> bool:
    return bool(lua51.lua_type(value) == "table")


# -- bit (LuaBitOp): 32-bit operations on numbers, results as signed 32-bit ----------------


def _tobit(value: Any) -> int:
    if type(value) not in (int, float):
        raise LibError("bad argument #1 to 'tobit' (number expected)")
    number = int(math.fmod(value, 2**32)) if isinstance(value, float) else value
    number &= 0xFFFFFFFF
    return number - 2**32 if number >= 2**31 else number


def bit_table(lua: _Lua) -> Any:
    def band(*args: Any) -> int:
        result = -1
        for a in args:
            result &= _tobit(a)
        return _tobit(result)

    def bor(*args: Any) -> int:
        result = 0
        for a in args:
            result |= _tobit(a)
        return _tobit(result)

    def bxor(*args: Any) -> int:
        result = 0
        for a in args:
            result ^= _tobit(a)
        return _tobit(result)

    def tohex(x: Any, n: Any = 8) -> bytes:
        value, digits = _tobit(x) & 0xFFFFFFFF, int(n)
        upper = digits < 0
        digits = min(abs(digits), 8)
        text = f"{value & ((1 << (4 * digits)) - 1):0{digits}x}"
        return (text.upper() if upper else text).encode()

    def rol(x: Any, n: Any) -> int:
        value, shift = _tobit(x) & 0xFFFFFFFF, int(n) & 31
        return _tobit((value << shift) | (value >> (32 - shift)))

    def ror(x: Any, n: Any) -> int:
        value, shift = _tobit(x) & 0xFFFFFFFF, int(n) & 31
        return _tobit((value >> shift) | (value << (32 - shift)))

    def bswap(x: Any) -> int:
        return _tobit(int.from_bytes((_tobit(x) & 0xFFFFFFFF).to_bytes(4, "little"), "big"))

    return _wrap(
        lua,
        {
            "tobit": _tobit,
            "bnot": lambda x: _tobit(~_tobit(x)),
            "band": band,
            "bor": bor,
            "bxor": bxor,
            "lshift": lambda x, n: _tobit(_tobit(x) << (int(n) & 31)),
            "rshift": lambda x, n: _tobit((_tobit(x) & 0xFFFFFFFF) >> (int(n) & 31)),
            "arshift": lambda x, n: _tobit(_tobit(x) >> (int(n) & 31)),
            "rol": rol,
            "ror": ror,
            "bswap": bswap,
            "tohex": tohex,
        },
    )


# -- cjson -------------------------------------------------------------------------------


def _lua_number_text(value: float | int) -> str:
    """Numbers as lua-cjson writes them: "%.14g"."""
    if isinstance(value, float) and (math.isinf(value) or math.isnan(value)):
        raise LibError("Cannot serialise number: must not be NaN or Inf")
    return f"{value:.14g}"


def _array_length(table: Any) -> int | None:
    """The length of a table that is an array (keys 1..n, all positive integers), or None."""
    count, largest = 0, 0
    for key in table.keys():  # noqa: SIM118
        if type(key) not in (int, float) or key < 1 or key != int(key):
            return None
        count += 1
        largest = max(largest, int(key))
    if largest > count * 2 and largest > 10:  # lua-cjson's excessively sparse arrays
        raise LibError("Cannot serialise table: excessively sparse array")
    return largest


CJSON_DEPTH_DEFAULT = 1000


def cjson_table(lua: _Lua) -> tuple[Any, Callable[[], None]]:
    """The cjson table, and a function that puts its settings back to their defaults. The
    engine calls it before every script: in Redis the settings outlive the script that set
    them, here they must not (a read-only script runs on one shim only)."""
    null = lua.eval("setmetatable({}, {__tostring = function() return 'null' end})")
    settings: dict[str, Any] = {}
    changed = [True]  # whether a script called a setter since the last reset

    def reset() -> None:
        if changed[0]:  # (nearly every script changes nothing: one test then)
            settings.update(
                encode_depth=CJSON_DEPTH_DEFAULT, decode_depth=CJSON_DEPTH_DEFAULT,
                encode_invalid=False, decode_invalid=False,
            )  # fmt: skip
            changed[0] = False

    reset()

    def enc_string(data: bytes) -> str:
        out = ['"']
        for byte in data:
            ch = chr(byte)
            if ch == '"':
                out.append('\\"')
            elif ch == "\\":
                out.append("\\\\")
            elif ch == "/":
                out.append("\\/")
            elif ch == "\n":
                out.append("\\n")
            elif ch == "\r":
                out.append("\\r")
            elif ch == "\t":
                out.append("\\t")
            elif ch == "\b":
                out.append("\\b")
            elif ch == "\f":
                out.append("\\f")
            elif byte < 0x20 or byte == 0x7F:
                out.append(f"\\u{byte:04x}")
            else:
                out.append(ch)
        out.append('"')
        return "".join(out)

    def enc(value: Any, depth: int) -> str:
        kind = type(value)
        if value is None:
            return "null"
        if kind is bool:
            return "true" if value else "false"
        if kind is int or kind is float:
            if isinstance(value, float) and not math.isfinite(value) and settings["encode_invalid"]:
                return "nan" if value != value else ("inf" if value > 0 else "-inf")
            return _lua_number_text(value)
        if kind is bytes:
            return enc_string(value)
        if _is_table(value):
            if value == null:
                return "null"
            if depth >= settings["encode_depth"]:  # depth counts the tables around this one
                raise LibError(f"Cannot serialise, excessive nesting ({depth + 1})")
            length = _array_length(value)
            if length is not None and (length > 0 or not list(value.keys())):
                if length == 0:
                    return "{}"
                return "[" + ",".join(enc(value[i], depth + 1) for i in range(1, length + 1)) + "]"
            parts = []
            for key, item in value.items():
                if type(key) is bytes:
                    name = enc_string(key)
                elif type(key) in (int, float):
                    name = '"' + _lua_number_text(key) + '"'
                else:
                    raise LibError(
                        f"Cannot serialise {_lua_type_name(key)}: "
                        "table key must be a number or string"
                    )
                parts.append(name + ":" + enc(item, depth + 1))
            return "{" + ",".join(parts) + "}"
        raise LibError(f"Cannot serialise {lua51.lua_type(value)}: type not supported")

    def encode(*args: Any) -> bytes:
        if len(args) != 1:
            raise LibError("bad argument #1 to 'encode' (expected 1 argument)")
        text = enc(args[0], 0)
        return text.encode("latin-1")

    def to_lua(value: Any) -> Any:
        if value is None:
            return null
        if isinstance(value, str):
            return value.encode("utf-8", "surrogatepass")
        if isinstance(value, bool | int | float):
            return value
        if isinstance(value, list):
            table = lua.table()
            for i, item in enumerate(value, 1):
                table[i] = to_lua(item)
            return table
        table = lua.table()
        for key, item in value.items():
            table[key.encode("utf-8", "surrogatepass")] = to_lua(item)
        return table

    def decode(*args: Any) -> Any:
        if len(args) != 1 or type(args[0]) is not bytes:
            raise LibError("bad argument #1 to 'decode' (string expected)")
        text = args[0].decode("utf-8", "surrogateescape")
        level = deepest = 0
        for position, char in enumerate(text, 1):  # (strings holding brackets count too: a
            if char in "[{":  # bound, not a parser)
                level += 1
                if level > settings["decode_depth"]:
                    raise LibError(
                        f"Found too many nested data structures ({level}) at character {position}"
                    )
                deepest = max(deepest, level)
            elif char in "]}":
                level -= 1
        try:
            parsed = json.loads(text, parse_int=int)
        except (ValueError, RecursionError) as exc:
            raise LibError(
                f"Expected value but found invalid token at character {getattr(exc, 'pos', 0) + 1}"
            ) from None
        return to_lua(parsed)

    def setter(name: str, kind: type) -> Callable[..., Any]:
        def configure(*args: Any) -> Any:
            if args and isinstance(args[0], kind):
                settings[name] = kind(args[0])
                changed[0] = True
            return settings[name]

        return configure

    table = _wrap(
        lua,
        {
            "encode": encode,
            "decode": decode,
            "encode_max_depth": setter("encode_depth", int),
            "decode_max_depth": setter("decode_depth", int),
            "encode_invalid_numbers": setter("encode_invalid", bool),
            "decode_invalid_numbers": setter("decode_invalid", bool),
        },
    )
    table[b"null"] = null
    for name in ("encode_keep_buffer", "encode_number_precision", "encode_sparse_array"):
        table[name.encode()] = lua.eval("function() end")
    return table, reset


# -- struct --------------------------------------------------------------------------------


def _struct_items(fmt: bytes) -> list[tuple[str, int]]:
    """The format as (code, size) items; endianness marks and '!' included."""
    items: list[tuple[str, int]] = []
    i = 0
    while i < len(fmt):
        code = chr(fmt[i])
        i += 1
        digits = b""
        while i < len(fmt) and chr(fmt[i]).isdigit():
            digits += fmt[i : i + 1]
            i += 1
        size = int(digits) if digits else -1
        if size > 2**31 - 1:  # (as lua_struct: past INT_MAX)
            raise LibError("integral size overflow")
        if code.isspace():
            continue
        if code in "iI" and size > STRUCT_INT_BYTES_MAX:
            raise LibError(f"integral size {size} is larger than limit of {STRUCT_INT_BYTES_MAX}")
        items.append((code, size))
    return items


# lua_struct's largest integer ('i32'): a bigger one would make pack allocate without bound.
STRUCT_INT_BYTES_MAX = 32


_INT_SIZES = {"b": 1, "B": 1, "h": 2, "H": 2, "l": 8, "L": 8, "T": 8, "i": 4, "I": 4}


def struct_table(lua: _Lua) -> Any:
    def pack(fmt: Any, *values: Any) -> bytes:
        if type(fmt) is not bytes:
            raise LibError("bad argument #1 to 'pack' (string expected)")
        out = bytearray()
        little = True
        args = list(values)
        for code, size in _struct_items(fmt):
            if code in "<>=!":
                little = code != ">" if code != "=" else True
                continue
            if code == "x":
                out += b"\0"
                continue
            if not args:
                raise LibError("bad argument to 'pack' (number expected, got no value)")
            value = args.pop(0)
            if code in _INT_SIZES:
                width = size if code in "iI" and size > 0 else _INT_SIZES[code]
                number = int(value) & ((1 << (8 * width)) - 1)
                out += number.to_bytes(width, "little" if little else "big")
            elif code in "fd":
                out += pystruct.pack(("<" if little else ">") + code, float(value))
            elif code == "s":
                out += bytes(value) + b"\0"
            elif code == "c":
                data = bytes(value) if type(value) is bytes else str(value).encode()
                if size <= 0:
                    out += data
                elif size > len(data):  # lua_struct refuses it (and never pads)
                    raise LibError(
                        f"bad argument #{len(values) - len(args) + 2} to 'pack' (string too short)"
                    )
                else:
                    out += data[:size]
            else:
                raise LibError(f"invalid format option '{code}'")
        return bytes(out)

    def unpack(fmt: Any, data: Any, init: Any = 1) -> tuple[Any, ...]:
        if type(fmt) is not bytes or type(data) is not bytes:
            raise LibError("bad argument #2 to 'unpack' (string expected)")
        pos = int(init) - 1
        little = True
        results: list[Any] = []
        for code, size in _struct_items(fmt):
            if code in "<>=!":
                little = code != ">" if code != "=" else True
                continue
            if code == "x":
                pos += 1
                continue
            if code in _INT_SIZES:
                width = size if code in "iI" and size > 0 else _INT_SIZES[code]
                if pos + width > len(data):
                    raise LibError("bad argument #2 to 'unpack' (data string too short)")
                number = int.from_bytes(data[pos : pos + width], "little" if little else "big")
                if code.islower() and number >= 1 << (8 * width - 1):
                    number -= 1 << (8 * width)
                results.append(number)
                pos += width
            elif code in "fd":
                width = 4 if code == "f" else 8
                if pos + width > len(data):
                    raise LibError("bad argument #2 to 'unpack' (data string too short)")
                results.append(
                    pystruct.unpack(("<" if little else ">") + code, data[pos : pos + width])[0]
                )
                pos += width
            elif code == "s":
                end = data.find(b"\0", pos)
                if end < 0:
                    raise LibError("unfinished string in data")
                results.append(data[pos:end])
                pos = end + 1
            elif code == "c":
                width = size if size > 0 else int(results.pop()) if results else 0
                if pos + width > len(data):
                    raise LibError("bad argument #2 to 'unpack' (data string too short)")
                results.append(data[pos : pos + width])
                pos += width
            else:
                raise LibError(f"invalid format option '{code}'")
        return (*results, pos + 1)

    def size(fmt: Any) -> int:
        total = 0
        for code, width in _struct_items(bytes(fmt)):
            if code in _INT_SIZES:
                total += width if code in "iI" and width > 0 else _INT_SIZES[code]
            elif code in "fd":
                total += 4 if code == "f" else 8
            elif code == "x":
                total += 1
            elif code == "c" and width > 0:
                total += width
            elif code in "sc":
                raise LibError("options 'c0' - 's' have undefined sizes")
        return total

    return _wrap(lua, {"pack": pack, "unpack": unpack, "size": size})


# -- cmsgpack ------------------------------------------------------------------------------


def _fits_float32(value: float) -> bool:
    """Whether a double survives a round trip through a C float (the infinities do; NaN
    and a value beyond a float's range do not)."""
    try:
        return bool(pystruct.unpack(">f", pystruct.pack(">f", value))[0] == value)
    except OverflowError:
        return False


def cmsgpack_table(lua: _Lua) -> Any:
    def enc(value: Any, out: bytearray, depth: int) -> None:
        kind = type(value)
        if value is None or (depth >= 16 and _is_table(value)):  # lua-cmsgpack's nesting
            out += b"\xc0"
        elif kind is bool:
            out += b"\xc3" if value else b"\xc2"
        elif kind is int or (kind is float and -(2**63) <= value < 2**63 and value == int(value)):
            enc_int(int(value), out)
        elif kind is float:
            if _fits_float32(value):
                out += b"\xca" + pystruct.pack(">f", value)
            else:
                out += b"\xcb" + pystruct.pack(">d", value)
        elif kind is bytes:
            n = len(value)
            if n < 32:
                out.append(0xA0 | n)
            elif n < 256:
                out += b"\xd9" + bytes([n])
            elif n < 65536:
                out += b"\xda" + n.to_bytes(2, "big")
            else:
                out += b"\xdb" + n.to_bytes(4, "big")
            out += value
        elif _is_table(value):
            keys = list(value.keys())
            n = len(keys)
            is_array = all(type(k) in (int, float) and k == int(k) and 1 <= k <= n for k in keys)
            if is_array:
                header(out, n, 0x90, b"\xdc", b"\xdd")
                for i in range(1, n + 1):
                    enc(value[i], out, depth + 1)
            else:
                header(out, n, 0x80, b"\xde", b"\xdf")
                for key in keys:
                    enc(key, out, depth + 1)
                    enc(value[key], out, depth + 1)
        else:
            out += b"\xc0"

    def header(out: bytearray, n: int, fix: int, b16: bytes, b32: bytes) -> None:
        if n < 16:
            out.append(fix | n)
        elif n < 65536:
            out += b16 + n.to_bytes(2, "big")
        else:
            out += b32 + n.to_bytes(4, "big")

    def enc_int(n: int, out: bytearray) -> None:
        if 0 <= n < 128:
            out.append(n)
        elif -32 <= n < 0:
            out.append(n & 0xFF)
        elif n >= 0:
            for code, width in ((b"\xcc", 1), (b"\xcd", 2), (b"\xce", 4), (b"\xcf", 8)):
                if n < 1 << (8 * width):
                    out += code + n.to_bytes(width, "big")
                    return
        else:
            for code, width in ((b"\xd0", 1), (b"\xd1", 2), (b"\xd2", 4), (b"\xd3", 8)):
                if n >= -(1 << (8 * width - 1)):
                    out += code + n.to_bytes(width, "big", signed=True)
                    return

    def pack(*values: Any) -> bytes:
        if not values:
            raise LibError("bad argument #0 to 'pack' (MessagePack pack needs input.)")
        out = bytearray()
        for value in values:
            enc(value, out, 0)
        return bytes(out)

    def dec(data: bytes, pos: int) -> tuple[Any, int]:
        if pos >= len(data):
            raise LibError("Missing bytes in input.")
        b = data[pos]
        pos += 1
        if b < 0x80:
            return b, pos
        if b >= 0xE0:
            return b - 256, pos
        if 0xA0 <= b < 0xC0:
            n = b & 0x1F
            return data[pos : pos + n], pos + n
        if 0x90 <= b < 0xA0:
            return dec_array(data, pos, b & 0x0F)
        if 0x80 <= b < 0x90:
            return dec_map(data, pos, b & 0x0F)
        simple = {0xC0: None, 0xC2: False, 0xC3: True}
        if b in simple:
            return simple[b], pos
        sizes = {0xCC: 1, 0xCD: 2, 0xCE: 4, 0xCF: 8}
        if b in sizes:
            w = sizes[b]
            return int.from_bytes(data[pos : pos + w], "big"), pos + w
        ssizes = {0xD0: 1, 0xD1: 2, 0xD2: 4, 0xD3: 8}
        if b in ssizes:
            w = ssizes[b]
            return int.from_bytes(data[pos : pos + w], "big", signed=True), pos + w
        if b == 0xCA:
            return pystruct.unpack(">f", data[pos : pos + 4])[0], pos + 4
        if b == 0xCB:
            return pystruct.unpack(">d", data[pos : pos + 8])[0], pos + 8
        strs = {0xD9: 1, 0xDA: 2, 0xDB: 4, 0xC4: 1, 0xC5: 2, 0xC6: 4}
        if b in strs:
            w = strs[b]
            n = int.from_bytes(data[pos : pos + w], "big")
            pos += w
            return data[pos : pos + n], pos + n
        if b in (0xDC, 0xDD):
            w = 2 if b == 0xDC else 4
            return dec_array(data, pos + w, int.from_bytes(data[pos : pos + w], "big"))
        if b in (0xDE, 0xDF):
            w = 2 if b == 0xDE else 4
            return dec_map(data, pos + w, int.from_bytes(data[pos : pos + w], "big"))
        raise LibError("Bad data format in input.")

    def dec_array(data: bytes, pos: int, n: int) -> tuple[Any, int]:
        table = lua.table()
        for i in range(1, n + 1):
            table[i], pos = dec(data, pos)
        return table, pos

    def dec_map(data: bytes, pos: int, n: int) -> tuple[Any, int]:
        table = lua.table()
        for _ in range(n):
            key, pos = dec(data, pos)
            value, pos = dec(data, pos)
            if key is not None:
                table[key] = value
        return table, pos

    def unpack(*args: Any) -> tuple[Any, ...]:
        if len(args) != 1 or type(args[0]) is not bytes:
            raise LibError("bad argument #1 to 'unpack' (string expected)")
        data, pos, values = args[0], 0, []
        while pos < len(data):
            value, pos = dec(data, pos)
            values.append(value)
        return tuple(values)

    def unpack_limit(data: Any, limit: Any = 0, offset: Any = 0) -> tuple[Any, ...]:
        """Up to `limit` objects (0: all) from byte `offset`: the offset of the next one
        (-1 at the end of the data), then the objects."""
        if type(data) is not bytes:
            raise LibError("bad argument #1 to 'unpack_limit' (string expected)")
        pos = int(offset)
        values: list[Any] = []
        if pos < 0 or int(limit) < 0:  # (lua-cmsgpack names the length as the limit)
            raise LibError(
                f"Invalid request to unpack with offset of {pos} and limit of {len(data)}."
            )
        if pos > len(data):
            raise LibError(f"Start offset {pos} greater than input length {len(data)}.")
        while pos < len(data) and (int(limit) <= 0 or len(values) < int(limit)):
            value, pos = dec(data, pos)
            values.append(value)
        return (pos if pos < len(data) else -1, *values)

    def unpack_one(data: Any, offset: Any = 0) -> tuple[Any, ...]:
        return unpack_limit(data, 1, offset)

    return _wrap(
        lua,
        {"pack": pack, "unpack": unpack, "unpack_one": unpack_one, "unpack_limit": unpack_limit},
    )
