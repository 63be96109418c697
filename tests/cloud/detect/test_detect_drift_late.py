"""The cross-station drift rule (cloud/detect/drift.py) on stations whose readings reach it
late, and on sensors read once an hour (issue 7).

An hour was judged when the city's median sensor had read in the next one; a sensor whose
hour was still open then was closed on what it had read, and its later readings of the hour
dropped as too late: a node whose readings come in d minutes late (a slow link, a clock
behind) was judged on the first 60 - d minutes of every hour (the usual count its coverage
is judged by learnt from hours so cut), one more than an hour late (a backlog caught up
after an outage) never. A sensor behind when its hour is due is now waited for, 10 min at
most, and if later than that judged on its own once it has read past the hour, against the
other stations' levels of it, kept for `_KEPT_BINS` hours.

A sensor read once an hour had every hour left out as stuck (one value in more than half of
its readings, of one); such an hour is now stuck when its reading repeats the last one of
the sensor's hour before.

The hand-made city of tests/cloud/detect/test_detect_drift_coverage.py: station "s" with
two modules ("pm", "pm-b"), four stations "o1".."o4" with one.
"""

from __future__ import annotations

import pickle
from datetime import timedelta

from cloud.detect.drift import CityDrift, SeriesKey
from tests.cloud.detect.test_detect_drift_coverage import (
    H0,
    H_NS,
    MIN_NS,
    O1,
    O2,
    PM,
    PM_B,
    SERIES,
    T0_NS,
    Reading,
    _ramp,
    city,
    feed,
    judged,
    silent,
    sums,
    until,
)


def arriving(readings: list[Reading], late: dict[SeriesKey, int]) -> list[Reading]:
    """`readings` in the order the step receives them when those of the sensors in `late`
    come in that many ns after their stamps (the others at once)."""
    return sorted(readings, key=lambda r: r[1] + late.get(r[0], 0))


def test_a_station_five_minutes_late_is_waited_for_and_counts_in_every_hour() -> None:
    # the hours are judged when it has read past them: every sensor judged as on time
    readings = city(60)
    on_time, late = CityDrift(), CityDrift()
    feed(on_time, readings)
    feed(late, arriving(readings, {O1: 5 * MIN_NS}))
    for series in SERIES:
        assert judged(late, series) == judged(on_time, series)
    hours = judged(late, O1)
    assert sorted(hours) == list(range(min(hours), 59))


def test_a_station_twenty_minutes_late_is_judged_every_hour_when_it_has_read_it() -> None:
    # waited for 10 min, then judged on its own when it has read past the hour, against
    # the others' levels of it: its deviations those it had on time
    readings = city(60)
    on_time, late = CityDrift(), CityDrift()
    feed(on_time, readings)
    feed(late, arriving(readings, {O1: 20 * MIN_NS}))
    hours = judged(late, O1)
    assert sorted(hours) == list(range(min(hours), 59))
    assert hours == judged(on_time, O1)
    for series in (PM, O2):  # the others judged in every hour too, without it
        assert sorted(judged(late, series)) == sorted(judged(on_time, series))


def test_the_others_wait_for_a_late_station_ten_minutes_at_most() -> None:
    readings = city(72, gain={O2: _ramp(0.2, 50)})
    on_time = [d for d in feed(CityDrift(), readings) if d.pair is None]
    assert [d.series for d in on_time] == [O2]
    # the event is stamped by the reading that completed the hour: 5 min late, o1's
    # first of the next hour (stamped as the others'); 20 min late, the others' once 10 min
    # of the next hour are read; 90 min late, o1 has not begun the hour: not waited for
    for late_min, waited_min in ((5, 0), (20, 10), (90, 0)):
        found = [d for d in feed(CityDrift(), arriving(readings, {O1: late_min * MIN_NS}))
                 if d.pair is None]
        assert [d.series for d in found] == [O2]
        waited = found[0].event.detected_at - on_time[0].event.detected_at
        assert abs(waited - timedelta(minutes=waited_min)) < timedelta(seconds=10), late_min


def test_a_late_station_s_drift_is_found() -> None:
    readings = city(72, gain={O1: _ramp(0.2, 50)})
    on_time = [d for d in feed(CityDrift(), readings) if d.pair is None]
    found = [d for d in feed(CityDrift(), arriving(readings, {O1: 20 * MIN_NS}))
             if d.pair is None]
    assert [d.series for d in on_time] == [O1]
    assert [d.series for d in found] == [O1]
    late, first = found[0].event, on_time[0].event
    assert (late.start, late.detail) == (first.start, first.detail)
    # on the reading that completed its hour (its first of the next), 20 min after the
    # others had it: stamped by it (tests/cloud/test_city_drift.py: at its reception)
    assert abs(late.detected_at - first.detected_at) < timedelta(minutes=1)


