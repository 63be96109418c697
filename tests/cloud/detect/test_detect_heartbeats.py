"""The fault rules on a node's heartbeats: clock jumps the agent counted, supervised
drivers' cut cables, dead devices and stuck beams; heartbeats put in (run, uptime) order,
events stamped when received, the drivers followed bounded. The first tests use
heartbeats of older agents (no run id, no reception time)."""

from __future__ import annotations

import pickle
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from cloud.detect import DetectError, FaultType
from cloud.detect.faults import MAX_SUPERVISED, Heartbeat, HeartbeatMonitor, Supervision

T0 = datetime(2026, 3, 2, 8, 0, tzinfo=UTC)


def _beat(t_s: float, uptime_s: float, jumps: int, skew_s: float = 0.0,
          **supervision: Supervision) -> Heartbeat:
    return Heartbeat(T0 + timedelta(seconds=t_s + skew_s), uptime_s, jumps, supervision or None)


def test_a_jump_counted_between_two_heartbeats_of_a_run_is_a_clock_jump() -> None:
    m = HeartbeatMonitor()
    assert m.update(_beat(0, 600, 3)) == []  # the first heartbeat seen: a baseline
    assert m.update(_beat(30, 630, 3)) == []
    [ev] = m.update(_beat(60, 660, 4, skew_s=-3600))
    assert (ev.fault, ev.sensor, ev.field, ev.value) == (FaultType.CLOCK_JUMP, "", "clock_jumps", 4.0)
    assert ev.detected_at == T0 + timedelta(seconds=60 - 3600)  # the heartbeat's own stamp
    assert ev.delay == timedelta(seconds=30)  # since the heartbeat before, by the uptime
    assert m.update(_beat(90, 690, 4, skew_s=-3600)) == []
    [ev] = m.update(_beat(120, 720, 6))  # two more (set right, and again): one event
    assert "2 wall-clock jumps" in ev.detail


def test_a_restart_resets_the_count_without_an_event() -> None:
    m = HeartbeatMonitor()
    m.update(_beat(0, 600, 5))
    assert m.update(_beat(30, 4.0, 0)) == []  # uptime went down: a new run, counting from 0
    assert m.update(_beat(60, 34.0, 0)) == []
    [ev] = m.update(_beat(90, 64.0, 1))
    assert ev.fault == FaultType.CLOCK_JUMP


def test_a_heartbeat_that_comes_again_raises_nothing_again() -> None:
    m = HeartbeatMonitor()
    a, b, c = _beat(0, 600, 0), _beat(30, 630, 1), _beat(60, 660, 1)
    m.update(a)
    assert len(m.update(b)) == 1
    assert m.update(b) == []  # a retained status, seen again
    # an MQTT redelivery of both, out of order: the older one is a baseline, the newer
    # one's event was raised already
    assert m.update(a) == []
    assert m.update(b) == []
    assert m.update(c) == []


def test_a_run_s_first_heartbeat_with_jumps_counted_is_a_baseline_and_dates_no_start() -> None:
    """Jumps the agent counted before the first heartbeat the cloud sees of its run: most
    often NTP's first step of an RTC-less Pi's clock at boot (the agent counts any step
    from its start), which the readings' clock_unsynced flag covers. No event, the count is
    the run's baseline; and the start it would date may fall within the step's gap, so the
    forward rule is told none (docs/anomaly-detection.md, "Jumps counted before a run's
    first heartbeat")."""
    m = HeartbeatMonitor()
    at = [T0 + timedelta(seconds=s) for s in (0, 30, 60)]
    assert m.update(Heartbeat(at[0], 40.0, 1, run="r1", received=at[0])) == []
    assert m.taken
    assert m.started_at is None
    assert m.update(Heartbeat(at[1], 70.0, 1, run="r1", received=at[1])) == []
    [ev] = m.update(Heartbeat(at[2], 100.0, 2, run="r1", received=at[2]))
    assert (ev.fault, ev.start, ev.detected_at) == (FaultType.CLOCK_JUMP, at[1], at[2])


