"""A sensor's references in the cross-station drift rule are bounded
(`DriftSettings.max_references`): a large city's sensors each keep the usual ratios to the
first sensors they are judged with, not to every other one (state and judgement grew with
the square of the city's air sensors: 1.4 MB at 200 sensors, 3.5 GB at 10,000), a reference
gone for `_REFERENCE_GONE_BINS` bins gives its place to another, a growing gain is still
found, and a state pickled before the cap resumes with it."""

from __future__ import annotations

import math
import pickle
import random

from cloud.detect.drift import _REFERENCE_GONE_BINS, CityDrift, Drift, DriftSettings

BIN_S = 600.0  # bins of 10 min: the learning's 48 bins are 8 hours
T0_NS = 1_780_272_000 * 10**9
SENSORS = 40


def _series(i: int) -> tuple[str, str, str]:
    return (f"s{i:02d}", "aq", "pm")


def _feed(drift: CityDrift, minutes: range, gain: dict[int, float] | None = None,
          silent: set[int] | frozenset[int] = frozenset(), seed: int = 1) -> list[Drift]:
    """PM2.5 of every sensor each minute: a shared weather x a level per station x noise."""
    rng = random.Random(seed)
    levels = [math.exp(random.Random(i).gauss(0, 0.3)) for i in range(SENSORS)]
    events: list[Drift] = []
    for minute in minutes:
        weather = 40 * (1.5 + math.sin(minute / 180))
        for i in range(SENSORS):
            value = weather * levels[i] * math.exp(0.05 * rng.gauss(0, 1))
            if i in silent:
                continue
            value *= (gain or {}).get(i, 1.0)
            events += drift.update(_series(i), "air.pm", T0_NS + minute * 60 * 10**9 + i,
                                   {"pm25": value})
    return events


def _tracks(drift: CityDrift) -> dict[tuple[str, str, str], dict[tuple[str, str, str], list[float]]]:
    return {series: track.pairs for series, track in drift._fields["pm25"].tracks.items()}


def test_each_sensor_keeps_at_most_its_references_and_a_gain_is_still_found() -> None:
    drift = CityDrift(DriftSettings(bin_s=BIN_S, max_references=8))
    assert _feed(drift, range(60 * 12)) == []
    pairs = _tracks(drift)
    assert len(pairs) == SENSORS
    assert {len(p) for p in pairs.values()} == {8}
    events = _feed(drift, range(60 * 12, 60 * 16), gain={5: 1.4})
    assert [e.series for e in events] == [_series(5)]
    assert "median over 8" in events[0].event.detail


def test_a_city_within_the_cap_keeps_every_other_sensor() -> None:
    drift = CityDrift(DriftSettings(bin_s=BIN_S, max_references=SENSORS - 1))
    _feed(drift, range(60 * 10))
    assert {len(p) for p in _tracks(drift).values()} == {SENSORS - 1}


def test_a_reference_gone_long_enough_gives_its_place_to_another() -> None:
    drift = CityDrift(DriftSettings(bin_s=BIN_S, max_references=8))
    _feed(drift, range(60 * 10))
    first = _tracks(drift)[_series(30)]
    gone = {int(series[0][1:]) for series in list(first)[:3]}
    # gone for fewer bins than the limit: kept
    quiet_bins = _REFERENCE_GONE_BINS - 4
    _feed(drift, range(60 * 10, 60 * 10 + int(quiet_bins * BIN_S / 60)), silent=gone)
    assert set(first) <= set(_tracks(drift)[_series(30)])
    # gone for longer: others in their place, as many references as before
    start = 60 * 10 + int(quiet_bins * BIN_S / 60)
    _feed(drift, range(start, start + int(10 * BIN_S / 60)), silent=gone)
    now = _tracks(drift)[_series(30)]
    assert len(now) == 8
    assert not {_series(i) for i in gone} & set(now)
    assert set(first) - {_series(i) for i in gone} <= set(now)


def test_a_state_pickled_before_the_cap_resumes_with_it() -> None:
    drift = CityDrift(DriftSettings(bin_s=BIN_S))
    _feed(drift, range(60 * 2))
    field = drift._fields["pm25"]
    del field.seen  # as the code before pickled it
    settings_state = DriftSettings.__getstate__
    try:  # the settings without their last field, as pickled before it was added
        DriftSettings.__getstate__ = lambda self: settings_state(self)[:-1]  # type: ignore[method-assign]
        old = pickle.dumps(drift)
    finally:
        DriftSettings.__getstate__ = settings_state  # type: ignore[method-assign]
    resumed: CityDrift = pickle.loads(old)
    assert resumed.settings == DriftSettings(bin_s=BIN_S)
    assert resumed.settings.max_references == 32
    assert resumed._fields["pm25"].seen == {}
    again = CityDrift(DriftSettings(bin_s=BIN_S))
    _feed(again, range(60 * 2))
    assert _feed(resumed, range(60 * 2, 60 * 4), seed=2) == _feed(again, range(60 * 2, 60 * 4), seed=2)
    assert _tracks(resumed) == _tracks(again)
