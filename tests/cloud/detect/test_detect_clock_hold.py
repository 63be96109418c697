"""The forward clock rule and the agent's restarts, whatever order the heartbeat and the
readings reach the monitor in: a jump whose reading is not stamped ahead of the cloud's
clock is held until a heartbeat tells a restart from a jump (FaultMonitor.node_heartbeat)
or a reading received `clock_hold_s` later comes; one stamped ahead is raised at once."""

from __future__ import annotations

import pickle
from datetime import UTC, datetime, timedelta

from cloud.detect import FaultMonitor, FaultType
from cloud.detect.faults import Heartbeat, HeartbeatMonitor
from tests.cloud.detect.old_fault_layout import as_old

T0 = datetime(2026, 5, 1, 8, 0, tzinfo=UTC)
STEP = 60.0  # s between readings
LEARNT = 30  # readings before the gap: the longest gap is learnt from 20
GAP = 600.0  # the agent down (or the clock set forward) for this long


def _ns(t: datetime) -> int:
    return int((t - datetime(1970, 1, 1, tzinfo=UTC)).total_seconds()) * 10**9


def _learnt() -> FaultMonitor:
    """A PM sensor's monitor that has seen LEARNT readings, received as stamped."""
    m = FaultMonitor("air.pm", "pm25", "pm-1")
    for i in range(LEARNT):
        t = T0 + timedelta(seconds=STEP * i)
        assert m.update(_ns(t), 10.0 + i % 3, i, received=_ns(t)) == []
    return m


LAST = T0 + timedelta(seconds=STEP * (LEARNT - 1))
AFTER = LAST + timedelta(seconds=GAP)  # the reading after the gap, seq LEARNT


def _after(m: FaultMonitor, received: datetime, k: int = 0) -> list[FaultType]:
    t = AFTER + timedelta(seconds=STEP * k)
    return [ev.fault for ev in m.update(_ns(t), 11.0, LEARNT + k, received=_ns(received))]


def test_a_restart_told_after_its_readings_raises_nothing() -> None:
    m = _learnt()
    assert _after(m, AFTER) == []  # held: no heartbeat has told yet
    started = AFTER - timedelta(seconds=5)
    assert m.node_heartbeat(AFTER + timedelta(seconds=1), AFTER + timedelta(seconds=1.5),
                            started) == []
    # nothing left to let go, later
    assert _after(m, AFTER + timedelta(seconds=STEP), 1) == []
    assert m.node_heartbeat(AFTER + timedelta(seconds=90), AFTER + timedelta(seconds=90)) == []


def test_a_restart_told_first_raises_nothing_either() -> None:
    m = _learnt()
    m.node_heartbeat(AFTER - timedelta(seconds=1), AFTER - timedelta(seconds=1),
                     AFTER - timedelta(seconds=5))
    assert _after(m, AFTER) == []
    assert _after(m, AFTER + timedelta(seconds=STEP), 1) == []


def test_a_jump_held_is_let_go_by_the_next_heartbeat_with_its_reading_s_stamps() -> None:
    m = _learnt()
    assert _after(m, AFTER) == []
    # a heartbeat sent before the reading (stamped before it) says nothing of its gap
    assert m.node_heartbeat(AFTER - timedelta(seconds=2), AFTER + timedelta(seconds=1)) == []
    [ev] = m.node_heartbeat(AFTER + timedelta(seconds=20), AFTER + timedelta(seconds=20))
    assert ev.fault is FaultType.CLOCK_JUMP
    assert (ev.start, ev.detected_at, ev.seq, ev.value) == (AFTER, AFTER, LEARNT, 11.0)
    assert "clock set forward" in ev.detail


def test_a_jump_held_is_let_go_by_a_reading_received_clock_hold_s_later() -> None:
    m = _learnt()
    hold = m.settings.clock_hold_s
    assert hold <= 30  # within a default heartbeat interval
    assert _after(m, AFTER) == []
    assert _after(m, AFTER + timedelta(seconds=hold - 1), 1) == []
    assert _after(m, AFTER + timedelta(seconds=hold), 2) == [FaultType.CLOCK_JUMP]


def test_a_reading_stamped_ahead_of_the_cloud_s_clock_is_a_jump_at_once() -> None:
    """No restart puts the stamps ahead of the cloud's clock: the reading after the gap
    received long before its stamp (the clock set forward) is raised on it."""
    m = _learnt()
    received = AFTER - timedelta(seconds=GAP - STEP)  # one interval after the last one
    assert _after(m, received) == [FaultType.CLOCK_JUMP]


