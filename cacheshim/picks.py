"""Random positions for the random-member commands (SRANDMEMBER, ZRANDMEMBER, HRANDFIELD):
with a negative count, ``count`` positions in ``range(size)``, uniform and independent, so
they may repeat; with a positive one, ``count`` distinct positions, as Redis picks them.

They come from ``rng.choices`` (one ``random()`` per pick, in C) rather than a Python loop
of ``randrange``: repeated picks in chunks packed into an ``array`` (ten million picks hold
40-80 MB instead of a list of ten million int objects); distinct ones by drawing until
enough differ. The generator is the caller's: the shim's own for reads, the one seeded by
the log index inside apply (MULTI/EXEC), where the same record gives the same picks on every
shim.
"""

from __future__ import annotations

import random
from array import array
from typing import Final

# Picks drawn per call of rng.choices: bounds the temporary list of int objects.
_CHUNK: Final = 65536
_UINT32_END: Final = 1 << 32


def repeated_positions(rng: random.Random, size: int, count: int) -> array[int]:
    """count positions in [0, size), each uniform and independent of the others."""
    positions = array("I" if size <= _UINT32_END else "Q")
    population = range(size)
    for start in range(0, count, _CHUNK):
        positions.extend(rng.choices(population, k=min(_CHUNK, count - start)))
    return positions


def distinct_positions(rng: random.Random, size: int, count: int) -> list[int]:
    """count distinct positions in [0, size) (count <= size), every subset and order as
    likely as any other: positions drawn one by one, repeats skipped. Drawn in batches of
    what is still missing, in C; past half the size, where repeats would dominate,
    random.sample does it."""
    if count * 2 > size:
        return rng.sample(range(size), count)
    chosen: dict[int, None] = {}
    population = range(size)
    while len(chosen) < count:
        chosen.update(dict.fromkeys(rng.choices(population, k=count - len(chosen))))
    return list(chosen)
