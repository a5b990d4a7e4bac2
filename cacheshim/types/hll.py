"""Redis's HyperLogLog representation (hyperloglog.c), byte for byte.

An HLL is a string: a 16-byte header ("HYLL", the encoding byte, 3 unused bytes, the cached
cardinality as 8 little-endian bytes whose top bit set means "stale") and then 16384 6-bit
registers, either dense (12288 bytes, register i at bit 6*i, least significant bits first)
or sparse (run-length opcodes: ZERO 00xxxxxx for 1..64 zero registers, XZERO 01xxxxxx
xxxxxxxx for 1..16384, VAL 1vvvvvxx for 1..4 registers of value 1..32).

Everything here reproduces Redis's algorithms step by step where they decide bytes: the hash
(MurmurHash64A, seed 0xadc83b19), how a sparse opcode is split and when neighbours merge
(a scan of at most five opcodes), when a sparse HLL turns dense (a register above 32, or more
than hll-sparse-max-bytes), and the estimator (Ertl's, as Redis 5+ computes it in doubles).
So PFADD/PFMERGE leave the same bytes as redis-server and PFCOUNT answers the same numbers.

The sparse form is worked on as a list of opcodes with the first register each covers, so
finding a register is a bisection; a command parses the string once and writes it once.
"""

from __future__ import annotations

import math
import struct
from bisect import bisect_right
from collections.abc import Callable
from typing import Final

MAGIC: Final = b"HYLL"
HEADER_BYTES: Final = 16
REGISTERS: Final = 16384
P: Final = 14
Q: Final = 64 - P
DENSE_REGISTER_BYTES: Final = REGISTERS * 6 // 8
DENSE_BYTES: Final = HEADER_BYTES + DENSE_REGISTER_BYTES
DENSE, SPARSE = 0, 1
# hll-sparse-max-bytes: Redis's default, fixed here (a per-shim setting would let shims'
# representations differ).
SPARSE_BYTES_MAX: Final = 3000

_ZERO, _XZERO, _VAL = 0, 1, 2
_VAL_VALUE_MAX: Final = 32
_VAL_LEN_MAX: Final = 4
_ZERO_LEN_MAX: Final = 64
_XZERO_LEN_MAX: Final = 16384
_ALPHA_INF: Final = 0.721347520444481703680  # 0.5 / ln(2)

_M: Final = 0xC6A4A7935BD1E995
_MASK64: Final = 2**64 - 1
_SEED: Final = 0xADC83B19
_U64_LE: Final = struct.Struct("<Q")


class InvalidHll(Exception):
    """The string is an HLL by its header but its registers do not add up (INVALIDOBJ)."""


def murmur64a(data: bytes, seed: int = _SEED) -> int:
    """MurmurHash64A as Redis computes it on a little-endian machine."""
    size = len(data)
    h = (seed ^ (size * _M)) & _MASK64
    whole = size - (size & 7)
    for (k,) in _U64_LE.iter_unpack(data[:whole]):
        k = (k * _M) & _MASK64
        k ^= k >> 47
        k = (k * _M) & _MASK64
        h ^= k
        h = (h * _M) & _MASK64
    if size & 7:
        h ^= int.from_bytes(data[whole:], "little")
        h = (h * _M) & _MASK64
    h ^= h >> 47
    h = (h * _M) & _MASK64
    h ^= h >> 47
    return h


def pattern(element: bytes) -> tuple[int, int]:
    """hllPatLen: (register index, length of the 0...01 run after the index bits)."""
    h = murmur64a(element)
    index = h & (REGISTERS - 1)
    rest = (h >> P) | (1 << Q)
    return index, (rest & -rest).bit_length()


def is_hll(value: bytes) -> bool:
    """isHLLObjectOrReply's checks of the string itself."""
    if len(value) < HEADER_BYTES or value[:4] != MAGIC or value[4] > SPARSE:
        return False
    return value[4] != DENSE or len(value) == DENSE_BYTES


def empty() -> bytes:
    """createHLLObject: sparse, all registers zero (one XZERO), a valid cache of 0."""
    return MAGIC + bytes([SPARSE]) + bytes(11) + bytes([0x7F, 0xFF])


# -- dense registers: unpacked to one byte per register and back, in C (translate) ------------


def _table(fn: Callable[[int], int]) -> bytes:
    return bytes(fn(b) & 0xFF for b in range(256))


