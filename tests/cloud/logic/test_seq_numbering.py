"""A node that names its numbering (the batch's `numbering` id, made with its outbox): the
cloud tells a new card's readings from redeliveries by the name, where the stamps alone
cannot (a new card whose clock lags the old one's, or is not synchronised yet), and finds
an old card's late readings by it. Unnamed readings keep the stamp rule (test_seq_restart.py).
"""

from __future__ import annotations

import pickle

from cloud.logic.node import NodeState
from cloud.logic.records import RP_RAW, NodeData, Point
from urbanpulse.wire import Reading

MINUTE_NS = 60 * 10**9
HOUR_NS = 60 * MINUTE_NS
T0 = 1_795_000_000_000_000_000 - 1_795_000_000_000_000_000 % HOUR_NS
OLD, NEW = "00000000000000aa", "00000000000000bb"


def _pm(seq: int, minute: float, pm25: float = 10.0, flags: tuple[str, ...] = ()) -> Reading:
    return Reading("pm-1", "air.pm", T0 + int(minute * MINUTE_NS), seq, {"pm25": pm25, "pm10": 20.0},
                   flags)


def _process(state: NodeState, readings: list[Reading], numbering: str | None,
             at_minute: int = 59) -> list[Point]:
    return state.process(NodeData("hn/n1", "hn", "n1", T0 + at_minute * MINUTE_NS, readings,
                                  None, numbering))


def _raw(points: list[Point]) -> list[str]:
    return [text for rp, text in points if rp == RP_RAW and text.startswith("air_pm,")]


def _ledger(points: list[Point]) -> dict[str, str]:
    [text] = [text for _, text in points if text.startswith("ledger,")]
    return dict(kv.split("=") for kv in text.split(" ")[1].split(","))


def test_a_new_card_whose_clock_lags_the_old_one_is_a_new_numbering_when_named() -> None:
    """The old card read until minute 40; the new card's clock says minute 20-24. By the
    stamps these are redeliveries (numbers seen, stamps not newer); by the name they are
    new."""
    unnamed = NodeState(6 * HOUR_NS, detect=False)
    _process(unnamed, [_pm(i, i) for i in range(41)], None)
    assert _raw(_process(unnamed, [_pm(i, 20 + i, pm25=50.0) for i in range(5)], None)) == []

    named = NodeState(6 * HOUR_NS, detect=False)
    _process(named, [_pm(i, i) for i in range(41)], OLD)
    points = _process(named, [_pm(i, 20 + i, pm25=50.0) for i in range(5)], NEW)
    assert [t.split(" ")[1] for t in _raw(points)] == [f"pm25=50.0,pm10=20.0,seq={i}i" for i in range(5)]
    ledger = _ledger(points)
    assert (ledger["expected"], ledger["received"], ledger["duplicates"], ledger["missing"],
            ledger["restarts"]) == ("46i", "46i", "0i", "0i", "1i")
    # Each card's redeliveries are duplicates of its own numbering.
    again = _process(named, [_pm(3, 23, pm25=50.0), _pm(30, 30)], NEW)
    assert [t.split(" ")[1] for t in _raw(again)] == ["pm25=10.0,pm10=20.0,seq=30i"]  # NEW's 30 is new
    assert _raw(_process(named, [_pm(3, 3), _pm(30, 30)], OLD)) == []


def test_a_new_card_with_an_unsynchronised_clock_is_a_new_numbering_when_named() -> None:
    """A Pi without a real-time clock before NTP answers: stamps it knows are wrong, which
    the stamp rule does not trust."""
    state = NodeState(6 * HOUR_NS, detect=False)
    _process(state, [_pm(i, i) for i in range(30)], OLD)
    unsynced = [_pm(i, 1 + i, flags=("clock_unsynced",)) for i in range(5)]
    points = _process(state, unsynced, NEW)
    assert len(_raw(points)) == 5
    assert _ledger(points)["restarts"] == "1i"
    # Its next readings, synchronised now, continue the new numbering.
    assert len(_raw(_process(state, [_pm(5 + i, 31 + i) for i in range(3)], NEW))) == 3


