"""The cross-station drift rule (cloud/detect/drift.py) on hours a sensor covered only in
part (issue 7, fault bench run 24: bach-mai's pms5003 went silent at 9.56 h while a local
pollution spike at its station fell; its mean over the first 56 % of hour 9, against the
whole hour of its partner and of the other stations, gave +0.27 of apparent own deviation
to a CUSUM already at 5.6 of 8), and on the number of stations its events say the median
was taken over.

A hand-made city: station "s" with two modules of PM2.5 ("pm", "pm-b", the pair rule's
naming) and four stations "o1".."o4" with one, each station's air the city's weather and a
local variation of its own (sd 10 %, memory 40 min), each module its own noise (6 %).
"""

from __future__ import annotations

import math
import pickle
import random
from collections.abc import Callable

from cloud.detect.drift import CityDrift, Drift, SeriesKey

H_NS = 3_600_000_000_000
MIN_NS = 60_000_000_000
T0_NS = 1_770_000_000 * 1_000_000_000 // H_NS * H_NS  # on an hour
H0 = T0_NS // H_NS  # the bin index of the start
SERIES: list[SeriesKey] = [("s", "aq", "pm"), ("s", "aq", "pm-b"), ("o1", "aq", "pm"),
                           ("o2", "aq", "pm"), ("o3", "aq", "pm"), ("o4", "aq", "pm")]
PM, PM_B, O1, O2, O3, O4 = SERIES
Reading = tuple[SeriesKey, int, float]
Factor = Callable[[float], float]  # hours -> multiplier


def _one(h: float) -> float:
    return 1.0


def city(hours: float, own_air: Factor = _one, gain: dict[SeriesKey, Factor] | None = None,
         every_min: dict[SeriesKey, int] | None = None, seed: int = 5) -> list[Reading]:
    """Each module's PM2.5 every minute (every `every_min` minutes for those given, from a
    phase of their own), in time order; station "s"'s air multiplied by `own_air`, a
    module's reading by its `gain`."""
    rng = random.Random(seed)
    keep = math.exp(-1 / 40)
    local = {station: 0.0 for station in ("s", "o1", "o2", "o3", "o4")}
    every = every_min or {}
    gains = gain or {}
    out: list[Reading] = []
    for k in range(int(hours * 60)):
        h = k / 60
        weather = 40 * (1.5 + math.sin(2 * math.pi * h / 24))
        for station in local:
            local[station] = (keep * local[station]
                              + 0.1 * math.sqrt(1 - keep**2) * rng.gauss(0, 1))
        for i, series in enumerate(SERIES):
            air = weather * math.exp(local[series[0]]) * (own_air(h) if series[0] == "s" else 1.0)
            value = air * (0.93 if series == PM_B else 1.0) * gains.get(series, _one)(h)
            value *= math.exp(0.06 * rng.gauss(0, 1))
            step = every.get(series, 1)
            if (k + 7 * i) % step == 0:
                out.append((series, T0_NS + k * MIN_NS + i * 1_000_000_000, round(value, 1)))
    return out


def silent(readings: list[Reading], series: SeriesKey, start_h: float, end_h: float
           ) -> list[Reading]:
    """`readings` without those of `series` stamped within [start_h, end_h)."""
    return [r for r in readings
            if not (r[0] == series and start_h * H_NS <= r[1] - T0_NS < end_h * H_NS)]


def feed(drift: CityDrift, readings: list[Reading]) -> list[Drift]:
    found: list[Drift] = []
    for series, ts, value in readings:
        found += drift.update(series, "air.pm", ts, {"pm25": value})
    return found


def until(readings: list[Reading], h: float) -> list[Reading]:
    return [r for r in readings if r[1] < T0_NS + h * H_NS]


def judged(drift: CityDrift, series: SeriesKey) -> dict[int, float]:
    """The hours (from the start) the rule judged `series` in, with its deviation then."""
    track = drift._fields["pm25"].tracks[series]
    return {index - H0: d for index, d in track.recent}


def sums(drift: CityDrift, series: SeriesKey) -> tuple[float, float]:
    track = drift._fields["pm25"].tracks[series]
    return track.up, track.down


