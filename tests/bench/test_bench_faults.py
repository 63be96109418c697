"""The fault benchmark: it feeds the rules as the dataflow does, matches as documented,
and runs end to end on a short simulated run."""

from __future__ import annotations

import itertools
from dataclasses import replace
from datetime import UTC, datetime, timedelta

from bench.faults.clean_days import main as clean_days_main
from bench.faults.clean_days import pairs_of
from bench.faults.door_tests import BLOCKED_AFTER_S, EVERY_S, WARM_S, DoorSelfTests
from bench.faults.kiosk_lines import DEFAULTS as KIOSK
from bench.faults.kiosk_lines import KioskLines
from bench.faults.match import match, rows_by_type
from bench.faults.plan import DEPARTMENT, DEPARTMENT_KIOSK, GRACE_S, Planned, plan_faults
from bench.faults.run import main, run_seed
from bench.faults.stream import HEARTBEAT_S, FaultFeed, Raised, node_heartbeats, stream, warm_drift
from cloud.detect import FaultEvent, FaultType
from cloud.detect.drift import CityDrift
from cloud.detect.faults import NodeClockJumps, Supervision
from cloud.journal import JournalRecord
from cloud.logic.events import Alert, SensorWatch
from cloud.logic.node import NodeState
from cloud.logic.records import decode_record
from cloud.logic.rollup import HOUR_NS
from urbanpulse.clock import to_epoch_ns
from urbanpulse.simulate import City, Simulation
from urbanpulse.simulate.events import make_event
from urbanpulse.simulate.module_pairs import with_module_pairs
from urbanpulse.simulate.simulation import DEFAULT_START
from urbanpulse.simulate.visits import DoorSensor
from urbanpulse.wire import encode_status, status_topic


def test_the_feed_raises_what_the_dataflow_raises() -> None:
    city = City.load()
    events = [
        make_event("clock_jump", "nga-tu-so", "aq-roadside", None, 1800, 3600,
                   {"offset_s": -300}),
        make_event("cut_cable", "nga-tu-so", "cabinet", "lang-in", 1200, 4000, {}),
        make_event("spikes", "lang-ha", "aq-1", "pms5003", 600, 5400, {}),
    ]
    sim = Simulation(city, seed=3, events=events)
    feed = FaultFeed()
    watches: dict[tuple[str, str, str], SensorWatch] = {}
    clocks: dict[tuple[str, str], NodeClockJumps] = {}  # one clock jump per node and jump
    ours: list[tuple[str, str, str, int]] = []
    theirs: list[Alert] = []
    for batch in sim.readings().run(until=2 * 3600, step=900):
        for r in batch.readings:
            ours += [(e.sensor, str(e.fault), e.field, to_epoch_ns(e.detected_at))
                     for _, _, e in feed.check(batch.site, batch.node, r)]
            key = (batch.site, batch.node, r.sensor)
            watches.setdefault(key, SensorWatch()).check(
                batch.site, batch.node, r, theirs,
                jumps=clocks.setdefault((batch.site, batch.node), NodeClockJumps()))
    faults = [(a.sensor, a.type, a.field, a.ts_ns) for a in theirs if a.type != "anomaly"]
    assert ours == faults
    assert {t for _, t, _, _ in ours} >= {"clock_jump", "cut_cable", "spike"}


def _raised(sensor: str, fault: FaultType, at_s: float) -> Raised:
    t = datetime(2026, 3, 2, tzinfo=UTC)
    return Raised("s", "n", FaultEvent(sensor, "v", fault, t, t, None, ""), at_s)


