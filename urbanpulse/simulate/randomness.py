"""Deterministic randomness keyed by what it is for.

Every entity draws from its own stream, derived from the run's seed and the entity's
name (and, for processes generated piece by piece, the piece's index). Adding a
sensor therefore never changes what the others produce.

`substream` gives a numpy Generator for drawing arrays (arrivals in a chunk of time).
`slot_uniform`/`slot_normal` are counter-based: the value for a given key and integer
slot (a second of simulated time, a sample index) is computed directly, without
state, so noise at any instant can be asked for in any order at no memory cost.
"""

from __future__ import annotations

import hashlib

import numpy as np
from numpy.typing import NDArray

FloatArray = NDArray[np.float64]
IntArray = NDArray[np.int64]
BoolArray = NDArray[np.bool_]

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_MIX1 = np.uint64(0xBF58476D1CE4E5B9)
_MIX2 = np.uint64(0x94D049BB133111EB)
_TWO_53 = float(2**53)


def key_hash(seed: int, *key: str | int) -> int:
    """A 64-bit integer naming (seed, key...) stably across runs and platforms."""
    text = "\x1f".join([str(seed), *(str(k) for k in key)])
    return int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(), "little")


def substream(seed: int, *key: str | int) -> np.random.Generator:
    text = "\x1f".join([str(seed), *(str(k) for k in key)])
    entropy = int.from_bytes(hashlib.blake2b(text.encode(), digest_size=16).digest(), "little")
    return np.random.Generator(np.random.PCG64(np.random.SeedSequence(entropy)))


def _splitmix(x: NDArray[np.uint64]) -> NDArray[np.uint64]:
    z = x + _GOLDEN
    z = (z ^ (z >> np.uint64(30))) * _MIX1
    z = (z ^ (z >> np.uint64(27))) * _MIX2
    return z ^ (z >> np.uint64(31))


def _bits(key: int, slots: IntArray, lane: int) -> NDArray[np.uint64]:
    s = np.asarray(slots, dtype=np.int64).view(np.uint64)
    base = np.full(s.shape, key ^ (lane * 0x632BE59BD9B4E019) & 0xFFFFFFFFFFFFFFFF,
                   dtype=np.uint64)
    return _splitmix(_splitmix(s) ^ base)


def slot_uniform(key: int, slots: IntArray, lane: int = 0) -> FloatArray:
    """Uniform in [0, 1) for each slot; `lane` gives independent values for one slot."""
    return (_bits(key, slots, lane) >> np.uint64(11)).astype(np.float64) / _TWO_53


def slot_normal(key: int, slots: IntArray, lane: int = 0) -> FloatArray:
    """Standard normal for each slot (Box-Muller on two counter-based uniforms)."""
    u1 = 1.0 - slot_uniform(key, slots, 2 * lane + 1)
    u2 = slot_uniform(key, slots, 2 * lane + 2)
    result: FloatArray = np.sqrt(-2.0 * np.log(u1)) * np.cos(2.0 * np.pi * u2)
    return result
