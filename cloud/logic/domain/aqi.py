"""Air-quality index from particulate matter: the US EPA AQI and Vietnam's VN_AQI.

US EPA (PM NAAQS revision of 7 Feb 2024, in force 6 May 2024; Technical Assistance
Document for the Reporting of Daily Air Quality, EPA-454/B-24-002, May 2024, Table 6,
and the EPA fact sheet "Final Updates to the AQI for Particle Pollution", 2024-02):
concentrations are truncated (PM2.5 to 0.1 ug/m3, PM10 to 1 ug/m3), the segment with
BP_lo <= C <= BP_hi is found, I = (I_hi - I_lo) / (BP_hi - BP_lo) * (C - BP_lo) + I_lo,
rounded to the nearest integer. Above the top breakpoint the TAD allows the last segment
to be extended; that is what `epa_aqi` does (values over 500 are "beyond the AQI").
Hourly reporting uses the NowCast of the last 12 hourly means (`epa_nowcast`).

Vietnam: Decision 1459/QD-TCMT of 12 Nov 2019 (Vietnam Environment Administration),
"Huong dan ky thuat tinh toan va cong bo chi so chat luong khong khi Viet Nam (VN_AQI)",
section 2.2.1: the hourly AQI of PM2.5 and PM10 is Formula 2 (linear interpolation
between the Table 2 breakpoints, which are contiguous: BP_i to BP_i+1) applied to the
NowCast of the 12 most recent hourly means (`vn_nowcast`), rounded to an integer; the
station's hourly AQI is the maximum over pollutants. Table 2's last row is ">= 500 ug/m3
(PM2.5), >= 600 (PM10) -> 500", so `vn_aqi` caps at 500.

A valid hour (`HourCover`, `hour_valid`): both NowCasts take an hour's mean only when its
readings cover at least 45 minutes of it (`VALID_COVER_NS`, 75 %), the time between
successive readings of the pollutant counting as covered where they are at most 15 minutes
apart (`MAX_GAP_NS`). EPA's NowCast and its AQI take valid hourly averages (AirNow: 75 %
completeness, e.g. 18 of 24 hours for a daily PM2.5 AQI; the NowCast is not reported
without valid data for 2 of the 3 most recent hours); the EU's air-quality data
vocabulary (EEA, primaryObservation "hour") calculates an hourly mean only from at least
45 valid minute values; Decision 1459/QD-TCMT computes VN_AQI from the hourly means of
automatic continuous stations, quality-checked, and sets no threshold of its own, so the
same rule serves both methods. The cloud does not know a sensor's cadence: the rule counts
time, so it holds for any sensor reporting at least every 15 min (a valid hourly average of
EPA's continuous monitoring rules, e.g. 40 CFR 63.9025(a), needs data from at least four
equally spaced periods of the hour); a cadence estimated from the stamps was not taken, as
one more reading could then make a valid hour invalid, and a rewritten hour lose fields
InfluxDB keeps (docs/domain-rollups.md, "Fields written each time"): covered time only
grows as readings are added.
"""

from __future__ import annotations

import math
from bisect import bisect_left
from collections.abc import Iterable, Sequence
from itertools import pairwise
from typing import Literal

Pollutant = Literal["pm25", "pm10"]

# (BP_lo, BP_hi, I_lo, I_hi); EPA 2024 Table 6.
EPA_BREAKPOINTS: dict[str, tuple[tuple[float, float, int, int], ...]] = {
    "pm25": (
        (0.0, 9.0, 0, 50),
        (9.1, 35.4, 51, 100),
        (35.5, 55.4, 101, 150),
        (55.5, 125.4, 151, 200),
        (125.5, 225.4, 201, 300),
        (225.5, 325.4, 301, 500),
    ),
    "pm10": (
        (0, 54, 0, 50),
        (55, 154, 51, 100),
        (155, 254, 101, 150),
        (255, 354, 151, 200),
        (355, 424, 201, 300),
        (425, 604, 301, 500),
    ),
}

EPA_CATEGORIES: tuple[tuple[int, str], ...] = (
    (50, "Good"),
    (100, "Moderate"),
    (150, "Unhealthy for Sensitive Groups"),
    (200, "Unhealthy"),
    (300, "Very Unhealthy"),
    (10**9, "Hazardous"),
)