_LOW6: Final = _table(lambda b: b & 63)
_HIGH2: Final = _table(lambda b: b >> 6)
_LOW4_UP2: Final = _table(lambda b: (b & 15) << 2)
_HIGH4: Final = _table(lambda b: b >> 4)
_LOW2_UP4: Final = _table(lambda b: (b & 3) << 4)
_HIGH6: Final = _table(lambda b: b >> 2)
_UP6: Final = _table(lambda b: b << 6)
_DOWN2: Final = _table(lambda b: b >> 2)
_UP4: Final = _table(lambda b: b << 4)
_DOWN4: Final = _table(lambda b: b >> 4)
_UP2: Final = _table(lambda b: b << 2)


def _or(a: bytes, b: bytes) -> bytes:
    """Bytewise OR of two strings of one length whose set bits never overlap."""
    return (int.from_bytes(a, "big") | int.from_bytes(b, "big")).to_bytes(len(a), "big")


def unpack_dense(packed: bytes | bytearray) -> bytearray:
    """12288 packed bytes -> 16384 register values (one byte each)."""
    b0, b1, b2 = bytes(packed[0::3]), bytes(packed[1::3]), bytes(packed[2::3])
    out = bytearray(REGISTERS)
    out[0::4] = b0.translate(_LOW6)
    out[1::4] = _or(b0.translate(_HIGH2), b1.translate(_LOW4_UP2))
    out[2::4] = _or(b1.translate(_HIGH4), b2.translate(_LOW2_UP4))
    out[3::4] = b2.translate(_HIGH6)
    return out


def pack_dense(registers: bytes | bytearray) -> bytearray:
    """16384 register values (each below 64) -> 12288 packed bytes."""
    r0, r1 = bytes(registers[0::4]), bytes(registers[1::4])
    r2, r3 = bytes(registers[2::4]), bytes(registers[3::4])
    out = bytearray(DENSE_REGISTER_BYTES)
    out[0::3] = _or(r0, r1.translate(_UP6))
    out[1::3] = _or(r1.translate(_DOWN2), r2.translate(_UP4))
    out[2::3] = _or(r2.translate(_DOWN4), r3.translate(_UP2))
    return out


def _dense_set(packed: bytearray, index: int, count: int) -> int:
    """hllDenseSet on a buffer with one spare byte at the end: 1 if the register grew."""
    bit = index * 6
    byte, shift = bit >> 3, bit & 7
    old = ((packed[byte] >> shift) | (packed[byte + 1] << (8 - shift))) & 63
    if count <= old:
        return 0
    packed[byte] = (packed[byte] & ~(63 << shift) & 0xFF) | ((count << shift) & 0xFF)
    packed[byte + 1] = (packed[byte + 1] & ~(63 >> (8 - shift)) & 0xFF) | (count >> (8 - shift))
    return 1


# -- the estimator --------------------------------------------------------------------------


def _sigma(x: float) -> float:
    if x == 1.0:
        return math.inf
    y = 1.0
    z = x
    while True:
        x *= x
        previous = z
        z += x * y
        y += y
        if previous == z:
            return z


def _tau(x: float) -> float:
    if x in (0.0, 1.0):
        return 0.0
    y = 1.0
    z = 1 - x
    while True:
        x = math.sqrt(x)
        previous = z
        y *= 0.5
        z -= (1 - x) * (1 - x) * y
        if previous == z:
            return z / 3


def estimate(histogram: list[int]) -> int:
    """hllCount's estimate from the histogram of register values (64 slots)."""
    m = float(REGISTERS)
    z = m * _tau((m - histogram[Q + 1]) / m)
    for j in range(Q, 0, -1):
        z += histogram[j]
        z *= 0.5
    z += m * _sigma(histogram[0] / m)
    e = _ALPHA_INF * m * m / z
    whole = math.floor(e)
    return int(whole + 1 if e - whole >= 0.5 else whole)  # llroundl


_SINGLE_BYTES: Final = [bytes([v]) for v in range(64)]


def histogram_of(registers: bytes | bytearray) -> list[int]:
    """How many registers hold each value, for the values the estimator reads (0 to Q+1;
    a damaged dense HLL may hold up to 63, which Redis's estimator leaves out too)."""
    data = bytes(registers)
    return [data.count(_SINGLE_BYTES[v]) for v in range(Q + 2)] + [0] * (64 - Q - 2)


# -- one HLL being worked on ------------------------------------------------------------------