def test_heartbeats_without_an_uptime_or_a_count_raise_no_clock_jump() -> None:
    m = HeartbeatMonitor()
    assert m.update(Heartbeat(T0, None, 0)) == []
    assert m.update(Heartbeat(T0 + timedelta(seconds=30), None, 3)) == []
    assert m.update(Heartbeat(T0 + timedelta(seconds=60), 100.0, None)) == []
    assert m.update(Heartbeat(T0 + timedelta(seconds=90), 130.0, 2)) == []  # a first count


def test_a_cut_cable_and_a_dead_device_once_per_excursion() -> None:
    m = HeartbeatMonitor()
    ok, cut = Supervision("ok", True), Supervision("cut", False)
    dead = Supervision("ok", False)
    assert m.update(_beat(0, 600, 0, k1=ok, k2=ok)) == []
    [ev] = m.update(_beat(30, 630, 0, k1=cut, k2=ok))
    assert (ev.sensor, ev.fault, ev.field) == ("k1", FaultType.CUT_CABLE, "cable")
    assert ev.start == T0
    assert ev.detected_at == T0 + timedelta(seconds=30)
    # still cut: nothing more; a device's ready line through a cut cable says nothing
    assert m.update(_beat(60, 660, 0, k1=cut, k2=ok)) == []
    [ev] = m.update(_beat(90, 690, 0, k1=ok, k2=dead))
    assert (ev.sensor, ev.fault, ev.field) == ("k2", FaultType.SILENCE, "ready")
    assert m.update(_beat(120, 720, 0, k1=ok, k2=dead)) == []
    assert m.update(_beat(150, 750, 0, k1=ok, k2=ok)) == []
    [again] = m.update(_beat(180, 780, 0, k1=cut, k2=ok))  # a new excursion
    assert again.fault == FaultType.CUT_CABLE
    # ready only (no loopback pair): not ready is a dead device
    [ev] = m.update(_beat(210, 810, 0, k3=Supervision(None, False)))
    assert (ev.sensor, ev.fault) == ("k3", FaultType.SILENCE)


def test_the_monitor_pickles_midway() -> None:
    beats = [_beat(0, 600, 0, k=Supervision("ok")), _beat(30, 630, 0, k=Supervision("cut")),
             _beat(60, 660, 1, k=Supervision("cut")), _beat(90, 690, 1, k=Supervision("ok")),
             _beat(120, 720, 2, k=Supervision("cut"))]
    whole, part = HeartbeatMonitor(), HeartbeatMonitor()
    expected = [whole.update(b) for b in beats]
    got = [part.update(b) for b in beats[:2]]
    part = pickle.loads(pickle.dumps(part))
    got += [part.update(b) for b in beats[2:]]
    assert got == expected
    assert [len(e) for e in expected] == [0, 1, 1, 0, 2]


def test_a_naive_stamp_is_refused() -> None:
    with pytest.raises(DetectError, match="time zone"):
        Heartbeat(datetime(2026, 3, 2, 8, 0), 1.0, 0)


def test_a_failed_self_test_or_a_blocked_beam_is_stuck_once_per_episode() -> None:
    m = HeartbeatMonitor()
    ok, failed = Supervision(self_test="ok", blocked=False), Supervision(self_test="failed")
    blocked = Supervision(self_test="ok", blocked=True)
    assert m.update(_beat(0, 600, 0, door=ok)) == []
    [ev] = m.update(_beat(30, 630, 0, door=failed))
    assert (ev.sensor, ev.fault, ev.field) == ("door", FaultType.STUCK, "self_test")
    assert (ev.start, ev.detected_at) == (T0, T0 + timedelta(seconds=30))
    assert m.update(_beat(60, 660, 0, door=failed)) == []  # the same episode
    assert m.update(_beat(90, 690, 0, door=Supervision(blocked=False))) == []  # no test yet
    assert m.update(_beat(120, 720, 0, door=ok)) == []  # passed again: the episode ends
    [ev] = m.update(_beat(150, 750, 0, door=failed))
    assert ev.field == "self_test"
    [ev] = m.update(_beat(180, 780, 0, other=blocked))
    assert (ev.sensor, ev.fault, ev.field) == ("other", FaultType.STUCK, "blocked")
    assert m.update(_beat(210, 810, 0, other=blocked)) == []
    assert m.update(_beat(240, 840, 0, other=ok)) == []
    [ev] = m.update(_beat(270, 870, 0, other=blocked))
    assert ev.field == "blocked"


