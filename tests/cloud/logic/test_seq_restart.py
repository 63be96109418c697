"""A sensor whose numbering starts again (its node lost its state: a replaced SD card) is
told from redeliveries by the stamps: a redelivery carries the stamp it had, never newer
than the newest reading taken, so a number seen before with a newer stamp is a new
reading. Before this rule every such reading was dropped as a duplicate."""

from __future__ import annotations

import base64
import copyreg
import io
import pickle
import zlib

from cloud.logic.node import NodeState
from cloud.logic.records import RP_1M, RP_RAW, NodeData, Point
from cloud.logic.seqs import NEWEST_UNKNOWN, SeqRanges
from urbanpulse.wire import Reading

MINUTE_NS = 60 * 10**9
HOUR_NS = 60 * MINUTE_NS
T0 = 1_795_000_000_000_000_000 - 1_795_000_000_000_000_000 % HOUR_NS


def _pm(seq: int, minute: float, pm25: float = 10.0, flags: tuple[str, ...] = ()) -> Reading:
    return Reading("pm-1", "air.pm", T0 + int(minute * MINUTE_NS), seq, {"pm25": pm25, "pm10": 20.0},
                   flags)


def _process(state: NodeState, readings: list[Reading], at_minute: int = 59) -> list[Point]:
    return state.process(NodeData("hn/n1", "hn", "n1", T0 + at_minute * MINUTE_NS, readings))


def _raw(points: list[Point]) -> list[str]:
    return [text for rp, text in points if rp == RP_RAW and text.startswith("air_pm,")]


def _ledger(points: list[Point]) -> str:
    [text] = [text for _, text in points if text.startswith("ledger,")]
    return text.split(" ")[1]


def test_numbers_seen_before_with_newer_stamps_are_new_readings_and_the_ledger_says_so() -> None:
    state = NodeState(6 * HOUR_NS, detect=False)
    assert len(_raw(_process(state, [_pm(i, i) for i in range(20)]))) == 20
    # The card replaced at minute 30 of the same hour: numbers from 0 again.
    points = _process(state, [_pm(i, 30 + i, pm25=50.0) for i in range(5)])
    assert [t.split(" ")[1] for t in _raw(points)] == [f"pm25=50.0,pm10=20.0,seq={i}i" for i in range(5)]
    assert [t for rp, t in points if rp == RP_1M and t.endswith(f" {T0 + 30 * MINUTE_NS}")]
    # The old span (0-19) is closed: it and the new one (0-4) are 25 expected, none missing.
    ledger = _ledger(points)
    assert ledger.startswith("expected=25i,received=25i,duplicates=0i,")
    assert ledger.endswith(",missing=0i,restarts=1i")


def test_redeliveries_of_either_numbering_are_duplicates_and_a_late_old_reading_is_taken() -> None:
    state = NodeState(6 * HOUR_NS, detect=False)
    old = [_pm(i, i) for i in range(10) if i != 4]  # 4 is late
    _process(state, old)
    assert _raw(_process(state, old[3:6])) == []  # redelivered: same stamps
    _process(state, [_pm(0, 30), _pm(1, 31)])  # restart
    # the new ones again, old ones again (their numbers 5 and 8 not yet seen in the new
    # numbering, 0 and 1 seen in both), and the old numbering's late 4
    again = _process(state, [_pm(0, 30), _pm(1, 31), old[0], old[1], old[4], old[7], _pm(4, 4)])
    assert [t.split(" ")[1] for t in _raw(again)] == ["pm25=10.0,pm10=20.0,seq=4i"]
    assert "duplicates=9i" in _ledger(again)
    assert "restarts=1i" in _ledger(again)


def test_a_restart_forgets_what_the_fault_rules_learnt_from_the_old_numbers() -> None:
    state = NodeState(6 * HOUR_NS, detect=True)
    _process(state, [_pm(i, i, pm25=10.0 + i % 3) for i in range(40)])
    watch = state.watch["pm-1"]
    _process(state, [_pm(0, 45), _pm(1, 46)])
    assert state.watch["pm-1"] is not watch
    # Still a restart after a snapshot: the newest stamp is part of the state.
    resumed: NodeState = pickle.loads(pickle.dumps(state, protocol=pickle.HIGHEST_PROTOCOL))
    assert resumed.seqs["pm-1"].newest_ns == T0 + 46 * MINUTE_NS
    assert _raw(_process(resumed, [_pm(0, 47)]))
    assert resumed.seqs["pm-1"].ranges == [[0, 1]]


class _OldFormPickler(pickle.Pickler):
    """Pickles SeqRanges as the code before the restart rule did: without the slots
    `newest_ns` and `previous`; a node's numberings as objects (before session 25)."""

    def reducer_override(self, obj: object) -> object:
        if type(obj) is NodeState:
            state = obj.__getstate__()
            state["seqs"] = dict(obj.seqs)
            return copyreg.__newobj__, (NodeState,), state  # type: ignore[attr-defined]
        if type(obj) is SeqRanges:
            slots = {name: getattr(obj, name) for name in ("given_up", "max_ranges", "ranges")}
            return copyreg.__newobj__, (SeqRanges,), (None, slots)  # type: ignore[attr-defined]
        return NotImplemented


