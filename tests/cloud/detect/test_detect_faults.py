"""The sensor-fault rules on hand-made series with known faults."""

from __future__ import annotations

import math
import pickle
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta, timezone
from typing import get_args, get_type_hints

import pytest

from cloud.detect import DetectError, FaultEvent, FaultMonitor, FaultSettings, FaultType
from cloud.detect.faults import EXPECTED_INTERVAL_MAX_S
from cloud.logic.events import Alert, SensorWatch, check_readings
from cloud.logic.records import Point
from tests.cloud.detect.old_fault_layout import as_old
from urbanpulse.clock import to_epoch_ns
from urbanpulse.simulate import City, Simulation
from urbanpulse.simulate.events import make_event
from urbanpulse.simulate.simulation import DEFAULT_START
from urbanpulse.wire import Reading

T0 = datetime(2026, 3, 1, tzinfo=UTC)
STEP = timedelta(minutes=1)


def _feed(monitor: FaultMonitor, values: list[float]) -> list:  # type: ignore[type-arg]
    events = []
    for i, v in enumerate(values):
        events += monitor.update(T0 + i * STEP, v, seq=i)
    return events


def _wavy(n: int) -> list[float]:
    return [50 + 10 * math.sin(i / 5) + (i % 3) for i in range(n)]


def test_out_of_range_fires_once_per_excursion_without_delay() -> None:
    monitor = FaultMonitor("air.pm", "pm25", sensor="n1/pm")
    values = [20.0] * 5 + [-3.0, -4.0, 20.0, 1500.0]
    events = _feed(monitor, values)
    assert [e.fault for e in events] == [FaultType.OUT_OF_RANGE] * 2
    assert events[0].start == T0 + 5 * STEP
    assert events[1].value == 1500.0
    assert all(e.delay == timedelta(0) for e in events)


def test_stuck_value_fires_after_count_and_duration_from_the_run_start() -> None:
    settings = FaultSettings(stuck_count=10, stuck_min_s=600, spike_window=None)
    monitor = FaultMonitor("air.co2", "co2", settings=settings)
    values = _wavy(50) + [412.0] * 30
    events = _feed(monitor, values)
    assert [e.fault for e in events] == [FaultType.STUCK]
    assert events[0].start == T0 + 50 * STEP
    assert events[0].delay == 10 * STEP  # 11 readings span 10 minutes
    assert _feed(FaultMonitor("air.co2", "co2", settings=settings), _wavy(200)) == []


@pytest.mark.parametrize(("kind", "field", "top", "below"), [
    ("air.co2", "co2", 5000.0, 4999.0),
    ("air.co2", "co2", 2000.0, 2001.0),
    ("air.pm", "pm25", 999.9, 999.8),
])
def test_a_run_at_a_module_s_full_scale_says_saturated_as_likely_as_stuck(
        kind: str, field: str, top: float, below: float) -> None:
    """An MH-Z19B in air above its range reads its full scale without change: the rule
    fires as for any stuck value, and its detail says what else it may be. A run just off
    the full scale is stuck, and says nothing of the kind."""
    settings = FaultSettings(stuck_count=10, stuck_min_s=600, spike_window=None)
    events = _feed(FaultMonitor(kind, field, settings=settings), _wavy(50) + [top] * 30)
    assert [e.fault for e in events] == [FaultType.STUCK]
    assert events[0].detail == (f"11 readings at {top}: the module's full scale, so saturated "
                                "(what it measures above its range) as likely as stuck")
    events = _feed(FaultMonitor(kind, field, settings=settings), _wavy(50) + [below] * 30)
    assert [e.detail for e in events] == [f"11 readings at {below}"]


def test_booleans_are_never_stuck() -> None:
    monitor = FaultMonitor("hospital.bed", "occupied")
    assert _feed(monitor, [1.0] * 500) == []


def test_silence_is_seen_by_tick_with_a_learned_interval() -> None:
    monitor = FaultMonitor("traffic.loop", "occupancy_pct", settings=FaultSettings(spike_window=None))
    _feed(monitor, _wavy(20))
    last = T0 + 19 * STEP
    assert monitor.tick(last + 2 * STEP) == []
    events = monitor.tick(last + 3 * STEP)
    assert [e.fault for e in events] == [FaultType.SILENCE]
    assert events[0].start == last + STEP
    assert events[0].delay == 2 * STEP
    assert monitor.tick(last + 10 * STEP) == []  # reported once
    monitor.update(last + 11 * STEP, 50.0, seq=20)
    assert [e.fault for e in monitor.tick(last + 20 * STEP)] == [FaultType.SILENCE]


