"""The x87 80-bit ``long double`` of GCC on x86-64, exactly, for INCRBYFLOAT.

Redis parses both operands of INCRBYFLOAT with ``strtold``, adds them in ``long double`` and
prints the sum with ``%.17Lf`` minus trailing zeros (util.c ``string2ld`` and ``ld2string``
in ``LD_STR_HUMAN`` mode). Python floats are 64-bit doubles and would disagree in the last
digits (``12345678.123456789`` prints as ``12345678.12345678899964696`` in Redis), so this
module does the same arithmetic on exact rationals and rounds the way the hardware does:

- a finite value is a :class:`~fractions.Fraction` ``m * 2**q`` with a 64-bit significand
  ``m``; ``q >= -16445`` (subnormals below 2**-16382); anything from 2**16384 up is infinite;
- every operation rounds its exact result to nearest, ties to even (the x87 default);
- printing rounds the exact binary value to 17 decimals, ties to even, as glibc's printf.

This is platform-independent: the shim prints what Redis on x86-64 prints, wherever it runs.
"""

from __future__ import annotations

import re
from fractions import Fraction
from typing import Final

SIGNIFICAND_BITS: Final = 64
# The exponent of the least significant bit of the smallest subnormal, 2**-16445.
LSB_EXPONENT_MIN: Final = -16445
# The first power of two that no longer fits (the largest finite value is just below it).
OVERFLOW_EXPONENT: Final = 16384
# util.c MAX_LONG_DOUBLE_CHARS: string2ld refuses strings this long or longer.
TEXT_BYTES_MAX: Final = 5 * 1024
# Printing precision of ld2string's LD_STR_HUMAN mode ("%.17Lf").
HUMAN_DECIMALS: Final = 17

_DECIMAL: Final = re.compile(rb"([+-]?)(\d*)(?:\.(\d*))?(?:[eE]([+-]?\d+))?")
_HEX: Final = re.compile(rb"([+-]?)0[xX]([0-9a-fA-F]*)(?:\.([0-9a-fA-F]*))?(?:[pP]([+-]?\d+))?")
_INFINITY: Final = re.compile(rb"([+-]?)(?:inf|infinity)", re.IGNORECASE)

# A long double: an exact finite value, or +/-infinity as a float.
LongDouble = Fraction | float


class Overflow(Exception):
    """The exact result is too large for a long double (strtold's ERANGE with HUGE_VAL)."""


class Underflow(Exception):
    """A nonzero exact value rounded to zero (strtold's ERANGE with a zero result)."""


def round_to_long_double(exact: Fraction) -> Fraction:
    """The long double nearest to exact (ties to even); raises Overflow or Underflow."""
    if exact == 0:
        return Fraction(0)
    negative = exact < 0
    magnitude = -exact if negative else exact
    num, den = magnitude.numerator, magnitude.denominator
    # exponent e with 2**e <= magnitude < 2**(e+1)
    e = num.bit_length() - den.bit_length()
    if (num << max(0, -e)) < (den << max(0, e)):
        e -= 1
    if e >= OVERFLOW_EXPONENT:
        raise Overflow
    lsb = max(e - (SIGNIFICAND_BITS - 1), LSB_EXPONENT_MIN)
    if lsb < 0:
        num <<= -lsb
    else:
        den <<= lsb
    significand, remainder = divmod(num, den)
    twice = 2 * remainder
    if twice > den or (twice == den and significand & 1):
        significand += 1
    if significand == 0:
        raise Underflow
    value = Fraction(significand << lsb) if lsb >= 0 else Fraction(significand, 1 << -lsb)
    if value >= Fraction(1 << OVERFLOW_EXPONENT):
        raise Overflow
    return -value if negative else value


def parse(text: bytes) -> LongDouble | None:
    """What Redis's ``string2ld`` makes of text, or None where it refuses it.

    strtold's grammar (decimal, hexadecimal with a binary exponent, ``inf``/``infinity``)
    without leading blanks or trailing bytes; NaN, overflow and underflow to zero refused.
    """
    if not text or len(text) >= TEXT_BYTES_MAX:
        return None
    infinity = _INFINITY.fullmatch(text)
    if infinity is not None:
        return float("-inf") if infinity.group(1) == b"-" else float("inf")
    hexadecimal = _HEX.fullmatch(text)
    try:
        if hexadecimal is not None:
            return _parse_hex(*hexadecimal.groups())
        decimal = _DECIMAL.fullmatch(text)
        if decimal is not None:
            return _parse_decimal(*decimal.groups())
    except (Overflow, Underflow):
        return None
    return None


