"""Counter-based pseudo-random numbers: the value depends only on (seed, stream, key).

The simulator must give the same numbers for the same instant whether it is asked one second or
one hour at a time, in 200 ms chunks or 50 ms chunks. A stateful generator cannot promise that;
hashing the key (a sample index or a time in microseconds) with SplitMix64 can, and it stays
vectorized.
"""

from __future__ import annotations

import functools
from typing import Final

import numpy as np
from numpy.typing import NDArray

__all__ = ["hashed_normal", "hashed_uniform"]

_GOLDEN: Final = np.uint64(0x9E3779B97F4A7C15)
_MIX1: Final = np.uint64(0xBF58476D1CE4E5B9)
_MIX2: Final = np.uint64(0x94D049BB133111EB)
_MASK64: Final = (1 << 64) - 1
_TO_UNIT: Final = 1.0 / float(1 << 53)


def _splitmix64(x: NDArray[np.uint64]) -> NDArray[np.uint64]:
    z = x + _GOLDEN
    z = (z ^ (z >> np.uint64(30))) * _MIX1
    z = (z ^ (z >> np.uint64(27))) * _MIX2
    return z ^ (z >> np.uint64(31))


@functools.lru_cache(maxsize=256)
def _salt(seed: int, stream: int) -> np.uint64:
    raw = np.array([(seed * 0x100000001B3 + stream * 0x9E3779B1 + 1) & _MASK64], dtype=np.uint64)
    with np.errstate(over="ignore"):
        return np.uint64(_splitmix64(raw)[0])


def hashed_uniform(seed: int, stream: int, keys: NDArray[np.int64]) -> NDArray[np.float64]:
    """Uniform numbers in (0, 1), one per key, reproducible from (seed, stream, key) alone."""
    with np.errstate(over="ignore"):
        z = _splitmix64(np.asarray(keys).astype(np.uint64) ^ _salt(seed, stream))
    return ((z >> np.uint64(11)).astype(np.float64) + 0.5) * _TO_UNIT


def hashed_normal(seed: int, stream: int, keys: NDArray[np.int64]) -> NDArray[np.float64]:
    """Standard normal numbers, one per key (Box-Muller on two hashed uniforms)."""
    keys = np.asarray(keys, dtype=np.int64)
    u1 = hashed_uniform(seed, 2 * stream, keys)
    u2 = hashed_uniform(seed, 2 * stream + 1, keys)
    out: NDArray[np.float64] = np.sqrt(-2.0 * np.log(u1)) * np.cos(2.0 * np.pi * u2)
    return out
