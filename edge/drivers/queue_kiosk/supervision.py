"""What a kiosk's supervision lines say, for the node's heartbeat.

A kiosk's pulses look the same whether it is closed, dead or cut off: no pulse. Two
optional lines tell them apart, read like the door counter's loopback:

- the loopback pair (`cable`): a spare pair of the kiosk's cable shorted at the kiosk
  end; the line reads `whole_level` while the cable is whole and plugged in;
- the kiosk's "in service" output (`ready`), for kiosks powered around the clock: on
  while the kiosk works, off when it is dead or switched off.

A kiosk reading carries `ticket` and `called`, so none is sent for these: the agent
puts `report(now)` in its heartbeat (`health()["drivers"][id]["supervision"]`), and the
cloud raises CUT_CABLE or SILENCE from it. A state counts once it has lasted `delay_s`
(a connector wiggled, a kiosk rebooting for a second), so the report is a function of
the lines' debounced levels and `now`, and reading it changes nothing.

Pure: fed with raw edges (which line, signal on?, monotonic time).
"""

from __future__ import annotations

from dataclasses import dataclass

from edge.gpio.debounce import Debouncer

CABLE, READY = "cable", "ready"


@dataclass(slots=True)
class _Line:
    debouncer: Debouncer
    since: float  # when the debounced level last changed (its burst's start)


class KioskSupervision:
    def __init__(self, *, lines: tuple[str, ...], levels: tuple[bool, ...], t0: float,
                 bounce_s: float, delay_s: float, whole_level: bool = True) -> None:
        if len(lines) != len(levels) or not set(lines) <= {CABLE, READY} \
                or len(set(lines)) != len(lines):
            raise ValueError(f"supervision lines must be distinct of {CABLE!r}, {READY!r}, "
                             f"one level each; got {lines} and {levels}")
        if delay_s < 0:
            raise ValueError("delay_s must be >= 0")
        self.lines = lines
        self.delay_s = delay_s
        self.whole_level = whole_level
        self._lines = {name: _Line(Debouncer(bounce_s, level, t0), t0)
                       for name, level in zip(lines, levels, strict=True)}

    def feed(self, name: str, level: bool, t: float) -> None:
        line = self._lines[name]
        for edge in line.debouncer.feed(level, t):
            line.since = edge.t

    def poll(self, now: float) -> None:
        for line in self._lines.values():
            for edge in line.debouncer.poll(now):
                line.since = edge.t

    def next_deadline(self) -> float | None:
        due = [d for line in self._lines.values() if (d := line.debouncer.deadline()) is not None]
        return min(due) if due else None

    def level(self, name: str) -> bool:
        """The debounced level of a line (True: signal on)."""
        return self._lines[name].debouncer.level

    def report(self, now: float) -> dict[str, str | bool]:
        """{"cable": "ok" | "cut", "ready": bool}, the lines present only: a cut cable or
        a kiosk out of service once it has lasted `delay_s` at `now`."""
        out: dict[str, str | bool] = {}
        cable = self._lines.get(CABLE)
        if cable is not None:
            held = now - cable.since >= self.delay_s
            cut = cable.debouncer.level != self.whole_level and held
            out[CABLE] = "cut" if cut else "ok"
        ready = self._lines.get(READY)
        if ready is not None:
            held = now - ready.since >= self.delay_s
            out[READY] = ready.debouncer.level or not held
        return out