def test_heartbeats_keep_a_sensor_alive() -> None:
    monitor = FaultMonitor("hospital.door", "count", settings=FaultSettings(expected_interval_s=60))
    monitor.update(T0, 3.0, seq=0)
    for i in range(1, 10):
        monitor.heartbeat(T0 + i * STEP)
        assert monitor.tick(T0 + i * STEP + timedelta(seconds=30)) == []


def test_a_sequence_gap_reports_the_silence_when_data_returns() -> None:
    monitor = FaultMonitor("air.co2", "co2", settings=FaultSettings(expected_interval_s=60))
    for i in range(5):
        monitor.update(T0 + i * STEP, 400.0 + i, seq=i)
    events = monitor.update(T0 + 10 * STEP, 401.0, seq=10)
    assert [e.fault for e in events] == [FaultType.SILENCE]
    assert events[0].start == T0 + 5 * STEP
    assert "5 readings missing" in events[0].detail
    assert monitor.update(T0 + 11 * STEP, 402.0, seq=10) == []  # a duplicate


def test_a_single_spike_is_found_one_reading_later() -> None:
    monitor = FaultMonitor("air.pm", "pm25")
    values = _wavy(40)
    values[30] = 600.0
    events = _feed(monitor, values)
    assert [e.fault for e in events] == [FaultType.SPIKE]
    assert events[0].start == T0 + 30 * STEP
    assert events[0].delay == STEP
    assert events[0].value == 600.0


def test_spikes_are_raised_once_per_episode_and_again_after_an_hour_without() -> None:
    """A failing laser or a noisy cable spikes a field dozens of times an hour: one event,
    not one per spike (the fault bench's PMS5003 raised 153 for one fault; found by review).
    A spike more than an hour after the one before starts a new episode."""
    values = _wavy(200)
    for i in (30, 40, 50, 60, 95, 160):  # 95: 35 min after 60; 160: 65 min after 95
        values[i] = 600.0
    events = _feed(FaultMonitor("air.pm", "pm25"), values)
    assert [(e.fault, e.start) for e in events] == [(FaultType.SPIKE, T0 + 30 * STEP),
                                                    (FaultType.SPIKE, T0 + 160 * STEP)]


def test_a_monitor_pickled_before_spike_episodes_loads_and_raises_its_first_spike() -> None:
    monitor = FaultMonitor("air.pm", "pm25")
    values = _wavy(40)
    _feed(monitor, values[:20])
    monitor = as_old(monitor, "_spike_last")  # the layout of snapshots taken before
    resumed: FaultMonitor = pickle.loads(pickle.dumps(monitor))
    values[30] = 600.0
    events = [e for i, v in enumerate(values[20:], 20)
              for e in resumed.update(T0 + i * STEP, v, seq=i)]
    assert [(e.fault, e.start) for e in events] == [(FaultType.SPIKE, T0 + 30 * STEP)]


def test_a_level_change_is_not_a_spike() -> None:
    monitor = FaultMonitor("air.pm", "pm25")
    values = _wavy(40) + [v + 400 for v in _wavy(40)]
    assert [e for e in _feed(monitor, values) if e.fault is FaultType.SPIKE] == []


def test_bad_input_is_refused() -> None:
    with pytest.raises(DetectError, match="unknown kind"):
        FaultMonitor("air.pm", "ozone")
    monitor = FaultMonitor("air.pm", "pm25")
    with pytest.raises(DetectError, match="not finite"):
        monitor.update(T0, math.inf)
    with pytest.raises(DetectError):
        FaultSettings(silence_intervals=0)


def _feed_counts(monitor: FaultMonitor, values: list[float], first: int = 0) -> list:  # type: ignore[type-arg]
    events = []
    for i, v in enumerate(values, first):
        events += monitor.update(T0 + i * STEP, v, seq=i)
    return events


def test_a_cut_bed_pad_is_reported_on_its_first_fault_flag() -> None:
    monitor = FaultMonitor("hospital.bed", "fault", sensor="ward/bed-07")
    events = _feed(monitor, [1.0, 1.0, 1.0])
    assert [e.fault for e in events] == [FaultType.CUT_CABLE]
    assert events[0].delay == timedelta(0)