def test_a_cut_cable_explains_a_failed_self_test() -> None:
    m = HeartbeatMonitor()
    m.update(_beat(0, 600, 0))
    [ev] = m.update(_beat(30, 630, 0, door=Supervision("cut", self_test="failed")))
    assert ev.fault == FaultType.CUT_CABLE


def test_supervision_from_a_heartbeat_s_report_leaves_out_what_it_cannot_read() -> None:
    assert Supervision.from_report({"blocked": False, "self_test": "failed"}) == \
        Supervision(None, None, "failed", False)
    assert Supervision.from_report({"cable": "cut", "ready": True}) == Supervision("cut", True)
    assert Supervision.from_report({"cable": 1, "ready": "yes", "self_test": "maybe",
                                    "blocked": 0}) == Supervision()


def test_a_monitor_pickled_before_the_beam_rules_loads_and_raises_them() -> None:
    old = HeartbeatMonitor()
    old.update(_beat(0, 600, 0))
    del old.__dict__["_stuck"]  # the layout of a snapshot from before them
    loaded = pickle.loads(pickle.dumps(old))
    [ev] = loaded.update(_beat(30, 630, 0, door=Supervision(self_test="failed")))
    assert ev.fault == FaultType.STUCK


# -- heartbeats of agents that send a run id, received by the cloud --------------------

RUN = "5f0c2a9e1b7d4c33"


def _run_beat(t_s: float, uptime_s: float, jumps: int, *, run: str = RUN, skew_s: float = 0.0,
              drivers: dict[str, Supervision] | None = None, **supervision: Supervision
              ) -> Heartbeat:
    """Sent at T0 + t_s (the node's clock off by skew_s), received then by the cloud."""
    return Heartbeat(T0 + timedelta(seconds=t_s + skew_s), uptime_s, jumps,
                     {**(drivers or {}), **supervision} or None, run, T0 + timedelta(seconds=t_s))


def test_an_old_heartbeat_delivered_again_changes_nothing() -> None:
    """The reviewer's order A, B, C, A, D: A again used to reset the baseline, and D then
    raised a false CLOCK_JUMP."""
    m = HeartbeatMonitor()
    a, b, c, d = (_run_beat(0, 600, 0), _run_beat(30, 630, 1), _run_beat(60, 660, 1),
                  _run_beat(90, 690, 1))
    assert m.update(a) == []
    assert [ev.fault for ev in m.update(b)] == [FaultType.CLOCK_JUMP]
    assert m.update(c) == []
    assert m.update(replace(a, received=T0 + timedelta(seconds=75))) == []  # redelivered
    assert m.update(d) == []


def test_an_old_ok_delivered_again_does_not_end_a_cut() -> None:
    m = HeartbeatMonitor()
    ok, cut = Supervision("ok"), Supervision("cut")
    assert m.update(_run_beat(0, 600, 0, k=ok)) == []
    [first] = m.update(_run_beat(30, 630, 0, k=cut))
    assert first.fault == FaultType.CUT_CABLE
    assert m.update(replace(_run_beat(0, 600, 0, k=ok), received=T0 + timedelta(seconds=45))) == []
    assert m.update(_run_beat(60, 660, 0, k=cut)) == []  # still the first excursion