def _parse_decimal(
    sign: bytes, whole: bytes, fraction: bytes | None, exponent: bytes | None
) -> Fraction | None:
    fraction = fraction or b""
    digits = (whole + fraction).lstrip(b"0")
    if not whole and not fraction:
        return None  # no digit at all ("", ".", "e5")
    if not digits:
        return Fraction(0)
    exp10 = (int(exponent) if exponent else 0) - len(fraction)
    # Far outside the long double range: no need to build the huge exact value.
    magnitude10 = exp10 + len(digits)
    if magnitude10 > 4940:
        raise Overflow
    if magnitude10 < -4960:
        raise Underflow
    exact = Fraction(_int_from_decimal(digits)) * Fraction(10) ** exp10
    value = round_to_long_double(exact)
    return -value if sign == b"-" else value


def _parse_hex(
    sign: bytes, whole: bytes, fraction: bytes | None, exponent: bytes | None
) -> Fraction | None:
    fraction = fraction or b""
    if not whole and not fraction:
        return None  # "0x" alone: strtold reads the "0" and stops at the "x"
    digits = (whole + fraction).lstrip(b"0")
    if not digits:
        return Fraction(0)
    exp2 = (int(exponent) if exponent else 0) - 4 * len(fraction)
    magnitude2 = exp2 + 4 * len(digits)
    if magnitude2 > OVERFLOW_EXPONENT + 8:
        raise Overflow
    if magnitude2 < LSB_EXPONENT_MIN - 8:
        raise Underflow
    exact = Fraction(int(digits, 16)) * Fraction(2) ** exp2
    value = round_to_long_double(exact)
    return -value if sign == b"-" else value


def add(a: LongDouble, b: LongDouble) -> LongDouble:
    """a + b rounded to a long double; infinities (and their NaN) stay floats."""
    if isinstance(a, float):
        return a + b if isinstance(b, float) else a
    if isinstance(b, float):
        return b
    exact = a + b  # a multiple of 2**-16445 like both operands: never underflows
    try:
        return round_to_long_double(exact)
    except Overflow:
        return float("inf") if exact > 0 else float("-inf")


def format_human(value: Fraction) -> bytes:
    """``%.17Lf`` without trailing zeros (nor a trailing dot), ``-0`` as ``0``."""
    scaled = value * 10**HUMAN_DECIMALS
    units, remainder = divmod(scaled.numerator, scaled.denominator)
    twice = 2 * remainder
    if twice > scaled.denominator or (twice == scaled.denominator and units & 1):
        units += 1
    negative = units < 0
    whole, fraction = divmod(abs(units), 10**HUMAN_DECIMALS)
    text = f"{_decimal_of(whole)}.{fraction:0{HUMAN_DECIMALS}d}".rstrip("0").rstrip(".")
    if negative and text != "0":
        text = "-" + text
    return text.encode("ascii")


# Python refuses decimal conversions of ints beyond 4300 digits (sys.int_info); a long
# double has up to 4933 integer digits and its text up to 5119, so convert in chunks.
_CHUNK_DIGITS: Final = 1000


def _int_from_decimal(digits: bytes) -> int:
    value = 0
    for start in range(0, len(digits), _CHUNK_DIGITS):
        chunk = digits[start : start + _CHUNK_DIGITS]
        value = value * 10 ** len(chunk) + int(chunk)
    return value


def _decimal_of(value: int) -> str:
    """The decimal digits of a nonnegative int of any size."""
    chunks: list[str] = []
    base = 10**_CHUNK_DIGITS
    while value >= base:
        value, chunk = divmod(value, base)
        chunks.append(f"{chunk:0{_CHUNK_DIGITS}d}")
    chunks.append(str(value))
    return "".join(reversed(chunks))