# Decision 1459/QD-TCMT Table 2: index levels I_i and the PM breakpoints BP_i (ug/m3).
VN_LEVELS: tuple[int, ...] = (0, 50, 100, 150, 200, 300, 400, 500)
VN_BREAKPOINTS: dict[str, tuple[float, ...]] = {
    "pm25": (0, 25, 50, 80, 150, 250, 350, 500),
    "pm10": (0, 50, 150, 250, 350, 420, 500, 600),
}

# Decision 1459/QD-TCMT Table 1 (names as published, then English).
VN_CATEGORIES: tuple[tuple[int, str], ...] = (
    (50, "Tốt"),
    (100, "Trung bình"),
    (150, "Kém"),
    (200, "Xấu"),
    (300, "Rất xấu"),
    (10**9, "Nguy hại"),
)


def _round_half_up(x: float) -> int:
    return math.floor(x + 0.5)


def _check(pollutant: str) -> None:
    if pollutant not in EPA_BREAKPOINTS:
        raise ValueError(f"pollutant must be one of {sorted(EPA_BREAKPOINTS)}, got {pollutant!r}")


def _usable(c: float | None) -> bool:
    return c is not None and math.isfinite(c) and c >= 0


def epa_truncate(pollutant: Pollutant, concentration: float) -> float:
    """EPA truncation: PM2.5 to one decimal, PM10 to an integer (a small epsilon keeps
    binary representation error from truncating 35.4 to 35.3)."""
    _check(pollutant)
    if pollutant == "pm25":
        return math.floor(concentration * 10 + 1e-6) / 10
    return float(math.floor(concentration + 1e-9))


def epa_aqi(pollutant: Pollutant, concentration: float | None) -> int | None:
    """US EPA sub-index of one pollutant; None when there is no usable concentration."""
    _check(pollutant)
    if concentration is None or not _usable(concentration):
        return None
    c = epa_truncate(pollutant, concentration)
    table = EPA_BREAKPOINTS[pollutant]
    # Past the last breakpoint the last segment is extended.
    segment = next((s for s in table if c <= s[1]), table[-1])
    bp_lo, bp_hi, i_lo, i_hi = segment
    return _round_half_up((i_hi - i_lo) / (bp_hi - bp_lo) * (c - bp_lo) + i_lo)


def vn_subindex(pollutant: Pollutant, concentration: float | None) -> int | None:
    """VN_AQI Formula 2 applied to a (NowCast) concentration; capped at 500."""
    _check(pollutant)
    if concentration is None or not _usable(concentration):
        return None
    bps = VN_BREAKPOINTS[pollutant]
    if concentration >= bps[-1]:
        return VN_LEVELS[-1]
    for i in range(len(bps) - 1):
        if concentration <= bps[i + 1]:
            lo, hi = bps[i], bps[i + 1]
            i_lo, i_hi = VN_LEVELS[i], VN_LEVELS[i + 1]
            return _round_half_up((i_hi - i_lo) / (hi - lo) * (concentration - lo) + i_lo)
    raise AssertionError("unreachable: concentration below the top breakpoint")


def _weight(hours: Sequence[float | None]) -> float | None:
    """w of the NowCast, or None when fewer than 2 of the 3 most recent hours exist."""
    if len(hours) > 12:
        raise ValueError(f"NowCast takes at most 12 hourly values, got {len(hours)}")
    recent = [c for c in hours[:3] if c is not None]
    if len(recent) < 2:
        return None
    present = [c for c in hours if c is not None]
    if any(not math.isfinite(c) or c < 0 for c in present):
        raise ValueError(f"hourly concentrations must be finite and >= 0, got {list(hours)}")
    c_max = max(present)
    if c_max == 0:
        return 1.0
    return max(min(present) / c_max, 0.5)