def test_a_loop_card_held_present_is_a_cut_cable_after_three_readings() -> None:
    monitor = FaultMonitor("traffic.loop", "occupancy_pct")
    values = [12.0, 30.5, 100.0, 8.0] + [100.0] * 6 + [5.0] + [100.0] * 3
    events = _feed(monitor, values)
    assert [e.fault for e in events] == [FaultType.CUT_CABLE] * 2
    assert events[0].start == T0 + 4 * STEP
    assert events[0].delay == 2 * STEP


def test_stamps_jumping_ahead_of_the_sequence_numbers_are_a_clock_jump() -> None:
    monitor = FaultMonitor("air.co2", "co2", settings=FaultSettings(spike_window=None))
    values = _wavy(60)
    events = []
    for i, v in enumerate(values):
        ts = T0 + i * STEP + (timedelta(minutes=10) if i >= 40 else timedelta(0))
        events += monitor.update(ts, v, seq=i)
    assert [e.fault for e in events] == [FaultType.CLOCK_JUMP]
    assert events[0].start == T0 + 50 * STEP
    assert "set forward" in events[0].detail


def test_readings_skipped_while_the_stamps_barely_move_are_a_clock_set_back() -> None:
    # The dataflow drops readings stamped before the newest one it has: after a clock
    # set back by 10 minutes, the monitor sees seq jump by 10 for a one-minute step.
    monitor = FaultMonitor("air.co2", "co2", settings=FaultSettings(spike_window=None))
    _feed(monitor, _wavy(30))
    events = monitor.update(T0 + 30 * STEP, 50.0, seq=40)
    assert [e.fault for e in events] == [FaultType.CLOCK_JUMP]
    assert "set back" in events[0].detail
    # Ten readings truly lost move the stamps on as far: that is a silence.
    lost = monitor.update(T0 + 41 * STEP, 50.0, seq=51)
    assert [e.fault for e in lost] == [FaultType.SILENCE]


def test_silence_is_judged_on_arrival_not_on_a_lagging_clock() -> None:
    monitor = FaultMonitor("air.co2", "co2", settings=FaultSettings(spike_window=None))
    lag = timedelta(hours=1)
    events = []
    for i, v in enumerate(_wavy(60)):
        now = T0 + i * STEP
        events += monitor.update(now - lag, v, seq=i)
        events += monitor.tick(now + timedelta(seconds=30))
    assert events == []
    assert [e.fault for e in monitor.tick(T0 + 62 * STEP)] == [FaultType.SILENCE]


def test_a_silence_seen_by_the_ticks_is_not_also_a_clock_jump() -> None:
    monitor = FaultMonitor("air.co2", "co2", settings=FaultSettings(spike_window=None))
    _feed(monitor, _wavy(30))
    events = []
    for i in range(30, 50):
        events += monitor.tick(T0 + i * STEP)
    events += monitor.update(T0 + 50 * STEP, 50.0, seq=30)
    assert [e.fault for e in events] == [FaultType.SILENCE]
    # Without ticks the same gap cannot be told from a clock set forward.
    blind = FaultMonitor("air.co2", "co2", settings=FaultSettings(spike_window=None))
    _feed(blind, _wavy(30))
    assert [e.fault for e in blind.update(T0 + 50 * STEP, 50.0, seq=30)] == [
        FaultType.CLOCK_JUMP]


def test_a_busy_counter_gone_dead_is_stuck_and_a_quiet_one_is_not() -> None:
    busy = [float(1 + (i * 7) % 5) for i in range(80)]
    monitor = FaultMonitor("traffic.loop", "count")
    events = _feed_counts(monitor, busy + [0.0] * 30)
    assert [e.fault for e in events] == [FaultType.STUCK]
    assert events[0].start == T0 + 80 * STEP
    assert events[0].delay == 14 * STEP  # 15 zeros where every reading was not 0
    quiet = [1.0 if i % 3 == 0 else 0.0 for i in range(80)]
    assert _feed_counts(FaultMonitor("hospital.door", "count"), quiet + [0.0] * 60) == []


def test_kiosk_events_have_no_interval_silence_or_forward_clock_rule() -> None:
    monitor = FaultMonitor("hospital.queue", "ticket")
    events = [e for i in range(30)
              for e in monitor.update(T0 + i * STEP, float(i + 1), i, ISSUED)]
    events += monitor.update(T0 + 31 * STEP, 31.0, 40, ISSUED)
    events += monitor.update(T0 + 900 * STEP, 32.0, 41, ISSUED)
    events += monitor.tick(T0 + 1000 * STEP)
    assert events == []


