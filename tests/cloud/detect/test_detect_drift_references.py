"""A sensor's references in the cross-station drift rule are bounded, in stations
(`DriftSettings.max_reference_stations`): a large city's sensors each keep the usual ratios
to the sensors of the first stations they are judged with (from a place of their own in
the city's order), not to every other sensor (state and judgement grew with the square of
the city's air sensors: 1.4 MB at 200 sensors); a city within the cap learns and judges as
before, silences included; a reference station without a level for
`_REFERENCE_GONE_BINS` judged bins gives its place to a newcomer, and only to one; a
growing gain is still found, on a station's two modules too; a state learnt before the cap
keeps its first stations and resumes."""

from __future__ import annotations

import math
import pickle
import random

from cloud.detect.drift import _REFERENCE_GONE_BINS, CityDrift, Drift, DriftSettings

BIN_S = 600.0  # bins of 10 min: the learning's 48 bins are 8 hours
T0_NS = 1_780_272_000 * 10**9
SENSORS = 40

Series = tuple[str, str, str]


def _series(i: int, module: str = "pm") -> Series:
    return (f"s{i:02d}", "aq", module)


def _feed(drift: CityDrift, minutes: range, gain: dict[Series, float] | None = None,
          silent: set[int] | frozenset[int] = frozenset(), seed: int = 1,
          stations: int = SENSORS, modules: tuple[str, ...] = ("pm",)) -> list[Drift]:
    """PM2.5 of every sensor each minute: a shared weather x a level per station x noise."""
    rng = random.Random(seed)
    levels = [math.exp(random.Random(i).gauss(0, 0.3)) for i in range(stations)]
    events: list[Drift] = []
    for minute in minutes:
        weather = 40 * (1.5 + math.sin(minute / 180))
        for i in range(stations):
            for m, module in enumerate(modules):
                value = weather * levels[i] * math.exp(0.05 * rng.gauss(0, 1))
                if i in silent:
                    continue
                series = _series(i, module)
                value *= (gain or {}).get(series, 1.0)
                events += drift.update(series, "air.pm", T0_NS + minute * 60 * 10**9 + 2 * i + m,
                                       {"pm25": value})
    return events


def _tracks(drift: CityDrift) -> dict[Series, dict[Series, list[float]]]:
    return {series: track.pairs for series, track in drift._fields["pm25"].tracks.items()}


def _stations(pairs: dict[Series, list[float]], own: Series) -> set[tuple[str, str]]:
    return {o[:2] for o in pairs if o[:2] != own[:2]}


def test_each_sensor_keeps_at_most_its_stations_and_a_gain_is_still_found() -> None:
    drift = CityDrift(DriftSettings(bin_s=BIN_S, max_reference_stations=8))
    assert _feed(drift, range(60 * 12)) == []
    pairs = _tracks(drift)
    assert len(pairs) == SENSORS
    assert {len(p) for p in pairs.values()} == {8}
    # from places of their own: not every sensor the same first eight
    assert len(set().union(*(_stations(p, s) for s, p in pairs.items()))) > 20
    events = _feed(drift, range(60 * 12, 60 * 16), gain={_series(5): 1.4})
    assert [e.series for e in events] == [_series(5)]
    assert "median over 8" in events[0].event.detail


def test_a_station_s_two_modules_count_as_one_station() -> None:
    """Stations of two modules: 8 other stations are 16 sensors, and its own station's other
    module is learnt as before (no reference); judged over 8 stations."""
    drift = CityDrift(DriftSettings(bin_s=BIN_S, max_reference_stations=8))
    _feed(drift, range(60 * 12), stations=20, modules=("pm", "pm-b"))
    for series, pairs in _tracks(drift).items():
        assert len(_stations(pairs, series)) == 8
        assert len(pairs) == 17
    events = _feed(drift, range(60 * 12, 60 * 16), gain={_series(5, "pm-b"): 1.4},
                   stations=20, modules=("pm", "pm-b"))
    found = {e.series: e.event.detail for e in events}
    assert _series(5, "pm-b") in found
    assert "median over 8" in found[_series(5, "pm-b")]


def test_a_city_within_the_cap_learns_and_judges_as_without_one() -> None:
    """33 stations (each sensor's 32 others, as many as it keeps), ten of them silent for
    longer than `_REFERENCE_GONE_BINS` judged bins and back, then a gain: the same events
    and learnt ratios as with room for 100 (no newcomer, so nothing let go)."""
    runs = []
    for cap in (32, 100):
        drift = CityDrift(DriftSettings(bin_s=BIN_S, max_reference_stations=cap))
        events = _feed(drift, range(60 * 10), stations=33)
        quiet = range(60 * 10, 60 * 10 + int(90 * BIN_S / 60))
        events += _feed(drift, quiet, silent=set(range(3, 13)), stations=33)
        assert drift._fields["pm25"].judged_bins > _REFERENCE_GONE_BINS + 59
        after = range(quiet.stop, quiet.stop + 60 * 14)
        events += _feed(drift, after, gain={_series(1): 1.5}, stations=33, seed=3)
        runs.append(([(e.series, e.event.detail) for e in events], _tracks(drift)))
    assert runs[0] == runs[1]
    assert runs[0][0], "the gain is found"


def test_a_station_gone_long_enough_gives_its_place_to_a_newcomer() -> None:
    drift = CityDrift(DriftSettings(bin_s=BIN_S, max_reference_stations=8))
    _feed(drift, range(60 * 10))
    first = _tracks(drift)[_series(30)].copy()
    gone = {int(series[0][1:]) for series in list(first)[:3]}
    # gone for fewer judged bins than the limit: kept
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
    assert now[next(iter(set(first) - {_series(i) for i in gone}))][1] > 48  # kept, not learnt anew


def test_a_state_learnt_before_the_cap_keeps_its_first_stations() -> None:
    drift = CityDrift(DriftSettings(bin_s=BIN_S, max_reference_stations=SENSORS))
    _feed(drift, range(60 * 10))
    before = _tracks(drift)[_series(7)].copy()
    assert len(before) == SENSORS - 1
    field = drift._fields["pm25"]
    del field.seen, field.judged_bins  # as the code before pickled it
    settings_state = DriftSettings.__getstate__
    try:  # the settings without their last field, as pickled before it was added
        DriftSettings.__getstate__ = lambda self: settings_state(self)[:-1]  # type: ignore[method-assign]
        old = pickle.dumps(drift)
    finally:
        DriftSettings.__getstate__ = settings_state  # type: ignore[method-assign]
    resumed: CityDrift = pickle.loads(old)
    assert resumed.settings == DriftSettings(bin_s=BIN_S)
    assert resumed.settings.max_reference_stations == 32
    assert (resumed._fields["pm25"].seen, resumed._fields["pm25"].judged_bins) == ({}, 0)
    assert _feed(resumed, range(60 * 10, 60 * 12), seed=2) == []
    after = _tracks(resumed)[_series(7)]
    assert list(after) == list(before)[:32]
    assert all(after[o][1] > before[o][1] for o in after)  # followed on, not learnt anew
    events = _feed(resumed, range(60 * 12, 60 * 16), gain={_series(7): 1.4}, seed=3)
    assert [e.series for e in events] == [_series(7)]
    assert "median over 32" in events[0].event.detail