def epa_nowcast(hours: Sequence[float | None]) -> float | None:
    """EPA NowCast for PM: `hours[0]` is the current hour's mean, `hours[11]` the mean 11
    hours before; None marks a missing hour (its weight is dropped). w = max(Cmin/Cmax,
    1/2); NowCast = sum(w^(i-1) c_i) / sum(w^(i-1)). None when fewer than 2 of the 3
    most recent hours have data."""
    w = _weight(hours)
    if w is None:
        return None
    num = math.fsum(w**i * c for i, c in enumerate(hours) if c is not None)
    den = math.fsum(w**i for i, c in enumerate(hours) if c is not None)
    return num / den


def vn_nowcast(hours: Sequence[float | None]) -> float | None:
    """NowCast as Decision 1459/QD-TCMT section 2.2.1.a writes it: c1 = `hours[0]` is the
    current hour, w* = Cmin/Cmax over the 12 values; w = w* if w* > 1/2, else w = 1/2.
    If w > 1/2: NowCast = sum(w^(i-1) c_i) / sum(w^(i-1)). If w = 1/2: NowCast =
    sum((1/2)^i c_i), i = 1..12 (not divided by the weight sum). A missing hour gets weight
    0; for the w = 1/2 form (which the Decision does not normalise) the remaining weights
    are rescaled to the full sum of (1/2)^i, so that a gap does not read as clean air.
    None when fewer than 2 of c1, c2, c3 have data (the Decision's "no data")."""
    w = _weight(hours)
    if w is None:
        return None
    if w > 0.5:
        return epa_nowcast(hours)
    full = math.fsum(0.5 ** (i + 1) for i in range(12))
    num = math.fsum(0.5 ** (i + 1) * c for i, c in enumerate(hours) if c is not None)
    present = math.fsum(0.5 ** (i + 1) for i, c in enumerate(hours) if c is not None)
    return num * full / present


# vn_nowcast's sum of the full weights (1/2)^i, i = 1..12
_HALF_FULL = math.fsum(0.5 ** (i + 1) for i in range(12))


class NowCastTail:
    """The 11 hourly means before an hour (`hours[1:]` of `epa_nowcast`, newest first, None
    where missing), ready for the NowCasts of that hour while its own mean changes (a live
    station's hour, at every reading). `nowcasts(c0)` is exactly `(epa_nowcast(hours),
    vn_nowcast(hours))` of `hours = [c0, *tail]`: the same math.fsum of the same terms
    (exactly rounded, so their order does not matter), the 11 hours' terms and weight sums
    computed once for each weight w (which moves only when c0 is the smallest or largest);
    unusable values (the functions raise) go to the functions themselves."""

    __slots__ = ("_dens", "_half_dens", "_half_terms", "_present", "_terms", "_w",
                 "hi", "lo", "recent", "tail", "usable")

    def __init__(self, tail: Sequence[float | None]) -> None:
        if len(tail) != 11:
            raise ValueError(f"a NowCast tail is the 11 hours before, got {len(tail)}")
        self.tail = list(tail)
        self._present = [(i, c) for i, c in enumerate(tail, 1) if c is not None]
        values = [c for _, c in self._present]
        self.recent = (tail[0] is not None) + (tail[1] is not None)  # of hours[1:3]
        self.usable = all(math.isfinite(c) and c >= 0 for c in values)
        self.lo = min(values) if values else 0.0
        self.hi = max(values) if values else 0.0
        self._w = -1.0  # no weight yet
        self._terms: list[float] = []
        self._dens = (0.0, 0.0)
        self._half_terms = [0.5 ** (i + 1) * c for i, c in self._present]
        half_weights = [0.5 ** (i + 1) for i, _ in self._present]
        self._half_dens = (math.fsum(half_weights), math.fsum([0.5, *half_weights]))

    def nowcasts(self, c0: float | None) -> tuple[float | None, float | None]:
        """(epa_nowcast, vn_nowcast) of `[c0, *tail]`."""
        if self.recent + (c0 is not None) < 2:  # fewer than 2 of the 3 most recent hours
            return None, None
        lo, hi = self.lo, self.hi
        if c0 is not None:
            if not self.usable or not (math.isfinite(c0) and c0 >= 0):
                hours = [c0, *self.tail]
                return epa_nowcast(hours), vn_nowcast(hours)  # they raise
            lo, hi = min(c0, lo), max(c0, hi)
        elif not self.usable:
            hours = [c0, *self.tail]
            return epa_nowcast(hours), vn_nowcast(hours)
        # _weight: Cmin and Cmax are the same values whichever of equal ones is taken (a zero's
        # sign gives 0.5 all the same)
        w = 1.0 if hi == 0 else max(lo / hi, 0.5)
        if w != self._w:
            self._w = w
            self._terms = [w**i * c for i, c in self._present]
            weights = [w**i for i, _ in self._present]
            self._dens = (math.fsum(weights), math.fsum([1.0, *weights]))
        if c0 is None:
            epa = math.fsum(self._terms) / self._dens[0]
        else:  # w**0 * c0 is c0
            epa = math.fsum([c0, *self._terms]) / self._dens[1]
        if w > 0.5:
            return epa, epa
        if c0 is None:
            return epa, math.fsum(self._half_terms) * _HALF_FULL / self._half_dens[0]
        return epa, math.fsum([0.5 * c0, *self._half_terms]) * _HALF_FULL / self._half_dens[1]


