"""The node's heartbeat clock rule and the step that synchronises the clock: a Pi without
RTC whose agent connected before NTP answered counts NTP's first step between two
heartbeats of its run; the heartbeats say the clock went from not synchronised to
synchronised across it (`clock.synchronised`), so it is no CLOCK_JUMP. A step of a
synchronised clock, or one the agent cannot vouch for (no sync check), still is."""

from __future__ import annotations

import pickle
from datetime import UTC, datetime, timedelta

from cloud.detect import FaultType
from cloud.detect.faults import Heartbeat, HeartbeatMonitor

T0 = datetime(2026, 5, 1, 8, 0, tzinfo=UTC)


def _beat(k: int, jumps: int, synced: bool | None, run: str = "a") -> Heartbeat:
    at = T0 + timedelta(seconds=30 * k)
    return Heartbeat(at, 100.0 + 30 * k, jumps, run=run, received=at, synchronised=synced)


def _types(m: HeartbeatMonitor, hb: Heartbeat) -> list[FaultType]:
    return [ev.fault for ev in m.update(hb)]


def test_the_step_that_synchronised_the_clock_is_no_jump() -> None:
    m = HeartbeatMonitor()
    assert _types(m, _beat(0, 0, False)) == []
    assert _types(m, _beat(1, 1, True)) == []
    assert _types(m, _beat(2, 1, True)) == []


def test_a_step_of_a_synchronised_clock_is_a_jump() -> None:
    m = HeartbeatMonitor()
    _types(m, _beat(0, 0, False))
    _types(m, _beat(1, 1, True))
    assert _types(m, _beat(2, 2, True)) == [FaultType.CLOCK_JUMP]


def test_without_the_sync_check_every_step_is_a_jump() -> None:
    m = HeartbeatMonitor()
    _types(m, _beat(0, 0, None))
    assert _types(m, _beat(1, 1, None)) == [FaultType.CLOCK_JUMP]
    m = HeartbeatMonitor()
    _types(m, _beat(0, 0, True))
    assert _types(m, _beat(1, 1, False)) == [FaultType.CLOCK_JUMP]  # a synchronised clock lost


def test_a_step_counted_before_the_agent_saw_the_sync_waits_for_the_next_heartbeat() -> None:
    """The agent counts a step within 0.2 s and asks the kernel at most once a second: a
    heartbeat between the two says the count went up and the clock not synchronised."""
    m = HeartbeatMonitor()
    _types(m, _beat(0, 0, False))
    assert _types(m, _beat(1, 1, False)) == []  # held
    assert _types(m, _beat(2, 1, True)) == []  # the sync came with it: dropped
    assert _types(m, _beat(3, 1, True)) == []


def test_a_held_step_not_followed_by_the_sync_is_a_jump_with_its_stamps() -> None:
    m = HeartbeatMonitor()
    _types(m, _beat(0, 0, False))
    assert _types(m, _beat(1, 1, False)) == []
    [ev] = m.update(_beat(2, 1, False))
    assert ev.fault is FaultType.CLOCK_JUMP
    assert (ev.start, ev.detected_at) == (T0, T0 + timedelta(seconds=30))  # its heartbeat's
    # a held step then another one counted with the sync: the held one is raised
    m = HeartbeatMonitor()
    _types(m, _beat(0, 0, False))
    _types(m, _beat(1, 1, False))
    assert _types(m, _beat(2, 2, True)) == [FaultType.CLOCK_JUMP]
    # and the agent restarting meanwhile: raised at the new run's first heartbeat
    m = HeartbeatMonitor()
    _types(m, _beat(0, 0, False))
    _types(m, _beat(1, 1, False))
    assert _types(m, Heartbeat(T0 + timedelta(seconds=90), 5.0, 0, run="b",
                               received=T0 + timedelta(seconds=90), synchronised=True)) \
        == [FaultType.CLOCK_JUMP]


def test_a_held_step_lives_through_a_pickle_and_old_monitors_load() -> None:
    m = HeartbeatMonitor()
    _types(m, _beat(0, 0, False))
    _types(m, _beat(1, 1, False))
    copy: HeartbeatMonitor = pickle.loads(pickle.dumps(m))
    assert _types(copy, _beat(2, 1, True)) == []
    old = HeartbeatMonitor()
    _types(old, _beat(0, 0, False))
    state = dict(old.__dict__)
    for name in ("_synced", "_sync_held"):
        del state[name]  # as pickled before they were kept
    loaded = HeartbeatMonitor.__new__(HeartbeatMonitor)
    loaded.__setstate__(state)
    assert _types(loaded, _beat(1, 1, True)) == [FaultType.CLOCK_JUMP]  # nothing known: a jump


def test_the_first_synchronised_heartbeat_dates_the_start_again_on_the_clock_set_right() -> None:
    """The run's first heartbeat dated the agent's start on a clock about to be stepped; the
    first saying synchronised dates it again (its stamp less its uptime), once."""
    m = HeartbeatMonitor()
    behind = timedelta(hours=1)
    first = Heartbeat(T0 - behind, 100.0, 0, run="a", received=T0, synchronised=False)
    m.update(first)
    assert m.started_at == T0 - behind - timedelta(seconds=100)
    m.update(_beat(1, 1, True))
    assert m.started_at == T0 + timedelta(seconds=30) - timedelta(seconds=130)
    m.update(_beat(2, 1, True))
    assert m.started_at is None
    # an agent that does not say (clock_check off) is dated once, as before
    n = HeartbeatMonitor()
    n.update(_beat(0, 0, None))
    n.update(_beat(1, 1, None))
    assert n.started_at is None