def test_an_old_cards_late_reading_is_found_by_its_name_not_by_its_stamp() -> None:
    """The old card's reading 20 comes after the new card's first ones, stamped after every
    old reading taken: by its stamp it would belong to the new numbering (where 20 is not
    seen yet, and would later collide with the new card's own 20)."""
    state = NodeState(6 * HOUR_NS, detect=False)
    _process(state, [_pm(i, i) for i in range(20)], OLD)
    _process(state, [_pm(i, 30 + i) for i in range(3)], NEW)
    late = _process(state, [_pm(20, 20.5)], OLD)
    assert len(_raw(late)) == 1
    assert state.seqs["pm-1"].ranges == [[0, 3]]  # the new numbering did not take it
    assert state.seqs["pm-1"].previous[0].ranges == [[0, 21]]
    assert len(_raw(_process(state, [_pm(i, 33 + i) for i in range(3, 21)], NEW))) == 18


def test_an_agent_that_begins_to_name_its_numbering_continues_it() -> None:
    """An upgraded agent keeps its outbox: the first name comes with the next number, and
    names the numbering the cloud had seen unnamed."""
    state = NodeState(6 * HOUR_NS, detect=False)
    _process(state, [_pm(i, i) for i in range(10)], None)
    points = _process(state, [_pm(10 + i, 10 + i) for i in range(5)], OLD)
    assert len(_raw(points)) == 5
    assert _ledger(points)["restarts"] == "0i"
    assert state.seqs["pm-1"].numbering == OLD
    assert _raw(_process(state, [_pm(4, 4), _pm(12, 12)], OLD)) == []  # redeliveries
    assert _raw(_process(state, [_pm(5, 5)], None)) == []  # one sent before the upgrade, again


def test_a_card_restored_from_a_backup_repeats_its_name_and_the_stamps_still_tell() -> None:
    """A state directory restored from an old copy numbers again from where the copy was,
    under the same name: numbers seen, stamps newer than every reading taken."""
    state = NodeState(6 * HOUR_NS, detect=False)
    _process(state, [_pm(i, i) for i in range(20)], OLD)
    points = _process(state, [_pm(10 + i, 30 + i) for i in range(5)], OLD)
    assert len(_raw(points)) == 5
    assert _ledger(points)["restarts"] == "1i"


def test_names_survive_a_snapshot() -> None:
    state = NodeState(6 * HOUR_NS, detect=False)
    _process(state, [_pm(i, i) for i in range(20)], OLD)
    _process(state, [_pm(i, 5 + i) for i in range(3)], NEW)
    resumed: NodeState = pickle.loads(pickle.dumps(state, protocol=pickle.HIGHEST_PROTOCOL))
    seqs = resumed.seqs["pm-1"]
    assert (seqs.numbering, [before.numbering for before in seqs.previous]) == (NEW, [OLD])
    assert _raw(_process(resumed, [_pm(1, 6)], NEW)) == []
    assert _raw(_process(resumed, [_pm(1, 1)], OLD)) == []
    assert len(_raw(_process(resumed, [_pm(20, 20)], OLD))) == 1


def test_a_redelivery_from_before_a_restore_under_the_same_name_is_a_duplicate() -> None:
    """A state directory restored from an old copy numbers again from where the copy was
    (10), under the name it had. A reading of the first run under that name redelivered
    afterwards (5, stamped then) was taken already: by its stamp it belongs to the first
    run, as it would unnamed."""
    state = NodeState(6 * HOUR_NS, detect=False)
    _process(state, [_pm(i, i) for i in range(20)], OLD)
    _process(state, [_pm(10 + i, 30 + i) for i in range(5)], OLD)  # restored: 10-14 again
    points = _process(state, [_pm(5, 5)], OLD)
    assert _raw(points) == []
    ledger = _ledger(points)
    assert (ledger["expected"], ledger["received"], ledger["duplicates"], ledger["missing"]
            ) == ("25i", "26i", "1i", "0i")
    # So too once a new card followed: the name then picks the restored runs, the stamp one.
    _process(state, [_pm(i, 40 + i) for i in range(3)], NEW)
    assert _raw(_process(state, [_pm(15, 15)], OLD)) == []  # the first run's 15, again


