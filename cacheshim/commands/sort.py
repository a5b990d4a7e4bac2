"""SORT and SORT_RO (Redis sort.c), Redis 7.0's replies and errors.

SORT key [BY pattern] [LIMIT offset count] [GET pattern ...] [ASC|DESC] [ALPHA]
[STORE destination] sorts the members of a list, set or sorted set:

- numerically by default: each element (or the string BY names for it) is read as C's
  ``strtod`` reads it (blanks first, hex floats and ``inf`` allowed, the whole string, up to
  a NUL byte, consumed; NaN and out-of-range values refused: "One or more scores can't be
  converted into double"); a missing BY key counts as 0; equal scores fall back to comparing
  the elements' bytes;
- ALPHA: by bytes. Without STORE Redis compares with ``strcoll`` under the server's
  LC_COLLATE, which the C and C.UTF-8 locales (Redis's usual environment) make ``strcmp``:
  bytes up to the first NUL. With STORE it compares all the bytes. A missing BY string sorts
  first;
- BY with a pattern that has no ``*`` (``BY nosort``) does not sort: a list or sorted set
  keeps its order (DESC walks it backwards), a set answers in its own order, except that with
  STORE (or from a script) a set is sorted ALPHA so that the result does not depend on a hash
  table's order.

Patterns (BY and GET): ``#`` is the element itself; otherwise the first ``*`` is replaced by
the element to make a key name, and ``->field`` after it reads that field of a hash instead
of a string. A key of another type, or a missing key or field, reads as nothing (nil in the
reply, an empty string in a STORE). Redis reads patterns as C strings, cut at a NUL byte,
except the field and the key's tail, which it takes whole: so does this module.

Elements that compare equal keep the order they were read in (glibc's qsort is a stable merge
sort), except with BY and a LIMIT that leaves some out: then Redis sorts only the range it
answers with its own quicksort (pqsort.c), which moves equal elements about, and so does
:func:`partial_quicksort`, step for step. Only ALPHA lets keys tie (equal numbers fall back
to comparing the elements).

Redis quirk not reproduced: Redis tests ``errno`` after strtod without clearing it first, so
once a score overflows, numeric SORTs on that connection keep failing until something else
resets errno; here each SORT stands on its own.

SORT is a write in Redis's table, so it goes through the log even without STORE; SORT_RO is a
read served from memory. Redis converts a small sorted set it sorts to its skiplist encoding
(even under SORT_RO); here only SORT, inside apply, does, because reads never change the
keyspace of one shim alone.

SORT ... STORE writes a list (Redis 7.0's quicklist), replacing the destination whatever it
held, expiry included; an empty result deletes the destination.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from fractions import Fraction
from typing import Final, TypeVar

from cacheshim.commands import Ctx, command
from cacheshim.commands.args import parse_int
from cacheshim.commands.argspec import ArgSpec, multi, raw, token
from cacheshim.notify import GENERIC, LIST, notify
from cacheshim.protocol import errors
from cacheshim.protocol.errors import CommandError
from cacheshim.protocol.resp import Reply
from cacheshim.types.hashvalue import HashValue
from cacheshim.types.keyspace import Database, Value, kind_of
from cacheshim.types.listvalue import ListValue
from cacheshim.types.setvalue import SetValue
from cacheshim.types.zsetvalue import ZSet

__all__ = ["c_strtod", "lookup_by_pattern", "partial_quicksort"]

T = TypeVar("T")

# -- strtod ------------------------------------------------------------------------------------

_STRTOD: Final = re.compile(
    rb"[ \t\n\v\f\r]*([+-]?)(?:"
    rb"(inf(?:inity)?)"
    rb"|(nan(?:\([0-9a-z_]*\))?)"
    rb"|0x([0-9a-f]+(?:\.[0-9a-f]*)?|\.[0-9a-f]+)(?:p([+-]?[0-9]+))?"
    rb"|([0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:e([+-]?[0-9]+))?"
    rb")",
    re.IGNORECASE,
)
_DBL_MIN: Final = 2.2250738585072014e-308  # the smallest normal double, 2**-1022
_MANTISSA_BITS: Final = 53


def c_strtod(text: bytes) -> float | None:
    """The double glibc's ``strtod`` reads from the C string text when it reads all of it
    without a range error and it is not NaN (SORT's test); None otherwise."""
    nul = text.find(0)
    if nul >= 0:
        text = text[:nul]
    if not text:
        return 0.0  # nothing converted, and nothing left over either
    match = _STRTOD.fullmatch(text)
    if match is None:
        return None
    sign, infinity, nan, hex_digits, hex_exponent, digits, exponent = match.groups()
    if nan is not None:
        return None
    negative = sign == b"-"
    if infinity is not None:
        return -math.inf if negative else math.inf
    exact = _exact(hex_digits, hex_exponent, digits, exponent)
    if exact == 0:
        return -0.0 if negative else 0.0
    value = _to_double(exact)
    if value is None:
        return None
    return -value if negative else value


def _exact(
    hex_digits: bytes | None, hex_exponent: bytes | None, digits: bytes | None,
    exponent: bytes | None,
) -> Fraction:  # fmt: skip
    """The exact (nonnegative) value the matched number spells."""
    if hex_digits is not None:
        whole, _, fraction = hex_digits.partition(b".")
        mantissa = int(whole + fraction, 16) if whole + fraction else 0
        power = (int(hex_exponent) if hex_exponent else 0) - 4 * len(fraction)
        base = 2
    else:
        assert digits is not None
        whole, _, fraction = digits.partition(b".")
        mantissa = int(whole + fraction) if whole + fraction else 0
        power = (int(exponent) if exponent else 0) - len(fraction)
        base = 10
    if mantissa == 0:
        return Fraction(0)
    # Far outside the double range: the exact value is not needed (nor cheap to build).
    magnitude = len(str(mantissa)) + power if base == 10 else mantissa.bit_length() + power
    if (base == 10 and magnitude > 400) or (base == 2 and magnitude > 1100):
        return Fraction(10) ** 400
    if (base == 10 and magnitude < -400) or (base == 2 and magnitude < -1200):
        return Fraction(1, 10**400)
    return Fraction(mantissa) * Fraction(base) ** power


def _to_double(exact: Fraction) -> float | None:
    """exact (> 0) rounded to a double, or None where strtod reports ERANGE: overflow, or a
    result below the normal range that is not exact (glibc detects tininess after rounding
    to 53 bits with an unbounded exponent)."""
    try:
        value = exact.numerator / exact.denominator  # correctly rounded
    except OverflowError:
        return None
    if math.isinf(value):
        return None
    if value > _DBL_MIN or Fraction(value) == exact:
        return value
    return None if _tiny_after_rounding(exact) else value


def _tiny_after_rounding(exact: Fraction) -> bool:
    num, den = exact.numerator, exact.denominator
    e = num.bit_length() - den.bit_length()  # 2**e <= exact < 2**(e+1), after the fix below
    if (num << max(0, -e)) < (den << max(0, e)):
        e -= 1
    if e >= -1022:
        return False
    if e < -1023:
        return True
    units: Fraction = exact / Fraction(2) ** (e - (_MANTISSA_BITS - 1))
    whole, remainder = divmod(units.numerator, units.denominator)
    twice = 2 * remainder
    if twice > units.denominator or (twice == units.denominator and whole & 1):
        whole += 1
    return whole < 1 << _MANTISSA_BITS


# -- patterns ----------------------------------------------------------------------------------


def _c_string(data: bytes) -> bytes:
    nul = data.find(0)
    return data if nul < 0 else data[:nul]


def lookup_by_pattern(db: Database, now_ms: int, pattern: bytes, element: bytes) -> bytes | None:
    """What a BY or GET pattern reads for element (lookupKeyByPattern): the element for
    ``#``; else the string at the key the pattern names, or the hash field it names with
    ``->``; None for no ``*``, a missing key or field, or a key of another type."""
    text = _c_string(pattern)
    if text == b"#":
        return element
    star = text.find(b"*")
    if star < 0:
        return None
    arrow = text.find(b"->", star + 1)
    hash_field: bytes | None = None
    if arrow >= 0 and arrow + 2 < len(text):
        hash_field = pattern[arrow + 2 :]
        key = pattern[:star] + element + pattern[star + 1 : arrow]
    else:
        key = pattern[:star] + element + pattern[star + 1 :]
    value = db.get(key, now_ms)
    if hash_field is not None:
        return value.get_value(hash_field) if isinstance(value, HashValue) else None
    return value if isinstance(value, bytes) else None


# -- reading lists and sorted sets, writing lists ---------------------------------------------


def _zset_members(value: ZSet, ctx: Ctx) -> list[bytes]:
    """A sorted set's members by rank (score, then member), lowest first; inside apply, its
    encoding becomes the skiplist, as Redis's SORT leaves it."""
    if ctx.index > 0:
        value.listpack = False
    return [member for _, member in value]


# -- SORT ----------------------------------------------------------------------------------------


def _new_list(items: list[bytes]) -> Value:
    return ListValue(items)


@dataclass
class _Options:
    desc: bool
    alpha: bool
    limit_start: int
    limit_count: int
    by: bytes | None
    dont_sort: bool
    gets: list[bytes]
    store: bytes | None


_ASC, _DESC, _ALPHA = token("ASC"), token("DESC"), token("ALPHA")
_LIMIT: Final = multi("LIMIT", 2, parse_int)
_STORE, _BY, _GET = raw("STORE"), raw("BY"), raw("GET")
_SORT_OPTIONS: Final = ArgSpec(_ASC, _DESC, _ALPHA, _LIMIT, _STORE, _BY, _GET)
_SORT_RO_OPTIONS: Final = _SORT_OPTIONS.without(_STORE)


def _parse(args: list[bytes], readonly: bool) -> _Options:
    parsed = (_SORT_RO_OPTIONS if readonly else _SORT_OPTIONS).parse(args)
    limit_start, limit_count = parsed.get(_LIMIT, [0, -1])
    bys = parsed.all(_BY)
    return _Options(
        desc=parsed.last(_ASC, _DESC) is _DESC,
        alpha=_ALPHA in parsed,
        limit_start=limit_start,
        limit_count=limit_count,
        by=bys[-1] if bys else None,
        # for good: a later BY with a "*" does not undo a BY without one
        dont_sort=any(b"*" not in _c_string(by) for by in bys),
        gets=parsed.all(_GET),
        store=parsed.get(_STORE),
    )


def _sort(ctx: Ctx, args: list[bytes], readonly: bool) -> Reply:
    opts = _parse(args[1:], readonly)
    value: object = ctx.db.get(args[0], ctx.now_ms)
    kind = "list" if value is None else kind_of(value).name
    if kind not in ("list", "set", "zset"):
        raise CommandError(errors.WRONGTYPE)
    dont_sort, alpha, by = opts.dont_sort, opts.alpha, opts.by
    if dont_sort and kind == "set" and (opts.store is not None or ctx.in_script):
        dont_sort, alpha, by = False, True, None  # a stored result must not depend on order
    if value is None:
        elements: list[bytes] = []
    elif kind == "set":
        assert isinstance(value, SetValue)
        elements = value.ordered()
    elif kind == "zset":
        assert isinstance(value, ZSet)
        elements = _zset_members(value, ctx)
    else:
        assert isinstance(value, ListValue)
        elements = list(value)
    size = len(elements)
    start = max(opts.limit_start, 0)
    stop = size if opts.limit_count < 0 else min(start + opts.limit_count, size)
    if dont_sort:
        if kind != "set" and opts.desc:
            elements.reverse()
    else:
        # Redis sorts only the LIMIT range when there is a BY pattern (pqsort); that only
        # shows where keys tie, which only ALPHA allows (numbers tie-break on elements).
        partial = by is not None and alpha and (start != 0 or stop != size)
        elements = _sorted(
            ctx, elements, opts.desc, alpha, by, opts.store is not None,
            (start, stop - 1) if partial else None,
        )  # fmt: skip
    chosen = elements[start:stop] if start < size else []
    out: list[bytes | None] = []
    for element in chosen:
        if not opts.gets:
            out.append(element)
        for pattern in opts.gets:
            out.append(lookup_by_pattern(ctx.db, ctx.now_ms, pattern, element))
    if opts.store is None:
        return out
    if out:
        items = [b"" if item is None else item for item in out]
        ctx.db.set(opts.store, _new_list(items), ctx.index)  # a new key: no expiry
        notify(ctx, LIST, b"sortstore", opts.store)
    elif ctx.db.contains(opts.store, ctx.now_ms):
        ctx.db.delete(opts.store, ctx.index)
        notify(ctx, GENERIC, b"del", opts.store)
    return len(out)


def _sorted(
    ctx: Ctx,
    elements: list[bytes],
    desc: bool,
    alpha: bool,
    by: bytes | None,
    store: bool,
    partial: tuple[int, int] | None = None,
) -> list[bytes]:
    """elements in SORT's order (sortCompare). Equal ones keep their order (glibc's qsort
    is a merge sort), except when only the range partial needs sorting: then they end as
    Redis's partial quicksort leaves them."""
    if alpha:
        if by is None:
            if store:
                return sorted(elements, reverse=desc)
            return sorted(elements, key=_c_string, reverse=desc)
        keyed: list[tuple[tuple[int, bytes], bytes]] = []
        for element in elements:
            found = lookup_by_pattern(ctx.db, ctx.now_ms, by, element)
            compared = b"" if found is None else found if store else _c_string(found)
            keyed.append(((0 if found is None else 1, compared), element))
        if partial is None:
            keyed.sort(key=lambda pair: pair[0], reverse=desc)
        else:
            sign = -1 if desc else 1

            def compare(
                a: tuple[tuple[int, bytes], bytes], b: tuple[tuple[int, bytes], bytes]
            ) -> int:
                return sign * ((a[0] > b[0]) - (a[0] < b[0]))

            partial_quicksort(keyed, compare, partial[0], partial[1])
        return [element for _, element in keyed]
    scored: list[tuple[float, bytes]] = []
    failed = False
    for element in elements:
        text = element if by is None else lookup_by_pattern(ctx.db, ctx.now_ms, by, element)
        score = 0.0 if text is None else c_strtod(text)
        if score is None:
            failed = True
            score = 0.0
        scored.append((score, element))
    if failed:
        raise CommandError(errors.SORT_SCORE_NOT_A_DOUBLE)
    scored.sort(reverse=desc)
    return [element for _, element in scored]


def partial_quicksort(items: list[T], compare: Callable[[T, T], int], low: int, high: int) -> None:
    """Sort items in place enough that positions low..high hold what a full sort would put
    there, step for step as Redis 7.0's pqsort.c does (the NetBSD Bentley-McIlroy quicksort,
    without its fallback to insertion sort, skipping the parts outside the range), so that
    equal items end in the same places as in Redis. The parts left to sort are kept on a
    list instead of the call stack (they are disjoint, so their order does not matter)."""
    v = items

    def swap(i: int, j: int) -> None:
        v[i], v[j] = v[j], v[i]

    def med3(i: int, j: int, k: int) -> int:
        if compare(v[i], v[j]) < 0:
            return j if compare(v[j], v[k]) < 0 else (k if compare(v[i], v[k]) < 0 else i)
        return j if compare(v[j], v[k]) > 0 else (i if compare(v[i], v[k]) < 0 else k)

    parts = [(0, len(items))]
    while parts:
        a, n = parts.pop()
        if n < 7:  # insertion sort
            for m in range(a + 1, a + n):
                pos = m
                while pos > a and compare(v[pos - 1], v[pos]) > 0:
                    swap(pos, pos - 1)
                    pos -= 1
            continue
        pm = a + n // 2
        if n > 7:
            pl, pn = a, a + n - 1
            if n > 40:
                d = n // 8
                pl = med3(pl, pl + d, pl + 2 * d)
                pm = med3(pm - d, pm, pm + d)
                pn = med3(pn - 2 * d, pn - d, pn)
            pm = med3(pl, pm, pn)
        swap(a, pm)
        pa = pb = a + 1
        pc = pd = a + n - 1
        while True:
            while pb <= pc:
                result = compare(v[pb], v[a])
                if result > 0:
                    break
                if result == 0:
                    swap(pa, pb)
                    pa += 1
                pb += 1
            while pb <= pc:
                result = compare(v[pc], v[a])
                if result < 0:
                    break
                if result == 0:
                    swap(pc, pd)
                    pd -= 1
                pc -= 1
            if pb > pc:
                break
            swap(pb, pc)
            pb += 1
            pc -= 1
        pn = a + n
        r = min(pa - a, pb - pa)
        for i in range(r):
            swap(a + i, pb - r + i)
        r = min(pd - pc, pn - pd - 1)
        for i in range(r):
            swap(pb + i, pn - r + i)
        r = pb - pa
        if r > 1 and not _outside(low, high, a, a + r - 1):
            parts.append((a, r))
        r = pd - pc
        if r > 1 and not _outside(low, high, pn - r, pn - 1):
            parts.append((pn - r, r))


def _outside(low: int, high: int, first: int, last: int) -> bool:
    """Whether the wanted positions low..high lie wholly before or after first..last."""
    return (low < first and high < first) or (low > last and high > last)


_SORT_COMPLEXITY: Final = (
    "O(N+M*log(M)) where N is the number of elements to sort and M the number answered; "
    "O(N) without sorting."
)


@command(
    "sort", -2, "write denyoom movablekeys", (1, 1, 1), "write set sortedset list slow dangerous",
    "generic", "1.0.0",
    "Sorts the elements of a list, set or sorted set (BY, LIMIT, GET, ASC|DESC, ALPHA), "
    "answering them or storing them as a list.", _SORT_COMPLEXITY, key_flags="RO access|OW update",
)  # fmt: skip
def sort(ctx: Ctx, args: list[bytes]) -> Reply:
    return _sort(ctx, args, readonly=False)


@command(
    "sort_ro", -2, "readonly movablekeys", (1, 1, 1), "read set sortedset list slow dangerous",
    "generic", "7.0.0", "Sorts the elements of a list, set or sorted set, like SORT without "
    "STORE.", _SORT_COMPLEXITY, key_flags="RO access",
)  # fmt: skip
def sort_ro(ctx: Ctx, args: list[bytes]) -> Reply:
    return _sort(ctx, args, readonly=True)
