"""Readings the rules do not judge (flagged `clock_unsynced` or `warmup`) are told to them
(`FaultMonitor.unjudged`): their numbers are not missing and the sensor is not silent, but
their stamps and values judge nothing. And a numbering started again (`restarted`) keeps
what the monitor held that is the node's."""

from __future__ import annotations

import pickle
from datetime import datetime, timedelta

from cloud.detect import FaultMonitor, FaultType
from tests.cloud.detect.learnt_monitor import LEARNT, STEP, at, learnt
from urbanpulse.clock import to_epoch_ns


def _read(m: FaultMonitor, seq: int, ts: datetime | None = None, received: datetime | None = None
          ) -> list[FaultType]:
    ts = at(seq) if ts is None else ts
    got = ts if received is None else received
    return [ev.fault for ev in m.update(to_epoch_ns(ts), 11.0, seq, received=to_epoch_ns(got))]


def _unjudged(m: FaultMonitor, seqs: range, received: datetime | None = None) -> list[FaultType]:
    return [ev.fault for s in seqs
            for ev in m.unjudged(s, to_epoch_ns(at(s) if received is None else received))]


def test_numbers_taken_unjudged_are_not_missing_and_no_forward_jump_spans_them() -> None:
    """A boot: 40-44 flagged clock_unsynced, then 45 on the clock set right, stamped 10 min
    after 39 (the Pi was down): no silence, and no clock set forward between 39 and 45."""
    m = learnt()
    assert _unjudged(m, range(40, 45)) == []
    late = at(45) + timedelta(minutes=10)
    assert _read(m, 45, late) == []
    for k in range(46, 60):  # the grace passes; the readings go on as before
        assert _read(m, k, late + timedelta(seconds=STEP * (k - 45))) == []


def test_numbers_never_received_after_unjudged_ones_are_still_a_silence() -> None:
    m = learnt()
    assert _unjudged(m, range(40, 45)) == []
    assert _read(m, 50) == []  # 45-49 never received: held
    [ev] = m.update(to_epoch_ns(at(51)), 11.0, 51, received=to_epoch_ns(at(51)))
    assert ev.fault is FaultType.SILENCE
    assert ev.detail == "5 readings missing (seq 44 -> 50)"
    assert (ev.detected_at, ev.seq, ev.start) == (at(50), 50, at(45))  # where 45 was due


def test_a_run_never_received_before_unjudged_readings_is_not_raised() -> None:
    """Its end has no stamp to place it (given up)."""
    m = learnt()
    assert _unjudged(m, range(45, 48)) == []  # 40-44 never received
    for k in range(48, 60):
        assert _read(m, k) == []


def test_unjudged_readings_keep_the_ticks_from_a_silence_and_their_end_is_one() -> None:
    m = learnt()
    now = at(LEARNT)
    assert m.tick(now) == []
    for s in range(LEARNT, LEARNT + 30):  # 5 min of warm-up readings, ticked every 10 s
        now = at(s)
        assert _unjudged(m, range(s, s + 1)) == []
        assert m.tick(now + timedelta(seconds=1)) == []
    [ev] = m.tick(now + timedelta(seconds=60))
    assert ev.fault is FaultType.SILENCE
    assert m.tick(now + timedelta(seconds=90)) == []  # once


def test_a_held_gap_is_filled_by_late_unjudged_readings() -> None:
    """The boot's flagged message and the next one swapped by the merge of two ingests."""
    m = learnt()
    assert _read(m, 50) == []  # held
    assert _unjudged(m, range(40, 50), received=at(50) + timedelta(seconds=0.003)) == []
    for k in range(51, 55):
        assert _read(m, k) == []


def test_a_held_gap_partly_filled_by_unjudged_readings_raises_the_runs_it_can_place() -> None:
    m = learnt()
    assert _read(m, 50) == []
    assert _unjudged(m, range(40, 46), received=at(50)) == []  # 46-49 still missing
    [ev] = m.update(to_epoch_ns(at(51)), 11.0, 51, received=to_epoch_ns(at(51)))
    assert ev.detail == "4 readings missing (seq 45 -> 50)"
    assert (ev.detected_at, ev.seq, ev.start) == (at(50), 50, at(46))
    m = learnt()
    assert _read(m, 50) == []
    assert _unjudged(m, range(45, 50), received=at(50)) == []  # 40-44 missing: ends unjudged
    assert _read(m, 51) == []


def test_the_unjudged_mark_pickles() -> None:
    m = learnt()
    assert _unjudged(m, range(40, 45)) == []
    resumed: FaultMonitor = pickle.loads(pickle.dumps(m))
    assert _read(resumed, 45, at(45) + timedelta(minutes=10)) == []
    for k in range(46, 60):
        assert _read(resumed, k, at(k) + timedelta(minutes=10)) == []


def test_a_restarted_monitor_keeps_the_node_s_and_raises_the_gaps_held() -> None:
    m = learnt()
    assert m.node_heartbeat(at(39), at(39) - timedelta(seconds=5)) == []  # a lead of 5 s
    jumped = at(39) + timedelta(seconds=120)
    assert _read(m, 40, jumped, jumped) == []  # a forward jump, held
    assert _read(m, 60, jumped + timedelta(seconds=200), jumped + timedelta(seconds=2)) == []
    fresh, events = m.restarted()
    [gap] = events
    assert gap.fault is FaultType.SILENCE
    assert gap.detail == "19 readings missing (seq 40 -> 60)"
    assert fresh._last_seq is None
    assert fresh.expected_interval() is None
    assert fresh._lead == m._lead == 5_000_000
    assert fresh._held == m._held
    assert len(fresh._held) == 1
    [ev] = fresh.update(to_epoch_ns(at(3)), 11.0, 3, received=to_epoch_ns(jumped + timedelta(seconds=10)))
    assert ev.fault is FaultType.CLOCK_JUMP
    assert ev.seq == 40
    assert ev.detected_at == jumped
    assert m.restarted()[1] == []  # raised once