def test_ahead_is_judged_against_the_lead_the_heartbeats_show() -> None:
    """A node whose clock runs 5 min ahead of the cloud's (its heartbeats say so) and whose
    agent restarted: its stamps are as far ahead as ever, which is no jump."""
    lead = timedelta(minutes=5)
    m = _learnt()
    m.node_heartbeat(LAST + lead, LAST)
    assert _after(m, AFTER - lead) == []
    assert m.node_heartbeat(AFTER + timedelta(seconds=30), AFTER - lead + timedelta(seconds=30),
                            AFTER - timedelta(seconds=5)) == []


def test_without_a_reception_the_jump_is_judged_at_once() -> None:
    m = _learnt()
    assert [ev.fault for ev in m.update(_ns(AFTER), 11.0, LEARNT)] == [FaultType.CLOCK_JUMP]


def test_a_held_jump_lives_through_a_pickle_and_old_monitors_load_without_one() -> None:
    m = _learnt()
    assert _after(m, AFTER) == []
    copy: FaultMonitor = pickle.loads(pickle.dumps(m))
    assert copy.node_heartbeat(AFTER + timedelta(seconds=1), AFTER + timedelta(seconds=1),
                               AFTER - timedelta(seconds=5)) == []
    old = as_old(_learnt(), "_held", "_lead")  # as unpickled from before they were kept
    assert old.node_heartbeat(AFTER, AFTER) == []
    assert _after(old, AFTER) == []


def test_at_most_a_few_jumps_are_held_the_oldest_let_go_first() -> None:
    m = _learnt()
    m.node_heartbeat(LAST + timedelta(hours=3), LAST)  # a node clock 3 h ahead: none is ahead
    raised: list[int | None] = []
    for k in range(12):  # a gap before each, all in one message: each a jump held
        t = LAST + timedelta(seconds=GAP * (k + 1))
        raised += [ev.seq for ev in m.update(_ns(t), 11.0, LEARNT + k, received=_ns(LAST))]
    assert raised == [LEARNT, LEARNT + 1, LEARNT + 2, LEARNT + 3]
    assert len(m.node_heartbeat(LAST + timedelta(hours=4), LAST + timedelta(hours=1))) == 8


def test_the_heartbeat_monitor_says_which_heartbeats_it_took() -> None:
    hb = HeartbeatMonitor()
    beat = Heartbeat(T0, 100.0, 0, run="a", received=T0)
    hb.update(beat)
    assert hb.taken
    hb.update(beat)  # the same again (a redelivery)
    assert not hb.taken
    hb.update(Heartbeat(T0 + timedelta(seconds=30), 130.0, 0, run="a",
                        received=T0 + timedelta(seconds=30)))
    assert hb.taken
    resumed: HeartbeatMonitor = pickle.loads(pickle.dumps(hb))
    del resumed.__dict__["taken"]
    resumed.__setstate__(dict(resumed.__dict__))
    assert resumed.taken is False


def test_a_heartbeat_of_a_clock_not_synchronised_gives_no_lead() -> None:
    """A heartbeat stamped an hour behind by a clock not yet synchronised (the readings it
    stamps are kept out of the rules) is no reference for the stamps-ahead test: the first
    reading after the clock is set right is held (a restart may explain its gap), not taken
    for one stamped an hour ahead and raised at once."""
    m = _learnt()
    behind = timedelta(hours=1)
    assert m.node_heartbeat(LAST - behind, LAST, synchronised=False) == []
    assert _after(m, AFTER) == []  # held
    m.agent_started(AFTER - timedelta(seconds=5))
    assert m.node_heartbeat(AFTER + timedelta(seconds=1), AFTER + timedelta(seconds=1),
                            synchronised=True) == []
    told = _learnt()
    told.node_heartbeat(LAST - behind, LAST)  # a clock the agent does not vouch for: its lead
    assert _after(told, AFTER) == [FaultType.CLOCK_JUMP]


def test_the_lead_is_the_largest_of_the_last_heartbeats_and_pickles() -> None:
    """A heartbeat stamped 25 s late by its ingest is no node clock 25 s behind: the lead
    stays the largest of the last few heartbeats', so a restart's first reading (stamped at
    the cloud's time) is held, not raised as stamped 25 s ahead; older monitors load."""
    m = _learnt()
    m.node_heartbeat(LAST - timedelta(seconds=60), LAST - timedelta(seconds=60))
    m.node_heartbeat(LAST - timedelta(seconds=30), LAST - timedelta(seconds=5))  # 25 s late
    copy: FaultMonitor = pickle.loads(pickle.dumps(m))
    assert _after(copy, AFTER) == []  # held
    m = as_old(m, "_leads")  # as unpickled from before the leads were kept
    m.node_heartbeat(LAST - timedelta(seconds=30), LAST - timedelta(seconds=5))
    assert _after(m, AFTER) == [FaultType.CLOCK_JUMP]  # that one alone: 25 s behind
