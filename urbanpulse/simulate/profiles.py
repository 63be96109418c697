"""Hour-of-day, weekday and seasonal curves, with Hanoi defaults.

A daily profile holds 24 values, one at the middle of each local hour, joined by
straight lines (and wrapping at midnight). Its integral over a day is the sum of the
values times one hour, which makes "N per day, shaped like this" exact.
See docs/simulator.md for where the default numbers come from.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from numpy.typing import ArrayLike

from urbanpulse.simulate.randomness import FloatArray

_MIDPOINTS = np.arange(24, dtype=np.float64) + 0.5
_WEEK_MIDPOINTS = np.arange(168, dtype=np.float64) + 0.5
# Day of the year at the middle of each month (non-leap year).
_MID_MONTH = np.array([15.5, 45.0, 74.5, 105.0, 135.5, 166.0, 196.5, 227.5, 258.0, 288.5,
                       319.0, 349.5])


@dataclass(frozen=True, slots=True)
class DailyProfile:
    values: tuple[float, ...]

    def __post_init__(self) -> None:
        if len(self.values) != 24 or any(v < 0 for v in self.values):
            raise ValueError("a daily profile needs 24 non-negative values")

    def at(self, hour: ArrayLike) -> FloatArray:
        x = np.asarray(hour, dtype=np.float64)
        value: FloatArray = np.interp(x, _MIDPOINTS, self.values, period=24.0)
        return value

    @property
    def day_sum(self) -> float:
        """Integral over a day, in value-hours."""
        return float(sum(self.values))

    @property
    def peak(self) -> float:
        return max(self.values)


@dataclass(frozen=True, slots=True)
class WeeklyProfile:
    """One daily profile and one scale factor per weekday (0 = Monday), joined into one
    curve over the week (so Sunday night flows smoothly into Monday morning)."""

    days: tuple[DailyProfile, ...]
    factors: tuple[float, ...]
    _table: FloatArray = field(init=False, repr=False, compare=False)

    @classmethod
    def of(cls, weekday: DailyProfile, saturday: DailyProfile, sunday: DailyProfile,
           factors: tuple[float, ...] = (1, 1, 1, 1, 1, 1, 1)) -> WeeklyProfile:
        return cls((weekday,) * 5 + (saturday, sunday), tuple(float(f) for f in factors))

    def __post_init__(self) -> None:
        if len(self.days) != 7 or len(self.factors) != 7:
            raise ValueError("a weekly profile needs 7 daily profiles and 7 factors")
        table = [v * f for d, f in zip(self.days, self.factors, strict=True) for v in d.values]
        object.__setattr__(self, "_table", np.array(table))

    def at(self, week_hour: ArrayLike) -> FloatArray:
        """The value at hours since Monday 00:00 local (0 <= week_hour < 168)."""
        x = np.asarray(week_hour, dtype=np.float64)
        value: FloatArray = np.interp(x, _WEEK_MIDPOINTS, self._table, period=168.0)
        return value

    @property
    def peak(self) -> float:
        return max(d.peak * f for d, f in zip(self.days, self.factors, strict=True))


def per_day_rate(per_day: float, profile: WeeklyProfile, week_hour: ArrayLike) -> FloatArray:
    """Events per second shaped like `profile`, `per_day` of them on a Monday (a weekday
    factor of 1)."""
    rate: FloatArray = per_day / 3600.0 / profile.days[0].day_sum * profile.at(week_hour)
    return rate


@dataclass(frozen=True, slots=True)
class MonthlyCurve:
    """Twelve values at the middle of each month, joined by straight lines."""

    values: tuple[float, ...]

    def __post_init__(self) -> None:
        if len(self.values) != 12:
            raise ValueError("a monthly curve needs 12 values")

    def at(self, day_of_year: ArrayLike) -> FloatArray:
        x = np.asarray(day_of_year, dtype=np.float64)
        value: FloatArray = np.interp(x, _MID_MONTH, self.values, period=365.0)
        return value


def _p(*values: float) -> DailyProfile:
    return DailyProfile(tuple(float(v) for v in values))


# Relative traffic flow per lane, 1.0 = the lane's peak hourly flow. Two sharp rush hours
# on working days (07-09 and 17-19 local), a flatter weekend.
TRAFFIC_WEEKDAY = _p(0.10, 0.06, 0.04, 0.04, 0.08, 0.25, 0.60, 0.95, 1.00, 0.80, 0.70, 0.72,
                     0.65, 0.62, 0.68, 0.75, 0.88, 1.00, 0.97, 0.80, 0.62, 0.50, 0.35, 0.20)
TRAFFIC_WEEKEND = _p(0.14, 0.08, 0.05, 0.04, 0.06, 0.15, 0.35, 0.55, 0.68, 0.75, 0.78, 0.75,
                     0.68, 0.65, 0.68, 0.72, 0.78, 0.82, 0.82, 0.78, 0.70, 0.58, 0.42, 0.26)
TRAFFIC = WeeklyProfile.of(TRAFFIC_WEEKDAY, TRAFFIC_WEEKEND, TRAFFIC_WEEKEND,
                           (1.0, 1.0, 1.0, 1.0, 1.02, 0.92, 0.80))

# Emergency department arrivals: trough before dawn, late-morning peak, busy evening.
ER_ARRIVALS = _p(0.60, 0.50, 0.42, 0.38, 0.36, 0.40, 0.60, 0.95, 1.30, 1.45, 1.45, 1.35,
                 1.20, 1.20, 1.25, 1.25, 1.20, 1.15, 1.15, 1.15, 1.10, 1.00, 0.85, 0.70)
ER = WeeklyProfile.of(ER_ARRIVALS, ER_ARRIVALS, ER_ARRIVALS, (1, 1, 1, 1, 1, 1.05, 1.05))

# Outpatient arrivals: people queue before the 07:00 opening, most arrive 06-10.
OUTPATIENT_DAY = _p(0, 0, 0, 0, 0, 0.30, 1.60, 2.40, 2.20, 1.60, 1.10, 0.50,
                    0.40, 0.90, 0.80, 0.50, 0.20, 0, 0, 0, 0, 0, 0, 0)
OUTPATIENT = WeeklyProfile.of(OUTPATIENT_DAY, OUTPATIENT_DAY, OUTPATIENT_DAY,
                              (1, 1, 1, 1, 1, 0.40, 0.0))

# Ward admissions: mostly in the working day, fewer at night (emergency admissions only).
ADMISSIONS_DAY = _p(0.45, 0.40, 0.35, 0.35, 0.35, 0.40, 0.55, 0.90, 1.50, 1.80, 1.80, 1.60,
                    1.30, 1.40, 1.50, 1.50, 1.40, 1.20, 1.00, 0.90, 0.80, 0.70, 0.60, 0.50)
ADMISSIONS = WeeklyProfile.of(ADMISSIONS_DAY, ADMISSIONS_DAY, ADMISSIONS_DAY,
                              (1.05, 1.05, 1.05, 1.05, 1.05, 0.90, 0.85))

# PM2.5 relative to the daily mean: high at night under a shallow mixing layer, lowest
# mid-afternoon, a bump with the morning rush.
PM_DIURNAL = _p(1.15, 1.15, 1.12, 1.10, 1.10, 1.12, 1.15, 1.20, 1.20, 1.10, 0.95, 0.85,
                0.78, 0.72, 0.68, 0.68, 0.72, 0.82, 0.95, 1.08, 1.15, 1.18, 1.18, 1.16)
# Monthly mean PM2.5 in ug/m3 for Hanoi (dry winter high, rainy summer low).
PM25_MONTHLY = MonthlyCurve((75.0, 62.0, 55.0, 45.0, 33.0, 25.0, 22.0, 22.0, 28.0, 45.0,
                             60.0, 72.0))
# Monthly mean air temperature in degC, and rainy days per month.
TEMPERATURE_MONTHLY = MonthlyCurve((16.5, 17.5, 20.0, 24.0, 28.0, 29.5, 29.5, 29.0, 28.0,
                                    25.5, 22.0, 18.5))
RAIN_DAYS_MONTHLY = MonthlyCurve((8.0, 11.0, 15.0, 13.0, 14.0, 15.0, 16.0, 17.0, 13.0, 9.0,
                                  6.0, 5.0))
# Onsets of multi-day stagnation episodes per 30 days: about a dozen from October to
# February (Hien et al. 2011), rare in the rainy season.
EPISODES_MONTHLY = MonthlyCurve((3.0, 2.0, 1.0, 0.5, 0.3, 0.2, 0.2, 0.2, 0.3, 1.5, 2.5, 3.0))
