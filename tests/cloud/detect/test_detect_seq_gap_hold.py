"""A jump in a field's sequence numbers is held `gap_grace_s` of the cloud's time before it
is raised as a SILENCE: two messages of a node swapped on their way (two ingests, their
journals merged by reception stamps) bring the missing numbers a moment later, stamped
before the newest reading (`stamped_before`)."""

from __future__ import annotations

import pickle
from dataclasses import replace
from datetime import UTC, datetime, timedelta

from cloud.detect import FaultMonitor, FaultType

T0 = datetime(2026, 5, 1, 8, 0, tzinfo=UTC)
STEP = 10.0  # s between readings
LEARNT = 40  # readings before the gap


def _ns(t: datetime) -> int:
    return int((t - datetime(1970, 1, 1, tzinfo=UTC)).total_seconds() * 1e9)


def _at(seq: int) -> datetime:
    return T0 + timedelta(seconds=STEP * seq)


def _learnt() -> FaultMonitor:
    m = FaultMonitor("air.pm", "pm25", "pm-1")
    for i in range(LEARNT):
        assert m.update(_ns(_at(i)), 10.0 + i % 3, i, received=_ns(_at(i))) == []
    return m


def _read(m: FaultMonitor, seq: int, received: datetime) -> list[FaultType]:
    return [ev.fault for ev in m.update(_ns(_at(seq)), 11.0, seq, received=_ns(received))]


AFTER = LEARNT + 10  # the reading after the gap: numbers LEARNT .. AFTER - 1 missing


def test_the_missing_numbers_coming_late_fill_the_gap() -> None:
    m = _learnt()
    assert _read(m, AFTER, _at(AFTER)) == []  # held
    for seq in range(LEARNT, AFTER):  # the other message, a moment later
        assert m.stamped_before(_ns(_at(seq)), 11.0, seq) == []
    for k in range(1, 5):
        assert _read(m, AFTER + k, _at(AFTER + k)) == []
    assert m.node_heartbeat(_at(AFTER + 10), _at(AFTER + 10)) == []


def test_a_gap_left_open_is_raised_by_a_reading_received_the_grace_later() -> None:
    m = _learnt()
    grace = m.settings.gap_grace_s
    assert 0 < grace <= STEP
    assert _read(m, AFTER, _at(AFTER)) == []
    [ev] = m.update(_ns(_at(AFTER + 1)), 11.0, AFTER + 1,
                    received=_ns(_at(AFTER) + timedelta(seconds=grace)))
    assert ev.fault is FaultType.SILENCE
    assert (ev.detected_at, ev.seq, ev.value) == (_at(AFTER), AFTER, 11.0)  # its reading's
    assert ev.start == _at(LEARNT - 1) + timedelta(seconds=STEP)
    assert ev.detail == f"10 readings missing (seq {LEARNT - 1} -> {AFTER})"


def test_a_gap_left_open_is_raised_by_the_next_heartbeat_after_the_grace() -> None:
    m = _learnt()
    assert _read(m, AFTER, _at(AFTER)) == []
    grace = timedelta(seconds=m.settings.gap_grace_s)
    assert m.node_heartbeat(_at(AFTER), _at(AFTER) + grace / 2) == []
    [ev] = m.node_heartbeat(_at(AFTER) + grace, _at(AFTER) + grace)
    assert ev.fault is FaultType.SILENCE
    assert ev.seq == AFTER


def test_a_partly_filled_gap_is_raised_with_the_numbers_still_missing() -> None:
    m = _learnt()
    assert _read(m, AFTER, _at(AFTER)) == []
    for seq in (*range(LEARNT, LEARNT + 3), *range(LEARNT + 7, AFTER)):
        assert m.stamped_before(_ns(_at(seq)), 11.0, seq) == []
    [ev] = m.node_heartbeat(_at(AFTER + 2), _at(AFTER + 2))
    assert ev.detail == f"4 readings missing (seq {LEARNT + 2} -> {LEARNT + 7})"
    # as reading LEARNT + 7 raises it when the readings come in order: the same point
    assert (ev.fault, ev.detected_at, ev.seq, ev.value) == (FaultType.SILENCE, _at(LEARNT + 7),
                                                           LEARNT + 7, 11.0)
    assert ev.start == _at(LEARNT + 2) + timedelta(seconds=STEP)
    in_order = _learnt()
    for seq in (*range(LEARNT, LEARNT + 3), *range(LEARNT + 7, AFTER)):
        got = in_order.update(_ns(_at(seq)), 11.0, seq)
        if seq == LEARNT + 7:
            assert got == [replace(ev, seq=None)]