def _old_form(obj: object) -> bytes:
    buffer = io.BytesIO()
    _OldFormPickler(buffer, protocol=pickle.HIGHEST_PROTOCOL).dump(obj)
    return buffer.getvalue()


def test_ranges_pickled_before_the_newest_stamp_was_kept_take_it_from_the_windows() -> None:
    state = NodeState(6 * HOUR_NS, detect=False)
    _process(state, [_pm(i, i) for i in range(10)])
    assert pickle.loads(_old_form(SeqRanges())).newest_ns == NEWEST_UNKNOWN
    resumed: NodeState = pickle.loads(_old_form(state))
    assert resumed.seqs["pm-1"].newest_ns == T0 + 9 * MINUTE_NS
    assert _raw(_process(resumed, [_pm(9, 9)])) == []  # a redelivery
    assert len(_raw(_process(resumed, [_pm(0, 30)]))) == 1  # a restart


def test_the_snapshot_from_before_the_rewrite_still_tells_redeliveries_from_restarts() -> None:
    from tests.cloud.logic.test_node_pinned_output import OLD_SNAPSHOT, _golden_readings

    old: NodeState = pickle.loads(zlib.decompress(base64.b64decode("".join(OLD_SNAPSHOT))))
    newest = T0_GOLDEN + 7 * MINUTE_NS + 3000  # pm-1's last reading in the snapshot
    assert old.seqs["pm-1"].newest_ns == newest
    redelivered = [r for r in _golden_readings(0, 8) if r.sensor == "pm-1"]
    points = old.process(NodeData("hn/n1", "hn", "n1", newest + MINUTE_NS, redelivered))
    assert _raw(points) == []


T0_GOLDEN = 1_795_000_000_000_000_000


def _ledger_at(points: list[Point], hour: int) -> dict[str, str]:
    [text] = [t for _, t in points if t.startswith("ledger,") and t.endswith(f" {T0 + hour * HOUR_NS}")]
    return dict(kv.split("=") for kv in text.split(" ")[1].split(","))


def test_a_redelivery_from_two_numberings_back_is_still_a_duplicate() -> None:
    state = NodeState(6 * HOUR_NS, detect=False)
    first = [_pm(i, i * 0.1) for i in range(100)]
    _process(state, first)
    _process(state, [_pm(i, 20 + i) for i in range(5)])  # a restart
    _process(state, [_pm(i, 40 + i) for i in range(5)])  # and another
    points = _process(state, [first[50]])
    assert _raw(points) == []
    assert _ledger(points).startswith("expected=110i,received=111i,duplicates=1i,")


def test_a_new_card_numbered_below_the_old_card_without_a_collision_is_a_restart_too() -> None:
    """The old card's numbers ran 5000-5099; the new card sends its fresh reading (30) first
    and its backlog (0-29, an hour earlier) after, as the agent does: none of its numbers was
    seen, but they go back while the stamps go on."""
    state = NodeState(6 * HOUR_NS, detect=False)
    _process(state, [_pm(5000 + i, i * 0.2) for i in range(100)], at_minute=21)
    _process(state, [_pm(30, 70)], at_minute=70)
    points = _process(state, [_pm(i, 40 + i) for i in range(30)], at_minute=71)
    assert len(_raw(points)) == 30
    hour0 = _ledger_at(points, 0)
    assert (hour0["expected"], hour0["received"], hour0["missing"]) == ("120i", "120i", "0i")  # 100 + 20


def test_an_old_reading_filling_its_gap_after_a_restart_counts_in_the_old_numbering() -> None:
    state = NodeState(6 * HOUR_NS, detect=False)
    _process(state, [_pm(1000 + i, i) for i in range(20) if i != 10])
    _process(state, [_pm(i, 30 + i) for i in range(5)])  # a restart, same hour
    points = _process(state, [_pm(1010, 10)])  # the old numbering's late reading
    assert len(_raw(points)) == 1
    assert _ledger(points).startswith("expected=25i,received=25i,duplicates=0i,")


def _kiosk(seq: int, minute: float, ticket: int) -> Reading:
    return Reading("kiosk-1", "hospital.queue", T0 + int(minute * MINUTE_NS), seq,
                   {"ticket": ticket, "called": 0})


def test_an_old_numberings_late_reading_is_stored_but_not_judged_by_the_fault_rules() -> None:
    """Its high number and early stamp would read, against the new numbering, as a kiosk
    whose clock was set back."""
    state = NodeState(6 * HOUR_NS, detect=True)
    _process(state, [_kiosk(i, i * 0.5, i + 1) for i in range(40) if i != 30])
    _process(state, [_kiosk(i, 25 + i * 0.5, i + 1) for i in range(10)])  # a restart
    points = _process(state, [_kiosk(30, 15, 31)])
    assert [t for _, t in points if t.startswith("hospital_queue,")]
    assert not [t for _, t in points if t.startswith("events,")]