def test_a_spike_must_be_large_against_the_level() -> None:
    values = [70.0 + (i % 3) * 0.1 for i in range(30)]
    values[20] = 98.0  # 40 % up: weather, not a broken sample
    assert _feed(FaultMonitor("air.pm", "pm25"), values) == []
    values[20] = 420.0
    assert [e.fault for e in _feed(FaultMonitor("air.pm", "pm25"), values)] == [FaultType.SPIKE]


def test_a_monitor_pickled_midway_goes_on_exactly_as_the_original() -> None:
    values = _wavy(50) + [412.0] * 30
    original = FaultMonitor("air.co2", "co2", sensor="aq/mhz19b")
    _feed(original, values[:40])
    copy = pickle.loads(pickle.dumps(original))
    rest = [(T0 + i * STEP, v, i) for i, v in enumerate(values) if i >= 40]
    a = [e for ts, v, i in rest for e in original.update(ts, v, i)]
    b = [e for ts, v, i in rest for e in copy.update(ts, v, i)]
    assert a == b
    assert [e.fault for e in a] == [FaultType.STUCK]


def test_glitches_from_the_edge_are_spikes_once_three_fall_within_an_hour() -> None:
    monitor = FaultMonitor("traffic.loop", "glitches", sensor="x/lane")
    at = [T0, T0 + 40 * STEP, T0 + 101 * STEP]  # never three within an hour
    assert [e for t in at for e in monitor.update(t, 1.0)] == []
    events = monitor.update(T0 + 120 * STEP, 2.0)  # 1 (at 101) + 2 within the hour
    assert [e.fault for e in events] == [FaultType.SPIKE]
    assert events[0].start == T0 + 101 * STEP
    assert events[0].delay == 19 * STEP
    assert monitor.update(T0 + 130 * STEP, 5.0) == []  # once per burst
    # An hour without glitches re-arms the rule.
    assert [e.fault for e in monitor.update(T0 + 200 * STEP, 3.0)] == [FaultType.SPIKE]


def test_glitch_fields_have_no_silence_rule_and_zero_is_no_glitch() -> None:
    for kind in ("hospital.bed", "hospital.door", "traffic.loop"):
        monitor = FaultMonitor(kind, "glitches")
        assert _feed(monitor, [0.0] * 200) == []
        assert monitor.tick(T0 + 1000 * STEP) == []


def test_a_cut_door_beam_cable_is_reported_on_its_first_fault_flag() -> None:
    monitor = FaultMonitor("hospital.door", "fault", sensor="h/door")
    events = _feed(monitor, [0.0, 0.0, 1.0, 1.0])
    assert [e.fault for e in events] == [FaultType.CUT_CABLE]
    assert events[0].start == T0 + 2 * STEP


ISSUED = {"called": 0.0}
CALLED = {"called": 1.0}


def _kiosk(monitor: FaultMonitor, issued: int, call_at: list[float],
           then: Sequence[tuple[float, float, bool]] = ()) -> tuple[list, datetime]:  # type: ignore[type-arg]
    """Tickets 1..issued, one a minute; ticket n called at minute call_at[n - 1]; then
    the (minute, ticket, called) of `then`; fed on arrival with the reading's `called`,
    ticked at each one."""
    stream = [(T0 + n * STEP, float(n + 1), False) for n in range(issued)]
    stream += [(T0 + t * STEP, float(n + 1), True) for n, t in enumerate(call_at)]
    stream += [(T0 + t * STEP, ticket, called) for t, ticket, called in then]
    stream.sort()
    events: list = []  # type: ignore[type-arg]
    for seq, (at, ticket, called) in enumerate(stream):
        events += monitor.update(at, ticket, seq, CALLED if called else ISSUED)
        events += monitor.tick(at)
    return events, stream[-1][0]


def test_a_busy_kiosk_going_quiet_with_tickets_waiting_is_silent() -> None:
    monitor = FaultMonitor("hospital.queue", "ticket", sensor="opd/kiosk")
    # each ticket called 2.5 minutes after its issue; everything stops at minute 90
    events, end = _kiosk(monitor, 90, [n + 2.5 for n in range(88)])
    assert events == []
    # about 2 events a minute: quiet for 10 minutes is improbable (p < 1e-9)
    assert monitor.tick(end + 5 * STEP) == []
    fired = monitor.tick(end + 11 * STEP)
    assert [e.fault for e in fired] == [FaultType.SILENCE]
    assert fired[0].start == end
    assert "2 waiting" in fired[0].detail
    assert monitor.tick(end + 30 * STEP) == []  # once