def test_runs_still_missing_on_both_sides_of_a_late_reading_are_two_silences() -> None:
    m = _learnt()
    assert _read(m, AFTER, _at(AFTER)) == []
    assert m.stamped_before(_ns(_at(LEARNT + 4)), 12.5, LEARNT + 4) == []
    events = m.node_heartbeat(_at(AFTER + 2), _at(AFTER + 2))
    assert [(ev.detected_at, ev.seq, ev.value) for ev in events] == [
        (_at(LEARNT + 4), LEARNT + 4, 12.5), (_at(AFTER), AFTER, 11.0)]
    assert [ev.detail for ev in events] == [
        f"4 readings missing (seq {LEARNT - 1} -> {LEARNT + 4})",
        f"5 readings missing (seq {LEARNT + 4} -> {AFTER})"]
    assert events[1].start == _at(LEARNT + 5)


def test_a_gap_held_by_the_version_before_still_fills_and_raises() -> None:
    """A snapshot taken while a gap was held by the version that kept no late stamps (five
    parts): it loads, fills and raises (with the numbers still missing)."""
    m = _learnt()
    assert _read(m, AFTER, _at(AFTER)) == []
    assert m._gaps_held is not None
    m._gaps_held = [gap[:5] for gap in m._gaps_held]  # type: ignore[misc]
    copy: FaultMonitor = pickle.loads(pickle.dumps(m))
    for seq in range(LEARNT, LEARNT + 5):
        assert copy.stamped_before(_ns(_at(seq)), 11.0, seq) == []
    [ev] = copy.node_heartbeat(_at(AFTER + 2), _at(AFTER + 2))
    assert (ev.fault, ev.seq) == (FaultType.SILENCE, AFTER)
    assert ev.detail == f"5 readings missing (seq {LEARNT + 4} -> {AFTER})"


def test_a_hole_shorter_than_the_rule_left_is_no_silence() -> None:
    m = _learnt()
    assert _read(m, AFTER, _at(AFTER)) == []
    for seq in range(LEARNT, AFTER - 2):
        m.stamped_before(_ns(_at(seq)), 11.0, seq)
    assert m.node_heartbeat(_at(AFTER + 2), _at(AFTER + 2)) == []


def test_a_reading_of_another_numbering_stamped_after_the_gap_fills_nothing() -> None:
    m = _learnt()
    assert _read(m, AFTER, _at(AFTER)) == []
    for seq in range(LEARNT, AFTER):  # the numbers, stamped after the reading after the gap
        m.stamped_before(_ns(_at(AFTER + 1)), 11.0, seq)
    assert [ev.fault for ev in m.node_heartbeat(_at(AFTER + 2), _at(AFTER + 2))] \
        == [FaultType.SILENCE]


def test_without_a_reception_the_gap_is_raised_at_once() -> None:
    m = _learnt()
    assert [ev.fault for ev in m.update(_ns(_at(AFTER)), 11.0, AFTER)] == [FaultType.SILENCE]


def test_a_held_gap_lives_through_a_pickle_and_old_monitors_load_without_one() -> None:
    m = _learnt()
    assert _read(m, AFTER, _at(AFTER)) == []
    copy: FaultMonitor = pickle.loads(pickle.dumps(m))
    for seq in range(LEARNT, AFTER):
        copy.stamped_before(_ns(_at(seq)), 11.0, seq)
    assert copy.node_heartbeat(_at(AFTER + 2), _at(AFTER + 2)) == []
    old = _learnt()
    old.__dict__.pop("_gaps_held", None)  # as unpickled from before it was kept
    assert old.stamped_before(_ns(_at(LEARNT - 1)), 11.0, LEARNT - 1) == []
    assert _read(old, AFTER, _at(AFTER)) == []
    assert [ev.fault for ev in old.node_heartbeat(_at(AFTER + 2), _at(AFTER + 2))] \
        == [FaultType.SILENCE]


