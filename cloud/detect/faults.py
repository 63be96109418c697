"""Sensor-fault rules, beside the anomaly detector: they say the sensor is broken,
not that the world is unusual.

One `FaultMonitor` per (sensor, field). Feed it every reading with `update(ts,
value, seq)` and call `tick(now)` on a timer (heartbeats too: `heartbeat(ts, seq)`);
both return the `FaultEvent`s that fired. The rules (settings in `FaultSettings`):

* OUT_OF_RANGE: a value outside the field's physical range (`FieldSpec.low/high` of
  the wire contract). Fires on that reading (delay 0), once per excursion.
* STUCK: the value has not moved by more than `stuck_tolerance` for at least
  `stuck_count` readings spanning at least `stuck_min_s` seconds. Starts at the
  first reading of the run; fires on the reading that completes the rule.
* SILENCE: no reading for `silence_intervals` expected intervals. The interval is
  `expected_interval_s` or, if None, the median gap of the last 15 readings. Starts
  one interval after the last reading; fires at the tick that sees it. A jump in the
  sequence numbers of `silence_intervals` or more readings that arrive late (a node
  replaying its outbox) is reported when the data comes back.
* SPIKE: one reading more than `spike_k` robust deviations (1.4826 x MAD, at least
  `spike_floor` of the physical range) from the median of the previous
  `spike_window` readings, with the next reading back within half that distance.
  Starts at the spiking reading; fires one reading later.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from enum import StrEnum

from cloud.detect.errors import DetectError
from urbanpulse.clock import from_epoch_ns
from urbanpulse.wire.kinds import KINDS, FieldSpec


class FaultType(StrEnum):
    OUT_OF_RANGE = "out_of_range"
    STUCK = "stuck"
    SILENCE = "silence"
    SPIKE = "spike"


@dataclass(frozen=True, slots=True)
class FaultEvent:
    sensor: str
    field: str
    fault: FaultType
    start: datetime
    detected_at: datetime
    value: float | None
    detail: str

    @property
    def delay(self) -> timedelta:
        """Detection delay: from the fault's start to the moment the rule fired."""
        return self.detected_at - self.start


@dataclass(frozen=True, slots=True)
class FaultSettings:
    expected_interval_s: float | None = None
    silence_intervals: int = 3
    stuck_count: int | None = 30
    stuck_min_s: float = 1800.0
    stuck_tolerance: float = 0.0
    spike_window: int | None = 9
    spike_k: float = 8.0
    spike_floor: float = 0.02

    def __post_init__(self) -> None:
        bad = (
            (self.expected_interval_s is not None and not self.expected_interval_s > 0)
            or self.silence_intervals < 1
            or (self.stuck_count is not None and self.stuck_count < 2)
            or self.stuck_min_s < 0
            or self.stuck_tolerance < 0
            or (self.spike_window is not None and self.spike_window < 3)
            or not self.spike_k > 0
            or self.spike_floor < 0
        )
        if bad:
            raise DetectError(f"fault settings out of range: {self!r}")


_BOOL = FaultSettings(stuck_count=None, spike_window=None)
_COUNT = FaultSettings(stuck_min_s=6 * 3600.0)

# Settings per (kind, field); a field not listed uses FaultSettings().
FAULT_SETTINGS: dict[tuple[str, str], FaultSettings] = {
    ("hospital.bed", "occupied"): _BOOL,
    ("hospital.bed", "fault"): _BOOL,
    ("hospital.queue", "called"): _BOOL,
    ("hospital.queue", "ticket"): replace(_BOOL, stuck_count=None),
    ("hospital.queue", "counter"): _BOOL,
    ("hospital.door", "count"): _COUNT,
    ("hospital.door", "interval_s"): replace(_BOOL, stuck_count=None),
    ("traffic.loop", "count"): _COUNT,
    ("traffic.loop", "occupancy_pct"): _COUNT,
    ("traffic.loop", "interval_s"): replace(_BOOL, stuck_count=None),
    ("traffic.loop", "speed_kmh"): _COUNT,
}


def _aware(ts: datetime | int) -> datetime:
    if isinstance(ts, datetime):
        if ts.tzinfo is None:
            raise DetectError(f"timestamp {ts.isoformat()} has no time zone (UTC expected)")
        return ts.astimezone(UTC)
    return from_epoch_ns(int(ts))


