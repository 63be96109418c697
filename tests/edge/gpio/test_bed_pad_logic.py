"""Bed-exit pad logic on a FakeClock: exit tolerance, contact bounce, cut-cable faults
with loopback and changeover supervision."""

import pytest

from edge.drivers.bed_pad.logic import BedPadLogic, BedState
from urbanpulse.clock import FakeClock

PAD, AUX = 0, 1


class Bed:
    """Scripted pad: `at(t)` moves the FakeClock to t s after start and polls."""

    def __init__(self, clock: FakeClock, **kw: object) -> None:
        kw.setdefault("exit_tolerance_s", 10.0)
        kw.setdefault("bounce_s", 0.05)
        kw.setdefault("levels", [True])
        self.clock = clock
        self.t0 = clock.monotonic()
        self.logic = BedPadLogic(t0=self.t0, **kw)
        self.changes: list[tuple[float, BedState]] = []

    def _now(self) -> float:
        return self.clock.monotonic() - self.t0

    def at(self, t: float) -> None:
        self.clock.advance(t - self._now())
        for state in self.logic.poll(self.clock.monotonic()):
            self.changes.append((round(self._now(), 3), state))

    def set(self, t: float, line: int, closed: bool) -> None:
        self.clock.advance(t - self._now())
        for state in self.logic.feed(line, closed, self.clock.monotonic()):
            self.changes.append((round(self._now(), 3), state))

    def run_deadlines(self, until: float) -> None:
        """Poll at every deadline up to `until`, as the driver does."""
        while (due := self.logic.next_deadline()) is not None and due - self.t0 <= until:
            self.at(due - self.t0)
        self.at(until)


def test_initial_state_is_the_pads() -> None:
    assert Bed(FakeClock(), levels=[True]).logic.state == BedState(True, None)
    assert Bed(FakeClock(), levels=[False]).logic.state == BedState(False, None)


def test_a_patient_shifting_is_not_an_exit() -> None:
    bed = Bed(FakeClock())
    bed.set(100.0, PAD, False)
    bed.set(103.0, PAD, True)       # back after 3 s, under the 10 s tolerance
    bed.run_deadlines(200.0)
    assert bed.changes == []
    assert bed.logic.state.occupied


def test_an_exit_is_reported_after_the_tolerance_without_interruption() -> None:
    bed = Bed(FakeClock())
    bed.set(100.0, PAD, False)
    bed.set(105.0, PAD, True)       # shifting: tolerance restarts at the next release
    bed.set(105.5, PAD, False)
    bed.at(105.6)                   # the release is debounced by now
    deadline = bed.logic.next_deadline()
    assert deadline is not None
    # the last release was debounced: it counts from 105.5, not from its confirmation
    assert deadline - bed.t0 == pytest.approx(115.5)
    bed.at(115.4)
    assert bed.changes == []
    bed.run_deadlines(120.0)
    assert bed.changes == [(115.5, BedState(False, None))]
    assert bed.logic.exits == 1


def test_returning_to_bed_is_reported_at_once() -> None:
    bed = Bed(FakeClock(), levels=[False])
    bed.set(10.0, PAD, True)
    bed.run_deadlines(11.0)
    assert bed.changes == [(10.05, BedState(True, None))]


def test_contact_bounce_is_filtered() -> None:
    bed = Bed(FakeClock(), levels=[False], bounce_s=0.05)
    for t, closed in ((10.0, True), (10.01, False), (10.02, True), (10.03, False),
                      (10.04, True)):
        bed.set(t, PAD, closed)
    bed.run_deadlines(12.0)
    assert bed.changes == [(10.09, BedState(True, None))]
    assert bed.logic.glitches == 0


def test_zero_tolerance_reports_the_exit_when_debounced() -> None:
    bed = Bed(FakeClock(), exit_tolerance_s=0.0)
    bed.set(5.0, PAD, False)
    bed.run_deadlines(6.0)
    assert bed.changes == [(5.05, BedState(False, None))]


def test_nc_pad_that_opens_under_weight() -> None:
    bed = Bed(FakeClock(), levels=[False], occupied_when_closed=False)
    assert bed.logic.state.occupied
    bed.set(1.0, PAD, True)
    bed.run_deadlines(20.0)
    assert bed.changes == [(11.0, BedState(False, None))]


# --- loopback supervision: line 1 is a pair shorted at the pad end -------------------

def loopback_bed(**kw: object) -> Bed:
    return Bed(FakeClock(), levels=[True, True], supervision="loopback", fault_delay_s=1.0,
               **kw)


def test_cut_cable_is_a_fault_not_an_exit() -> None:
    bed = loopback_bed(exit_tolerance_s=0.5)   # tolerance shorter than the fault delay
    assert bed.logic.state == BedState(True, False)
    bed.set(50.0, PAD, False)                  # the cut opens both pairs
    bed.set(50.002, AUX, False)
    bed.run_deadlines(120.0)
    assert bed.changes == [(51.002, BedState(True, True))]
    assert bed.logic.exits == 0
    assert bed.logic.faults == 1


def test_reconnected_cable_clears_the_fault_and_the_pad_is_believed_again() -> None:
    bed = loopback_bed()
    bed.set(50.0, PAD, False)
    bed.set(50.0, AUX, False)
    bed.run_deadlines(60.0)
    # plugged back in with the bed now empty: fault clears, then the exit tolerance runs
    # from the moment the cable is whole again
    bed.set(100.0, AUX, True)
    bed.run_deadlines(200.0)
    assert bed.changes == [
        (51.0, BedState(True, True)),
        (100.05, BedState(True, False)),
        (110.0, BedState(False, False)),
    ]


