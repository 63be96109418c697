"""Counting intervals (a door's, a loop's: readings of counts over `interval_s`) must divide
an hour exactly: intervals end on multiples of `interval_s` from the epoch and the cloud
counts each in the hour it ends in, so any other length gives the hours unequal time. Checked
by the edge's config and by the simulator's city file alike."""

from __future__ import annotations

from fractions import Fraction
from functools import cache

from urbanpulse.errors import ConfigError

HOUR_S = 3600


def divides_hour(value: float) -> bool:
    """Whether `value` (s, as the config wrote it: 0.1 is a tenth) divides an hour exactly."""
    exact = Fraction(str(value))
    return exact > 0 and (HOUR_S / exact).denominator == 1


@cache
def _hour_divisors() -> tuple[Fraction, ...]:
    """The values to the millisecond, from 1 ms up, that divide an hour (what an error
    proposes): 3600 / n for each n that divides 3,600,000."""
    return tuple(sorted(Fraction(HOUR_S, n) for n in range(1, HOUR_S * 1000 + 1)
                        if HOUR_S * 1000 % n == 0))


def hour_divisors_near(value: float, low: float = 0.1, high: float = HOUR_S) -> tuple[float, ...]:
    """The values within [low, high] (to the millisecond) that divide an hour nearest to
    `value`: the greatest below it and the least above it (one of them at an end)."""
    lo, hi = Fraction(str(low)), Fraction(str(high))  # 0.1 as written, not the float's binary
    within = [d for d in _hour_divisors() if lo <= d <= hi]
    exact = Fraction(str(value))
    below = [d for d in within if d < exact]
    above = [d for d in within if d > exact]
    return tuple(float(d) for d in (below[-1:] + above[:1]))


def whole_hour_divisors_near(value: int, high: int = HOUR_S) -> tuple[int, ...]:
    """The whole seconds up to `high` that divide an hour nearest to `value`: the greatest
    below it and the least above it (what to propose for a board that times its own
    intervals in whole seconds, e.g. a upfw loop card's `LI`)."""
    within = [d for d in range(1, high + 1) if HOUR_S % d == 0]
    below = [d for d in within if d < value]
    above = [d for d in within if d > value]
    return tuple(below[-1:] + above[:1])


def check_divides_hour(key: str, value: float, low: float = 0.1, high: float = HOUR_S) -> None:
    """ConfigError naming `key` unless the counting interval `value` divides an hour."""
    if not divides_hour(value):
        near = ", ".join(f"{v:g}" for v in hour_divisors_near(value, low, high))
        raise ConfigError(key, f"must divide an hour (3600 s) exactly, got {value!r}: intervals "
                          f"end on its multiples from the epoch and each counts in the hour it "
                          f"ends in, so the hours would hold unequal time (2400 s: 40 and 80 "
                          f"minutes) and hourly counts be off by up to 2x; nearest: {near}")