def test_a_kiosk_closing_is_not_silent() -> None:
    # issuing stops 15 minutes before the counters stop calling (tickets abandoned)
    early = FaultMonitor("hospital.queue", "ticket")
    events, end = _kiosk(early, 75, [1.2 * n + 2.5 for n in range(73)])
    events += early.tick(end + 600 * STEP)
    assert events == []
    # the last ticket issued is called at once: nobody waiting
    drained = FaultMonitor("hospital.queue", "ticket")
    events, end = _kiosk(drained, 90, [n + 0.5 for n in range(90)])
    events += drained.tick(end + 600 * STEP)
    assert events == []
    # a quiet kiosk (a ticket every 10 minutes) is never busy enough
    quiet = FaultMonitor("hospital.queue", "ticket")
    for n in range(20):
        events += quiet.update(T0 + 10 * n * STEP, float(n + 1), 2 * n, ISSUED)
        events += quiet.update(T0 + (10 * n + 5) * STEP, float(n + 1), 2 * n + 1, CALLED)
    events += quiet.tick(T0 + 1000 * STEP)
    assert events == []


def test_a_call_of_ticket_1_does_not_restart_the_numbering() -> None:
    # A busy hour on tickets 1..90, then the numbering restarts: 1, 2 and 3 issued, 1
    # called, and everything stops with 2 waiting. Told by the ticket numbers alone, the
    # call of 1 looked like an issue after a restart: nobody waiting, no silence.
    monitor = FaultMonitor("hospital.queue", "ticket", sensor="opd/kiosk")
    then = [(90.0, 1.0, False), (91.0, 2.0, False), (92.0, 3.0, False), (92.5, 1.0, True)]
    events, end = _kiosk(monitor, 90, [n + 2.5 for n in range(88)], then)
    assert events == []
    fired = monitor.tick(end + 11 * STEP)
    assert [e.fault for e in fired] == [FaultType.SILENCE]
    assert "2 waiting" in fired[0].detail


def test_the_kiosk_rule_needs_the_readings_called() -> None:
    monitor = FaultMonitor("hospital.queue", "ticket", sensor="opd/kiosk")
    with pytest.raises(DetectError, match="called"):
        monitor.update(T0, 1.0, 0)
    with pytest.raises(DetectError, match="called"):
        monitor.update(T0, 1.0, 0, {"ticket": 1.0})
    assert monitor.update(T0, 1.0, 0, ISSUED) == []


def test_a_kiosk_stamped_back_while_its_numbers_go_up_is_a_clock_set_back() -> None:
    monitor = FaultMonitor("hospital.queue", "ticket", sensor="opd/kiosk")
    events: list = []  # type: ignore[type-arg]
    for i in range(10):  # an issue and its call share a stamp: equal is fine
        events += monitor.update(T0 + i * STEP, float(i + 1), 2 * i, ISSUED)
        events += monitor.update(T0 + i * STEP, float(i + 1), 2 * i + 1, CALLED)
    assert events == []
    # the clock goes back an hour: the dataflow hands the reading to stamped_before
    back = T0 + 10 * STEP - timedelta(hours=1)
    fired = monitor.stamped_before(back, 11.0, 20)
    assert [e.fault for e in fired] == [FaultType.CLOCK_JUMP]
    assert fired[0].start == back
    assert "3540 s" in fired[0].detail
    # once: the next readings are stamped after the one before them
    assert monitor.stamped_before(back + STEP, 12.0, 21) == []
    # when the clock is put right the stamps go forward: nothing
    assert monitor.update(T0 + 12 * STEP, 13.0, 22, ISSUED) == []
    # a late reading (a lower number) stamped before the newest is no clock jump either
    assert monitor.stamped_before(T0 + 5 * STEP, 6.0, 11) == []
    assert monitor.update(T0 + 13 * STEP, 14.0, 23, ISSUED) == []
    # the end of a forward jump is a clock set back too
    assert monitor.update(T0 + 30 * STEP, 15.0, 24, ISSUED) == []
    assert [e.fault for e in monitor.stamped_before(T0 + 15 * STEP, 16.0, 25)] == [
        FaultType.CLOCK_JUMP]
    # other event fields have no such rule; regular sensors have theirs (a reading numbered
    # after the newest judged: test_detect_clock_set_back.py), a late one raises nothing
    assert FaultMonitor("hospital.queue", "called").stamped_before(T0, 1.0, 99) == []
    pm = FaultMonitor("air.pm", "pm25")
    _feed(pm, _wavy(30))
    assert pm.stamped_before(T0, 50.0, 3) == []
    assert [e.fault for e in pm.stamped_before(T0, 50.0, 31)] == [FaultType.CLOCK_JUMP]