def test_matching_needs_the_target_an_accepted_type_and_the_window() -> None:
    stuck = Planned(make_event("stuck", "s", "n", "a", 1000, 2000, {}), "sds011")
    jump = Planned(make_event("clock_jump", "s", "n2", None, 1000, 2000, {"offset_s": 600}),
                   "air-station")
    raised = [
        _raised("a", FaultType.STUCK, 1500),  # detects the stuck sensor
        _raised("a", FaultType.STUCK, 2000 + GRACE_S + 1),  # too late
        _raised("a", FaultType.SPIKE, 1500),  # not how a stuck sensor shows
        _raised("b", FaultType.STUCK, 1500),  # another sensor, never faulted
        Raised("s", "n2", _raised("x", FaultType.SILENCE, 2000 + 600 + GRACE_S).event,
               2000 + 600 + GRACE_S),  # a node's sensor, within the settling time
    ]
    result = match(1, [stuck, jump], raised)
    assert [len(o.detections) for o in result.outcomes] == [1, 1]
    assert [r.at_s for r in result.false_positives] == [2000 + GRACE_S + 1, 1500, 1500]
    assert [r.event.sensor for r in result.clean_false_positives] == ["b"]
    rows = {r.name: r for r in rows_by_type([result])}
    assert rows["stuck"].recall == 1.0
    assert rows["stuck"].precision == 1 / 3  # one true; one late, one on a clean sensor
    assert rows["spikes"].precision == 0.0
    assert rows["clock_jump"].delays_s == (1600.0 + GRACE_S,)
    without = {r.name: r for r in rows_by_type([result], frozenset({"sds011"}))}
    assert (without["stuck"].injected, without["stuck"].true_positives) == (0, 0)
    assert without["stuck"].false_positives == 2  # false positives are all kept
    assert without["clock_jump"].recall == 1.0


def test_the_plan_covers_every_type_on_every_target_class_without_overlap() -> None:
    planned, missed = plan_faults(City.load(), seed=1, hours=12)
    assert missed == []
    assert {p.event.type for p in planned} == {"stuck", "silence", "spikes", "drift",
                                               "cut_cable", "clock_jump"}
    assert {p.target_class for p in planned if p.event.type == "silence"} == {
        "bed_pad", "department_kiosk", "door_counter", "mhz19b", "pms5003", "queue_kiosk",
        "sds011", "traffic_loop"}
    jumps = {p.target_class: p.event.node for p in planned if p.event.type == "clock_jump"}
    assert set(jumps) == {"air-station", "cabinet", "department", "er-gate", "opd-hall", "ward"}
    assert jumps["opd-hall"] == "opd-hall"
    assert jumps["department"] in ("imaging", "laboratory")
    kiosks = {p.target_class: p.event.node for p in planned if p.event.type == "cut_cable"}
    assert kiosks["queue_kiosk"] == "opd-hall"
    assert kiosks["department_kiosk"] in ("imaging", "laboratory")
    assert planned == plan_faults(City.load(), seed=1, hours=12)[0]


def test_the_departments_leave_the_other_classes_planned_as_without_them() -> None:
    city = City.load()
    bare = replace(city, hospitals=tuple(replace(h, paraclinical=()) for h in city.hospitals))
    assert len(bare.nodes) < len(city.nodes)
    for seed in (1, 5):
        planned, _ = plan_faults(city, seed=seed, hours=12)
        before, _ = plan_faults(bare, seed=seed, hours=12)
        assert {p.target_class for p in before} & {DEPARTMENT, DEPARTMENT_KIOSK} == set()
        assert [p for p in planned
                if p.target_class not in (DEPARTMENT, DEPARTMENT_KIOSK)] == before


def test_a_short_run_finds_its_faults_without_false_alarms(capsys) -> None:  # type: ignore[no-untyped-def]
    result, _, readings, _, warm = run_seed(City.load(), seed=1, hours=4, tick_s=60)
    assert readings > 10_000
    assert warm == 0
    assert result.clean_false_positives == []
    found = {o.planned.event.type for o in result.outcomes if o.detections}
    assert {"silence", "clock_jump", "cut_cable"} <= found
    assert main(["--seeds", "1", "--hours", "4"]) == 0
    out = capsys.readouterr().out
    for name in ("stuck", "silence", "spikes", "drift", "cut_cable", "clock_jump"):
        assert f"| {name} |" in out
    assert "beds on mats" in out


def test_the_bench_city_s_mats_show_the_bed_faults_its_pads_hide() -> None:
    city = City.load()

    def beds(simulated: City) -> tuple[dict[str, bool], list[object]]:
        result, *_ = run_seed(city, seed=1, hours=4, tick_s=60, simulated=simulated)
        found = {o.planned.event.type: bool(o.detections) for o in result.outcomes
                 if o.planned.target_class == "bed_pad"}
        return found, list(result.clean_false_positives)

    pads, _ = beds(city)
    # a pad stuck pressed reads as a patient who stays; pulses hide behind its contact
    assert pads == {"stuck": False, "cut_cable": True, "silence": True, "spikes": False}
    mats, clean_false = beds(city.with_mats())
    assert mats == dict.fromkeys(pads, True)
    assert clean_false == []


