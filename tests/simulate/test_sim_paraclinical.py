"""Paraclinical departments: the city file's tables, the arrivals after the outpatient
consultation, the queues, and their lightweight readings and faults."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from urbanpulse.errors import ConfigError
from urbanpulse.simulate import City, Simulation, make_event
from urbanpulse.simulate.scenario import plan_events
from urbanpulse.wire import Reading

from .conftest import MONDAY

H = 3600.0
DAY = 86_400.0

CITY = """
[city]
name = "t"

[[district]]
id = "d"
name = "D"

[[hospital]]
site = "h"
name = "H"
district = "d"

[hospital.outpatient]
node = "opd"
visits_per_day = 900

[[hospital.outpatient.kiosk]]
sensor = "kiosk-reg"
share = 1.0
windows = [{ start = "07:00", end = "11:30", counters = 8 }]

[[hospital.paraclinical]]
node = "imaging"
exams_per_day = 400
delay_h = 1.5

[[hospital.paraclinical.kiosk]]
sensor = "kiosk-xray"
share = 0.6
service_mean_min = 5.0
windows = [
    { start = "07:00", end = "11:30", counters = 3 },
    { start = "13:30", end = "17:00", counters = 2 },
]

[[hospital.paraclinical.kiosk]]
sensor = "kiosk-echo"
share = 0.4
service_mean_min = 10.0
windows = [{ start = "07:00", end = "17:00", counters = 4 }]
"""

LAB = """
[[hospital.paraclinical]]
node = "lab"
name = "Laboratory"
exams_per_day = 600

