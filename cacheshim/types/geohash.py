"""Redis's geohash (geohash.c, geohash_helper.c): a point as a 52-bit sorted-set score.

Longitude (-180..180) and latitude (-85.05112878..85.05112878, the Web Mercator limits) are
each cut into 2**26 steps and their bits interleaved (latitude in the even bits). A point
decodes to the centre of its cell. A radius or box search looks at the cell of the centre at
a step chosen from the radius, and its eight neighbours, each a range of scores.

Every computation is Redis's, in the same order, in doubles (Python's math is the same C
library), so decoded coordinates, distances and the cells searched come out bit for bit.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Final

LON_MIN: Final = -180.0
LON_MAX: Final = 180.0
LAT_MIN: Final = -85.05112878
LAT_MAX: Final = 85.05112878
STEP_MAX: Final = 26
EARTH_RADIUS_M: Final = 6372797.560856  # Redis's mean radius for WGS-84
_MERCATOR_MAX: Final = 20037726.37
_D_R: Final = math.pi / 180.0
_U64: Final = 2**64 - 1

Range = tuple[float, float]
WGS84: Final[tuple[Range, Range]] = ((LON_MIN, LON_MAX), (LAT_MIN, LAT_MAX))
STANDARD: Final[tuple[Range, Range]] = ((-180.0, 180.0), (-90.0, 90.0))  # GEOHASH's ranges


def _spread_byte(b: int) -> int:
    """The 8 bits of b at the even positions of 16."""
    out = 0
    for i in range(8):
        out |= ((b >> i) & 1) << (2 * i)
    return out


_SPREAD: Final = [_spread_byte(b) for b in range(256)]


def _interleave(x: int, y: int) -> int:
    """x's bits to the even positions, y's to the odd ones (two 32-bit inputs)."""
    s = _SPREAD
    spread_x = s[x & 255] | s[(x >> 8) & 255] << 16 | s[(x >> 16) & 255] << 32 | s[x >> 24] << 48
    spread_y = s[y & 255] | s[(y >> 8) & 255] << 16 | s[(y >> 16) & 255] << 32 | s[y >> 24] << 48
    return spread_x | (spread_y << 1)


def _deinterleave(bits: int) -> tuple[int, int]:
    """The even bits and the odd bits of a 64-bit value, as two 32-bit numbers."""
    x, y = bits, bits >> 1
    for shift, mask in ((0, 0x5555555555555555), (1, 0x3333333333333333),
                        (2, 0x0F0F0F0F0F0F0F0F), (4, 0x00FF00FF00FF00FF),
                        (8, 0x0000FFFF0000FFFF), (16, 0x00000000FFFFFFFF)):  # fmt: skip
        x = (x | (x >> shift)) & mask
        y = (y | (y >> shift)) & mask
    return x, y


def encode(lon: float, lat: float, step: int, ranges: tuple[Range, Range] = WGS84) -> int:
    """geohashEncode: the cell's bits (2*step of them); the point must be valid."""
    (lon_min, lon_max), (lat_min, lat_max) = ranges
    lat_offset = (lat - lat_min) / (lat_max - lat_min) * (1 << step)
    lon_offset = (lon - lon_min) / (lon_max - lon_min) * (1 << step)
    return _interleave(int(lat_offset) & 0xFFFFFFFF, int(lon_offset) & 0xFFFFFFFF)


def score_of(lon: float, lat: float) -> int:
    """The 52-bit score GEOADD stores for a point."""
    return encode(lon, lat, STEP_MAX)


@dataclass(frozen=True, slots=True)
class Area:
    lon_min: float
    lon_max: float
    lat_min: float
    lat_max: float


