"""Ticket queues: a kiosk hands out numbered tickets, counters call them.

Shared by every service with ticket kiosks (the outpatient hall, the paraclinical
departments). A service decides who comes for a ticket and when; from there on the
queue is the same: a kiosk prints one ticket at a time and only while it issues
(from an hour before its first window until a quarter of an hour before its last one
ends); counters open in windows and serve one ticket at a time, first come first
served, for a log-normal service time; when tickets arrive faster than the open
counters serve them, the wait grows. Tickets still waiting when the last window
closes are abandoned (no call). Each kiosk numbers its tickets from 1 every day.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import NamedTuple, Protocol

import numpy as np

from urbanpulse.simulate.city import Kiosk
from urbanpulse.simulate.events import Event
from urbanpulse.simulate.faults import in_faults
from urbanpulse.simulate.randomness import FloatArray, IntArray, substream
from urbanpulse.simulate.timebase import TimeBase
from urbanpulse.simulate.timeline import Intervals, PinTrack

BUTTON_S = 0.15
PRINT_S = 2.0  # a kiosk button press or a counter's call key
ISSUE_BEFORE_OPEN_H = 1.0  # kiosks hand out tickets this long before counters open
ISSUE_STOP_BEFORE_CLOSE_H = 0.25


class QueueEvent(NamedTuple):
    t: float
    ticket: int
    called: int  # 0: ticket issued, 1: ticket called to a counter
    counter: int  # 1.. when called, 0 when issued


@dataclass(frozen=True, slots=True)
class KioskDay:
    issued: FloatArray
    called: FloatArray  # NaN: abandoned
    counter: IntArray  # 0: abandoned

    @property
    def waits(self) -> FloatArray:
        waits: FloatArray = self.called - self.issued
        return waits

    def events(self, t0: float, t1: float) -> list[QueueEvent]:
        tickets = np.arange(1, self.issued.size + 1)
        out = [QueueEvent(t, n, 0, 0) for t, n in zip(self.issued.tolist(), tickets.tolist(),
                                                      strict=True) if t0 <= t < t1]
        done = ~np.isnan(self.called)
        out += [QueueEvent(t, n, 1, c) for t, n, c in zip(
            self.called[done].tolist(), tickets[done].tolist(), self.counter[done].tolist(),
            strict=True) if t0 <= t < t1]
        out.sort()
        return out


def serve(issued: FloatArray, service: FloatArray, windows: list[tuple[float, float, int]]
          ) -> tuple[FloatArray, IntArray]:
    """First come, first served over counters that open in windows (start, end, count):
    counter c (0-based) is open in a window if c < count. Returns call times (NaN when
    the ticket is never called) and 1-based counters (0 when never called)."""
    n_counters = max(w[2] for w in windows)
    free = [-np.inf] * n_counters
    called = np.full(issued.size, np.nan)
    counter = np.zeros(issued.size, dtype=np.int64)
    last_call = -np.inf
    durations = service.tolist()
    for i, arrival in enumerate(issued.tolist()):
        ready = max(arrival, last_call)
        for start, end, count in windows:
            if end <= ready:
                continue
            open_counters = free[:count]
            c = min(range(count), key=open_counters.__getitem__)  # the first to be free
            t = max(open_counters[c], ready, start)
            if t < end:
                break
        else:
            break  # no counter will call it, nor any later ticket: abandoned at closing
        called[i] = t
        counter[i] = c + 1
        free[c] = t + durations[i]
        last_call = t
    return called, counter


def kiosk_windows(kiosk: Kiosk, day0: float) -> list[tuple[float, float, int]]:
    """The kiosk's counter windows on the local day starting at offset `day0`."""
    return [(day0 + w.start_h * 3600, day0 + w.end_h * 3600, w.counters)
            for w in kiosk.windows]


