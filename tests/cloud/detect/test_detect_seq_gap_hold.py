"""A jump in a field's sequence numbers is held `gap_grace_s` of the cloud's time before it
is raised as a SILENCE: two messages of a node swapped on their way (two ingests, their
journals merged by reception stamps) bring the missing numbers a moment later, stamped
before the newest reading (`stamped_before`)."""

from __future__ import annotations

import pickle
from dataclasses import replace
from datetime import datetime, timedelta

from cloud.detect import FaultMonitor, FaultType
from tests.cloud.detect.learnt_monitor import LEARNT, STEP, at, learnt
from tests.cloud.detect.old_fault_layout import as_old
from urbanpulse.clock import to_epoch_ns


def _read(m: FaultMonitor, seq: int, received: datetime) -> list[FaultType]:
    return [ev.fault for ev in m.update(to_epoch_ns(at(seq)), 11.0, seq, received=to_epoch_ns(received))]


AFTER = LEARNT + 10  # the reading after the gap: numbers LEARNT .. AFTER - 1 missing


def test_the_missing_numbers_coming_late_fill_the_gap() -> None:
    m = learnt()
    assert _read(m, AFTER, at(AFTER)) == []  # held
    for seq in range(LEARNT, AFTER):  # the other message, a moment later
        assert m.stamped_before(to_epoch_ns(at(seq)), 11.0, seq) == []
    for k in range(1, 5):
        assert _read(m, AFTER + k, at(AFTER + k)) == []
    assert m.node_heartbeat(at(AFTER + 10), at(AFTER + 10)) == []


def test_a_gap_left_open_is_raised_by_a_reading_received_the_grace_later() -> None:
    m = learnt()
    grace = m.settings.gap_grace_s
    assert 0 < grace <= STEP
    assert _read(m, AFTER, at(AFTER)) == []
    [ev] = m.update(to_epoch_ns(at(AFTER + 1)), 11.0, AFTER + 1,
                    received=to_epoch_ns(at(AFTER) + timedelta(seconds=grace)))
    assert ev.fault is FaultType.SILENCE
    assert (ev.detected_at, ev.seq, ev.value) == (at(AFTER), AFTER, 11.0)  # its reading's
    assert ev.start == at(LEARNT - 1) + timedelta(seconds=STEP)
    assert ev.detail == f"10 readings missing (seq {LEARNT - 1} -> {AFTER})"


def test_a_gap_left_open_is_raised_by_the_next_heartbeat_after_the_grace() -> None:
    m = learnt()
    assert _read(m, AFTER, at(AFTER)) == []
    grace = timedelta(seconds=m.settings.gap_grace_s)
    assert m.node_heartbeat(at(AFTER), at(AFTER) + grace / 2) == []
    [ev] = m.node_heartbeat(at(AFTER) + grace, at(AFTER) + grace)
    assert ev.fault is FaultType.SILENCE
    assert ev.seq == AFTER


def test_a_partly_filled_gap_is_raised_with_the_numbers_still_missing() -> None:
    m = learnt()
    assert _read(m, AFTER, at(AFTER)) == []
    for seq in (*range(LEARNT, LEARNT + 3), *range(LEARNT + 7, AFTER)):
        assert m.stamped_before(to_epoch_ns(at(seq)), 11.0, seq) == []
    [ev] = m.node_heartbeat(at(AFTER + 2), at(AFTER + 2))
    assert ev.detail == f"4 readings missing (seq {LEARNT + 2} -> {LEARNT + 7})"
    # as reading LEARNT + 7 raises it when the readings come in order: the same point
    assert (ev.fault, ev.detected_at, ev.seq, ev.value) == (FaultType.SILENCE, at(LEARNT + 7),
                                                           LEARNT + 7, 11.0)
    assert ev.start == at(LEARNT + 2) + timedelta(seconds=STEP)
    in_order = learnt()
    for seq in (*range(LEARNT, LEARNT + 3), *range(LEARNT + 7, AFTER)):
        got = in_order.update(to_epoch_ns(at(seq)), 11.0, seq)
        if seq == LEARNT + 7:
            assert got == [replace(ev, seq=None)]