def test_a_kiosk_whose_numbering_restarted_is_judged_from_there() -> None:
    monitor = FaultMonitor("hospital.queue", "ticket")
    for i in range(10):
        assert monitor.update(T0 + i * STEP, float(i + 1), 1000 + i, ISSUED) == []
    # the edge lost its count: numbers from 0 again, stamped after everything seen
    assert monitor.update(T0 + 20 * STEP, 1.0, 0, ISSUED) == []
    assert [e.fault for e in monitor.stamped_before(T0 + 15 * STEP, 2.0, 1)] == [
        FaultType.CLOCK_JUMP]


def test_the_dataflow_feeds_a_kiosk_its_called_and_its_readings_stamped_back() -> None:
    # A laboratory's kiosk through SensorWatch (one reading at a time) and check_readings
    # (a message at a time), its node's clock set back an hour in opening hours.
    jump = make_event("clock_jump", "bach-mai", "laboratory", None, 3600, 7200,
                      {"offset_s": -3600})
    sim = Simulation(City.load(), seed=2, start=DEFAULT_START + timedelta(hours=9),
                     events=[jump])
    one: dict[str, SensorWatch] = {}
    batch: dict[str, SensorWatch] = {}
    alerts: tuple[list[Alert], list[Alert]] = ([], [])
    points: tuple[list[Point], list[Point]] = ([], [])
    readings = 0
    for nb in sim.readings().run(until=3 * 3600, step=600):
        if (nb.site, nb.node) != ("bach-mai", "laboratory"):
            continue
        rs: list[Reading] = list(nb.readings)
        readings += len(rs)
        for r in rs:
            points[0].extend(one.setdefault(r.sensor, SensorWatch()).check(
                nb.site, nb.node, r, alerts[0]))
        points[1].extend(check_readings(nb.site, nb.node, rs, batch, alerts[1]))
    assert readings > 100
    assert points[0] == points[1]
    assert alerts[0] == alerts[1]
    faults = [a for a in alerts[0] if a.type != "anomaly"]
    assert [(a.type, a.field) for a in faults] == [("clock_jump", "ticket")]
    assert "clock set back" in faults[0].detail
    # raised on the first reading of the jump: stamped in the hour before its start
    start_ns = sim.timebase.start_ns
    assert 0 <= faults[0].ts_ns - start_ns < 3600 * 10**9


def test_stamps_in_nanoseconds_and_in_any_zone_raise_the_same_events() -> None:
    """The rules keep microseconds since the epoch: an aware datetime of another zone and
    the epoch nanoseconds the dataflow passes give the events a UTC datetime gives."""
    hanoi = timezone(timedelta(hours=7))
    # A level, a spike, a stuck run, a gap in the numbers, a clock set back and forward.
    values = [*_wavy(60), 400.0, *_wavy(5), *[42.0] * 40, *_wavy(30)]
    stamps = [T0 + i * STEP for i in range(len(values))]
    stamps[80:] = [ts + timedelta(hours=2) for ts in stamps[80:]]
    stamps[100:] = [ts - timedelta(minutes=30) for ts in stamps[100:]]
    seqs = [i if i < 90 else i + 5 for i in range(len(values))]
    runs: list[list[FaultEvent]] = []
    for form in ("utc", "hanoi", "ns"):
        monitor = FaultMonitor("air.pm", "pm25", sensor="n1/pm")
        events: list[FaultEvent] = []
        for ts, v, seq in zip(stamps, values, seqs, strict=True):
            stamp: datetime | int = (ts if form == "utc" else ts.astimezone(hanoi) if form == "hanoi"
                                     else to_epoch_ns(ts))
            events += monitor.update(stamp, v, seq=seq)
        events += monitor.tick(stamps[-1] + timedelta(hours=1))
        runs.append(events)
    assert runs[0] == runs[1] == runs[2]
    assert [repr(ev) for ev in runs[0]] == [repr(ev) for ev in runs[1]] == [repr(ev) for ev in runs[2]]
    assert {ev.fault for ev in runs[0]} >= {FaultType.SPIKE, FaultType.STUCK,
                                            FaultType.CLOCK_JUMP, FaultType.SILENCE}


def _float_settings() -> list[str]:
    hints = get_type_hints(FaultSettings)
    return [name for name, hint in hints.items() if float in (hint, *get_args(hint))]