def test_stamps_of_an_unsynchronised_clock_neither_restart_a_numbering_nor_raise_its_newest() -> None:
    """A node whose clock ran ahead until NTP set it back: its readings before that carry
    `clock_unsynced`. One of them arriving late, stamped after the corrected ones, is a
    reading like any other, not a restart."""
    state = NodeState(6 * HOUR_NS, detect=False)
    ahead = [_pm(i, 100 + i, flags=("clock_unsynced",)) for i in range(11)]
    _process(state, ahead[:10], at_minute=52)
    _process(state, [_pm(11, 50), _pm(12, 51)], at_minute=52)
    points = _process(state, [ahead[10]], at_minute=52)
    assert len(_raw(points)) == 1
    assert _ledger_at(points, 1)["restarts"] == "0i"
    assert state.seqs["pm-1"].previous == []
    assert state.seqs["pm-1"].newest_ns == T0 + 51 * MINUTE_NS


def test_a_sensor_without_windows_in_an_old_snapshot_learns_its_newest_stamp_from_its_next_reading(
        ) -> None:
    state = NodeState(6 * HOUR_NS, detect=False)
    _process(state, [_pm(i, i, flags=("warmup",)) for i in range(5)])  # no window yet
    resumed: NodeState = pickle.loads(_old_form(state))
    assert resumed.seqs["pm-1"].newest_ns == NEWEST_UNKNOWN
    _process(resumed, [_pm(5, 5)])  # the next in order
    assert resumed.seqs["pm-1"].newest_ns == T0 + 5 * MINUTE_NS
    assert len(_raw(_process(resumed, [_pm(0, 30)]))) == 1  # so a new card is seen
    assert resumed.seqs["pm-1"].previous


def test_a_backlog_numbered_below_readings_of_an_unsynchronised_clock_is_not_a_restart() -> None:
    """The node read 0-9 (taken), then lost its network for hours, and NTP with it: 10-12
    are stamped by a clock still synchronised, 13-14 flagged (the kernel gave up on it).
    Back online it sends the fresh 13-14 first, the backlog 10-12 after: numbered below
    13-14 and stamped after every stamp the cloud trusts, but stamped before 13-14 (whose
    stamps say nothing), so the same numbering; 13 sent again is a redelivery."""
    state = NodeState(6 * HOUR_NS, detect=False)
    _process(state, [_pm(i, i) for i in range(10)])
    fresh = [_pm(13 + i, 40 + i, flags=("clock_unsynced",)) for i in range(2)]
    _process(state, fresh)
    points = _process(state, [_pm(10 + i, 20 + i) for i in range(3)])
    assert len(_raw(points)) == 3
    assert _ledger(points).endswith(",restarts=0i")
    points = _process(state, fresh[:1])
    assert _raw(points) == []
    assert "duplicates=1i" in _ledger(points)
    assert (state.seqs["pm-1"].ranges, state.seqs["pm-1"].previous) == ([[0, 15]], [])


class _FormBeforeNamesPickler(pickle.Pickler):
    """Pickles SeqRanges as the code before numbering names (and `newest_seq`) did."""

    def reducer_override(self, obj: object) -> object:
        if type(obj) is SeqRanges:
            slots = {name: getattr(obj, name) for name in
                     ("given_up", "max_ranges", "newest_ns", "previous", "ranges", "span_key")}
            return copyreg.__newobj__, (SeqRanges,), (None, slots)  # type: ignore[attr-defined]
        return NotImplemented


def test_ranges_pickled_before_names_were_kept_resume_unnamed_and_by_the_rule_they_had() -> None:
    state = NodeState(6 * HOUR_NS, detect=False)
    _process(state, [_pm(i, i) for i in range(10)])
    _process(state, [_pm(i, 20 + i) for i in range(5)])  # a restart
    buffer = io.BytesIO()
    _FormBeforeNamesPickler(buffer, protocol=pickle.HIGHEST_PROTOCOL).dump(state)
    resumed: NodeState = pickle.loads(buffer.getvalue())
    seqs = resumed.seqs["pm-1"]
    assert (seqs.numbering, seqs.newest_seq, seqs.newest_ns) == (None, 4, T0 + 24 * MINUTE_NS)
    assert [(p.numbering, p.newest_seq, p.ranges) for p in seqs.previous] == [(None, 9, [[0, 10]])]
    assert _raw(_process(resumed, [_pm(3, 23), _pm(7, 7)])) == []  # redeliveries of each
    assert len(_raw(_process(resumed, [_pm(2, 30)]))) == 1  # another restart
    assert len(seqs.previous) == 2