def test_an_exit_under_loopback_supervision_is_still_an_exit() -> None:
    bed = loopback_bed()
    bed.set(10.0, PAD, False)
    bed.run_deadlines(30.0)
    assert bed.changes == [(20.0, BedState(False, False))]


def test_loopback_fault_at_start_up_is_reported_at_once() -> None:
    bed = Bed(FakeClock(), levels=[False, False], supervision="loopback")
    assert bed.logic.state == BedState(False, True)
    assert bed.logic.state.values() == {"occupied": 0, "fault": 1}


def test_a_loopback_glitch_shorter_than_the_fault_delay_is_ignored() -> None:
    bed = loopback_bed()
    bed.set(10.0, AUX, False)
    bed.set(10.5, AUX, True)
    bed.run_deadlines(30.0)
    assert bed.changes == []


def test_noise_on_the_supervision_line_is_not_a_pad_glitch() -> None:
    bed = loopback_bed()
    bed.set(10.0, AUX, False)   # a burst the debouncer drops (back within bounce_s)
    bed.set(10.01, AUX, True)
    bed.set(20.0, PAD, False)   # and one on the pad line, which is a pad glitch
    bed.set(20.01, PAD, True)
    bed.run_deadlines(30.0)
    assert bed.changes == []
    assert bed.logic.glitches == 1


# --- changeover supervision: line 1 is the pad's other contact, closed while free ----

def changeover_bed(**kw: object) -> Bed:
    return Bed(FakeClock(), levels=[True, False], supervision="changeover",
               fault_delay_s=1.0, **kw)


def test_changeover_transit_is_not_a_fault() -> None:
    bed = changeover_bed()
    bed.set(10.0, PAD, False)     # occupied contact opens ...
    bed.set(10.08, AUX, True)     # ... 80 ms later the free contact closes
    bed.run_deadlines(30.0)
    assert bed.changes == [(20.0, BedState(False, False))]
    bed.set(40.0, AUX, False)
    bed.set(40.08, PAD, True)
    bed.run_deadlines(50.0)
    assert bed.changes[-1] == (40.13, BedState(True, False))
    assert bed.logic.faults == 0


def test_changeover_both_open_is_a_cut_conductor() -> None:
    bed = changeover_bed(exit_tolerance_s=0.2)
    bed.set(10.0, PAD, False)     # common wire cut: both sides read open
    bed.run_deadlines(30.0)
    assert bed.changes == [(11.0, BedState(True, True))]


def test_changeover_both_closed_is_a_short() -> None:
    bed = changeover_bed()
    bed.set(10.0, AUX, True)
    bed.run_deadlines(30.0)
    assert bed.changes == [(11.0, BedState(True, True))]


def test_unsupervised_reading_has_no_fault_field() -> None:
    assert BedState(True, None).values() == {"occupied": 1}


def test_wrong_number_of_levels_is_refused() -> None:
    with pytest.raises(ValueError, match="2 initial levels"):
        BedPadLogic(exit_tolerance_s=1, bounce_s=0, levels=[True], t0=0,
                    supervision="loopback")


def test_a_load_shorter_than_the_minimum_pulse_is_a_glitch_not_a_patient() -> None:
    bed = Bed(FakeClock(), levels=[False], min_pulse_s=0.5)
    bed.set(5.0, PAD, True)
    bed.set(5.15, PAD, False)   # a 150 ms false pulse on an empty bed
    bed.run_deadlines(20.0)
    assert bed.changes == []
    assert bed.logic.glitches == 1
    bed.set(30.0, PAD, True)    # a patient gets in
    bed.run_deadlines(40.0)
    assert bed.changes == [(30.5, BedState(True))]  # confirmed once it lasted 0.5 s
    assert bed.logic.glitches == 1


@pytest.mark.parametrize(("min_pulse_s", "back_at"), [(0.5, 109.8), (0.0, 109.98)])
def test_back_in_bed_just_before_the_tolerance_ends_is_no_exit(
        min_pulse_s: float, back_at: float) -> None:
    # The return began before the 10 s tolerance ran out, but was still held back
    # (min_pulse_s) or debounced when it ran out: it was once reported as an exit, and
    # an entry a moment later.
    bed = Bed(FakeClock(), min_pulse_s=min_pulse_s)
    bed.set(100.0, PAD, False)
    bed.set(back_at, PAD, True)
    bed.run_deadlines(200.0)
    assert bed.changes == []
    assert bed.logic.exits == 0
    assert bed.logic.state.occupied


def test_a_glitch_at_the_end_of_the_tolerance_delays_the_exit_only_until_it_is_decided() -> None:
    bed = Bed(FakeClock(), min_pulse_s=0.5)
    bed.set(100.0, PAD, False)
    bed.set(109.9, PAD, True)       # a 100 ms false pulse: no patient
    bed.set(110.0, PAD, False)
    bed.run_deadlines(200.0)
    assert bed.changes == [(110.05, BedState(False, None))]  # the glitch's end, debounced
    assert bed.logic.exits == 1
    assert bed.logic.glitches == 1


def test_a_return_after_the_tolerance_ended_does_not_cancel_the_exit() -> None:
    # No poll at the tolerance's end (the loop was held up): the return's edge comes
    # first, but the patient was away longer than the tolerance, so the exit stands.
    bed = Bed(FakeClock(), min_pulse_s=0.5)
    bed.set(100.0, PAD, False)
    bed.set(110.2, PAD, True)
    bed.run_deadlines(200.0)
    assert bed.changes == [(110.2, BedState(False, None)), (110.7, BedState(True, None))]
    assert bed.logic.exits == 1