def test_every_float_setting_is_a_float_field() -> None:
    # The list the next test refuses non-finite values for: a float setting added later is in it.
    assert {"expected_interval_s", "spike_floor", "spike_rel", "spike_k", "cut_at",
            "pair_alpha", "stuck_min_s", "gap_grace_s"} <= set(_float_settings())
    assert "silence_intervals" not in _float_settings()


@pytest.mark.parametrize("name", _float_settings())
@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_a_float_setting_that_is_not_finite_is_refused_by_name(name: str, bad: float) -> None:
    # A NaN or inf setting passed the range checks (spike_rel=inf, spike_floor=nan) and gave
    # rules that differ by how a comparison is written: max() against `<` (8b9dae0).
    with pytest.raises(DetectError, match=rf"\b{name}={bad!r}.*not finite"):
        FaultSettings(**{name: bad})  # type: ignore[arg-type]


@pytest.mark.parametrize("settings", [
    {"spike_rel": math.inf, "spike_window": 3, "stuck_count": None},
    {"spike_rel": math.nan, "spike_window": 3, "stuck_count": None},
    {"spike_floor": math.nan, "spike_window": 3, "stuck_count": None},
])
def test_the_review_reproductions_are_refused_at_the_settings(settings: dict[str, object]) -> None:
    with pytest.raises(DetectError, match="not finite"):
        FaultSettings(**settings)  # type: ignore[arg-type]


def test_a_range_check_names_its_setting() -> None:
    with pytest.raises(DetectError, match=r"silence_intervals=0\b.*at least 1"):
        FaultSettings(silence_intervals=0)
    with pytest.raises(DetectError, match=r"spike_rel=-0\.5\b.*at least 0"):
        FaultSettings(spike_rel=-0.5)
    with pytest.raises(DetectError, match=r"zero_busy=1\.0\b.*between 0 and 1"):
        FaultSettings(zero_busy=1.0)


@pytest.mark.parametrize("interval", [0.0, -1.0, EXPECTED_INTERVAL_MAX_S * 1.000001, 8.64e13, 1e14])
def test_an_expected_interval_beyond_a_week_or_not_positive_is_refused(interval: float) -> None:
    # timedelta(seconds=) overflows from about 8.64e13 s: every tick raised OverflowError.
    with pytest.raises(DetectError, match=rf"expected_interval_s={interval!r}.*0 < .* <= 604800"):
        FaultSettings(expected_interval_s=interval)


def test_an_expected_interval_of_a_week_is_taken_and_ticks() -> None:
    assert EXPECTED_INTERVAL_MAX_S == 7 * 24 * 3600
    monitor = FaultMonitor("air.pm", "pm25", settings=FaultSettings(
        expected_interval_s=EXPECTED_INTERVAL_MAX_S))
    for i in (0, 1, 3):  # a number skipped: the sequence-gap rule reads the interval
        assert monitor.update(T0 + i * STEP, 10.0, seq=i) == []
    assert monitor.tick(T0 + 4 * STEP) == []
    assert monitor.expected_interval() == timedelta(weeks=1)
    assert [e.fault for e in monitor.tick(T0 + timedelta(weeks=3, minutes=3))] == [FaultType.SILENCE]


def _mhz19b(co2: Sequence[float], temperature: Sequence[float]) -> list[Alert]:
    """An MH-Z19B read every 5 s through the dataflow's checks: its co2 and the module's
    internal temperature, which it sends in whole degrees with every reading."""
    t0 = to_epoch_ns(datetime(2026, 3, 2, 8, tzinfo=UTC))
    watches: dict[str, SensorWatch] = {}
    alerts: list[Alert] = []
    for i, (c, t) in enumerate(zip(co2, temperature, strict=True)):
        ts = t0 + i * 5 * 10**9
        r = Reading(sensor="mhz19b", kind="air.co2", ts_ns=ts, seq=i,
                    values={"co2": c, "temperature_c": t})
        check_readings("s", "n", [r], watches, alerts, received_ns=ts + 10**8)
    return alerts