def decode_area(bits: int, step: int, ranges: tuple[Range, Range] = WGS84) -> Area:
    (lon_min, lon_max), (lat_min, lat_max) = ranges
    lat_cell, lon_cell = _deinterleave(bits)
    lat_cell &= 0xFFFFFFFF
    cells = float(1 << step)
    lat_scale, lon_scale = lat_max - lat_min, lon_max - lon_min
    return Area(
        lon_min + (lon_cell * 1.0 / cells) * lon_scale,
        lon_min + ((lon_cell + 1) * 1.0 / cells) * lon_scale,
        lat_min + (lat_cell * 1.0 / cells) * lat_scale,
        lat_min + ((lat_cell + 1) * 1.0 / cells) * lat_scale,
    )


def _score_bits(score: float) -> int:
    """(uint64_t)score as GCC converts a double on x86-64: below 2**63 a signed conversion,
    from there one of score - 2**63 with the top bit flipped back (out of range: the
    "integer indefinite" 2**63)."""
    if score < 2.0**63:
        return int(score) & _U64 if score >= -(2.0**63) else 2**63
    rest = score - 2.0**63
    return (int(rest) if rest < 2.0**63 else 2**63) ^ 2**63


def decode(score: float) -> tuple[float, float]:
    """A score's point: the centre of its cell, clamped to the valid ranges."""
    area = decode_area(_score_bits(score), STEP_MAX)
    lon = min(max((area.lon_min + area.lon_max) / 2, LON_MIN), LON_MAX)
    lat = min(max((area.lat_min + area.lat_max) / 2, LAT_MIN), LAT_MAX)
    return lon, lat


_ALPHABET: Final = b"0123456789bcdefghjkmnpqrstuvwxyz"


def geohash_text(score: float) -> bytes:
    """GEOHASH's 11 characters: the point re-encoded over the standard latitude range."""
    lon, lat = decode(score)
    bits = encode(lon, lat, STEP_MAX, STANDARD)
    chars = [_ALPHABET[(bits >> (52 - (i + 1) * 5)) & 0x1F] for i in range(10)]
    return bytes(chars) + b"0"


# -- distances -------------------------------------------------------------------------------


def lat_distance(lat1: float, lat2: float) -> float:
    return EARTH_RADIUS_M * abs(lat2 * _D_R - lat1 * _D_R)


def distance(lon1: float, lat1: float, lon2: float, lat2: float) -> float:
    """geohashGetDistance: haversine on Redis's sphere, in metres."""
    lon1r, lon2r = lon1 * _D_R, lon2 * _D_R
    v = math.sin((lon2r - lon1r) / 2)
    if v == 0.0:
        return lat_distance(lat1, lat2)
    lat1r, lat2r = lat1 * _D_R, lat2 * _D_R
    u = math.sin((lat2r - lat1r) / 2)
    a = u * u + math.cos(lat1r) * math.cos(lat2r) * v * v
    return 2.0 * EARTH_RADIUS_M * math.asin(math.sqrt(a))


# -- search shapes ---------------------------------------------------------------------------


@dataclass
class Shape:
    """A radius (height 0) or a box around (lon, lat); sizes in the unit, conversion to m."""

    lon: float
    lat: float
    conversion: float
    radius: float = 0.0
    width: float = 0.0
    height: float = 0.0
    is_box: bool = False

    def contains(self, lon: float, lat: float) -> float | None:
        """The distance in metres of a point inside the shape, None outside it."""
        if not self.is_box:
            d = distance(self.lon, self.lat, lon, lat)
            return None if d > self.radius * self.conversion else d
        if lat_distance(lat, self.lat) > self.height * self.conversion / 2:
            return None
        if distance(lon, lat, self.lon, lat) > self.width * self.conversion / 2:
            return None
        return distance(self.lon, self.lat, lon, lat)


def _steps_for(range_m: float, lat: float) -> int:
    if range_m == 0:
        return 26
    step = 1
    while range_m < _MERCATOR_MAX:
        range_m *= 2
        step += 1
    step -= 2
    if lat > 66 or lat < -66:
        step -= 1
        if lat > 80 or lat < -80:
            step -= 1
    return min(max(step, 1), 26)