def test_a_late_reading_of_the_run_before_a_restore_is_not_judged_by_the_fault_rules() -> None:
    """Its stamp puts it in the first run of the name; against the restored run its high
    number and early stamp would read as a kiosk whose clock was set back."""
    state = NodeState(6 * HOUR_NS, detect=True)

    def kiosk(seq: int, minute: float) -> Reading:
        return Reading("kiosk-1", "hospital.queue", T0 + int(minute * MINUTE_NS), seq,
                       {"ticket": seq + 1, "called": 0})

    state.process(NodeData("hn/n1", "hn", "n1", T0 + 59 * MINUTE_NS,
                           [kiosk(i, i * 0.5) for i in range(40) if i != 30], None, OLD))
    state.process(NodeData("hn/n1", "hn", "n1", T0 + 59 * MINUTE_NS,
                           [kiosk(20 + i, 25 + i * 0.5) for i in range(10)], None, OLD))
    points = state.process(NodeData("hn/n1", "hn", "n1", T0 + 59 * MINUTE_NS, [kiosk(30, 15)],
                                    None, OLD))
    assert [t for _, t in points if t.startswith("hospital_queue,")]
    assert not [t for _, t in points if t.startswith("events,")]
    assert state.seqs["kiosk-1"].ranges == [[20, 30]]



def test_a_named_numbering_whose_first_readings_are_unsynchronised_has_no_newest_stamp_yet() -> None:
    """A new card read 0-2 with its clock synchronised, then lost the synchronisation
    (3-4, flagged), and sends its fresh readings first. Taken first, 3-4 say nothing of
    when; 0-2 after them are a backlog of the same numbering, not a numbering started
    again, and 3 sent again is a redelivery."""
    state = NodeState(6 * HOUR_NS, detect=False)
    _process(state, [_pm(i, i) for i in range(20)], OLD)
    unsynced = [_pm(3 + i, 33 + i, flags=("clock_unsynced",)) for i in range(2)]
    _process(state, unsynced, NEW)
    points = _process(state, [_pm(i, 30 + i) for i in range(3)], NEW)
    assert len(_raw(points)) == 3
    assert _ledger(points)["restarts"] == "1i"
    points = _process(state, unsynced[:1], NEW)
    assert _raw(points) == []
    assert _ledger(points)["duplicates"] == "1i"
    assert state.seqs["pm-1"].ranges == [[0, 5]]


def test_a_late_reading_of_a_numbering_forgotten_past_8_restarts_does_not_take_over() -> None:
    """Ten cards in turn (a node whose state directory does not survive a reboot): the
    first card's numbers are no longer kept. Its late reading is taken as new (its numbers
    are gone), but it is no new numbering: no restart, and the tenth card's readings stay
    the current numbering's, judged by the fault rules."""
    state = NodeState(6 * HOUR_NS, detect=True)
    names = [f"{k:016x}" for k in range(1, 11)]
    for k, name in enumerate(names):
        _process(state, [_pm(i, k * 5 + i * 0.5) for i in range(8)], name)
    watch = state.watch["pm-1"]
    points = _process(state, [_pm(3, 1.5)], names[0])
    assert len(_raw(points)) == 1
    ledger = _ledger(points)
    assert (ledger["expected"], ledger["received"], ledger["restarts"]) == ("81i", "81i", "9i")
    assert state.seqs["pm-1"].numbering == names[-1]
    assert state.watch["pm-1"] is watch
    assert len(_raw(_process(state, [_pm(8, 50)], names[-1]))) == 1
    assert state.watch["pm-1"] is watch
    assert _raw(_process(state, [_pm(5, 47.5)], names[-1])) == []  # the tenth card's, again