def test_at_most_a_few_gaps_are_held_the_oldest_raised_first() -> None:
    m = _learnt()
    raised: list[int | None] = []
    seq = LEARNT - 1
    for _ in range(12):  # twelve gaps received at one moment
        seq += 11
        raised += [ev.seq for ev in m.update(_ns(_at(seq)), 11.0, seq, received=_ns(_at(AFTER)))]
    assert raised == [LEARNT + 10, LEARNT + 21, LEARNT + 32, LEARNT + 43]
    assert len(m.node_heartbeat(_at(seq), _at(seq))) == 8


def test_scattered_late_numbers_keep_a_few_runs_then_the_gap_is_raised() -> None:
    """More runs still missing than are followed: each run raised now, as the reading after
    it would have raised it in order."""
    m = _learnt()
    far = LEARNT + 100
    assert _read(m, far, _at(far)) == []
    raised = []
    for seq in range(LEARNT + 3, far - 3, 4):  # every fourth number: holes of 3
        raised += m.stamped_before(_ns(_at(seq)), 11.0 + seq, seq)
    assert {ev.fault for ev in raised} == {FaultType.SILENCE}
    came = list(range(LEARNT + 3, LEARNT + 3 + 4 * 8, 4))  # the eighth came, the ninth run left
    assert [ev.seq for ev in raised] == [*came, far]
    assert [ev.detected_at for ev in raised] == [_at(seq) for seq in (*came, far)]
    assert [ev.value for ev in raised] == [*(11.0 + seq for seq in came), 11.0]
    assert raised[1].detail == f"3 readings missing (seq {came[0]} -> {came[1]})"
    assert raised[1].start == _at(came[0] + 1)
    assert raised[-1].detail == f"{far - came[-1] - 1} readings missing (seq {came[-1]} -> {far})"
    assert m.node_heartbeat(_at(far + 2), _at(far + 2)) == []


def test_the_reading_before_the_one_after_the_gap_gets_it_judged_by_the_forward_rule() -> None:
    """Numbers LEARNT .. AFTER - 1 come late, and AFTER was stamped 600 s ahead of them (the
    clock set forward between AFTER - 1 and AFTER): the readings in order raise a clock set
    forward on AFTER; so does the late AFTER - 1, even after a hole too short for a silence."""
    ahead = timedelta(seconds=600)
    for late in (range(LEARNT, AFTER), range(LEARNT + 2, AFTER)):
        m = _learnt()
        assert m.update(_ns(_at(AFTER) + ahead), 11.0, AFTER, received=_ns(_at(AFTER))) == []
        raised = []
        for seq in late:
            raised += m.stamped_before(_ns(_at(seq)), 11.0, seq)
        [ev] = raised
        assert (ev.fault, ev.detected_at, ev.seq) == (FaultType.CLOCK_JUMP, _at(AFTER) + ahead, AFTER)
        assert "clock set forward" in ev.detail
        assert m.node_heartbeat(_at(AFTER + 2), _at(AFTER + 2)) == []
    in_order = _learnt()
    for seq in range(LEARNT, AFTER):
        assert in_order.update(_ns(_at(seq)), 11.0, seq) == []
    assert in_order.update(_ns(_at(AFTER) + ahead), 11.0, AFTER) == [replace(ev, seq=None)]


def test_a_restart_between_the_late_reading_and_the_one_after_the_gap_is_no_jump() -> None:
    m = _learnt()
    m.agent_started(_at(AFTER) - timedelta(seconds=STEP / 2))
    assert m.update(_ns(_at(AFTER) + timedelta(seconds=600)), 11.0, AFTER,
                    received=_ns(_at(AFTER))) == []
    for seq in range(LEARNT, AFTER):
        assert m.stamped_before(_ns(_at(seq)), 11.0, seq) == []
    assert m.node_heartbeat(_at(AFTER + 2), _at(AFTER + 2)) == []