[[hospital.paraclinical.kiosk]]
sensor = "kiosk-a"
share = 1.0
windows = [{ start = "07:00", end = "16:00", counters = 5 }]
"""


@pytest.fixture(scope="module")
def sim() -> Simulation:
    return Simulation(City.parse(CITY + LAB), seed=3, start=MONDAY)


def test_departments_are_read_with_their_defaults() -> None:
    (hospital,) = City.parse(CITY + LAB).hospitals
    imaging, lab = hospital.paraclinical
    assert (imaging.node, imaging.name, imaging.exams_per_day, imaging.delay_h) == \
        ("imaging", "imaging", 400.0, 1.5)
    assert [k.sensor for k in imaging.kiosks] == ["kiosk-xray", "kiosk-echo"]
    assert imaging.kiosks[0].windows[1].counters == 2
    assert (lab.name, lab.delay_h) == ("Laboratory", 1.5)
    assert lab.kiosks[0].service_mean_min == 4.0


def test_each_department_is_a_node_of_kiosks_without_a_door() -> None:
    city = City.parse(CITY + LAB)
    imaging = city.node("h", "imaging")
    assert [(s.id, s.driver, s.kind) for s in imaging.sensors] == [
        ("kiosk-xray", "queue_kiosk", "hospital.queue"),
        ("kiosk-echo", "queue_kiosk", "hospital.queue")]
    assert imaging.sensor("kiosk-xray").pins == ("ticket", "call-1", "call-2", "call-3")
    assert imaging.sensor("kiosk-echo").params == {"counters": 4.0}
    assert [s.id for s in city.node("h", "lab").sensors] == ["kiosk-a"]
    assert [s.id for s in city.node("h", "opd").sensors] == ["door-main", "kiosk-reg"]


def test_the_default_city_has_imaging_and_a_laboratory_at_two_hospitals(hanoi: City) -> None:
    with_departments = {h.site: [d.node for d in h.paraclinical] for h in hanoi.hospitals
                        if h.paraclinical}
    assert with_departments == {"bach-mai": ["imaging", "laboratory"],
                                "viet-duc": ["imaging", "laboratory"]}
    bach_mai = {d.node: d.exams_per_day for d in hanoi.hospital("bach-mai").paraclinical}
    assert bach_mai == {"imaging": 600.0, "laboratory": 2000.0}
    viet_duc = hanoi.hospital("viet-duc").paraclinical
    assert all(v.exams_per_day < bach_mai[v.node] for v in viet_duc)


@pytest.mark.parametrize(("old", "new", "key"), [
    ("exams_per_day = 400\n", "", "hospital[0].paraclinical[0].exams_per_day"),
    ("exams_per_day = 400\n", "exams_per_day = -1\n", "hospital[0].paraclinical[0].exams_per_day"),
    ("delay_h = 1.5\n", "delay_h = 13\n", "hospital[0].paraclinical[0].delay_h"),
    ("delay_h = 1.5\n", "delay_h = 1.5\ndoor = \"door-x\"\n", "hospital[0].paraclinical[0].door"),
    ('node = "imaging"', 'node = "opd"', "hospital[0].paraclinical[0].node"),
    ('node = "imaging"', 'node = "Imaging"', "hospital[0].paraclinical[0].node"),
    ("share = 0.4\n", "share = 0.5\n", "hospital[0].paraclinical[0].kiosk"),
    ('sensor = "kiosk-echo"', 'sensor = "kiosk-xray"', "hospital[0].paraclinical[0].kiosk[1].sensor"),
    ('{ start = "13:30", end = "17:00", counters = 2 }',
     '{ start = "11:00", end = "17:00", counters = 2 }',
     "hospital[0].paraclinical[0].kiosk[0].windows[1]"),
    ("service_mean_min = 5.0\n", "service_mean_min = 0\n",
     "hospital[0].paraclinical[0].kiosk[0].service_mean_min"),
])
def test_bad_department_tables_name_their_key(old: str, new: str, key: str) -> None:
    assert old in CITY
    with pytest.raises(ConfigError) as err:
        City.parse(CITY.replace(old, new, 1))
    assert err.value.key == key


def test_a_department_needs_a_kiosk_and_a_node_of_its_own() -> None:
    no_kiosk = CITY + '\n[[hospital.paraclinical]]\nnode = "lab"\nexams_per_day = 10\n'
    with pytest.raises(ConfigError, match="at least one") as err:
        City.parse(no_kiosk)
    assert err.value.key == "hospital[0].paraclinical[1].kiosk"
    twice = CITY + LAB + LAB.replace('name = "Laboratory"', 'name = "Second lab"')
    with pytest.raises(ConfigError, match="already a node") as err:
        City.parse(twice)
    assert err.value.key == "hospital[0].paraclinical[2].node"


def _weekday_hours(sim: Simulation, times: np.ndarray) -> np.ndarray:
    tb = sim.timebase
    weekday = ((tb.week_hour(times) // 24) < 5)
    hours: np.ndarray = tb.local_hour(times[weekday])
    return hours


def test_patients_come_for_exams_after_their_consultation(sim: Simulation) -> None:
    tb = sim.timebase
    days = [int(tb.local_day(d * DAY)) for d in range(14)]
    outpatients = np.concatenate([sim.outpatients["h"].day(d).visits for d in days])
    imaging = sim.departments[("h", "imaging")]
    exams = np.concatenate([imaging.day(d).arrivals for d in days])
    opd_hours, exam_hours = _weekday_hours(sim, outpatients), _weekday_hours(sim, exams)
    # Ten weekdays: ~4,000 exams and ~9,000 visits, the hours' sd ~2.8 h: the means are
    # known to some 0.05 h each. The profile is the outpatients' one, 1.5 h later.
    assert exam_hours.mean() - opd_hours.mean() == pytest.approx(1.5, abs=0.2)
    assert np.quantile(exam_hours, 0.1) > np.quantile(opd_hours, 0.1) + 1.0
    # exams_per_day on a working day (Poisson: sd 20 a day, 63 over ten days).
    assert exam_hours.size == pytest.approx(10 * 400, abs=5 * 63)
    week_hours = tb.week_hour(exams)
    sundays = (week_hours >= 6 * 24) & (week_hours < 7 * 24 - imaging.department.delay_h)
    assert not sundays.any()  # closed, like the outpatient hall


def test_department_queues_wait_and_number_their_tickets_per_kiosk(sim: Simulation) -> None:
    tb = sim.timebase
    day = sim.departments[("h", "imaging")].day(int(tb.local_day(0)))
    xray, echo = day.kiosks["kiosk-xray"], day.kiosks["kiosk-echo"]
    assert xray.issued.size + echo.issued.size == pytest.approx(len(day.arrivals), abs=30)
    assert echo.issued.size < xray.issued.size  # shares 0.4 and 0.6
    for kiosk in (xray, echo):
        served = ~np.isnan(kiosk.called)
        assert served.sum() > 0.9 * kiosk.issued.size > 50
        assert (kiosk.waits[served] >= 0).all()
        assert (kiosk.counter[~served] == 0).all()  # abandoned at closing, never called
    # Three X-ray rooms at 5 minutes serve 36 an hour: at the morning peak (some 45 an
    # hour) a queue builds, and a real wait shows.
    assert np.nanquantile(xray.waits, 0.9) > 10 * 60
    for sensor, counters in (("kiosk-xray", 3), ("kiosk-echo", 4)):
        events = sim.kiosk_events("h", "imaging", sensor, 0, DAY)
        issued = {e.ticket: e.t for e in events if not e.called}
        assert sorted(issued) == list(range(1, len(issued) + 1))  # each kiosk from 1
        calls = [e for e in events if e.called]
        assert 0.9 * len(issued) < len(calls) <= len(issued)
        assert all(e.t >= issued[e.ticket] and 1 <= e.counter <= counters for e in calls)


def test_lightweight_readings_of_a_department_node(sim: Simulation) -> None:
    readings: list[Reading] = []
    for batch in sim.readings().run(DAY):
        if (batch.site, batch.node) == ("h", "imaging"):
            readings += batch.readings
    assert {r.kind for r in readings} == {"hospital.queue"}
    assert {r.sensor for r in readings} == {"kiosk-xray", "kiosk-echo"}
    day = sim.departments[("h", "imaging")].day(int(sim.timebase.local_day(0)))
    for sensor in ("kiosk-xray", "kiosk-echo"):
        mine = [r for r in readings if r.sensor == sensor]
        assert [r.seq for r in mine] == list(range(len(mine)))
        issued: dict[int, int] = {}
        waits = []
        for r in mine:
            ticket = int(r.values["ticket"])
            if r.values["called"] == 0:
                issued[ticket] = r.ts_ns
            else:
                waits.append((r.ts_ns - issued[ticket]) / 1e9)
        assert list(issued) == list(range(1, len(issued) + 1))
        # The waits the cloud will pair from the readings are the model's.
        model = day.kiosks[sensor].waits
        assert sorted(waits) == pytest.approx(sorted(model[~np.isnan(model)].tolist()),
                                              abs=1e-5)


def test_adding_a_department_changes_nothing_else(sim: Simulation) -> None:
    city = sim.city
    (hospital,) = city.hospitals
    smaller = replace(city, hospitals=(replace(hospital, paraclinical=hospital.paraclinical[:1]),))

    def by_sensor(s: Simulation) -> dict[tuple[str, str, str], list[Reading]]:
        out: dict[tuple[str, str, str], list[Reading]] = {}
        for b in s.readings().run(12 * H):
            for r in b.readings:
                out.setdefault((b.site, b.node, r.sensor), []).append(r)
        return out

    before = by_sensor(Simulation(smaller, seed=3, start=MONDAY))
    after = by_sensor(Simulation(city, seed=3, start=MONDAY))
    assert set(after) - set(before) == {("h", "lab", "kiosk-a")}
    for key, values in before.items():
        assert after[key] == values, key


def test_department_kiosks_take_the_kiosk_faults(sim: Simulation) -> None:
    target = ("h", "lab", "kiosk-a")
    silence = make_event("silence", *target, 8 * H, 9 * H, {})
    faulty = Simulation(sim.city, seed=3, start=MONDAY, events=[silence])
    clean = sim.kiosk_events(*target, 0, DAY)
    muted = faulty.kiosk_events(*target, 0, DAY)
    lost = [e for e in clean if 8 * H <= e.t < 9 * H]
    assert lost
    assert muted == [e for e in clean if not 8 * H <= e.t < 9 * H]
    with pytest.raises(ConfigError, match="stuck applies to"):
        Simulation(sim.city, seed=3, start=MONDAY,
                   events=[make_event("stuck", *target, H, 2 * H, {})])
    planned = plan_events(sim.city, seed=1, hours=24, faults=40)
    kiosks = {(e.site, e.node, e.sensor) for e in planned if e.sensor and "kiosk" in e.sensor}
    assert kiosks & {("h", "imaging", "kiosk-xray"), ("h", "imaging", "kiosk-echo"), target}