def test_runs_still_missing_on_both_sides_of_a_late_reading_are_two_silences() -> None:
    m = learnt()
    assert _read(m, AFTER, at(AFTER)) == []
    assert m.stamped_before(to_epoch_ns(at(LEARNT + 4)), 12.5, LEARNT + 4) == []
    events = m.node_heartbeat(at(AFTER + 2), at(AFTER + 2))
    assert [(ev.detected_at, ev.seq, ev.value) for ev in events] == [
        (at(LEARNT + 4), LEARNT + 4, 12.5), (at(AFTER), AFTER, 11.0)]
    assert [ev.detail for ev in events] == [
        f"4 readings missing (seq {LEARNT - 1} -> {LEARNT + 4})",
        f"5 readings missing (seq {LEARNT + 4} -> {AFTER})"]
    assert events[1].start == at(LEARNT + 5)


def test_a_gap_held_by_the_version_before_still_fills_and_raises() -> None:
    """A snapshot taken while a gap was held by the version that kept no late stamps (five
    parts): it loads, fills and raises (with the numbers still missing)."""
    m = learnt()
    assert _read(m, AFTER, at(AFTER)) == []
    assert m._gaps_held is not None
    m._gaps_held = [gap[:5] for gap in m._gaps_held]  # type: ignore[misc]
    copy: FaultMonitor = pickle.loads(pickle.dumps(m))
    for seq in range(LEARNT, LEARNT + 5):
        assert copy.stamped_before(to_epoch_ns(at(seq)), 11.0, seq) == []
    [ev] = copy.node_heartbeat(at(AFTER + 2), at(AFTER + 2))
    assert (ev.fault, ev.seq) == (FaultType.SILENCE, AFTER)
    assert ev.detail == f"5 readings missing (seq {LEARNT + 4} -> {AFTER})"


def test_a_hole_shorter_than_the_rule_left_is_no_silence() -> None:
    m = learnt()
    assert _read(m, AFTER, at(AFTER)) == []
    for seq in range(LEARNT, AFTER - 2):
        m.stamped_before(to_epoch_ns(at(seq)), 11.0, seq)
    assert m.node_heartbeat(at(AFTER + 2), at(AFTER + 2)) == []


def test_a_reading_of_another_numbering_stamped_after_the_gap_fills_nothing() -> None:
    m = learnt()
    assert _read(m, AFTER, at(AFTER)) == []
    for seq in range(LEARNT, AFTER):  # the numbers, stamped after the reading after the gap
        m.stamped_before(to_epoch_ns(at(AFTER + 1)), 11.0, seq)
    assert [ev.fault for ev in m.node_heartbeat(at(AFTER + 2), at(AFTER + 2))] \
        == [FaultType.SILENCE]


def test_without_a_reception_the_gap_is_raised_at_once() -> None:
    m = learnt()
    assert [ev.fault for ev in m.update(to_epoch_ns(at(AFTER)), 11.0, AFTER)] == [FaultType.SILENCE]


def test_a_held_gap_lives_through_a_pickle_and_old_monitors_load_without_one() -> None:
    m = learnt()
    assert _read(m, AFTER, at(AFTER)) == []
    copy: FaultMonitor = pickle.loads(pickle.dumps(m))
    for seq in range(LEARNT, AFTER):
        copy.stamped_before(to_epoch_ns(at(seq)), 11.0, seq)
    assert copy.node_heartbeat(at(AFTER + 2), at(AFTER + 2)) == []
    old = learnt()
    old = as_old(old, "_gaps_held")  # as unpickled from before it was kept
    assert old.stamped_before(to_epoch_ns(at(LEARNT - 1)), 11.0, LEARNT - 1) == []
    assert _read(old, AFTER, at(AFTER)) == []
    assert [ev.fault for ev in old.node_heartbeat(at(AFTER + 2), at(AFTER + 2))] \
        == [FaultType.SILENCE]


