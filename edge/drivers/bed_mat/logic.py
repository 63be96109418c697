"""Bed mat logic: an analogue mat's samples -> occupied/free, load and motion.

Pure: fed with one sample at a time (the mat's level, 0..1 of the ADC's full scale, and
the monotonic time it was taken); returns the readings due. The driver decides when to
sample; this module decides what a reading says.

- Presence, with hysteresis: the mat senses a body while its level is at or above
  `occupied_level`, no body once below `free_level` (between the two it keeps what it
  sensed last). Occupied is reported once a body has been sensed for `min_load_s` without
  interruption (a bag dropped on the bed, a hand leaning on it, is no patient); free only
  once no body has been sensed for `exit_tolerance_s` without interruption (the same
  exit tolerance as bed_pad: a patient shifting their weight is no exit).
- Glitches: a jump of more than `glitch_level` from the sample before that comes back
  within half that distance of where it started, at most `glitch_s` after it began (an
  electrical pulse on the cable, a connector's bad contact), is no load: it is counted
  once in `glitches` and its samples replaced by the one before it, for presence, load
  and motion alike. The samples of a jump are held until that is decided (so occupied
  comes up to `glitch_s` later). A body takes longer to arrive or leave and stays.
- `load`: the mean level over the reading's samples. `motion`: the RMS of the samples
  after a first-order high-pass of time constant `motion_tau_s` (the level minus its
  exponential mean), over the reading's samples. A lying patient breathes, which moves the
  level by a small fraction and keeps `motion` above the ADC's noise. A reading whose
  samples are all the same (not a code moved: a frozen ADC, a crushed mat) has that level
  as its load, exactly, and a motion of exactly 0, which the cloud's stuck rule looks for;
  the values are not rounded, so that nearby values are not made equal.
- Cable supervision (`supervision = "bias"`): the mat's conditioning holds an empty bed a
  little above 0 (a bias at the mat's end of the cable, about 0.05 of full scale), so a
  taken sample below `fault_below` is a cut cable or an unplugged mat (the ADC input
  pulled down), and one at or above `fault_above` a short to the supply or a cut ground
  (pinned at full scale). Such a level lasting `fault_delay_s` is a fault: a reading with
  `fault` 1 at once, `fault` 0 as soon as a level between the two is taken again. While
  the level is out of range (pending or declared) presence is frozen at what it was, as
  bed_pad's; `occupied` then means nothing. When it clears the mat is believed again, its
  entry or exit timing started afresh. A fault present at the first sample is reported
  at once (as bed_pad's). Without supervision readings carry no `fault`.
- Readings: at the first sample (the state the mat shows at start-up), at every change of
  the reported state, and every `heartbeat_s` without one. Each covers the samples since
  the reading before (the first: its one sample). A waveform never leaves the node.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

Supervision = Literal["none", "bias"]


@dataclass(frozen=True, slots=True)
class MatSettings:
    occupied_level: float = 0.25
    free_level: float = 0.15
    min_load_s: float = 0.5
    exit_tolerance_s: float = 10.0
    motion_tau_s: float = 5.0
    glitch_level: float = 0.2
    glitch_s: float = 0.3
    heartbeat_s: float = 60.0
    supervision: Supervision = "bias"
    fault_below: float = 0.02
    fault_above: float = 1.0
    fault_delay_s: float = 1.0

    def __post_init__(self) -> None:
        if not 0.0 <= self.free_level < self.occupied_level <= 1.0:
            raise ValueError("expected 0 <= free_level < occupied_level <= 1, got "
                             f"free_level={self.free_level}, occupied_level={self.occupied_level}")
        if self.supervision not in ("none", "bias"):
            raise ValueError(f"supervision must be none or bias, got {self.supervision!r}")
        if not 0.0 <= self.fault_below < self.free_level:
            raise ValueError(f"expected 0 <= fault_below < free_level, got "
                             f"fault_below={self.fault_below}, free_level={self.free_level}")
        if not self.occupied_level < self.fault_above <= 1.0:
            raise ValueError(f"expected occupied_level < fault_above <= 1, got "
                             f"fault_above={self.fault_above}")
        if self.fault_delay_s < 0:
            raise ValueError("fault_delay_s must be at least 0")
        for name in ("min_load_s", "exit_tolerance_s", "glitch_s"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be at least 0")
        for name in ("motion_tau_s", "glitch_level", "heartbeat_s"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be above 0")


@dataclass(frozen=True, slots=True)
class MatReading:
    """One `hospital.bed` reading of a mat, at monotonic time `t`."""

    t: float
    occupied: bool
    load: float
    motion: float
    samples: int
    glitches: int
    fault: bool | None = None  # None: not supervised

    def values(self) -> dict[str, float]:
        # Not rounded: the cloud's stuck rule looks for values exactly unchanged, which a
        # rounding would make of nearby ones.
        out: dict[str, float] = {"occupied": int(self.occupied), "load": self.load,
                                 "motion": self.motion}
        if self.fault is not None:
            out["fault"] = int(self.fault)
        if self.glitches:
            out["glitches"] = self.glitches
        return out


class BedMatLogic:
    def __init__(self, settings: MatSettings) -> None:
        self.s = settings
        self.occupied: bool | None = None  # reported; None before the first sample
        self._sensed = False
        self._sensed_since = 0.0
        self._prev: tuple[float, float] | None = None  # (level, t) of the last sample taken
        self._held: list[tuple[float, float]] = []  # the samples of a jump that may be a glitch
        self._mean = 0.0  # the high-pass's exponential mean
        self._n = 0
        self._sum = 0.0
        self._sq = 0.0
        self._low, self._high = math.inf, -math.inf
        self._glitches_sent = 0
        self._out_since: float | None = None  # since when the level is out of range
        self.fault = False  # reported
        self.glitches = 0
        self.exits = 0
        self.faults = 0
        self.samples = 0
        self.next_heartbeat = math.inf

    def feed(self, level: float, t: float) -> list[MatReading]:
        """Take one sample; returns the readings it completes (usually none)."""
        if not math.isfinite(level):
            raise ValueError(f"a mat level must be finite, got {level!r}")
        self.samples += 1
        prev = self._prev
        if prev is None:
            return self._first(level, t)
        out: list[MatReading] = []
        held = self._held
        if held:
            if abs(level - prev[0]) <= self.s.glitch_level / 2:
                self.glitches += 1  # it went and came back: a glitch, its samples the one before
                for _, t_held in held:
                    out += self._take(prev[0], t_held)
                held.clear()
            elif t - held[0][1] > self.s.glitch_s:
                for sample in held:  # it stayed: a real change
                    out += self._take(*sample)
                held.clear()
            else:
                held.append((level, t))
                return out + self.poll(t)
        prev = self._prev
        assert prev is not None
        if abs(level - prev[0]) > self.s.glitch_level:
            held.append((level, t))  # decided by the samples after it
            return out + self.poll(t)
        return out + self._take(level, t)

    def poll(self, now: float) -> list[MatReading]:
        """The heartbeat's reading, if due by `now` (the driver calls this between samples
        too, so that a mat that stopped answering does not hold its readings back)."""
        if self.occupied is None:
            return []
        out = self._supervise(now)
        if now < self.next_heartbeat or self._n == 0:
            return out
        return [*out, self._reading(now, self.occupied)]

    def _out_of_range(self, level: float) -> bool:
        s = self.s
        return s.supervision == "bias" and (level < s.fault_below or level >= s.fault_above)

    def _supervise(self, now: float) -> list[MatReading]:
        since = self._out_since
        # held samples (a jump not yet decided) may be the level coming back: wait for them
        if (since is None or self.fault or self.occupied is None or self._held
                or now < since + self.s.fault_delay_s):
            return []
        self.fault = True
        self.faults += 1
        return [self._reading(now, self.occupied)]

    def _first(self, level: float, t: float) -> list[MatReading]:
        self._prev = (level, t)
        self._mean = level
        self._sensed = level >= self.s.occupied_level
        self._sensed_since = t
        self._add(level, t)
        if self._out_of_range(level):  # at start-up: reported at once, as bed_pad's
            self._out_since = t
            self.fault = True
            self.faults += 1
        return [self._reading(t, self._sensed)]

    def _take(self, level: float, t: float) -> list[MatReading]:
        self._add(level, t)
        self._prev = (level, t)
        out: list[MatReading] = []
        if self._out_of_range(level):
            if self._out_since is None:
                self._out_since = t
            return out + self.poll(t)  # presence frozen: the level says nothing of a body
        if self._out_since is not None:
            self._out_since = None
            self._sensed_since = t  # believed again from here
            if self.fault:
                self.fault = False
                assert self.occupied is not None
                out.append(self._reading(t, self.occupied))
        s = self.s
        sensed = level >= s.occupied_level or (self._sensed and level >= s.free_level)
        if sensed != self._sensed:
            self._sensed = sensed
            self._sensed_since = t
        if sensed and not self.occupied and t - self._sensed_since >= s.min_load_s:
            out.append(self._reading(t, True))
        elif not sensed and self.occupied and t - self._sensed_since >= s.exit_tolerance_s:
            self.exits += 1
            out.append(self._reading(t, False))
        return out + self.poll(t)

    def _add(self, level: float, t: float) -> None:
        prev_t = t if self._prev is None else self._prev[1]
        dt = max(t - prev_t, 0.0)
        self._mean += (level - self._mean) * dt / (self.s.motion_tau_s + dt)
        high = level - self._mean
        self._n += 1
        self._sum += level
        self._sq += high * high
        self._low, self._high = min(self._low, level), max(self._high, level)

    def _reading(self, t: float, occupied: bool) -> MatReading:
        n = max(self._n, 1)
        if self._low == self._high:  # not a code moved: that level, exactly, and no motion
            load, motion = self._low, 0.0
        else:
            load, motion = self._sum / n, math.sqrt(self._sq / n)
        reading = MatReading(t, occupied, load, motion, self._n,
                             self.glitches - self._glitches_sent,
                             None if self.s.supervision == "none" else self.fault)
        self._glitches_sent = self.glitches
        self._n, self._sum, self._sq = 0, 0.0, 0.0
        self._low, self._high = math.inf, -math.inf
        self.occupied = occupied
        self.next_heartbeat = t + self.s.heartbeat_s
        return reading