class Hll:
    """An HLL string parsed for a command: change it, then take `to_bytes()`.

    A sparse HLL is held as its opcodes, each one int (kind in bits 0-1, VAL's value in bits
    2-7, the run length from bit 8), beside the first register each covers."""

    __slots__ = ("_firsts", "_ops", "_sparse_bytes", "dense", "header")

    def __init__(self, value: bytes) -> None:
        """value must pass is_hll."""
        self.header = bytearray(value[:HEADER_BYTES])
        self.dense: bytearray | None = None
        self._ops: list[int] = []
        self._firsts: list[int] = []
        self._sparse_bytes = len(value)
        if value[4] == DENSE:
            self.dense = bytearray(value[HEADER_BYTES:])
            self.dense.append(0)  # the spare byte the last register's macro touches
        else:
            self._parse_sparse(value)

    def _parse_sparse(self, value: bytes) -> None:
        ops, firsts = self._ops, self._firsts
        covered = 0
        i, end = HEADER_BYTES, len(value)
        while i < end:
            op = value[i]
            firsts.append(covered)
            if op & 0x80:
                run = (op & 3) + 1
                ops.append(_VAL | ((((op >> 2) & 0x1F) + 1) << 2) | (run << 8))
                i += 1
            elif op & 0x40:
                low = value[i + 1] if i + 1 < end else 0  # C reads the terminating NUL
                run = (((op & 0x3F) << 8) | low) + 1
                ops.append(_XZERO | (run << 8))
                i += 2
            else:
                run = (op & 0x3F) + 1
                ops.append(_ZERO | (run << 8))
                i += 1
            covered += run

    @property
    def encoding(self) -> int:
        return DENSE if self.dense is not None else SPARSE

    # -- the cached cardinality ---------------------------------------------------------------

    def invalidate_cache(self) -> None:
        self.header[15] |= 0x80

    def cached(self) -> int | None:
        if self.header[15] & 0x80:
            return None
        return int.from_bytes(self.header[8:16], "little")

    # -- registers -------------------------------------------------------------------------

    def add(self, element: bytes) -> int:
        """hllAdd: 1 if a register grew; raises InvalidHll for a broken sparse HLL."""
        index, count = pattern(element)
        return self.set(index, count)

    def set(self, index: int, count: int) -> int:
        if self.dense is not None:
            return _dense_set(self.dense, index, count)
        return self._sparse_set(index, count)

    def _sparse_set(self, index: int, count: int) -> int:
        """hllSparseSet, opcode for opcode."""
        if count > _VAL_VALUE_MAX:
            return self._promote(index, count)
        ops, firsts = self._ops, self._firsts
        k = bisect_right(firsts, index) - 1
        if k < 0:
            raise InvalidHll
        op, first = ops[k], firsts[k]
        run = op >> 8
        if index >= first + run:
            raise InvalidHll
        kind = op & 3
        value = (op >> 2) & 63
        if kind == _VAL and value >= count:
            return 0
        if run == 1 and kind != _XZERO:  # a VAL or ZERO of one register: rewrite it
            ops[k] = _VAL | (count << 2) | 256
        else:  # split the opcode: up to three in its place
            new_ops: list[int] = []
            new_firsts: list[int] = []
            size = 1
            if index != first:
                new_ops.append(_run_op(kind, value, index - first))
                new_firsts.append(first)
                size += 2 if new_ops[-1] & 3 == _XZERO else 1
            new_ops.append(_VAL | (count << 2) | 256)
            new_firsts.append(index)
            last = first + run - 1
            if index != last:
                new_ops.append(_run_op(kind, value, last - index))
                new_firsts.append(index + 1)
                size += 2 if new_ops[-1] & 3 == _XZERO else 1
            delta = size - (2 if kind == _XZERO else 1)
            if delta > 0 and self._sparse_bytes + delta > SPARSE_BYTES_MAX:
                return self._promote(index, count)
            ops[k : k + 1] = new_ops
            firsts[k : k + 1] = new_firsts
            self._sparse_bytes += delta
        self._merge_neighbours(k - 1 if k > 0 else 0)
        self.header[15] |= 0x80
        return 1

    def _merge_neighbours(self, i: int) -> None:
        """Step 4 of hllSparseSet: from the opcode before the changed one, look at up to five
        opcodes, joining a VAL with the next when they hold one value in at most 4 registers."""
        ops, firsts = self._ops, self._firsts
        count = len(ops)
        scans = 5
        while i < count and scans:
            scans -= 1
            op = ops[i]
            if op & 3 == _VAL and i + 1 < count:
                after = ops[i + 1]
                joined = (op >> 8) + (after >> 8)
                if after & 3 == _VAL and not (op ^ after) & 0xFC and joined <= _VAL_LEN_MAX:
                    ops[i] = (op & 0xFF) | (joined << 8)
                    del ops[i + 1], firsts[i + 1]
                    count -= 1
                    self._sparse_bytes -= 1
                    continue
            i += 1

    def _promote(self, index: int, count: int) -> int:
        self.to_dense()
        assert self.dense is not None
        return _dense_set(self.dense, index, count)

    def to_dense(self) -> bool:
        """hllSparseToDense (the header is kept); False if it was dense already."""
        if self.dense is not None:
            return False
        registers = self.registers()
        self.dense = pack_dense(registers)
        self.dense.append(0)
        self.header[4] = DENSE
        self._ops, self._firsts = [], []
        return True

    def registers(self) -> bytearray:
        """All 16384 registers, one byte each; InvalidHll if the sparse runs do not cover
        exactly 16384 registers."""
        if self.dense is not None:
            return unpack_dense(self.dense[:DENSE_REGISTER_BYTES])
        out = bytearray(REGISTERS)
        at = 0
        for op in self._ops:
            run = op >> 8
            if at + run > REGISTERS:
                raise InvalidHll
            if op & 3 == _VAL:
                out[at : at + run] = bytes([(op >> 2) & 63]) * run
            at += run
        if at != REGISTERS:
            raise InvalidHll
        return out

    def histogram(self) -> list[int]:
        """The histogram of register values; InvalidHll for a broken sparse HLL."""
        if self.dense is not None:
            return histogram_of(self.registers())
        histogram = [0] * 64
        at = 0
        for op in self._ops:
            run = op >> 8
            if at + run > REGISTERS:
                raise InvalidHll
            at += run
            histogram[(op >> 2) & 63] += run
        if at != REGISTERS:
            raise InvalidHll
        return histogram

    def decode(self) -> bytes:
        """PFDEBUG DECODE's text of the sparse opcodes."""
        words = []
        for op in self._ops:
            kind, run = op & 3, op >> 8
            if kind == _VAL:
                words.append(b"v:%d,%d" % ((op >> 2) & 63, run))
            else:
                words.append(b"%s:%d" % (b"z" if kind == _ZERO else b"Z", run))
        return b" ".join(words)

    def to_bytes(self) -> bytes:
        if self.dense is not None:
            return bytes(self.header) + bytes(self.dense[:DENSE_REGISTER_BYTES])
        known = _OP_BYTES.get
        return bytes(self.header) + b"".join([known(op) or _xzero_bytes(op) for op in self._ops])


