from __future__ import annotations

import itertools

import numpy as np
import pytest

from urbanpulse.simulate import City, Simulation
from urbanpulse.simulate.profiles import ER
from urbanpulse.simulate.queues import KioskDay

from .conftest import MONDAY

OVERLOADED = """
[city]
name = "overloaded"

[[district]]
id = "d"
name = "D"

[[hospital]]
site = "h"
name = "H"
district = "d"

[[hospital.ward]]
node = "ward"
name = "W"
beds = 12
mean_stay_days = 2.0
offered_load = 1.6
cleaning_min = 45

[hospital.er]
node = "er"
arrivals_per_day = 300

[hospital.outpatient]
node = "opd"
visits_per_day = 800

[[hospital.outpatient.kiosk]]
sensor = "slow"
share = 0.5
service_mean_min = 4.0
windows = [
    { start = "07:00", end = "11:30", counters = 3 },
    { start = "13:30", end = "16:30", counters = 3 },
]

[[hospital.outpatient.kiosk]]
sensor = "fast"
share = 0.5
service_mean_min = 4.0
windows = [
    { start = "07:00", end = "11:30", counters = 12 },
    { start = "13:30", end = "16:30", counters = 12 },
]

[[event]]
type = "surge"
site = "h"
start_h = 30
duration_h = 6
factor = 3
"""


@pytest.fixture(scope="module")
def overloaded() -> Simulation:
    return Simulation(City.parse(OVERLOADED), seed=11, start=MONDAY)


def test_occupancy_never_exceeds_the_beds_and_overflow_is_diverted(
        overloaded: Simulation) -> None:
    ward = overloaded.wards[("h", "ward")]
    days = 20
    t = np.arange(0, days * 86400, 60.0)
    occupancy = ward.occupancy(t)
    assert occupancy.max() == 12
    assert (occupancy <= 12).all()
    assert len(ward.diverted) > 0.1 * len(ward.admitted)
    cleaning = 45 * 60
    for stays in ward.stays:
        for before, after in itertools.pairwise(stays):
            assert after.t_in >= before.t_out + cleaning - 1e-6
    # The pads agree: never more loaded pads than beds, at any instant.
    loaded = np.zeros(2000)
    sample = np.linspace(86400, 3 * 86400, 2000)
    for bed in range(12):
        loaded += ward.contact(bed, 86400, 3 * 86400).levels_at(sample)
    assert loaded.max() <= 12


def test_stays_are_long_and_discharges_come_with_the_morning_round(day_sim: Simulation,
                                                                   hanoi: City) -> None:
    ward = day_sim.wards[("bach-mai", "ward-cardio")]
    ward.generate_until(60 * 86400)
    stays = [s for bed in ward.stays for s in bed if s.t_in > 0 and s.t_out < 60 * 86400]
    assert len(stays) > 100
    days = np.array([s.t_out - s.t_in for s in stays]) / 86400
    mean_stay = hanoi.hospitals[0].wards[0].mean_stay_days
    # The stay, plus the wait for the next discharge round (up to a day).
    assert mean_stay < days.mean() < mean_stay + 1.2
    hours = day_sim.timebase.local_hour(np.array([s.t_out for s in stays]))
    assert ((hours >= 9) & (hours < 12)).all()


def test_er_arrivals_per_hour_follow_the_profile(day_sim: Simulation, hanoi: City) -> None:
    er = day_sim.entrances["viet-duc"]  # no surge there in the default city
    hours = 14 * 24
    arrivals = er.arrivals(0, hours * 3600)
    observed = np.histogram(arrivals, bins=np.arange(hours + 1) * 3600.0)[0]
    entrance = hanoi.hospital("viet-duc").er
    assert entrance is not None
    per_day = entrance.arrivals_per_day
    fine = np.linspace(0, hours, hours * 60 + 1)
    rate = per_day * ER.at(fine) / ER.days[0].day_sum
    cum = np.concatenate([[0.0], np.cumsum((rate[1:] + rate[:-1]) / 2 * np.diff(fine))])
    expected = np.diff(cum[::60])
    # Few arrivals an hour: a chi-square test over the 336 hours (mean 336, sd 26).
    chi2 = float(np.sum((observed - expected) ** 2 / expected))
    assert chi2 < hours + 5 * np.sqrt(2 * hours)
    # Pooled over the 14 days, every hour of the day is within 5 sd of the profile.
    pooled_obs = observed.reshape(14, 24).sum(axis=0)
    pooled_exp = expected.reshape(14, 24).sum(axis=0)
    assert np.abs((pooled_obs - pooled_exp) / np.sqrt(pooled_exp)).max() < 5
    assert pooled_obs[9:12].sum() > 2.5 * pooled_obs[3:6].sum()


