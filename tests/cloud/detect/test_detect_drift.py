"""Cross-station drift (cloud/detect/drift.py) on synthetic cities: a shared weather
factor, a level and noise per station, and one sensor whose gain grows."""

import math
import pickle
import random
from collections.abc import Callable

import pytest

from cloud.detect import DetectError, FaultType
from cloud.detect.drift import CityDrift, Drift, DriftSettings

H_NS = 3_600_000_000_000
T0_NS = 1_770_000_000 * 1_000_000_000 // H_NS * H_NS  # on an hour
STATIONS = [("s1", "aq", "pm"), ("s2", "aq", "pm"), ("s3", "aq", "pm"), ("s4", "aq", "pm"),
            ("s5", "aq", "pm")]
LEVELS = [1.0, 1.3, 0.9, 1.1, 0.7]

Gain = Callable[[int, float], float]  # (station, hours) -> multiplier


def city(hours: float, gain: Gain | None = None, seed: int = 1, clock_ahead_s: float = 0.0,
         stations: int = 5) -> list[tuple[tuple[str, str, str], int, dict[str, float]]]:
    """PM2.5 every minute at each station: weather x level x local variation (sd 15 %,
    memory 40 min, as in the simulator) x sensor noise x gain."""
    rng = random.Random(seed)
    keep = math.exp(-1 / 40)
    local = [0.0] * stations
    out = []
    for minute in range(int(hours * 60)):
        h = minute / 60
        weather = 40 * (1.5 + math.sin(2 * math.pi * h / 24)) * (1 + 0.3 * math.sin(h / 5))
        for i in range(stations):
            local[i] = keep * local[i] + 0.15 * math.sqrt(1 - keep**2) * rng.gauss(0, 1)
            value = weather * LEVELS[i] * math.exp(local[i] + 0.08 * rng.gauss(0, 1))
            if gain is not None:
                value *= gain(i, h)
            ts = T0_NS + minute * 60_000_000_000
            if i == 0:
                ts += int(clock_ahead_s * 1e9)
            out.append((STATIONS[i], ts, {"pm25": round(value, 1), "pm10": round(1.6 * value, 1)}))
    return out


def feed(drift: CityDrift, readings: list[tuple[tuple[str, str, str], int, dict[str, float]]]
         ) -> list[Drift]:
    events: list[Drift] = []
    for series, ts, values in readings:
        events += drift.update(series, "air.pm", ts, values)
    return events


def test_a_growing_gain_on_one_station_is_a_drift_of_that_station() -> None:
    def gain(i: int, h: float) -> float:
        return 1 + 0.1 * max(0.0, h - 50) if i == 3 else 1.0

    drift = CityDrift()
    events = feed(drift, city(72, gain))
    assert len(events) == 1
    d = events[0]
    assert d.series == STATIONS[3]
    assert (d.event.fault, d.event.field, d.event.sensor) == (FaultType.DRIFT, "pm25", "pm")
    hours_in = (d.event.detected_at.timestamp() * 1e9 - T0_NS) / H_NS - 50
    assert 0 < hours_in < 10
    assert d.event.start <= d.event.detected_at
    assert "%" in d.event.detail


def test_clean_city_raises_nothing() -> None:
    for seed in range(3):
        assert feed(CityDrift(), city(72, seed=seed)) == []


def test_a_local_pollution_peak_of_two_hours_is_not_a_drift() -> None:
    def peak(i: int, h: float) -> float:
        return 1 + 4 * math.sin(math.pi * (h - 50) / 2) ** 2 if i == 1 and 50 <= h < 52 else 1.0

    assert feed(CityDrift(), city(72, peak)) == []


def test_the_drift_needs_enough_other_stations() -> None:
    def gain(i: int, h: float) -> float:
        return 1 + 0.2 * max(0.0, h - 50) if i == 0 else 1.0

    assert feed(CityDrift(), city(72, gain, stations=3)) == []  # two others: which one?
    assert feed(CityDrift(DriftSettings(min_others=2)), city(72, gain, stations=3))


def test_one_clock_ahead_does_not_close_the_others_bins() -> None:
    # station 1's node stamps two hours ahead: the others' bins are still judged whole
    assert feed(CityDrift(), city(72, clock_ahead_s=7200)) == []


def test_other_kinds_and_fields_are_ignored() -> None:
    drift = CityDrift()
    assert drift.update(STATIONS[0], "traffic.loop", T0_NS, {"count": 3}) == []
    assert drift.update(STATIONS[0], "air.pm", T0_NS, {"pm10": 3}) == []
    with pytest.raises(DetectError, match="not finite"):
        drift.update(STATIONS[0], "air.pm", T0_NS, {"pm25": math.nan})
    with pytest.raises(DetectError, match="invalid drift settings"):
        DriftSettings(bin_s=0)


def test_state_pickles_midway() -> None:
    def gain(i: int, h: float) -> float:
        return 1 + 0.05 * max(0.0, h - 50) if i == 2 else 1.0

    readings = city(72, gain)
    whole = feed(CityDrift(), readings)
    half = len(readings) // 2
    first = CityDrift()
    events = feed(first, readings[:half])
    copy = pickle.loads(pickle.dumps(first))
    events += feed(copy, readings[half:])
    assert [(d.series, d.event) for d in events] == [(d.series, d.event) for d in whole]
    assert whole


def _stuck(readings: list[tuple[tuple[str, str, str], int, dict[str, float]]], station: int,
           start_h: float, end_h: float) -> list[tuple[tuple[str, str, str], int, dict[str, float]]]:
    """The station's sensor repeating, from `start_h` to `end_h`, the reading it had then."""
    held: dict[str, float] | None = None
    out = []
    for series, ts, values in readings:
        if series == STATIONS[station] and start_h * H_NS <= ts - T0_NS < end_h * H_NS:
            held = held or values
            values = held
        out.append((series, ts, values))
    return out


def test_a_stuck_sensor_s_hours_are_left_out_not_taken_for_a_drift() -> None:
    # ten hours stuck while the weather doubles and halves: its own rule reports a
    # stuck sensor; its constant against the others' moving air is no gain
    readings = _stuck(city(72), 2, 50, 60)
    assert feed(CityDrift(), readings) == []

    # a drift of the same sensor after it is still found
    def gain(i: int, h: float) -> float:
        return 1 + 0.1 * max(0.0, h - 62) if i == 2 else 1.0

    found = feed(CityDrift(), _stuck(city(72, gain), 2, 50, 60))
    assert [d.series for d in found] == [STATIONS[2]]
    assert found[0].event.start.timestamp() * 1e9 >= T0_NS + 62 * H_NS


def test_open_bins_pickled_before_the_value_counts_resume() -> None:
    readings = city(72)
    drift = CityDrift()
    half = len(readings) // 2 + 7  # mid-hour: every sensor has an open bin
    assert feed(drift, readings[:half]) == []
    for state in drift._fields.values():
        for open_bin in state.current.values():
            del open_bin.counts  # as a bin of a snapshot taken before they were kept
    resumed = pickle.loads(pickle.dumps(drift))
    assert feed(resumed, readings[half:]) == []
    assert all(b.counts for state in resumed._fields.values() for b in state.current.values())