class FaultMonitor:
    """The fault rules for one field of one sensor."""

    def __init__(
        self,
        kind: str,
        field: str,
        sensor: str = "",
        settings: FaultSettings | None = None,
    ) -> None:
        if kind not in KINDS or field not in KINDS[kind].fields:
            raise DetectError(f"unknown kind/field {kind}/{field}")
        self.kind = kind
        self.field = field
        self.sensor = sensor
        self.spec: FieldSpec = KINDS[kind].fields[field]
        self.settings = settings or FAULT_SETTINGS.get((kind, field), FaultSettings())
        self._last_ts: datetime | None = None
        self._last_seq: int | None = None
        self._gaps: deque[float] = deque(maxlen=15)
        self._silent = False
        self._out_of_range = False
        self._run_start: datetime | None = None
        self._run_value = 0.0
        self._run_count = 0
        self._stuck = False
        self._window: deque[float] = deque(maxlen=self.settings.spike_window or 1)
        self._candidate: tuple[datetime, float, float, float] | None = None

    # -- the public calls -------------------------------------------------------------

    def update(self, ts: datetime | int, value: float, seq: int | None = None) -> list[FaultEvent]:
        """Rules that fire on this reading."""
        if not math.isfinite(value):
            raise DetectError(f"{self.sensor}/{self.field}: value {value!r} is not finite")
        at = _aware(ts)
        events = self._arrival(at, seq, value)
        events += self._range(at, value)
        events += self._stuck_rule(at, value)
        events += self._spike(at, value)
        return events

    def heartbeat(self, ts: datetime | int, seq: int | None = None) -> list[FaultEvent]:
        """A sign of life without a value: counts for the silence rule only."""
        return self._arrival(_aware(ts), seq, None)

    def tick(self, now: datetime) -> list[FaultEvent]:
        """Silence seen at `now` (aware UTC), reported once until data comes back."""
        if now.tzinfo is None:
            raise DetectError("tick() needs an aware UTC datetime")
        interval = self.expected_interval()
        if self._silent or self._last_ts is None or interval is None:
            return []
        if now - self._last_ts >= interval * self.settings.silence_intervals:
            self._silent = True
            return [
                self._event(
                    FaultType.SILENCE,
                    self._last_ts + interval,
                    now,
                    None,
                    f"no data since {self._last_ts.isoformat()}",
                )
            ]
        return []

    def expected_interval(self) -> timedelta | None:
        if self.settings.expected_interval_s is not None:
            return timedelta(seconds=self.settings.expected_interval_s)
        if len(self._gaps) < 3:
            return None
        gaps = sorted(self._gaps)
        return timedelta(seconds=gaps[len(gaps) // 2])

    # -- the rules ------------------------------------------------------------------

    def _event(
        self, fault: FaultType, start: datetime, at: datetime, value: float | None, detail: str
    ) -> FaultEvent:
        return FaultEvent(self.sensor, self.field, fault, start, at, value, detail)

    def _arrival(self, at: datetime, seq: int | None, value: float | None) -> list[FaultEvent]:
        events: list[FaultEvent] = []
        previous_seq = self._last_seq
        if seq is not None:
            if previous_seq is not None and seq <= previous_seq:
                return []  # a duplicate or a late reading: nothing new about liveness
            self._last_seq = seq
        if self._last_ts is not None and at <= self._last_ts:
            return []
        interval = self.expected_interval()
        if (
            not self._silent
            and seq is not None
            and previous_seq is not None
            and interval is not None
            and self._last_ts is not None
            and seq - previous_seq - 1 >= self.settings.silence_intervals
        ):
            events.append(
                self._event(
                    FaultType.SILENCE,
                    self._last_ts + interval,
                    at,
                    value,
                    f"{seq - previous_seq - 1} readings missing (seq {previous_seq} -> {seq})",
                )
            )
        if self._last_ts is not None and (seq is None or previous_seq is None
                                          or seq == previous_seq + 1):
            self._gaps.append((at - self._last_ts).total_seconds())
        self._last_ts = at
        self._silent = False
        return events

    def _range(self, at: datetime, value: float) -> list[FaultEvent]:
        low, high = self.spec.low, self.spec.high
        outside = (low is not None and value < low) or (high is not None and value > high)
        fired = outside and not self._out_of_range
        self._out_of_range = outside
        if not fired:
            return []
        return [
            self._event(
                FaultType.OUT_OF_RANGE, at, at, value, f"{value} outside [{low}, {high}]"
            )
        ]

    def _stuck_rule(self, at: datetime, value: float) -> list[FaultEvent]:
        s = self.settings
        if s.stuck_count is None:
            return []
        if self._run_start is None or abs(value - self._run_value) > s.stuck_tolerance:
            self._run_start, self._run_value, self._run_count = at, value, 1
            self._stuck = False
            return []
        self._run_count += 1
        start = self._run_start
        if (
            not self._stuck
            and self._run_count >= s.stuck_count
            and (at - start).total_seconds() >= s.stuck_min_s
        ):
            self._stuck = True
            return [
                self._event(
                    FaultType.STUCK,
                    start,
                    at,
                    value,
                    f"{self._run_count} readings at {self._run_value}",
                )
            ]
        return []

    def _spike(self, at: datetime, value: float) -> list[FaultEvent]:
        s = self.settings
        if s.spike_window is None:
            return []
        events: list[FaultEvent] = []
        candidate, self._candidate = self._candidate, None
        if candidate is not None:
            start, spike_value, median, distance = candidate
            if abs(value - median) <= distance / 2:
                events.append(
                    self._event(
                        FaultType.SPIKE,
                        start,
                        at,
                        spike_value,
                        f"{spike_value} against a median of {median}",
                    )
                )
            else:
                self._window.append(spike_value)  # a level change, not a spike
        window = self._window
        if len(window) == window.maxlen:
            ordered = sorted(window)
            median = ordered[len(ordered) // 2]
            mad = sorted(abs(v - median) for v in window)[len(window) // 2]
            floor = s.spike_floor * self._span() if self._span() else 0.0
            scale = max(1.4826 * mad, floor, 1e-12)
            if abs(value - median) > s.spike_k * scale:
                self._candidate = (at, value, median, abs(value - median))
                return events
        window.append(value)
        return events

    def _span(self) -> float:
        low, high = self.spec.low, self.spec.high
        return 0.0 if low is None or high is None else high - low