def test_a_late_pair_is_judged_on_its_own_parts_as_on_time() -> None:
    # both modules of "s" 15 min late: each module's hour is judged with its partner's,
    # as on time, so the station's own air is charged to neither
    def spike(h: float) -> float:
        return 3.0 if 53.0 <= h < 58.0 else 1.0

    readings = city(62, own_air=spike)
    on_time, late = CityDrift(), CityDrift()
    feed(on_time, readings)
    feed(late, arriving(readings, {PM: 15 * MIN_NS, PM_B: 15 * MIN_NS}))
    for series in (PM, PM_B):
        assert judged(late, series) == judged(on_time, series)
        assert sums(late, series) == sums(on_time, series)


def test_a_backlog_of_hours_caught_up_after_an_outage_is_judged() -> None:
    # "o1"'s link down from 50 h to 55.5 h: its readings of those hours come in at 55.5 h
    readings = city(60)
    outage = [r for r in readings if r[0] == O1 and 50 * H_NS <= r[1] - T0_NS < 55.5 * H_NS]
    kept = set(outage)
    at = T0_NS + int(55.5 * H_NS)
    order = sorted(readings, key=lambda r: (at, r[1]) if r in kept else (r[1], 0))
    on_time, late = CityDrift(), CityDrift()
    feed(on_time, readings)
    feed(late, order)
    hours = judged(late, O1)
    assert all(h in hours for h in range(50, 59))
    assert {h: hours[h] for h in range(50, 55)} == {h: judged(on_time, O1)[h]
                                                   for h in range(50, 55)}


def test_a_late_node_s_hours_older_than_the_kept_levels_are_left_out() -> None:
    # a backlog older than a day: nothing left to compare those hours with
    readings = city(80)
    at = T0_NS + 79 * H_NS
    backlog = {r for r in readings if r[0] == O2 and 50 * H_NS <= r[1] - T0_NS < at - T0_NS}
    order = sorted(readings, key=lambda r: (at, r[1]) if r in backlog else (r[1], 0))
    drift = CityDrift()
    feed(drift, order)
    hours = judged(drift, O2)
    assert 53 not in hours  # more than 24 h before the city's hour when it came in
    assert 70 in hours


def test_a_late_station_resumes_from_a_pickle_taken_mid_hour() -> None:
    readings = arriving(city(60), {O1: 10 * MIN_NS})
    whole = CityDrift()
    feed(whole, readings)
    first = CityDrift()
    cut = next(i for i, r in enumerate(readings) if r[1] >= T0_NS + 55 * H_NS + 3 * MIN_NS)
    feed(first, readings[:cut])  # "o1"'s hour 54 still open, hour 54 judged for the others
    resumed: CityDrift = pickle.loads(pickle.dumps(first))
    feed(resumed, readings[cut:])
    for series in SERIES:
        assert judged(resumed, series) == judged(whole, series)


def test_a_sensor_read_once_an_hour_is_judged() -> None:
    readings = city(60, every_min={O1: 60})
    drift = CityDrift()
    feed(drift, readings)
    hours = judged(drift, O1)
    assert sorted(hours) == list(range(min(hours), 59))


def test_a_sensor_read_once_an_hour_stuck_is_not_judged() -> None:
    readings = [(s, ts, 17.0 if s == O1 and ts >= T0_NS + 50 * H_NS else v)
                for s, ts, v in city(60, every_min={O1: 60})]
    drift = CityDrift()
    feed(drift, readings)
    hours = judged(drift, O1)
    assert 49 in hours
    assert not [h for h in hours if h >= 51]


def test_a_sensor_silent_from_mid_hour_is_waited_for_only_when_its_node_is() -> None:
    # "o1" (alone on its node) silent from 55.5 h: late or silent, nothing tells, so
    # hour 55 waits 10 min for it; "pm" silent while "pm-b" of its node reads on: silent,
    # not waited for. Either way the hour is then judged without it, as before.
    def judged_at(readings: list[Reading], minutes: float) -> bool:
        drift = CityDrift()
        feed(drift, until(readings, 56 + minutes / 60))
        return drift._fields["pm25"].judged == H0 + 55

    readings = city(60)
    for series, waited in ((O1, True), (PM, False)):
        quiet = silent(readings, series, 55.5, 60)
        assert judged_at(quiet, 1) is not waited
        assert judged_at(quiet, 10.5)
        drift = CityDrift()
        feed(drift, quiet)
        assert 55 not in judged(drift, series)
        assert sorted(judged(drift, O2))[-1] == 58


def test_a_state_pickled_before_late_hours_were_judged_resumes() -> None:
    readings = city(60)
    whole = CityDrift()
    feed(whole, readings)
    drift = CityDrift()
    half = len(readings) // 2 + 7  # mid-hour
    feed(drift, readings[:half])
    state = drift._fields["pm25"]
    del state.kept, state.late  # what such a snapshot lacks
    for track in state.tracks.values():
        del track.previous
    for open_bin in state.current.values():
        del open_bin.first_ns, open_bin.last_ns, open_bin.last, open_bin.closed, open_bin.held
    resumed = pickle.loads(pickle.dumps(drift))
    feed(resumed, readings[half:])
    for series in SERIES:
        assert judged(resumed, series) == judged(whole, series)
