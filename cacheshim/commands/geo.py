"""Geo commands (Redis geo.c) on the sorted set type, Redis 7.0's replies and errors.

A point is a member whose score is its 52-bit geohash (`cacheshim.types.geohash`); GEOADD
is ZADD with those scores. Replies print as Redis prints them: coordinates with 17 decimals
and no trailing zeros (a RESP3 double), distances with 4 decimals (a bulk string).

Results come in Redis's order: the nine cells in turn, each in score order, then sorted by
distance with a stable sort, as glibc's qsort sorts. One difference: with COUNT below the
number of matches Redis sorts partially (pqsort), which may order points at exactly the
same distance differently.

GEORADIUS and GEORADIUSBYMEMBER are writes, as in Redis (they may STORE): they go through
the log; their _RO forms and GEOSEARCH are reads.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from fractions import Fraction
from typing import Final

from cacheshim.commands import Ctx, command
from cacheshim.commands.args import option, parse_int
from cacheshim.commands.introspect import MOVABLE_KEYS
from cacheshim.commands.zsets import get_zset, parse_score, zadd
from cacheshim.notify import GENERIC, notify
from cacheshim.notify import ZSET as ZSET_EVENTS
from cacheshim.protocol import errors
from cacheshim.protocol.errors import CommandError
from cacheshim.protocol.resp import NULL_ARRAY, DoubleText, Reply
from cacheshim.types import geohash, longdouble
from cacheshim.types.geohash import Shape
from cacheshim.types.zsetvalue import ZSet

_GROUP: Final = "geo"
_UNITS: Final = {b"M": 1.0, b"KM": 1000.0, b"FT": 0.3048, b"MI": 1609.34}


def _lon_lat(lon_arg: bytes, lat_arg: bytes) -> tuple[float, float]:
    """extractLongLatOrReply."""
    lon, lat = parse_score(lon_arg), parse_score(lat_arg)
    lon_ok = geohash.LON_MIN <= lon <= geohash.LON_MAX
    if not (lon_ok and geohash.LAT_MIN <= lat <= geohash.LAT_MAX):
        raise CommandError(errors.GEO_INVALID_LONLAT % (lon, lat))
    return lon, lat


def _unit(arg: bytes) -> float:
    factor = _UNITS.get(option(arg))
    if factor is None:
        raise CommandError(errors.GEO_UNSUPPORTED_UNIT)
    return factor


def _distance_and_unit(radius_arg: bytes, unit_arg: bytes) -> tuple[float, float]:
    radius = parse_score(radius_arg, "ERR need numeric radius")
    if radius < 0:
        raise CommandError("ERR radius cannot be negative")
    return radius, _unit(unit_arg)


def _member_point(zset: ZSet, member: bytes) -> tuple[float, float]:
    score = zset.score(member)
    if score is None:
        raise CommandError(errors.GEO_MEMBER_NOT_FOUND)
    return geohash.decode(score)


def _coordinate(value: float) -> DoubleText:
    """addReplyHumanLongDouble: %.17Lf without trailing zeros."""
    return DoubleText(longdouble.format_human(Fraction(value)))


def _distance_text(metres: float) -> bytes:
    """fixedpoint_d2string(d, 4): rounded to 4 decimals as llrint rounds (half to even)."""
    units = round(metres * 10000.0)
    sign = b"-" if units < 0 else b""
    whole, fraction = divmod(abs(units), 10000)
    return b"%s%d.%04d" % (sign, whole, fraction)


# -- GEOADD, GEOPOS, GEOHASH, GEODIST ----------------------------------------------------------


@command(
    "geoadd", -5, "write denyoom", (1, 1, 1), "write geo slow", _GROUP, "3.2.0",
    "Adds points (longitude, latitude, member) to the sorted set at a key as geohash scores "
    "(NX, XX, CH).", "O(log(N)) for each item added, where N is the number of elements in "
    "the sorted set.", key_flags="RW update",
)  # fmt: skip
def geoadd(ctx: Ctx, args: list[bytes]) -> Reply:
    first = 1
    nx = xx = False
    while first < len(args):
        word = option(args[first])
        if word == b"NX":
            nx = True
        elif word == b"XX":
            xx = True
        elif word != b"CH":
            break
        first += 1
    if (len(args) - first) % 3 or (nx and xx):
        raise CommandError(errors.SYNTAX_ERROR)
    zadd_args = args[:first]
    for i in range(first, len(args), 3):
        lon, lat = _lon_lat(args[i], args[i + 1])
        zadd_args += [b"%d" % geohash.score_of(lon, lat), args[i + 2]]
    return zadd(ctx, zadd_args)


@command(
    "geopos", -2, "readonly", (1, 1, 1), "read geo slow", _GROUP, "3.2.0",
    "Answers the longitude and latitude of members of a geo sorted set.",
    "O(N) where N is the number of members requested.", key_flags="RO access",
)  # fmt: skip
def geopos(ctx: Ctx, args: list[bytes]) -> Reply:
    zset = get_zset(ctx, args[0])
    replies: list[Reply] = []
    for member in args[1:]:
        score = None if zset is None else zset.score(member)
        if score is None:
            replies.append(NULL_ARRAY)
        else:
            lon, lat = geohash.decode(score)
            replies.append([_coordinate(lon), _coordinate(lat)])
    return replies


@command(
    "geohash", -2, "readonly", (1, 1, 1), "read geo slow", _GROUP, "3.2.0",
    "Answers the standard 11-character geohash of members of a geo sorted set.",
    "O(log(N)) for each member requested, where N is the number of elements in the sorted "
    "set.", key_flags="RO access",
)  # fmt: skip
def geohash_(ctx: Ctx, args: list[bytes]) -> Reply:
    zset = get_zset(ctx, args[0])
    replies: list[Reply] = []
    for member in args[1:]:
        score = None if zset is None else zset.score(member)
        replies.append(None if score is None else geohash.geohash_text(score))
    return replies


@command(
    "geodist", -4, "readonly", (1, 1, 1), "read geo slow", _GROUP, "3.2.0",
    "Answers the distance between two members of a geo sorted set (m, km, ft or mi).",
    "O(log(N))", key_flags="RO access",
)  # fmt: skip
def geodist(ctx: Ctx, args: list[bytes]) -> Reply:
    to_metres = 1.0
    if len(args) == 4:
        to_metres = _unit(args[3])
    elif len(args) > 4:
        raise CommandError(errors.SYNTAX_ERROR)
    zset = get_zset(ctx, args[0])
    if zset is None:
        return None
    first, second = zset.score(args[1]), zset.score(args[2])
    if first is None or second is None:
        return None
    (lon1, lat1), (lon2, lat2) = geohash.decode(first), geohash.decode(second)
    return _distance_text(geohash.distance(lon1, lat1, lon2, lat2) / to_metres)


# -- GEORADIUS, GEOSEARCH and their kin (georadiusGeneric) ---------------------------------------

_BY_COORDS, _BY_MEMBER, _SEARCH = 0, 1, 2


@dataclass
class _Found:
    member: bytes
    score: float
    lon: float
    lat: float
    dist: float


def _points_in(zset: ZSet, shape: Shape, limit: int) -> list[_Found]:
    """membersOfAllNeighbors: the members inside the shape, cell by cell in score order,
    stopping once limit (ANY's count; 0 for none) are found."""
    found: list[_Found] = []
    for low, high in geohash.search_ranges(shape):
        if found and limit and len(found) >= limit:
            break
        for score, member in zset.entries(zset.first_at_or_above(low, False)):
            if score >= high:
                break
            lon, lat = geohash.decode(score)
            dist = shape.contains(lon, lat)
            if dist is not None:
                found.append(_Found(member, score, lon, lat, dist))
            if found and limit and len(found) >= limit:
                break
    return found


def _georadius(ctx: Ctx, args: list[bytes], kind: int, store_allowed: bool, name: bytes) -> Reply:
    """georadiusGeneric. args: the arguments after the command name; name: the command as
    the client spelled it (GEOSEARCH's errors echo it)."""
    search_store = kind == _SEARCH and store_allowed
    source = args[1] if search_store else args[0]
    zset = get_zset(ctx, source)
    store_key: bytes | None = args[0] if search_store else None
    shape = Shape(0.0, 0.0, 1.0)
    if kind == _BY_COORDS:
        base = 5
        shape.lon, shape.lat = _lon_lat(args[1], args[2])
        shape.radius, shape.conversion = _distance_and_unit(args[3], args[4])
    elif kind == _BY_MEMBER:
        base = 4
        if zset is not None:
            shape.lon, shape.lat = _member_point(zset, args[1])
            shape.radius, shape.conversion = _distance_and_unit(args[2], args[3])
    else:
        base = 2 if search_store else 1
    with_dist = with_hash = with_coord = any_ = False
    from_member = from_lonlat = by_radius = by_box = False
    store_dist = False
    order = 0  # 0: none, 1: ascending, -1: descending
    count = 0
    i = base
    while i < len(args):
        word = option(args[i])
        left = len(args) - i - 1
        if word == b"WITHDIST":
            with_dist = True
        elif word == b"WITHHASH":
            with_hash = True
        elif word == b"WITHCOORD":
            with_coord = True
        elif word == b"ANY":
            any_ = True
        elif word == b"ASC":
            order = 1
        elif word == b"DESC":
            order = -1
        elif word == b"COUNT" and left >= 1:
            count = parse_int(args[i + 1])
            if count <= 0:
                raise CommandError("ERR COUNT must be > 0")
            i += 1
        elif word in (b"STORE", b"STOREDIST") and left >= 1 and store_allowed and kind != _SEARCH:
            store_key = args[i + 1]
            store_dist = word == b"STOREDIST"
            i += 1
        elif word == b"STOREDIST" and search_store:
            store_dist = True
        elif word == b"FROMMEMBER" and left >= 1 and kind == _SEARCH and not from_lonlat:
            if zset is not None:
                shape.lon, shape.lat = _member_point(zset, args[i + 1])
            from_member = True
            i += 1
        elif word == b"FROMLONLAT" and left >= 2 and kind == _SEARCH and not from_member:
            shape.lon, shape.lat = _lon_lat(args[i + 1], args[i + 2])
            from_lonlat = True
            i += 2
        elif word == b"BYRADIUS" and left >= 2 and kind == _SEARCH and not by_box:
            shape.radius, shape.conversion = _distance_and_unit(args[i + 1], args[i + 2])
            shape.is_box = False
            by_radius = True
            i += 2
        elif word == b"BYBOX" and left >= 3 and kind == _SEARCH and not by_radius:
            width = parse_score(args[i + 1], "ERR need numeric width")
            height = parse_score(args[i + 2], "ERR need numeric height")
            if width < 0 or height < 0:
                raise CommandError("ERR height or width cannot be negative")
            shape.conversion = _unit(args[i + 3])
            shape.width, shape.height, shape.is_box = width, height, True
            by_box = True
            i += 3
        else:
            raise CommandError(errors.SYNTAX_ERROR)
        i += 1
    if store_key is not None and (with_dist or with_hash or with_coord):
        what = "GEOSEARCHSTORE" if search_store else "STORE option in GEORADIUS"
        raise CommandError(
            f"ERR {what} is not compatible with WITHDIST, WITHHASH and WITHCOORD options"
        )
    typed = errors.text_from_bytes(name.split(b"\x00", 1)[0])
    if kind == _SEARCH and not (from_member or from_lonlat):
        raise CommandError(
            f"ERR exactly one of FROMMEMBER or FROMLONLAT can be specified for {typed}"
        )
    if kind == _SEARCH and not (by_radius or by_box):
        raise CommandError(f"ERR exactly one of BYRADIUS and BYBOX can be specified for {typed}")
    if any_ and not count:
        raise CommandError("ERR the ANY argument requires COUNT argument")
    if zset is None:
        if store_key is None:
            return []
        if ctx.db.delete(store_key, ctx.index):
            notify(ctx, GENERIC, b"del", store_key)
        return 0
    if count and not order and not any_:
        order = 1
    found = _points_in(zset, shape, count if any_ else 0)
    if not found and store_key is None:
        return []
    if order:
        found.sort(key=lambda point: point.dist, reverse=order < 0)
    if count:
        found = found[:count]
    if store_key is None:
        return [_row(point, shape, with_dist, with_hash, with_coord) for point in found]
    scores: dict[bytes, float] = {}
    for point in found:
        score = point.dist / shape.conversion if store_dist else point.score
        scores.setdefault(point.member, score)
    if not scores:
        if ctx.db.delete(store_key, ctx.index):
            notify(ctx, GENERIC, b"del", store_key)
        return 0
    result = ZSet.from_sorted(sorted((score, member) for member, score in scores.items()))
    ctx.db.set(store_key, result, ctx.index)
    event = b"geosearchstore" if kind == _SEARCH else b"georadiusstore"
    notify(ctx, ZSET_EVENTS, event, store_key)
    return len(found)


def _row(point: _Found, shape: Shape, dist: bool, hash_: bool, coord: bool) -> Reply:
    if not (dist or hash_ or coord):
        return point.member
    row: list[Reply] = [point.member]
    if dist:
        row.append(_distance_text(point.dist / shape.conversion))
    if hash_:
        row.append(int(point.score))
    if coord:
        row.append([_coordinate(point.lon), _coordinate(point.lat)])
    return row


_RADIUS_COMPLEXITY: Final = (
    "O(N+log(M)) where N is the number of elements inside the bounding box of the circular "
    "area delimited by center and radius and M is the number of items inside the index."
)
_SEARCH_COMPLEXITY: Final = (
    "O(N+log(M)) where N is the number of elements in the grid-aligned bounding box area "
    "around the shape provided as the filter and M is the number of items inside the shape"
)


@command(
    "georadius", -6, "write denyoom movablekeys", (1, 1, 1), "write geo slow", _GROUP, "3.2.0",
    "Answers (or STOREs) the members of a geo sorted set within a radius of a point "
    "(deprecated: GEOSEARCH, GEOSEARCHSTORE).", _RADIUS_COMPLEXITY,
    key_flags="RO access|OW update|OW update",
)  # fmt: skip
def georadius(ctx: Ctx, args: list[bytes]) -> Reply:
    return _georadius(ctx, args, _BY_COORDS, True, b"georadius")


@command(
    "georadius_ro", -6, "readonly", (1, 1, 1), "read geo slow", _GROUP, "3.2.10",
    "Answers the members of a geo sorted set within a radius of a point (deprecated: "
    "GEOSEARCH).", _RADIUS_COMPLEXITY, key_flags="RO access",
)  # fmt: skip
def georadius_ro(ctx: Ctx, args: list[bytes]) -> Reply:
    return _georadius(ctx, args, _BY_COORDS, False, b"georadius_ro")


@command(
    "georadiusbymember", -5, "write denyoom movablekeys", (1, 1, 1), "write geo slow", _GROUP,
    "3.2.0", "Answers (or STOREs) the members of a geo sorted set within a radius of one of "
    "its members (deprecated: GEOSEARCH, GEOSEARCHSTORE).", _RADIUS_COMPLEXITY,
    key_flags="RO access|OW update|OW update",
)  # fmt: skip
def georadiusbymember(ctx: Ctx, args: list[bytes]) -> Reply:
    return _georadius(ctx, args, _BY_MEMBER, True, b"georadiusbymember")


@command(
    "georadiusbymember_ro", -5, "readonly", (1, 1, 1), "read geo slow", _GROUP, "3.2.10",
    "Answers the members of a geo sorted set within a radius of one of its members "
    "(deprecated: GEOSEARCH).", _RADIUS_COMPLEXITY, key_flags="RO access",
)  # fmt: skip
def georadiusbymember_ro(ctx: Ctx, args: list[bytes]) -> Reply:
    return _georadius(ctx, args, _BY_MEMBER, False, b"georadiusbymember_ro")


@command(
    "geosearch", -7, "readonly", (1, 1, 1), "read geo slow", _GROUP, "6.2.0",
    "Answers the members of a geo sorted set within a circle or box around a member or a "
    "point (FROMMEMBER|FROMLONLAT, BYRADIUS|BYBOX, ASC|DESC, COUNT [ANY], WITH...).",
    _SEARCH_COMPLEXITY, key_flags="RO access",
)  # fmt: skip
def geosearch(ctx: Ctx, args: list[bytes]) -> Reply:
    return _georadius(ctx, args, _SEARCH, False, b"geosearch")


@command(
    "geosearchstore", -8, "write denyoom", (1, 2, 1), "write geo slow", _GROUP, "6.2.0",
    "Stores the members of a geo sorted set within a circle or box around a member or a "
    "point at a destination key (scores: geohashes, or distances with STOREDIST).",
    _SEARCH_COMPLEXITY, key_flags="OW update|RO access",
)  # fmt: skip
def geosearchstore(ctx: Ctx, args: list[bytes]) -> Reply:
    return _georadius(ctx, args, _SEARCH, True, b"geosearchstore")


def _radius_keys(options_from: int) -> Callable[[list[bytes]], list[int]]:
    """The keys COMMAND GETKEYS finds by GEORADIUS's key specs: the source, then the key
    after the first STORE and the one after the first STOREDIST among the options."""

    def positions(args: list[bytes]) -> list[int]:
        keys = [1]
        for keyword in (b"store", b"storedist"):
            for i in range(options_from, len(args) - 1):
                if args[i].lower() == keyword:
                    keys.append(i + 1)
                    break
        return keys

    return positions


MOVABLE_KEYS["georadius"] = _radius_keys(6)
MOVABLE_KEYS["georadiusbymember"] = _radius_keys(5)