def test_a_strong_drift_is_found_by_the_city_step_after_its_history() -> None:
    city = City.load()
    start = DEFAULT_START + timedelta(hours=6)
    drift = CityDrift()
    assert warm_drift(Simulation(city, seed=11, start=start - timedelta(days=2), events=()),
                      drift) == []
    # z is clipped (a pollution peak is not a drift): even a strong drift needs hours
    fault = make_event("drift", "lang-ha", "aq-1", "pms5003", 600, 9 * 3600,
                       {"pct_per_h": 40.0})
    sim = Simulation(city, seed=11, start=start, events=[fault])
    raised, _, _ = stream(sim, 9, drift=drift)
    drifts = [(r.site, r.node, r.event.sensor) for r in raised
              if r.event.fault == FaultType.DRIFT]
    assert drifts == [("lang-ha", "aq-1", "pms5003")]


def test_heartbeats_carry_the_jumps_the_agent_would_have_counted() -> None:
    city = City.load()
    jump = make_event("clock_jump", "nga-tu-so", "aq-roadside", None, 600, 1800,
                      {"offset_s": -300})
    sim = Simulation(city, seed=3, events=[jump])
    beats = [(t, hb) for t, site, node, hb in node_heartbeats(
        sim, 0, 2400, {("nga-tu-so", "aq-roadside"): [jump]})
        if (site, node) == ("nga-tu-so", "aq-roadside")]
    assert [b - a for (a, _), (b, _) in itertools.pairwise(beats)] == \
        [HEARTBEAT_S] * (len(beats) - 1)
    assert len(beats) == 2400 // HEARTBEAT_S
    for t, hb in beats:
        assert hb.clock_jumps == (t >= 600) + (t >= 1800)
        skew = -300 if 600 <= t < 1800 else 0
        assert hb.ts == sim.at(t + skew)
        assert hb.uptime_s is not None
        assert hb.uptime_s > t
    everyone = node_heartbeats(sim, 0, 60, {})
    assert {(s, n) for _, s, n, _ in everyone} == {(n.site, n.node) for n in city.nodes}


def test_supervised_kiosks_report_their_cable_and_service_in_the_heartbeat() -> None:
    faults = [make_event("cut_cable", "bach-mai", "opd-hall", "kiosk-insured", 600, 1200, {}),
              make_event("silence", "bach-mai", "opd-hall", "kiosk-service", 900, 1500, {})]
    sim = Simulation(City.load(), seed=3, events=faults)
    lines = KioskLines(sim)
    beats = [(t, hb) for t0 in (0, 600, 1200)  # consecutive windows, as stream() calls it
             for t, site, node, hb in node_heartbeats(sim, t0, t0 + 600, {}, lines)
             if (site, node) == ("bach-mai", "opd-hall")]
    assert len(beats) == 1800 // HEARTBEAT_S
    delay = KIOSK.fault_delay_s  # a state counts once it has lasted this long
    for t, hb in beats:
        assert hb.supervision is not None
        insured, service = hb.supervision["kiosk-insured"], hb.supervision["kiosk-service"]
        cut = 600 + delay <= t <= 1200  # a change at the heartbeat's instant comes after it
        assert (insured.cable, insured.ready) == ("cut" if cut else "ok", not cut)
        assert (service.cable, service.ready) == ("ok", not 900 + delay <= t <= 1500)
    plain = node_heartbeats(sim, 0, 1800, {}, None)
    assert all(hb.supervision is None for _, _, _, hb in plain)