def test_an_hour_a_module_covered_in_part_is_not_judged() -> None:
    # run 24's shape: a local spike (x4) at station "s" ends at 55.7 h; "pm" goes silent
    # at 55.5 h, so it saw only the spike's part of hour 55, its partner the whole hour
    def spike(h: float) -> float:
        return 4.0 if 53.0 <= h < 55.7 else 1.0

    readings = silent(city(60, own_air=spike), PM, 55.5, 60)
    drift = CityDrift()
    feed(drift, until(readings, 56))  # hour 54 judged, hour 55 not yet
    assert 54 in judged(drift, PM)
    before = sums(drift, PM)
    feed(drift, [r for r in readings if r[1] >= T0_NS + 56 * H_NS])
    assert 55 in judged(drift, PM_B)  # its partner covered the hour: judged (on d whole)
    assert 55 not in judged(drift, PM)
    assert sums(drift, PM) == before


def test_an_other_station_s_hour_covered_in_part_is_no_reference() -> None:
    # "o4" silent from 55.5 h: its part of hour 55 counts in nobody's reference, as if it
    # had been silent the whole hour
    readings = city(60)
    part, none = CityDrift(), CityDrift()
    feed(part, silent(readings, O4, 55.5, 58))
    feed(none, silent(readings, O4, 55.0, 58))
    for series in (PM, PM_B, O1, O2, O3):
        assert 55 in judged(part, series)
        assert judged(part, series) == judged(none, series)
    assert 55 not in judged(part, O4)


def test_sparse_sensors_and_a_few_lost_readings_keep_every_hour_judged() -> None:
    # a module read every 25 min (two or three readings an hour), others every 10 min, and
    # one every minute that loses a reading in twelve: each hour is covered as usual
    rng = random.Random(11)
    readings = [r for r in city(60, every_min={O1: 25, O2: 10, O3: 10, PM_B: 10})
                if r[0] != O4 or rng.random() > 1 / 12]
    drift = CityDrift()
    assert feed(drift, readings) == []
    for series in SERIES:
        hours = sorted(judged(drift, series))
        assert hours == list(range(hours[0], 59)), series


def test_a_module_back_mid_hour_is_judged_from_its_first_full_hour() -> None:
    readings = silent(city(60), PM, 53.0, 55.4)
    drift = CityDrift()
    feed(drift, readings)
    hours = judged(drift, PM)
    assert 55 not in hours
    assert all(h in hours for h in (52, 56, 57, 58))


def test_tracks_pickled_before_the_readings_counts_resume() -> None:
    readings = city(60)
    whole = CityDrift()
    feed(whole, readings)
    drift = CityDrift()
    half = len(readings) // 2 + 7  # mid-hour
    feed(drift, readings[:half])
    for track in drift._fields["pm25"].tracks.values():
        del track.counts  # as a track of a snapshot taken before they were kept
    resumed = pickle.loads(pickle.dumps(drift))
    feed(resumed, readings[half:])
    for series in SERIES:
        assert judged(resumed, series) == judged(whole, series)
    assert all(t.counts for t in resumed._fields["pm25"].tracks.values())


def _ramp(rate_per_h: float, start: float) -> Factor:
    return lambda h: 1 + rate_per_h * max(0.0, h - start)


def test_an_event_says_how_many_other_stations_its_median_was_taken_over() -> None:
    # "o1" drifting: compared with "s" (its two modules one station), "o2", "o3", "o4"
    found = [d for d in feed(CityDrift(), city(72, gain={O1: _ramp(0.2, 50)}))
             if d.pair is None]
    assert [d.series for d in found] == [O1]
    assert "(median over 4)" in found[0].event.detail
    # a module of the pair: the four other stations, not its own station's other module
    found = [d for d in feed(CityDrift(), city(72, gain={PM: _ramp(0.2, 50)}))
             if d.pair is None]
    assert [d.series for d in found] == [PM]
    assert "(median over 4)" in found[0].event.detail
    # a station whose hour is left out (here silent) is not counted
    readings = silent(city(72, gain={O1: _ramp(0.2, 50)}), O4, 50, 72)
    found = [d for d in feed(CityDrift(), readings) if d.pair is None]
    assert [d.series for d in found] == [O1]
    assert "(median over 3)" in found[0].event.detail