def test_a_modules_whole_degree_temperature_steady_for_hours_is_not_stuck() -> None:
    # A room kept at one temperature: the module's reading holds a whole degree for an
    # hour or two at a time. The stuck rule of the default settings raised it at every
    # plateau (30 readings over 30 min): "stuck temperature_c" several times a day.
    n = 6 * 720
    co2 = [float(round(600 + 150 * math.sin(i / 400) + 7 * math.sin(i * 1.7))) for i in range(n)]
    temperature = [29.0 + (i // 1500) % 2 for i in range(n)]
    faults = [a for a in _mhz19b(co2, temperature) if a.type != "anomaly"]
    assert faults == []
    # A hung module repeats its whole answer: the co2 says so, once (not the temperature too).
    hung = co2[:1000] + [co2[999]] * 200
    faults = [a for a in _mhz19b(hung, temperature[:1200]) if a.type != "anomaly"]
    assert [(a.type, a.field) for a in faults] == [("stuck", "co2")]


def test_a_modules_temperature_and_humidity_have_the_rules_of_an_optional_field() -> None:
    # Their silence, gaps and clock are the module's measurement's (every reading carries
    # it): one SILENCE for a silent module, not one per field.
    for kind, name in (("air.co2", "temperature_c"), ("air.pm", "temperature_c"),
                       ("air.pm", "humidity_pct")):
        settings = FaultMonitor(kind, name).settings
        assert settings.stuck_count is None
        assert not settings.regular
        assert not settings.every_reading
        assert settings.spike_window is not None
    watch = SensorWatch()
    co2 = [float(600 + (i % 7)) for i in range(40)]
    for i, c in enumerate(co2):
        watch.check("s", "n", Reading(sensor="mhz19b", kind="air.co2", ts_ns=to_epoch_ns(
            T0 + i * STEP), seq=i, values={"co2": c, "temperature_c": 29.0}))
    points = watch.tick("s", "n", "mhz19b", "air.co2", T0 + 50 * STEP)
    assert [p[1].split(",", 1)[0] for p in points] == ["events"]
    assert "field=\"co2\"" in points[0][1]


def test_a_temperature_monitor_pickled_with_the_default_settings_takes_its_own() -> None:
    # Snapshots taken before: their monitors kept the default settings, stuck rule included.
    old = FaultMonitor("air.co2", "temperature_c", "mhz19b", settings=FaultSettings())
    _feed(old, [29.0] * 5)
    loaded = pickle.loads(pickle.dumps(old))
    assert loaded.settings == FaultMonitor("air.co2", "temperature_c").settings
    assert _feed(loaded, [29.0] * 60) == []
    # settings given otherwise are kept
    own = FaultSettings(stuck_count=5, stuck_min_s=0.0)
    mine = pickle.loads(pickle.dumps(FaultMonitor("air.co2", "temperature_c", settings=own)))
    assert mine.settings == own
    co2 = pickle.loads(pickle.dumps(FaultMonitor("air.co2", "co2", settings=FaultSettings())))
    assert co2.settings == FaultSettings()


def test_a_value_out_of_range_is_no_spike_too() -> None:
    # One reading outside the physical range raised OUT_OF_RANGE and, one reading later,
    # SPIKE: two alerts for one reading that is no measurement (kept out of the detector
    # and the aggregates, and now of the spike rule's median). A spike decided across it
    # is decided by the next reading in range.
    monitor = FaultMonitor("air.pm", "pm25", sensor="n1/pm")
    values = [30.0 + i % 5 for i in range(30)]
    values[20] = 1500.0
    assert [e.fault for e in _feed(monitor, values)] == [FaultType.OUT_OF_RANGE]
    monitor = FaultMonitor("air.pm", "pm25", sensor="n1/pm")
    values = [30.0 + i % 5 for i in range(30)]
    values[20], values[21] = 900.0, -5.0
    events = _feed(monitor, values)
    assert [e.fault for e in events] == [FaultType.OUT_OF_RANGE, FaultType.SPIKE]
    assert events[1].value == 900.0
    assert events[1].detected_at == T0 + 22 * STEP


def test_a_loops_speed_count_is_a_weight_no_stuck_value_and_no_anomaly_score() -> None:
    """`speed_count` (vehicles a lane's speed is the mean of) is 0 through every quiet
    night: no STUCK of it, and no anomaly detector (profiles.UNSCORED_FIELDS)."""
    from cloud.detect.profiles import scored

    assert not scored("traffic.loop", "speed_count")
    assert scored("traffic.loop", "speed_kmh")
    monitor = FaultMonitor("traffic.loop", "speed_count", sensor="cab/lane-1")
    assert _feed(monitor, [0.0] * 240) == []  # 4 hours of zeros, a reading a minute
    assert _feed(FaultMonitor("traffic.loop", "count", sensor="cab/lane-1"),
                 [float(i % 7 + 3) for i in range(120)] + [0.0] * 240) != []  # the rule is on