# A valid hour: its readings cover at least VALID_COVER_NS of it, counting the time between
# successive readings (of any sensor of the station) at most MAX_GAP_NS apart.
MAX_GAP_NS = 15 * 60 * 10**9
VALID_COVER_NS = 45 * 60 * 10**9


def covered_ns(stamps: Iterable[int]) -> int:
    """The time of an hour its readings stamped `stamps` cover: the sum of the gaps between
    successive distinct stamps that are at most `MAX_GAP_NS` (a longer one: the station was
    silent). One reading covers nothing; readings every minute from :00 to :45, 45 min."""
    ordered = sorted(set(stamps))
    return sum(b - a for a, b in pairwise(ordered) if b - a <= MAX_GAP_NS)


def hour_valid(stamps: Iterable[int]) -> bool:
    """Whether an hour whose readings are stamped `stamps` is valid for the NowCast."""
    return covered_ns(stamps) >= VALID_COVER_NS


class HourCover:
    """`covered_ns` of the stamps added so far, kept up to date as stamps are added (in
    order: one subtraction; late: the gap the stamp splits, replaced by its two parts)."""

    __slots__ = ("covered", "stamps")

    def __init__(self, stamps: Iterable[int] = ()) -> None:
        self.stamps = sorted(set(stamps))
        self.covered = covered_ns(self.stamps)

    @property
    def valid(self) -> bool:
        return self.covered >= VALID_COVER_NS

    def add(self, ts: int) -> None:
        stamps = self.stamps
        if not stamps or ts > stamps[-1]:
            if stamps and ts - stamps[-1] <= MAX_GAP_NS:
                self.covered += ts - stamps[-1]
            stamps.append(ts)
            return
        i = bisect_left(stamps, ts)
        after = stamps[i]
        if after == ts:
            return
        if after - ts <= MAX_GAP_NS:
            self.covered += after - ts
        if i:
            before = stamps[i - 1]
            if after - before <= MAX_GAP_NS:
                self.covered -= after - before
            if ts - before <= MAX_GAP_NS:
                self.covered += ts - before
        stamps.insert(i, ts)


def epa_category(aqi: int | None) -> str | None:
    if aqi is None:
        return None
    return next(name for top, name in EPA_CATEGORIES if aqi <= top)


def vn_category(aqi: int | None) -> str | None:
    if aqi is None:
        return None
    return next(name for top, name in VN_CATEGORIES if aqi <= top)


def vn_aqi_hourly(pollutant: Pollutant, hours: Sequence[float | None]) -> int | None:
    """Hourly VN_AQI sub-index of PM2.5 or PM10 from the last 12 hourly means (newest first)."""
    return vn_subindex(pollutant, vn_nowcast(hours))


def epa_aqi_hourly(pollutant: Pollutant, hours: Sequence[float | None]) -> int | None:
    """Hourly (NowCast) EPA sub-index from the last 12 hourly means (newest first)."""
    return epa_aqi(pollutant, epa_nowcast(hours))


def overall(subindices: Sequence[int | None]) -> int | None:
    """The station's index: the largest sub-index (both methods), None if none."""
    known = [s for s in subindices if s is not None]
    return max(known) if known else None