def test_a_surge_multiplies_er_arrivals(overloaded: Simulation) -> None:
    er = overloaded.entrances["h"]
    during = len(er.arrivals(30 * 3600, 36 * 3600))
    day_before = len(er.arrivals(6 * 3600, 12 * 3600))
    assert during > 2 * day_before
    door = overloaded.output("h", "er", "door-er")
    _, before = door.reports(6 * 3600, 12 * 3600)
    _, surge = door.reports(30 * 3600, 36 * 3600)
    assert sum(v["count"] for v in surge) > 2 * sum(v["count"] for v in before)


def test_waiting_grows_when_arrivals_outpace_the_counters(overloaded: Simulation) -> None:
    tb = overloaded.timebase
    day = overloaded.outpatients["h"].day(int(tb.local_day(3600)))
    slow, fast = day.kiosks["slow"], day.kiosks["fast"]

    def mean_wait(kiosk: KioskDay, start_h: float) -> float:
        hour = tb.local_hour(kiosk.issued)
        waits = kiosk.waits[(hour >= start_h) & (hour < start_h + 0.5)]
        assert waits.size > 5
        assert not np.isnan(waits).any()
        return float(waits.mean())

    # 3 counters serve 45 tickets an hour; 07:00-09:30 brings more: the wait grows.
    slow_waits = [mean_wait(slow, h) for h in (7.0, 7.5, 8.0, 8.5, 9.0)]
    assert all(b > a for a, b in itertools.pairwise(slow_waits)), slow_waits
    # About 75 arrivals an hour against 45 served: the queue, and the wait, grow by some
    # 35 minutes an hour.
    assert slow_waits[-1] - slow_waits[0] > 45 * 60
    # 12 counters keep up with the same arrivals.
    assert max(mean_wait(fast, h) for h in (7.0, 7.5, 8.0, 8.5, 9.0)) < 15 * 60
    assert np.isnan(slow.called).sum() > 0  # the overloaded kiosk abandons tickets at closing
    assert not np.isnan(fast.called).any()


def test_kiosk_events_are_consistent(overloaded: Simulation) -> None:
    events = overloaded.kiosk_events("h", "opd", "slow", 0, 86400)
    issued = {e.ticket: e.t for e in events if not e.called}
    calls = [e for e in events if e.called]
    assert calls
    assert sorted(issued) == list(range(1, len(issued) + 1))
    for e in calls:
        assert e.t >= issued[e.ticket]
        assert 1 <= e.counter <= 3
    assert [e.ticket for e in calls] == sorted(e.ticket for e in calls)  # first come first served
    tb = overloaded.timebase
    hours = tb.local_hour(np.array([e.t for e in calls]))
    assert (((hours >= 7) & (hours < 11.5)) | ((hours >= 13.5) & (hours < 16.5))).all()
    tracks = overloaded.pin_tracks("h", "opd", "slow", 0, 86400)
    assert tracks["ticket"].rising() == len(issued)
    assert sum(tracks[f"call-{c}"].rising() for c in (1, 2, 3)) == len(calls)
    assert set(tracks) == set(overloaded.sensor("h", "opd", "slow").pins)


def test_bed_readings_report_state_changes_after_the_exit_tolerance(day_sim: Simulation) -> None:
    out = day_sim.output("bach-mai", "ward-cardio", "bed-05")
    times, values = out.reports(0, 2 * 86400)
    assert np.all(np.diff(times) > 0)
    beats = 2 * 86400 / 300
    assert beats <= len(values) < beats + 200
    pad = day_sim.pin_tracks("bach-mai", "ward-cardio", "bed-05", 0, 2 * 86400)["pad"]
    assert pad.rising() > 0
    assert {v["occupied"] for v in values} <= {0, 1}