def test_a_new_run_id_is_a_restart_and_a_late_heartbeat_of_the_run_before_is_ignored() -> None:
    m = HeartbeatMonitor()
    m.update(_run_beat(0, 600, 5, k=Supervision("ok")))
    m.update(_run_beat(30, 630, 5, k=Supervision("ok")))
    # a restart with a higher uptime than the old run's (a long-lived run before): no jump
    assert m.update(_run_beat(60, 4.0, 0, run="a1", k=Supervision("ok"))) == []
    # the old run's last heartbeat, delivered late: it began long before "a1" did
    late = replace(_run_beat(45, 645, 9, k=Supervision("cut")), received=T0 + timedelta(seconds=70))
    assert m.update(late) == []
    [ev] = m.update(_run_beat(90, 34.0, 1, run="a1", k=Supervision("ok")))
    assert (ev.fault, ev.delay) == (FaultType.CLOCK_JUMP, timedelta(seconds=30))


def test_without_reception_times_a_new_run_id_is_a_restart() -> None:
    m = HeartbeatMonitor()
    m.update(Heartbeat(T0, 600.0, 3, None, "r1"))
    assert m.update(Heartbeat(T0 + timedelta(seconds=30), 900.0, 0, None, "r2")) == []
    [ev] = m.update(Heartbeat(T0 + timedelta(seconds=60), 930.0, 1, None, "r2"))
    assert ev.fault == FaultType.CLOCK_JUMP
    # a run id but no uptime cannot be put in order: ignored
    assert m.update(Heartbeat(T0 + timedelta(seconds=90), None, 7, None, "r2")) == []


def test_events_are_stamped_when_received_not_by_the_clock_that_jumped() -> None:
    m = HeartbeatMonitor()
    m.update(_run_beat(0, 600, 0))
    epoch = datetime(1970, 1, 1, tzinfo=UTC)  # an RTC-less node that lost its time
    [ev] = m.update(replace(_run_beat(30, 630, 1), ts=epoch))
    assert ev.detected_at == T0 + timedelta(seconds=30)
    assert ev.start == T0  # the heartbeat before, by the uptime
    assert ev.delay == timedelta(seconds=30)
    [ev] = m.update(_run_beat(60, 660, 2, skew_s=-86_400 * 365))
    assert ev.detected_at == T0 + timedelta(seconds=60)


def test_drivers_a_heartbeat_no_longer_names_are_forgotten() -> None:
    m = HeartbeatMonitor()
    m.update(_run_beat(0, 600, 0))
    for i in range(1, 20):  # a node naming new drivers, each with a cut cable
        cuts = {f"x{i}-{j}": Supervision("cut") for j in range(50)}
        assert len(m.update(_run_beat(30 * i, 600 + 30 * i, 0, drivers=cuts))) == 50
        assert len(m._cut) == 50
    m.update(_run_beat(600, 1200, 0))  # a heartbeat naming none
    assert (m._cut, m._down, m._stuck) == (set(), set(), set())
    # a driver back after being left out of a heartbeat starts afresh
    [ev] = m.update(_run_beat(630, 1230, 0, k=Supervision("cut")))
    assert ev.fault == FaultType.CUT_CABLE


def test_at_most_max_supervised_drivers_are_followed() -> None:
    m = HeartbeatMonitor()
    many = {f"s{j:04d}": Supervision("cut", self_test="failed", blocked=True)
            for j in range(MAX_SUPERVISED + 100)}
    events = m.update(_run_beat(0, 600, 0, drivers=many))
    assert len({ev.sensor for ev in events}) == MAX_SUPERVISED
    assert len(m._cut) == MAX_SUPERVISED
    assert len(pickle.dumps(m)) < 20_000


def test_a_monitor_pickled_before_the_run_ids_loads_and_follows_them() -> None:
    old = HeartbeatMonitor()
    old.update(_beat(0, 600, 0))
    for name in ("_run", "_run_start"):
        del old.__dict__[name]
    loaded = pickle.loads(pickle.dumps(old))
    assert loaded.update(_run_beat(30, 630, 0)) == []  # a new agent's first: a baseline
    [ev] = loaded.update(_run_beat(60, 660, 1))
    assert ev.fault == FaultType.CLOCK_JUMP