def kiosk_day(seed: int, site: str, node: str, kiosk: Kiosk, day: int, day0: float,
              arrivals: FloatArray) -> KioskDay:
    """One day of one kiosk, for the people who come to it at `arrivals` (sorted)."""
    windows = kiosk_windows(kiosk, day0)
    issuing = ((arrivals >= windows[0][0] - ISSUE_BEFORE_OPEN_H * 3600)
               & (arrivals < windows[-1][1] - ISSUE_STOP_BEFORE_CLOSE_H * 3600))
    # One ticket at a time: a kiosk takes PRINT_S to print one.
    queue_at = arrivals[issuing]
    spacing = PRINT_S * np.arange(queue_at.size)
    issued = np.maximum.accumulate(queue_at - spacing) + spacing
    rng = substream(seed, "kiosk", site, node, kiosk.sensor, day)
    mean_s = kiosk.service_mean_min * 60.0
    sigma = kiosk.service_sigma
    service = rng.lognormal(np.log(mean_s) - sigma**2 / 2, sigma, issued.size) \
        if sigma > 0 else np.full(issued.size, mean_s)
    called, counter = serve(issued, service, windows)
    return KioskDay(issued, called, counter)


def kiosk_days(seed: int, site: str, node: str, kiosks: Sequence[Kiosk], day: int,
               day0: float, arrivals: FloatArray, choice: FloatArray) -> dict[str, KioskDay]:
    """Each arrival goes to the kiosk whose share interval holds its `choice` (uniform in
    [0, 1)); shares that add up to less than 1 leave the rest without a ticket."""
    out: dict[str, KioskDay] = {}
    low = 0.0
    for kiosk in kiosks:
        mine = (choice >= low) & (choice < low + kiosk.share)
        low += kiosk.share
        out[kiosk.sensor] = kiosk_day(seed, site, node, kiosk, day, day0, arrivals[mine])
    return out


def events_over(timebase: TimeBase, day: Callable[[int], dict[str, KioskDay]], sensor: str,
                t0: float, t1: float) -> list[QueueEvent]:
    """A kiosk's events in [t0, t1), from the local days they fall in."""
    events: list[QueueEvent] = []
    for d in range(int(timebase.local_day(t0)), int(timebase.local_day(t1)) + 1):
        events += day(d)[sensor].events(t0, t1)
    return events


class KioskService(Protocol):
    """A service whose kiosks' events can be asked for (outpatients, a department)."""

    def kiosk_events(self, sensor: str, t0: float, t1: float) -> list[QueueEvent]: ...


@dataclass
class KioskSensor:
    """A kiosk as its edge node sees it: a ticket button and one call key per counter.
    A `silence` or a `cut_cable` fault mutes it (no events)."""

    seed: int
    site: str
    node: str
    kiosk: Kiosk
    model: KioskService
    faults: list[Event]

    def events(self, t0: float, t1: float) -> list[QueueEvent]:
        events = self.model.kiosk_events(self.kiosk.sensor, t0, t1)
        if not events:
            return events
        mute = in_faults(self.faults, ("silence", "cut_cable"), np.array([e.t for e in events]))
        return [e for e, m in zip(events, mute.tolist(), strict=True) if not m]

    def pin_tracks(self, t0: float, t1: float) -> dict[str, PinTrack]:
        events = self.events(t0 - BUTTON_S, t1)
        tracks: dict[str, PinTrack] = {}
        for c in range(0, self.kiosk.max_counters + 1):
            name = "ticket" if c == 0 else f"call-{c}"
            starts = np.array([e.t for e in events if e.called == (c > 0) and e.counter == c])
            tracks[name] = Intervals.merged(starts, starts + BUTTON_S).track(t0, t1)
        return tracks

    def reports(self, t0: float, t1: float) -> tuple[FloatArray, list[dict[str, float]]]:
        events = self.events(t0, t1)
        times = np.array([e.t for e in events])
        values: list[dict[str, float]] = [
            {"ticket": e.ticket, "called": 1, "counter": e.counter} if e.called
            else {"ticket": e.ticket, "called": 0} for e in events]
        return times, values
