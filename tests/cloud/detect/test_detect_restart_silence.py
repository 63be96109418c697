"""The silence rule's ticks count no time before the node's agent last started (dated by a
heartbeat: its reception less the uptime) and no quiet of the whole node as long as the
limit; a monitor pickled before it knew either loads and ticks as before."""

from __future__ import annotations

import pickle
from datetime import UTC, datetime, timedelta

from cloud.detect import FaultMonitor, FaultType
from tests.cloud.detect.old_fault_layout import as_old

T0 = datetime(2026, 5, 1, 8, 0, tzinfo=UTC)
STEP = 60.0  # a reading a minute: silent after 180 s


def _us(seconds: float) -> int:
    return round((T0 + timedelta(seconds=seconds)).timestamp() * 1e6)


def _learnt() -> FaultMonitor:
    m = FaultMonitor("air.co2", "co2", "co2-1")
    for i in range(40):
        at = T0 + timedelta(seconds=STEP * i)
        assert m.update(at, 420.0 + i % 7, i, received=at) == []
        assert m.tick(at + timedelta(seconds=1)) == []
    return m  # last reading at 2340 s


def test_the_agents_start_moves_the_silence() -> None:
    m = _learnt()
    # a heartbeat received at 2450 s, 10 s into the new run: the agent started at 2440 s
    hb = T0 + timedelta(seconds=2450)
    assert m.node_heartbeat(hb, hb, hb - timedelta(seconds=10), True) == []
    assert m.tick(T0 + timedelta(seconds=2560)) == []  # 220 s after the last reading
    [ev] = m.tick(T0 + timedelta(seconds=2621))  # 181 s after the start
    assert ev.fault is FaultType.SILENCE
    assert ev.start == T0 + timedelta(seconds=2440 + STEP)


def test_without_the_start_the_same_silence_is_raised_from_the_last_reading() -> None:
    m = _learnt()
    [ev] = m.tick(T0 + timedelta(seconds=2560))
    assert ev.fault is FaultType.SILENCE
    assert ev.start == T0 + timedelta(seconds=2340 + STEP)


def test_a_quiet_of_the_whole_node_as_long_as_the_limit_is_not_the_sensors() -> None:
    m = _learnt()
    quiet = [(_us(2345), _us(2545))]  # the node sent nothing for 200 s
    assert m.tick(T0 + timedelta(seconds=2546), quiet) == []
    assert m.tick(T0 + timedelta(seconds=2700)) == []
    [ev] = m.tick(T0 + timedelta(seconds=2726))
    assert ev.start == T0 + timedelta(seconds=2545 + STEP)
    # a shorter quiet is no excuse (and, the heartbeat being in, nothing waits)
    m = _learnt()
    m.node_heartbeat(T0 + timedelta(seconds=2500), T0 + timedelta(seconds=2500))
    assert len(m.tick(T0 + timedelta(seconds=2546), [(_us(2400), _us(2500))])) == 1


def test_a_fresh_return_without_its_heartbeat_waits_one_tick() -> None:
    m = _learnt()
    m.node_heartbeat(T0 + timedelta(seconds=2330), T0 + timedelta(seconds=2330))
    quiet = [(_us(2400), _us(2530))]  # back at 2530 s by its data, no heartbeat yet
    assert m.tick(T0 + timedelta(seconds=2531), quiet) == []
    # no heartbeat dating a start came: raised on the next tick, from the last reading
    [ev] = m.tick(T0 + timedelta(seconds=2561))
    assert ev.start == T0 + timedelta(seconds=2340 + STEP)


def test_start_and_arrivals_survive_pickling_and_a_numbering_started_again() -> None:
    m = _learnt()
    hb = T0 + timedelta(seconds=2450)
    m.node_heartbeat(hb, hb, hb - timedelta(seconds=10), True)
    copy = pickle.loads(pickle.dumps(m))
    fresh, events = copy.restarted()
    assert events == []
    assert fresh._start_rx == copy._start_rx == _us(2440)
    old = as_old(_learnt(), "_start_rx", "_hb_rx", "_deferred")  # pickled before them
    loaded = pickle.loads(pickle.dumps(old))
    assert len(loaded.tick(T0 + timedelta(seconds=2560))) == 1
