"""Telling a PMS5003 from a PMS5003T by the frames it sends.

The two models send the same frame: same start, same length (28), words 1-10 and the
reserved word 13 with the same meaning (version and error code on both). Only words 11-12
differ: counts of particles > 5 µm and > 10 µm on the PMS5003, temperature (signed) and
relative humidity, each × 10, on the PMS5003T. So the frames are read here as a plain
PMS5003's (`n5_0`, `n10_0` are the raw words 11 and 12) and the words are weighed.

Facts, each of which rules one model out:
- counts are cumulative (particles *larger than* the size), so a PMS5003 always has
  n10_0 <= n5_0 <= n2_5;
- relative humidity is at most 100 %, so a PMS5003T's word 12 is at most 1000, and air
  at the surface is never drier than about 1 % (desert records), so it is at least 10.
  A PMS5003 in clean or filtered air sees no particle > 5 µm for minutes: words 11-12
  at 0 (or a few) hold still while the fine counts move, which the weighing below would
  otherwise take for a PMS5003T;
- temperature and humidity move slowly: between two frames (at most 2.3 s apart in
  active mode) a PMS5003T's temperature does not step more than 1 °C nor its humidity
  more than 3 %.

Hot dry dusty air passes every fact for both models (a PMS5003T at 35 °C and 30 % sends
350 and 300, below an n2_5 of 350 or more). Then several frames decide: temperature and
humidity hold still while the particle counts move, whereas a PMS5003's words 11-12 are
counts of the same air and move with the others."""

from __future__ import annotations

from collections.abc import Sequence
from itertools import pairwise
from typing import Literal

from firmware_bridge.protocols.pms5003.frames import Pms5003Measurement

Model = Literal["pms5003", "pms5003t"]

RH_MAX = 1000  # word 12 of a PMS5003T: 100.0 %
RH_MIN = 10  # and 1.0 %
T_STEP_MAX = 10  # word 11 of a PMS5003T between two frames: 1.0 °C
RH_STEP_MAX = 30  # word 12 of a PMS5003T between two frames: 3.0 %
MIN_FRAMES = 3  # for the comparison of how much the words move
COUNTS_MOVED = 0.1  # the counts must spread by 10 % before their spread says anything
STILL = 0.25  # words 11-12 spread at most this part of the counts' spread: a PMS5003T
MOVING = 0.5  # at least this part: a PMS5003


def _signed(word: int) -> int:
    return word - 0x10000 if word & 0x8000 else word


def _spread(values: Sequence[int]) -> float:
    """How far the values spread, relative to the largest of them."""
    return (max(values) - min(values)) / max(max(abs(v) for v in values), 1)


def can_be_plain(frames: Sequence[Pms5003Measurement]) -> bool:
    return all(f.n10_0 <= f.n5_0 <= f.n2_5 for f in frames)


def can_be_t(frames: Sequence[Pms5003Measurement]) -> bool:
    if any(not RH_MIN <= f.n10_0 <= RH_MAX for f in frames):
        return False
    return all(abs(_signed(b.n5_0) - _signed(a.n5_0)) <= T_STEP_MAX
               and abs(b.n10_0 - a.n10_0) <= RH_STEP_MAX for a, b in pairwise(frames))


def tell_model(frames: Sequence[Pms5003Measurement]) -> Model | None:
    """The model that sent `frames` (consecutive data frames of one sensor, in order),
    or None while they cannot tell: too few frames, a steady stream, or frames neither
    model could send."""
    plain, t = can_be_plain(frames), can_be_t(frames)
    if plain != t:
        return "pms5003" if plain else "pms5003t"
    if not plain or len(frames) < MIN_FRAMES:
        return None
    counts_moved = max(_spread([getattr(f, name) for f in frames])
                       for name in ("n0_3", "n0_5", "n1_0", "n2_5"))
    if counts_moved < COUNTS_MOVED:
        return None
    words_moved = max(_spread([_signed(f.n5_0) for f in frames]), _spread([f.n10_0 for f in frames]))
    if words_moved <= STILL * counts_moved:
        return "pms5003t"
    if words_moved >= MOVING * counts_moved:
        return "pms5003"
    return None