def _op_bytes(op: int) -> bytes:
    kind, run = op & 3, op >> 8
    if kind == _VAL:
        return bytes([0x80 | ((((op >> 2) & 63) - 1) << 2) | (run - 1)])
    if kind == _ZERO:
        return bytes([run - 1])
    return bytes([0x40 | ((run - 1) >> 8), (run - 1) & 0xFF])


def _xzero_bytes(op: int) -> bytes:
    """The bytes of an opcode not in _OP_BYTES yet (an XZERO), remembered there."""
    data = _OP_BYTES[op] = _op_bytes(op)
    return data


# The bytes of opcodes by their int form: every VAL and ZERO, and the XZEROs met so far
# (at most 16384 of them).
_OP_BYTES: Final = {
    **{_VAL | (v << 2) | (r << 8): _op_bytes(_VAL | (v << 2) | (r << 8))
       for v in range(1, _VAL_VALUE_MAX + 1) for r in range(1, _VAL_LEN_MAX + 1)},
    **{_ZERO | (r << 8): bytes([r - 1]) for r in range(1, _ZERO_LEN_MAX + 1)},
}  # fmt: skip


def _run_op(kind: int, value: int, run: int) -> int:
    """The opcode for part of a split run: VAL keeps its value, zeros become ZERO up to 64
    registers and XZERO beyond."""
    if kind == _VAL:
        return _VAL | (value << 2) | (run << 8)
    return (_XZERO if run > _ZERO_LEN_MAX else _ZERO) | (run << 8)


_LANES_HIGH: Final = int.from_bytes(b"\x80" * REGISTERS, "big")


def merge_max(into: bytearray, registers: bytes | bytearray) -> bytearray:
    """Registerwise maximum of two 16384-register arrays (values below 64), computed on
    the arrays as 8-bit lanes of two big integers: b + 128 - a keeps its lane's top bit
    exactly where b >= a, and never borrows from the next lane."""
    a = int.from_bytes(into, "big")
    b = int.from_bytes(registers, "big")
    b_wins = ((((b | _LANES_HIGH) - a) & _LANES_HIGH) >> 7) * 0xFF
    return bytearray(((b & b_wins) | (a & ~b_wins)).to_bytes(REGISTERS, "big"))
