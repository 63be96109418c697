"""Queue kiosk logic and ticket store: numbering from pulses, FIFO calls, persistence."""

import json
from pathlib import Path

import pytest

from edge.drivers.queue_kiosk import store
from edge.drivers.queue_kiosk.logic import QueueEvent, QueueKiosk, TicketState
from edge.errors import DriverError
from urbanpulse.clock import FakeClock

ISSUE, CALL_A, CALL_B = 0, 1, 2
T0 = 1000.0


def pulse(kiosk: QueueKiosk, clock: FakeClock, line: int, at: float,
          width: float = 0.2) -> list[QueueEvent]:
    """A pulse on `line` at `at` s after start, polled as the driver would."""
    clock.advance(T0 + at - clock.monotonic())
    events = kiosk.feed(line, True, clock.monotonic())
    clock.advance(width)
    events += kiosk.feed(line, False, clock.monotonic())
    clock.advance(0.1)
    events += kiosk.poll(clock.monotonic())
    return events


def make(clock: FakeClock, state: TicketState | None = None) -> QueueKiosk:
    return QueueKiosk(counters=[3, 7], bounce_s=0.03, levels=[False, False, False],
                      t0=clock.monotonic(), state=state)


def test_tickets_are_numbered_and_called_first_in_first_out() -> None:
    clock = FakeClock()
    kiosk = make(clock)
    events = []
    events += pulse(kiosk, clock, ISSUE, 10.0)
    events += pulse(kiosk, clock, ISSUE, 20.0)
    events += pulse(kiosk, clock, CALL_B, 30.0)
    events += pulse(kiosk, clock, ISSUE, 40.0)
    events += pulse(kiosk, clock, CALL_A, 50.0)
    events += pulse(kiosk, clock, CALL_A, 60.0)
    assert [(e.ticket, e.called, e.counter) for e in events] == [
        (1, False, None), (2, False, None), (1, True, 7), (3, False, None), (2, True, 3),
        (3, True, 3)]
    # each event carries the time of its pulse's leading edge
    assert [e.t - T0 for e in events] == pytest.approx([10, 20, 30, 40, 50, 60])
    assert kiosk.state == TicketState(issued=3, called=3)
    assert events[2].values() == {"ticket": 1, "called": 1, "counter": 7}
    assert events[0].values() == {"ticket": 1, "called": 0}


def test_a_call_with_nobody_waiting_is_ignored_and_counted() -> None:
    clock = FakeClock()
    kiosk = make(clock)
    assert pulse(kiosk, clock, CALL_A, 5.0) == []
    assert kiosk.empty_calls == 1
    assert [e.ticket for e in pulse(kiosk, clock, ISSUE, 6.0)] == [1]


def test_button_bounce_is_one_call() -> None:
    clock = FakeClock()
    kiosk = make(clock, TicketState(issued=5, called=0))
    events = []
    for dt, level in ((0, True), (0.004, False), (0.008, True), (0.3, False), (0.305, True),
                      (0.31, False)):
        events += kiosk.feed(CALL_A, level, T0 + 1 + dt)
    events += kiosk.poll(T0 + 2)
    assert [(e.ticket, e.counter) for e in events] == [(1, 3)]
    assert kiosk.state == TicketState(5, 1)


def test_numbering_continues_from_a_saved_state() -> None:
    clock = FakeClock()
    kiosk = make(clock, TicketState(issued=41, called=39))
    assert [(e.ticket, e.called) for e in pulse(kiosk, clock, ISSUE, 1.0)] == [(42, False)]
    assert [(e.ticket, e.called) for e in pulse(kiosk, clock, CALL_A, 2.0)] == [(40, True)]


def test_inconsistent_state_is_refused() -> None:
    with pytest.raises(ValueError, match="inconsistent"):
        make(FakeClock(), TicketState(issued=1, called=2))


def test_state_text_round_trip_and_legacy_file(tmp_path: Path) -> None:
    assert store.decode(store.encode(TicketState(12, 9)), "k") == TicketState(12, 9)
    path = store.legacy_path(tmp_path, "kiosk-1")
    assert store.load_legacy_file(path) is None
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps({"issued": 12, "called": 9}))
    assert store.load_legacy_file(path) == TicketState(12, 9)


@pytest.mark.parametrize("content", [b"", b"{not json", b'{"issued": 3}', b"[1, 2]",
                                     b'{"issued": 3, "called": 4}',
                                     b'{"issued": "3", "called": 1}'])
def test_damaged_state_is_a_driver_error_naming_where(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "kiosk.json"
    path.write_bytes(content)
    with pytest.raises(DriverError, match=r"kiosk\.json .*fix or remove"):
        store.load_legacy_file(path)
    # kept by the agent: the error names the key and the command that clears it
    with pytest.raises(DriverError, match=r"^kiosk ticket numbers 'queue_kiosk/k/tickets' are damaged "
                       r"\(.*numbering restarts at 1 once cleared\); clear them with the agent "
                       r"stopped: urbanpulse edge driver-state --config FILE "
                       r"--key queue_kiosk/k/tickets --clear$"):
        store.decode_saved(content.decode(), "queue_kiosk/k/tickets")
