"""Bed-exit pad logic: occupied/free with an exit tolerance, cut-cable detection.

Pure: fed with raw edges (line, contact closed?, monotonic time) and polled at
`next_deadline()`; returns the reported state each time it changes.

- Line 0 is the pad's contact; `occupied_when_closed` says which contact state means a
  patient is in bed (NC wiring: closed while occupied, the fail-safe choice).
- A load shorter than `min_pulse_s` is no patient but a glitch (see
  edge/gpio/pulse_filter.py), counted in `glitches`.
- Occupied is reported as soon as the (debounced, filtered) pad says so; free only once the pad has
  read free for `exit_tolerance_s` without interruption, so a patient shifting their
  weight is not an exit. A change of the pad's line that began before the tolerance ran
  out but is still being debounced or held (`min_pulse_s`) when it runs out is waited
  for: a patient back in bed just before the end is no exit, a glitch lets it go.
- Supervision (line 1), because a cut NC cable reads exactly like an empty bed:
  - `loopback`: a second pair in the pad's cable is shorted at the pad end; the pin reads
    closed while the cable is whole. Open = cable cut or unplugged.
  - `changeover`: the pad has a changeover (SPDT) contact; line 1 is its other side,
    closed while the bed is free. Exactly one side is closed in normal use: both open =
    a conductor cut, both closed = a short.
  A fault condition must last `fault_delay_s` (a changeover contact is briefly open on
  both sides while it moves). While it is pending or declared, occupancy is frozen at
  its last value; when it clears, the pad is believed again and a pending exit tolerance
  starts afresh.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from edge.gpio.debounce import Debouncer, Edge
from edge.gpio.pulse_filter import PulseFilter

Supervision = Literal["none", "loopback", "changeover"]
PAD, AUX = 0, 1


@dataclass(frozen=True, slots=True)
class BedState:
    occupied: bool
    fault: bool | None = None  # None: unsupervised wiring, a cut cable cannot be seen

    def values(self) -> dict[str, float]:
        """The fields of a `hospital.bed` reading."""
        out: dict[str, float] = {"occupied": int(self.occupied)}
        if self.fault is not None:
            out["fault"] = int(self.fault)
        return out


class BedPadLogic:
    def __init__(self, *, exit_tolerance_s: float, bounce_s: float, levels: Sequence[bool],
                 t0: float, supervision: Supervision = "none", fault_delay_s: float = 1.0,
                 occupied_when_closed: bool = True, min_pulse_s: float = 0.0) -> None:
        lines = 1 if supervision == "none" else 2
        if len(levels) != lines:
            raise ValueError(f"expected {lines} initial levels, got {len(levels)}")
        self.exit_tolerance_s = exit_tolerance_s
        self.fault_delay_s = fault_delay_s
        self.supervision = supervision
        self.occupied_when_closed = occupied_when_closed
        # The pad's line holds back loads shorter than min_pulse_s; the supervision line
        # has no pulses to filter.
        self._filters = [PulseFilter(Debouncer(bounce_s, level, t0),
                                     min_pulse_s if line == PAD else 0.0,
                                     active=occupied_when_closed if line == PAD else True)
                         for line, level in enumerate(levels)]
        self._closed = list(levels)
        self._free_since: float | None = None
        # since when the pad line's filter has had a change pending (a burst being
        # debounced, a load held back for min_pulse_s); None while it has nothing pending
        self._pad_pending_since: float | None = None
        condition = self._fault_condition()
        self._condition_since: float | None = t0 if condition else None
        self.state = BedState(self._sensed_occupied(),
                              None if supervision == "none" else condition)
        self.exits = 0
        self.faults = 0

    @property
    def glitches(self) -> int:
        """Pad loads too short to be a patient, and the pad line's dropped bursts, since
        start-up (noise on the supervision line is a cable matter, not a pad glitch)."""
        return self._filters[PAD].glitches

    def closed(self, line: int) -> bool:
        """Debounced contact state of `line`."""
        return self._closed[line]

    def feed(self, line: int, closed: bool, t: float) -> list[BedState]:
        pulses = self._filters[line]
        edges: list[tuple[Edge, int]] = []
        if line == PAD:
            edges += [(e, line) for e in pulses.poll(t)]  # what was due by t, first
            if pulses.deadline() is None:
                self._pad_pending_since = None
            if self._pad_pending_since is None:
                self._pad_pending_since = t
        edges += [(e, line) for e in pulses.feed(closed, t)]
        return self._advance(edges, t)

    def poll(self, now: float) -> list[BedState]:
        return self._advance([], now)

    def next_deadline(self) -> float | None:
        due = [d for d in (f.deadline() for f in self._filters) if d is not None]
        if self._condition_since is not None:
            if not self.state.fault:
                due.append(self._condition_since + self.fault_delay_s)
        elif (self._free_since is not None and self.state.occupied
              and not self._exit_waits(self._free_since + self.exit_tolerance_s)):
            due.append(self._free_since + self.exit_tolerance_s)
        return min(due) if due else None

    def _exit_waits(self, exit_at: float) -> bool:
        """A change of the pad line that began before `exit_at` is still undecided (its
        filter's deadline, in next_deadline, decides it)."""
        return self._pad_pending_since is not None and self._pad_pending_since < exit_at

    def _sensed_occupied(self) -> bool:
        return self._closed[PAD] == self.occupied_when_closed

    def _fault_condition(self) -> bool:
        if self.supervision == "loopback":
            return not self._closed[AUX]
        if self.supervision == "changeover":
            return self._closed[PAD] == self._closed[AUX]
        return False

    def _advance(self, edges: list[tuple[Edge, int]], now: float) -> list[BedState]:
        for line, pulses in enumerate(self._filters):
            edges += [(e, line) for e in pulses.poll(now)]
        changes: list[BedState] = []
        for edge, line in sorted(edges, key=lambda item: item[0].t):
            self._closed[line] = edge.level
            self._apply(edge.t, changes)
        if self._filters[PAD].deadline() is None:
            self._pad_pending_since = None
        self._decide(now, changes)
        return changes

    def _report(self, state: BedState, changes: list[BedState]) -> None:
        if state != self.state:
            self.state = state
            changes.append(state)

    def _apply(self, t: float, changes: list[BedState]) -> None:
        condition = self._fault_condition()
        if condition and self._condition_since is None:
            self._condition_since = t
        elif not condition and self._condition_since is not None:
            self._condition_since = None
            if self.state.fault:
                self._report(BedState(self.state.occupied, False), changes)
                self._free_since = None
        if self._sensed_occupied():
            self._free_since = None
        elif self._free_since is None:
            self._free_since = t

    def _decide(self, now: float, changes: list[BedState]) -> None:
        if self._condition_since is not None:
            if not self.state.fault and now >= self._condition_since + self.fault_delay_s:
                self.faults += 1
                self._report(BedState(self.state.occupied, True), changes)
            return
        if self.state.fault:
            return
        if self._sensed_occupied():
            self._report(BedState(True, self.state.fault), changes)
        elif (self.state.occupied and self._free_since is not None
              and now >= self._free_since + self.exit_tolerance_s
              and not self._exit_waits(self._free_since + self.exit_tolerance_s)):
            self.exits += 1
            self._free_since = None
            self._report(BedState(False, self.state.fault), changes)