def test_a_kiosk_cable_cut_for_less_than_the_driver_s_fault_delay_is_not_reported_yet() -> None:
    """The kiosks' reports come from the driver's supervision logic, not from the
    injected fault: a cut that has lasted half a second may be a connector wiggled."""
    beats = node_heartbeats(Simulation(City.load(), seed=3, events=[]), 0, 60, {})
    t = next(t for t, site, node, _ in beats if (site, node) == ("bach-mai", "opd-hall"))
    for held, reported in ((0.5, "ok"), (KIOSK.fault_delay_s + 0.5, "cut")):
        cut = make_event("cut_cable", "bach-mai", "opd-hall", "kiosk-insured", t - held,
                         t + 10, {})
        sim = Simulation(City.load(), seed=3, events=[cut])
        [hb] = [hb for at, site, node, hb in node_heartbeats(sim, 0, 60, {}, KioskLines(sim))
                if (site, node) == ("bach-mai", "opd-hall") and at == t]
        assert hb.supervision is not None
        assert hb.supervision["kiosk-insured"].cable == reported


def test_the_feed_raises_on_heartbeats_what_the_node_state_raises() -> None:
    """The harness's heartbeats, sent as status messages and processed as the dataflow
    does, raise the same events as the harness's own monitors."""
    city = City.load()
    jumps = {("nga-tu-so", "aq-roadside"): [
        make_event("clock_jump", "nga-tu-so", "aq-roadside", None, 600, 1800, {"offset_s": 900})]}
    kiosk = [make_event("cut_cable", "viet-duc", "laboratory", "kiosk-sampling", 300, 2000, {}),
             make_event("silence", "viet-duc", "laboratory", "kiosk-sampling", 2500, 3000, {})]
    sim = Simulation(city, seed=3, events=jumps[("nga-tu-so", "aq-roadside")] + kiosk)
    feed = FaultFeed()
    states: dict[tuple[str, str], NodeState] = {}
    ours: list[tuple[str, str, str, int]] = []
    theirs: list[tuple[str, str, str, int]] = []
    for i, (t, site, node, hb) in enumerate(node_heartbeats(sim, 0, 3600, jumps, KioskLines(sim))):
        ours += [(n, e.sensor, str(e.fault), to_epoch_ns(e.detected_at))
                 for _, n, e in feed.heartbeat(site, node, hb)]
        health: dict[str, object] = {"uptime_s": hb.uptime_s, "clock": {"jumps": hb.clock_jumps},
                                     "run_id": hb.run}
        if hb.supervision:
            health["drivers"] = {k: {"driver": "queue_kiosk", "state": "running",
                                     "supervision": {"cable": v.cable, "ready": v.ready}}
                                 for k, v in hb.supervision.items()}
        received = to_epoch_ns(sim.at(t))  # the cloud's clock: the true time
        rec = JournalRecord("i0", i + 1, received, status_topic(site, node),
                            encode_status("online", hb.ts, health))
        data, _ = decode_record(rec, 4096)
        assert data is not None
        state = states.setdefault((site, node), NodeState(HOUR_NS))
        state.process(data)
        theirs += [(a.node, a.sensor, a.type, a.ts_ns) for a in state.take_alerts()]
    assert ours == theirs
    assert sorted((n, k, t) for n, k, t, _ in ours) == [
        ("aq-roadside", "", "clock_jump"), ("aq-roadside", "", "clock_jump"),
        ("laboratory", "kiosk-sampling", "cut_cable"), ("laboratory", "kiosk-sampling", "silence")]


def _door_beats(sim: Simulation, t0: float, t1: float) -> list[tuple[float, Supervision | None]]:
    return [(t, (hb.supervision or {}).get("door-main"))
            for t, site, node, hb in node_heartbeats(sim, t0, t1, {}, None, DoorSelfTests(sim))
            if (site, node) == ("saint-paul", "opd-hall")]