def _kiosk_beat(run: str, uptime: float, received_s: float, cut: bool = False) -> Heartbeat:
    at = datetime(2026, 11, 28, 10, tzinfo=UTC) + timedelta(seconds=received_s)
    report = {"kiosk1": Supervision.from_report({"cable": "cut" if cut else "ok", "ready": True})}
    return Heartbeat(at, uptime, 0, report, run, at, frozenset(report))


def test_a_late_heartbeat_of_a_short_earlier_run_does_not_blind_the_monitor_to_the_live_one() -> None:
    """Review: run a's heartbeat delivered 10 s late looks like a newer run (received minus
    uptime); the live run b was then refused until the node restarted again, and its cut
    cable never reported."""
    monitor = HeartbeatMonitor()
    monitor.update(_kiosk_beat("a", 0.0, 0.1))
    monitor.update(_kiosk_beat("b", 0.0, 6.1))
    assert monitor.update(_kiosk_beat("a", 4.0, 14.0)) == []
    faults = [ev.fault for up in (30.0, 60.0, 90.0, 120.0, 150.0)
              for ev in monitor.update(_kiosk_beat("b", up, 6.1 + up, cut=up >= 60))]
    assert faults == [FaultType.CUT_CABLE]


def test_a_driver_listed_without_supervision_for_a_moment_is_not_forgotten() -> None:
    """Review: a restarting driver reports no supervision; forgetting it raised its ongoing
    cut again at the next heartbeat (an alert per restart of a crash-looping driver)."""
    at = datetime(2026, 11, 28, 10, tzinfo=UTC)
    cut = {"kiosk1": Supervision.from_report({"cable": "cut"})}
    monitor = HeartbeatMonitor()
    faults = []
    for up, report in ((0.0, cut), (60.0, cut), (120.0, None), (180.0, cut)):
        t = at + timedelta(seconds=up)
        faults += [ev.fault for ev in monitor.update(
            Heartbeat(t, up, 0, report, "r1", t, frozenset({"kiosk1"})))]
    assert faults == [FaultType.CUT_CABLE]
    t = at + timedelta(seconds=240)
    monitor.update(Heartbeat(t, 240.0, 0, None, "r1", t, frozenset()))  # the driver is gone
    t = at + timedelta(seconds=300)
    assert [ev.fault for ev in monitor.update(Heartbeat(t, 300.0, 0, cut, "r1", t,
                                                        frozenset({"kiosk1"})))] \
        == [FaultType.CUT_CABLE], "a driver that came back is followed afresh"


def test_a_report_without_the_ready_line_ends_a_dead_device_s_episode() -> None:
    """A kiosk with opening hours leaves `ready` out after closing time. One reported dead
    at 16:29 (episode open) and still off when the hall opens next morning is reported
    again: the line was not judged in between, so the old episode says nothing of today."""
    m = HeartbeatMonitor()
    assert m.update(_beat(0, 600, 0, k=Supervision("ok", True))) == []
    [ev] = m.update(_beat(30, 630, 0, k=Supervision("ok", False)))  # 16:29
    assert (ev.sensor, ev.fault, ev.field) == ("k", FaultType.SILENCE, "ready")
    assert m.update(_beat(60, 660, 0, k=Supervision("ok", None))) == []  # 16:30: closed
    # repaired and switched off after hours; next morning nobody switched it on
    [ev] = m.update(_beat(52_200, 52_800, 0, k=Supervision("ok", False)))
    assert (ev.sensor, ev.fault, ev.field) == ("k", FaultType.SILENCE, "ready")
    assert m.update(_beat(52_230, 52_830, 0, k=Supervision("ok", False))) == []  # once
    # a ready-only kiosk's report after hours carries no line state at all
    assert m.update(_beat(52_260, 52_860, 0, k=Supervision())) == []
    [ev] = m.update(_beat(52_290, 52_890, 0, k=Supervision(None, False)))
    assert ev.fault == FaultType.SILENCE