def _bounds(shape: Shape) -> tuple[float, float, float, float]:
    """geohashBoundingBox: (min lon, min lat, max lon, max lat)."""
    half_height = shape.conversion * (shape.height / 2 if shape.is_box else shape.radius)
    half_width = shape.conversion * (shape.width / 2 if shape.is_box else shape.radius)
    lat_delta = half_height / EARTH_RADIUS_M / _D_R
    top = half_width / EARTH_RADIUS_M / math.cos((shape.lat + lat_delta) * _D_R) / _D_R
    bottom = half_width / EARTH_RADIUS_M / math.cos((shape.lat - lat_delta) * _D_R) / _D_R
    delta = bottom if shape.lat < 0 else top
    return shape.lon - delta, shape.lat - lat_delta, shape.lon + delta, shape.lat + lat_delta


def _move(bits: int, step: int, d: int, odd: bool) -> int:
    """geohash_move_x (odd: the longitude bits) / geohash_move_y, one cell either way."""
    evens, odds = 0x5555555555555555, 0xAAAAAAAAAAAAAAAA
    moving, fixed = (bits & odds, bits & evens) if odd else (bits & evens, bits & odds)
    zz = (evens if odd else odds) >> (64 - step * 2)
    moved = moving + zz + 1 if d > 0 else (moving | zz) - (zz + 1)
    moving = moved & _U64
    moving &= (odds if odd else evens) >> (64 - step * 2)
    return moving | fixed


def search_ranges(shape: Shape) -> list[tuple[int, int]]:
    """The score ranges [min, max) of the cells to scan, in Redis's order (centre, N, S, E,
    W, NE, NW, SE, SW), cells that cannot hold a match left out, a cell equal to the one
    before it skipped."""
    min_lon, min_lat, max_lon, max_lat = _bounds(shape)
    if shape.is_box:
        radius_m = math.sqrt((shape.width / 2) * (shape.width / 2)
                             + (shape.height / 2) * (shape.height / 2))  # fmt: skip
    else:
        radius_m = shape.radius
    radius_m *= shape.conversion
    steps = _steps_for(radius_m, shape.lat)

    def cells(step: int) -> list[int | None]:
        centre = encode(shape.lon, shape.lat, step)
        east, west = _move(centre, step, 1, True), _move(centre, step, -1, True)
        return [
            centre,
            _move(centre, step, 1, False),  # north
            _move(centre, step, -1, False),  # south
            east,
            west,
            _move(east, step, 1, False),  # north east
            _move(west, step, 1, False),  # north west
            _move(east, step, -1, False),  # south east
            _move(west, step, -1, False),  # south west
        ]

    hashes = cells(steps)
    north, south = decode_area(hashes[1] or 0, steps), decode_area(hashes[2] or 0, steps)
    east, west = decode_area(hashes[3] or 0, steps), decode_area(hashes[4] or 0, steps)
    if steps > 1 and (
        north.lat_max < max_lat
        or south.lat_min > min_lat
        or east.lon_max < max_lon
        or west.lon_min > min_lon
    ):
        steps -= 1
        hashes = cells(steps)
    centre = hashes[0]
    assert centre is not None
    area = decode_area(centre, steps)
    if steps >= 2:
        if area.lat_min < min_lat:  # south, south west, south east
            hashes[2] = hashes[8] = hashes[7] = None
        if area.lat_max > max_lat:  # north, north east, north west
            hashes[1] = hashes[5] = hashes[6] = None
        if area.lon_min < min_lon:  # west, south west, north west
            hashes[4] = hashes[8] = hashes[6] = None
        if area.lon_max > max_lon:  # east, south east, north east
            hashes[3] = hashes[7] = hashes[5] = None
    ranges: list[tuple[int, int]] = []
    last = 0  # the last cell scanned; the centre (0) is never compared with (as in Redis)
    shift = 52 - steps * 2
    for i, bits in enumerate(hashes):
        if bits is None:
            continue
        if last and bits == hashes[last]:
            continue
        ranges.append((bits << shift, (bits + 1) << shift))
        last = i
    return ranges