def test_self_tested_doors_report_a_receiver_stuck_clear_until_a_test_passes() -> None:
    start = DEFAULT_START + timedelta(hours=9)  # a Monday morning: people come and go
    plain = Simulation(City.load(), seed=3, start=start, events=[])
    beam = plain.output("saint-paul", "opd-hall", "door-main")
    assert isinstance(beam, DoorSensor)
    timeline = beam.timeline(0, 3600)
    assert len(timeline) > 50
    # a stuck fault from a clear moment holds the beam clear; one from inside a
    # passage holds it broken
    clear_at = next(float(e) + 0.05 for s, e in zip(timeline.starts[1:], timeline.ends,
                                                   strict=False) if s - e > 1 and e > 600)
    stuck = make_event("stuck", "saint-paul", "opd-hall", "door-main", clear_at,
                       clear_at + 1200, {})
    beats = _door_beats(Simulation(City.load(), seed=3, start=start, events=[stuck]), 0, 3600)
    assert len(beats) == 3600 // HEARTBEAT_S
    failed = [t for t, sup in beats if sup is not None and sup.self_test == "failed"]
    assert failed, "the first test after the fault's start fails"
    assert clear_at < failed[0] <= clear_at + EVERY_S + HEARTBEAT_S
    assert failed[-1] < clear_at + 1200 + EVERY_S + HEARTBEAT_S  # a test passes after it
    assert failed == [t for t, _ in beats if failed[0] <= t <= failed[-1]], "one episode"
    assert all(sup is not None and sup.blocked is False for _, sup in beats)
    # the same door without the fault: every test passes, never blocked
    assert {(sup.self_test, sup.blocked) for _, sup in _door_beats(plain, 0, 3600)
            if sup is not None} == {("ok", False)}


def test_self_tested_doors_report_a_beam_held_broken_and_say_nothing_when_silent() -> None:
    start = DEFAULT_START + timedelta(hours=9)
    beam = Simulation(City.load(), seed=3, start=start, events=[]).output(
        "saint-paul", "opd-hall", "door-main")
    assert isinstance(beam, DoorSensor)
    starts = beam.timeline(0, 3600).starts
    inside = float(starts[starts > 600][0]) + 0.01
    faults = [make_event("stuck", "saint-paul", "opd-hall", "door-main", inside,
                         inside + 600, {}),
              make_event("silence", "saint-paul", "opd-hall", "door-main", 2400, 3000, {})]
    beats = _door_beats(Simulation(City.load(), seed=3, start=start, events=faults), 0, 3600)
    blocked = [t for t, sup in beats if sup is not None and sup.blocked]
    assert blocked == [t for t, _ in beats if inside + BLOCKED_AFTER_S <= t < inside + 600]
    assert all(sup.self_test == "ok" for _, sup in beats if sup is not None), \
        "no test runs on a broken beam"
    assert [t for t, sup in beats if sup is None] == [t for t, _ in beats if 2400 <= t < 3000]


def test_a_stuck_door_is_found_from_its_heartbeat_within_a_test_period() -> None:
    start = DEFAULT_START + timedelta(hours=9)
    beam = Simulation(City.load(), seed=3, start=start, events=[]).output(
        "saint-paul", "opd-hall", "door-main")
    assert isinstance(beam, DoorSensor)
    timeline = beam.timeline(0, 7200)
    clear_at = next(float(e) + 0.05 for s, e in zip(timeline.starts[1:], timeline.ends,
                                                   strict=False) if s - e > 1 and e > 1800)
    stuck = make_event("stuck", "saint-paul", "opd-hall", "door-main", clear_at,
                       clear_at + 1800, {})
    sim = Simulation(City.load(), seed=3, start=start, events=[stuck])
    raised, _, _ = stream(sim, 2)
    found = [r for r in raised if r.event.sensor == "door-main"]
    assert (found[0].event.fault, found[0].event.field) == (FaultType.STUCK, "self_test")
    assert clear_at < found[0].at_s <= clear_at + EVERY_S + HEARTBEAT_S
    # without the self-test, only the dead-counter rule on the counts, in busy hours
    # and later: a run of zeros has to grow improbable first
    untested, _, _ = stream(sim, 2, tested_doors=False)
    late = [r for r in untested if r.event.sensor == "door-main"]
    assert [(r.event.fault, r.event.field) for r in late] == [(FaultType.STUCK, "count")]
    assert late[0].at_s > found[0].at_s + 300


