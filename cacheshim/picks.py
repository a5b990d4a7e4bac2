"""Random positions for the random-member commands (SRANDMEMBER, ZRANDMEMBER, HRANDFIELD with
a negative count): ``count`` positions in ``range(size)``, uniform and independent, so they
may repeat, as Redis picks them for a negative count.

They come from ``rng.choices`` (one ``random()`` per pick, in C), in chunks packed into an
``array``: ten million picks hold 40-80 MB instead of a list of ten million int objects. The
generator is the caller's: the shim's own for reads, the one seeded by the log index inside
apply (MULTI/EXEC), where the same record gives the same picks on every shim.
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