def test_at_most_a_few_gaps_are_held_the_oldest_raised_first() -> None:
    m = learnt()
    raised: list[int | None] = []
    seq = LEARNT - 1
    for _ in range(12):  # twelve gaps received at one moment
        seq += 11
        events = m.update(to_epoch_ns(at(seq)), 11.0, seq, received=to_epoch_ns(at(AFTER)))
        raised += [ev.seq for ev in events]
    assert raised == [LEARNT + 10, LEARNT + 21, LEARNT + 32, LEARNT + 43]
    assert len(m.node_heartbeat(at(seq), at(seq))) == 8


def test_scattered_late_numbers_keep_a_few_runs_then_the_gap_is_raised() -> None:
    """More runs still missing than are followed: each run raised now, as the reading after
    it would have raised it in order."""
    m = learnt()
    far = LEARNT + 100
    assert _read(m, far, at(far)) == []
    raised = []
    for seq in range(LEARNT + 3, far - 3, 4):  # every fourth number: holes of 3
        raised += m.stamped_before(to_epoch_ns(at(seq)), 11.0 + seq, seq)
    assert {ev.fault for ev in raised} == {FaultType.SILENCE}
    came = list(range(LEARNT + 3, LEARNT + 3 + 4 * 8, 4))  # the eighth came, the ninth run left
    assert [ev.seq for ev in raised] == [*came, far]
    assert [ev.detected_at for ev in raised] == [at(seq) for seq in (*came, far)]
    assert [ev.value for ev in raised] == [*(11.0 + seq for seq in came), 11.0]
    assert raised[1].detail == f"3 readings missing (seq {came[0]} -> {came[1]})"
    assert raised[1].start == at(came[0] + 1)
    assert raised[-1].detail == f"{far - came[-1] - 1} readings missing (seq {came[-1]} -> {far})"
    assert m.node_heartbeat(at(far + 2), at(far + 2)) == []


def test_the_reading_before_the_one_after_the_gap_gets_it_judged_by_the_forward_rule() -> None:
    """Numbers LEARNT .. AFTER - 1 come late, and AFTER was stamped 600 s ahead of them (the
    clock set forward between AFTER - 1 and AFTER): the readings in order raise a clock set
    forward on AFTER; so does the late AFTER - 1, even after a hole too short for a silence."""
    ahead = timedelta(seconds=600)
    for late in (range(LEARNT, AFTER), range(LEARNT + 2, AFTER)):
        m = learnt()
        assert m.update(to_epoch_ns(at(AFTER) + ahead), 11.0, AFTER, received=to_epoch_ns(at(AFTER))) == []
        raised = []
        for seq in late:
            raised += m.stamped_before(to_epoch_ns(at(seq)), 11.0, seq)
        [ev] = raised
        assert (ev.fault, ev.detected_at, ev.seq) == (FaultType.CLOCK_JUMP, at(AFTER) + ahead, AFTER)
        assert "clock set forward" in ev.detail
        assert m.node_heartbeat(at(AFTER + 2), at(AFTER + 2)) == []
    in_order = learnt()
    for seq in range(LEARNT, AFTER):
        assert in_order.update(to_epoch_ns(at(seq)), 11.0, seq) == []
    assert in_order.update(to_epoch_ns(at(AFTER) + ahead), 11.0, AFTER) == [replace(ev, seq=None)]


def test_a_restart_between_the_late_reading_and_the_one_after_the_gap_is_no_jump() -> None:
    m = learnt()
    m.agent_started(at(AFTER) - timedelta(seconds=STEP / 2))
    assert m.update(to_epoch_ns(at(AFTER) + timedelta(seconds=600)), 11.0, AFTER,
                    received=to_epoch_ns(at(AFTER))) == []
    for seq in range(LEARNT, AFTER):
        assert m.stamped_before(to_epoch_ns(at(seq)), 11.0, seq) == []
    assert m.node_heartbeat(at(AFTER + 2), at(AFTER + 2)) == []