def test_the_doors_entries_come_from_the_driver_s_self_test_run_on_the_beam() -> None:
    start = DEFAULT_START + timedelta(hours=9)
    sim = Simulation(City.load(), seed=3, start=start, events=[])
    doors = DoorSelfTests(sim)
    times = [float(t) for t in range(0, 3600, int(HEARTBEAT_S))]
    assert {(e.self_test, e.blocked) for e in
            (r["door-main"] for r in doors.reports("saint-paul", "opd-hall", times))} == \
        {("ok", False)}
    [door] = [d for d in doors._doors[("saint-paul", "opd-hall")] if d.sensor == "door-main"]
    assert door.logic is not None
    test = door.logic.self_test
    assert test is not None
    # a test every 300 s from the driver's start (600 s before the run), postponed
    # while people are in the beam, every one passed: the receiver went dark each time
    assert 12 <= test.tests <= (3600 + WARM_S) / EVERY_S + 1
    assert test.failures == 0
    assert door.logic.totals[0] > 50  # and the beam's people were counted between tests


def test_a_pair_s_drift_detects_either_module_s_fault_unless_the_module_must_be_named(
        ) -> None:
    t = datetime(2026, 3, 2, tzinfo=UTC)
    fault = make_event("drift", "s", "n", "pm", 0, 3600, {})
    planned = [Planned(fault, "pms5003")]

    def raised(sensor: str, pair: tuple[str, str] | None) -> Raised:
        return Raised("s", "n", FaultEvent(sensor, "pm25", FaultType.DRIFT, t, t, None, ""),
                      1800, pair)

    pair = ("pm", "pm-b")
    for r, station, module in [(raised("pm+pm-b", pair), True, False),
                               (raised("pm", pair), True, True),
                               # the other module named: an operator would swap the
                               # good one, no detection
                               (raised("pm-b", pair), False, False),
                               (raised("pm-b", None), False, False)]:
        for module_named, found in ((False, station), (True, module)):
            res = match(1, planned, [r], module_named=module_named)
            assert bool(res.outcomes[0].detections) == found
            assert len(res.false_positives) == (not found)


def test_paired_modules_find_a_drift_the_city_cannot_and_name_the_pair() -> None:
    city = with_module_pairs(City.load())
    start = DEFAULT_START + timedelta(hours=6)
    drift = CityDrift()
    assert warm_drift(Simulation(city, seed=12, start=start - timedelta(days=1), events=()),
                      drift, days=1.0) == []
    fault = make_event("drift", "lang-ha", "aq-1", "pms5003", 3600, 4 * 3600,
                       {"pct_per_h": -8.0})
    raised, _, _ = stream(Simulation(city, seed=12, start=start, events=[fault]), 5,
                          drift=drift)
    drifts = [r for r in raised if r.event.fault == FaultType.DRIFT]
    assert [(r.site, r.node, r.pair) for r in drifts] == [
        ("lang-ha", "aq-1", ("pms5003", "pms5003-b"))]
    assert 3600 < drifts[0].at_s < 4 * 3600 + GRACE_S


def test_the_clean_days_count_the_pairs_and_every_drift_raised_as_false(capsys) -> None:  # type: ignore[no-untyped-def]
    city = City.load()
    assert pairs_of(city) == 0
    # every air module of the default city (5 PM, 3 CO2) gets its second
    assert pairs_of(with_module_pairs(city)) == 8
    assert clean_days_main(["--seeds", "2001", "--days", "0.5"]) == 0
    head = capsys.readouterr().out.splitlines()[0]
    assert head.startswith("1 seeds x 0.5 clean days, 8 module pairs (4 pair-days): ")


def test_effect_tells_a_fault_that_changed_nothing_from_one_that_hid_changes() -> None:
    from bench.faults.effect import effects

    city = City.load()
    pads = {(e.planned.event.type, e.planned.event.sensor): e
            for e in effects(city, 1, 12.0, {"bed_pad"}, {"stuck", "spikes"})}
    stuck, spikes = pads[("stuck", "bed-01")], pads[("spikes", "bed-19")]
    # The stuck pad holds its level: no change while the fault lasts, where the run
    # without it has the patient leave and come back.
    assert stuck.changes == 0 < stuck.changes_without
    assert stuck.visible
    # Pulses on a loaded pad are masked: the readings are those of the run without them.
    assert spikes.differing == 0
    assert not spikes.visible
    assert spikes.readings == spikes.readings_without > 0
    air = effects(city, 1, 12.0, {"pms5003"}, {"stuck"})
    assert len(air) == 1
    assert air[0].visible
    assert air[0].changes == 0 < air[0].changes_without
