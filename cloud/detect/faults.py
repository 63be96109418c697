"""Sensor-fault rules, beside the anomaly detector: they say the sensor is broken,
not that the world is unusual.

One `FaultMonitor` per (sensor, field). Feed it every reading with `update(ts,
value, seq, values, received)` and call `tick(now)` on a timer (signs of life too:
`heartbeat(ts, seq)`; the node's heartbeats: `node_heartbeat`); each returns the
`FaultEvent`s that fired. A reading the dataflow keeps out of the rules (flagged
`clock_unsynced` or `warmup`) goes to `unjudged(seq, received)`: it arrived and took its
number, nothing more. The rules (settings in `FaultSettings`):

* OUT_OF_RANGE: a value outside the field's physical range (`FieldSpec.low/high` of
  the wire contract). Fires on that reading (delay 0), once per excursion.
* STUCK: the value has not moved by more than `stuck_tolerance` for at least
  `stuck_count` readings spanning at least `stuck_min_s` seconds. Starts at the
  first reading of the run; fires on the reading that completes the rule. A run at a
  module's full scale (`urbanpulse.wire.kinds.FULL_SCALES`: an MH-Z19B at 5,000 ppm) says
  in its detail that the module may be saturated rather than stuck.
  For counts (`zero_alpha`): a run of zeros that the recent share p of non-zero
  readings (at least `zero_busy`) makes improbable, (1 - p) ** run < zero_alpha,
  at least `zero_min` readings long (a dead counter during busy hours).
* SILENCE: no reading for `silence_intervals` expected intervals. The interval is
  `expected_interval_s` or, if None, the median gap of the last 15 readings (and
  then at least 1.5 x the longest of the last 240 gaps). Judged
  on arrival (the `now` of the ticks), not on the node's stamps. Starts one interval
  after the last arrival; fires at the tick that sees it. Not counted: the time before
  the node's agent last started (`node_heartbeat`), nor a quiet of the whole node as long
  as the limit and 2.5 heartbeat intervals (`tick(quiets=, away_s=)`; a shorter one is the
  node's usual spacing): a sensor cannot report before its agent started. A jump in the sequence
  numbers of `silence_intervals` or more, with the stamps advancing accordingly, is
  reported when the data comes back (only for fields in `every_reading`). Two messages
  of the node can come swapped (several ingests: their journals are merged by their
  reception stamps), so a jump of a reading received at `update(received=)` is held until
  a reading of the field or a heartbeat of the node (`node_heartbeat`) received
  `gap_grace_s` later; the missing numbers coming meanwhile (`stamped_before`) fill it,
  and it is dropped when no run of `silence_intervals` is left missing (each run left is
  raised on the reading after it, as in order; the one before the reading after the gap
  gets that reading judged by the forward clock rule, as in order).
* SPIKE: one reading more than `spike_k` robust deviations (1.4826 x MAD, at least
  `spike_floor` of the physical range and `spike_rel` of the median) from the
  median of the previous
  `spike_window` readings, with the next reading back within half that distance.
  Starts at the spiking reading; fires one reading later; once per episode: a spike
  within an hour of the one before (raised or not) is not raised again.
* SPIKE from the edge (`glitch_count`): GPIO drivers count the pulses too short to be
  real (false pulses, glitches) in a `glitches` field. At least `glitch_count` of them
  within `glitch_span_s` fire once; the rule re-arms after a span without any. Starts
  at the first reading of the span that carried glitches; fires on the one that
  completes the count.
* CUT_CABLE: a value at or above `cut_at` on `cut_count` readings in a row (a bed
  pad's `fault` flag; a loop card failing safe to constant presence).
* CLOCK_JUMP (sensors with `regular` readings): the stamps jump against the
  sequence numbers. Forward: consecutive sequence numbers, a gap longer than the
  longest of the last 240 gaps by `clock_min_s`, no silence seen in between, and no
  start of the node's agent within the gap (`agent_started`, from its heartbeats; not
  told when the agent counted a wall-clock jump before that heartbeat; told again by the
  run's first heartbeat saying the clock synchronised after one said not). The heartbeat
  that tells of a restart may reach the rules after the readings across it (several
  ingests: the journals are merged by their reception stamps, and the heartbeat is
  another topic): a jump whose reading (received at `update(received=)`) is not stamped
  ahead of the cloud's clock by `clock_ahead_s` beyond the lead the node's heartbeats show
  (the largest of their last few; none from one saying its clock not synchronised) is
  held until a heartbeat taken in order (`node_heartbeat`) drops it (a start within the
  gap) or lets it go (sent after the reading), or a reading received `clock_hold_s` later
  lets it go; a reading stamped ahead is a jump at once (no restart does that).
  Backward: a reading numbered after the newest one judged but stamped before it, which
  the dataflow hands to `stamped_before(received=)`: raised at once, once until a reading
  is judged again, and each such reading is an arrival not judged (`unjudged`: no false
  silence, no numbers missing when the stamps catch up); or `silence_intervals` or more
  sequence numbers skipped while the stamps advanced by less than half of what that many
  readings take.
* CLOCK_JUMP (event sensors, `clock_back`): a reading stamped earlier than the
  reading before it (by sequence number) while its sequence number went up: the
  edge emits events in time order, so the clock was set back (a forward jump ending
  shows the same way). Equal stamps are fine (events of one second). The dataflow
  hands such a reading to `stamped_before`, as it leaves it out of the other rules.
* SILENCE for a kiosk (`pair_busy`): its issues and calls (the reading's `called`,
  passed in `values`) stopping at the same moment while busy, tickets waiting. Its
  quiet is not counted before the agent's last start nor over a quiet of the whole node
  as long as the time the hour's rates make improbable, as for SILENCE above.

One `HeartbeatMonitor` per node reads the node's heartbeats (`Heartbeat`, from its
`status` messages), which reach nodes whose readings cannot show a fault:

* CLOCK_JUMP (the node): the agent's count of wall-clock jumps went up between two
  heartbeats of one run (a run: the agent's run id; from older agents, told by
  `uptime_s` going down). Heartbeats are taken in (run, uptime) order: an older one
  delivered again is ignored. Not for the step that synchronised the clock: the
  heartbeat before said `synchronised` false and this one true (a Pi without RTC whose
  agent connected before NTP answered); counted by one still saying false (the agent
  asks the kernel at most once a second), the jump waits for the next heartbeat, which
  drops it if it says true and counted no more, and raises it otherwise.
* CUT_CABLE / SILENCE (a supervised driver): the driver reports its cable `cut`, or
  its device not ready (a kiosk's "in service" output off) while the cable is whole.
  Once per episode; a report without the ready line (a kiosk outside its opening hours)
  ends it.
* STUCK (a door beam): the driver reports its self-test `failed` (a receiver that
  stayed clear with its emitter switched off) or the beam `blocked` (broken longer
  than anyone takes through a door). Once per episode: again only after an "ok" test
  or the beam clear.

Heartbeat events are stamped when the cloud received the heartbeat (a replay of the
journal gives the same stamp), not by the node's clock, which may be the one that
jumped; they start at the heartbeat before, by the agent's uptime (`delay`: the time
between the two heartbeats, measured by no wall clock).
"""

from __future__ import annotations

import dataclasses
import math
import operator
import pickle
import re
import sys
from array import array
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields, replace
from datetime import UTC, datetime, timedelta
from enum import StrEnum

from cloud.detect.compat import slot_state
from cloud.detect.errors import DetectError
from urbanpulse.clock import from_epoch_ns, to_epoch_ns
from urbanpulse.wire.kinds import KINDS, FieldSpec, full_scale


class FaultType(StrEnum):
    OUT_OF_RANGE = "out_of_range"
    STUCK = "stuck"
    SILENCE = "silence"
    SPIKE = "spike"
    CUT_CABLE = "cut_cable"
    CLOCK_JUMP = "clock_jump"
    DRIFT = "drift"  # cross-station, cloud/detect/drift.py


@dataclass(frozen=True, slots=True)
class FaultEvent:
    sensor: str
    field: str
    fault: FaultType
    start: datetime
    detected_at: datetime
    value: float | None
    detail: str
    # The sequence number of the reading that fired it, where the event is raised later
    # than on that reading (a held clock jump, FaultMonitor.node_heartbeat); None otherwise.
    seq: int | None = None
    # When the cloud received the reading that showed it, where the event may be raised
    # on another message than that reading's (a clock jump; a sequence gap held in case the
    # missing readings are only late); None: not told, or raised on that reading's message.
    # It stamps the event's point (cloud/logic/events.py), since the reading's stamp is on
    # the node's clock. Not compared: the same event whenever it was received.
    received: datetime | None = dataclasses.field(default=None, compare=False)

    def __setstate__(self, state: list[object]) -> None:
        # As the dataclass's own, but a state pickled before `received` was kept lacks it.
        for k, f in enumerate(fields(self)):
            object.__setattr__(self, f.name, state[k] if k < len(state) else f.default)

    @property
    def delay(self) -> timedelta:
        """Detection delay: from the fault's start to the moment the rule fired."""
        return self.detected_at - self.start


# Spikes within this of the one before belong to its episode: raised once, as the glitch
# rule does (a noisy cable or a failing laser spikes a field dozens of times an hour).
SPIKE_REARM_US = 3600 * 1_000_000

# The longest expected interval a FaultSettings takes: a week.
EXPECTED_INTERVAL_MAX_S = 7 * 24 * 3600.0


@dataclass(frozen=True, slots=True)
class FaultSettings:
    expected_interval_s: float | None = None
    silence_intervals: int = 3
    regular: bool = True
    every_reading: bool = True
    stuck_count: int | None = 30
    stuck_min_s: float = 1800.0
    stuck_tolerance: float = 0.0
    zero_alpha: float | None = None
    zero_min: int = 10
    zero_busy: float = 0.5
    spike_window: int | None = 9
    spike_k: float = 8.0
    spike_floor: float = 0.02
    spike_rel: float = 0.0
    glitch_count: int | None = None
    glitch_span_s: float = 3600.0
    cut_at: float | None = None
    cut_count: int = 1
    clock_min_s: float = 20.0
    clock_ahead_s: float = 10.0
    clock_hold_s: float = 10.0
    gap_grace_s: float = 10.0
    pair_busy: int | None = None
    pair_alpha: float = 1e-9
    pair_together: float = 4.0
    clock_back: bool = False

    def __post_init__(self) -> None:
        # Every float setting finite: a NaN fails every comparison, and an inf times 0 is a
        # NaN, so a rule would depend on how its comparisons are written (the spike rule's
        # least scale, `_spike`, relies on this).
        for name in _FLOAT_SETTINGS:
            value = getattr(self, name)
            if value is not None and not math.isfinite(value):
                raise DetectError(f"fault settings: {name}={value!r} is not finite (the rules "
                                  "compare it: NaN or inf would make them say nothing)")
        interval = self.expected_interval_s
        if interval is not None and not 0 < interval <= EXPECTED_INTERVAL_MAX_S:
            # timedelta(seconds=) overflows from about 8.64e13 s; no sensor reports that rarely.
            raise DetectError(f"fault settings: expected_interval_s={interval!r} is not within "
                              f"0 < expected_interval_s <= {EXPECTED_INTERVAL_MAX_S} (a week: "
                              "no sensor reports less often, and longer overflows a timedelta)")
        checks = (
            ("silence_intervals", self.silence_intervals >= 1, "at least 1"),
            ("stuck_count", self.stuck_count is None or self.stuck_count >= 2, "at least 2"),
            ("stuck_min_s", self.stuck_min_s >= 0, "at least 0"),
            ("stuck_tolerance", self.stuck_tolerance >= 0, "at least 0"),
            ("zero_alpha", self.zero_alpha is None or 0 < self.zero_alpha < 1,
             "between 0 and 1, both excluded"),
            ("zero_min", self.zero_min >= 1, "at least 1"),
            ("zero_busy", 0 < self.zero_busy < 1, "between 0 and 1, both excluded"),
            ("spike_window", self.spike_window is None or self.spike_window >= 3, "at least 3"),
            ("spike_k", self.spike_k > 0, "above 0"),
            ("spike_floor", self.spike_floor >= 0, "at least 0"),
            ("spike_rel", self.spike_rel >= 0, "at least 0"),
            ("glitch_count", self.glitch_count is None or self.glitch_count >= 1, "at least 1"),
            ("glitch_span_s", self.glitch_span_s > 0, "above 0"),
            ("cut_count", self.cut_count >= 1, "at least 1"),
            ("clock_min_s", self.clock_min_s > 0, "above 0"),
            ("clock_ahead_s", self.clock_ahead_s >= 0, "at least 0"),
            ("clock_hold_s", self.clock_hold_s >= 0, "at least 0"),
            ("gap_grace_s", self.gap_grace_s >= 0, "at least 0"),
            ("pair_busy", self.pair_busy is None or self.pair_busy >= 1, "at least 1"),
            ("pair_alpha", 0 < self.pair_alpha < 1, "between 0 and 1, both excluded"),
            ("pair_together", self.pair_together > 0, "above 0"),
        )
        for name, ok, need in checks:
            if not ok:
                raise DetectError(f"fault settings: {name}={getattr(self, name)!r} is not {need}")

    def __getstate__(self) -> tuple[object, ...]:
        # The values in field order, as dataclasses' own __getstate__ gives them (its
        # __setstate__ loads both), in one C call instead of its `fields()` and list:
        # every snapshot of a node pickles its monitors' settings.
        return _settings_values(self)


# The float settings (by their annotations), each refused unless finite.
_FLOAT_SETTINGS = tuple(f.name for f in fields(FaultSettings) if "float" in str(f.type))
_settings_values = operator.attrgetter(*(f.name for f in fields(FaultSettings)))


_BOOL = FaultSettings(stuck_count=None, spike_window=None)
_COUNT = FaultSettings(stuck_count=None, zero_alpha=1e-9, zero_min=15, spike_window=None)
_PM = FaultSettings(stuck_count=20, stuck_min_s=300.0, spike_floor=0.002, spike_rel=0.1)
# Readings that come as events, not at an interval: no silence or clock rule.
_EVENTS = replace(_BOOL, regular=False)
# A field only some readings carry: gaps in the sequence numbers say nothing either.
_SOME = replace(_EVENTS, every_reading=False)

# Pulses a GPIO driver rejected as too short: a few within an hour are a noisy cable.
_GLITCHES = replace(_SOME, glitch_count=3, glitch_span_s=3600.0)
# The temperature and humidity an air module reports beside its measurement (an MH-Z19B's
# internal temperature, in whole degrees; a PMS5003T's): out of range and spikes only. A
# whole degree holds for hours in a steady room (the default stuck rule raised it at every
# plateau of 30 min), and the module's silence, gaps and clock are its measurement's, which
# every reading carries (as for any optional field: one SILENCE for a silent module).
_AMBIENT = replace(_SOME, spike_window=9)

# Settings per (kind, field); a field not listed uses FaultSettings(). A field listed since
# its monitors were pickled with FaultSettings() is in `_LISTED_SINCE`: they load with its own.
FAULT_SETTINGS: dict[tuple[str, str], FaultSettings] = {
    ("air.pm", "pm25"): _PM,
    ("air.pm", "pm10"): _PM,
    ("air.pm", "pm1"): _PM,
    ("air.co2", "co2"): replace(_PM, stuck_count=10),
    ("air.pm", "temperature_c"): _AMBIENT,
    ("air.pm", "humidity_pct"): _AMBIENT,
    ("air.co2", "temperature_c"): _AMBIENT,
    ("hospital.bed", "occupied"): _BOOL,
    ("hospital.bed", "fault"): replace(_SOME, cut_at=1.0),
    ("hospital.bed", "glitches"): _GLITCHES,
    # A bed mat's (edge/drivers/bed_mat): a frozen ADC or a crushed mat holds its motion at
    # exactly 0 and its mean level exactly, which a live mat does not (a lying patient
    # breathes; an empty bed's level carries the ADC's noise): the motion for 3 readings
    # over 10 min; the load for 6 over 30 min, as it is a mean of whole ADC codes, whose
    # sums two readings can share. No spike rule on the load: a patient up for a few
    # minutes is one low reading between loaded ones, a spike to the rule; the mat's pulses
    # come as `glitches` (its driver).
    ("hospital.bed", "load"): replace(_SOME, stuck_count=6, stuck_min_s=1800.0),
    ("hospital.bed", "motion"): replace(_SOME, stuck_count=3, stuck_min_s=600.0),
    ("hospital.queue", "called"): _SOME,
    # A kiosk's issues and calls (`called`): both stopping at once while busy, tickets
    # waiting; its stamps going back while the sequence numbers go up.
    ("hospital.queue", "ticket"): replace(_SOME, pair_busy=20, clock_back=True),
    ("hospital.queue", "counter"): _SOME,
    ("hospital.door", "count"): _COUNT,
    ("hospital.door", "interval_s"): _BOOL,
    ("hospital.door", "fault"): replace(_SOME, cut_at=1.0),
    ("hospital.door", "glitches"): _GLITCHES,
    ("traffic.loop", "count"): _COUNT,
    ("traffic.loop", "occupancy_pct"): replace(_BOOL, cut_at=100.0, cut_count=3),
    ("traffic.loop", "interval_s"): _BOOL,
    ("traffic.loop", "speed_kmh"): _SOME,
    ("traffic.loop", "speed_count"): _SOME,  # 0 through a quiet night is no stuck loop
    ("traffic.loop", "length_m"): _SOME,
    ("traffic.loop", "glitches"): _GLITCHES,
}

# Fields whose monitors a snapshot may hold with FaultSettings(), the settings of a field not
# listed, from before they had their own (`FaultMonitor.__setstate__`): none of what those
# monitors learnt is read otherwise, so they take the field's own on loading.
_LISTED_SINCE = frozenset({("air.pm", "temperature_c"), ("air.pm", "humidity_pct"),
                           ("air.co2", "temperature_c")})

# The span over which the busy rate of an event pair (`pair_busy`) is measured.
_PAIR_SPAN = timedelta(hours=1)
_PAIR_SPAN_US = 3_600_000_000

# Share of non-zero readings: an exponential average over about this many readings.
_ZERO_SPAN = 20
# The gaps whose largest the forward clock rule and the silence of irregular fields read.
_LONG_GAPS = 240
# The last gaps whose median is the expected interval.
_GAPS = 15
# Gaps seen before an interval is trusted (silence) or the longest gap is (clock).
_LEARN_GAPS = 10
_LEARN_LONGEST = 20
# Forward clock jumps held per monitor (FaultMonitor._hold), at most; sequence gaps too
# (FaultMonitor._hold_gap).
_HELD_MAX = 8
# Heartbeats whose lead (stamp less reception) the forward clock rule takes the largest of.
_LEADS_KEPT = 4
# Runs of numbers still missing kept per held sequence gap (`_fill`), at most.
_HOLES_MAX = 8
# A node's heartbeat interval until its heartbeats tell it (the edge agent's default
# `heartbeat_s`), and the quiet of the whole node, in heartbeat intervals, that is the node
# away for the silence rules (`FaultMonitor.tick`): one heartbeat lost (a gap of 2) and
# some transit delay is still the node's usual spacing; two lost in a row is an absence.
HEARTBEAT_DEFAULT_S = 30.0
# The gaps (cloud's clock) between the messages that brought a field new readings, whose
# median is how far apart its readings arrive (`FaultMonitor._silence_after`).
_RX_GAPS_KEPT = 9
AWAY_HEARTBEATS = 2.5
AWAY_DEFAULT_S = AWAY_HEARTBEATS * HEARTBEAT_DEFAULT_S
# A quiet of the node, in heartbeat intervals, in which a heartbeat was lost: shorter than
# `AWAY_HEARTBEATS`, but the node was not sending as usual either, so a silence seen as it
# comes back waits one tick for the data sent with its return (`FaultMonitor._excused`).
LOST_HEARTBEATS = 1.5

# A sequence gap held (`FaultMonitor._hold_gap`): the cloud's reception of the reading after
# the gap (µs), the number before the gap, the number after it, the event that reading
# raised, the runs of numbers still missing as [first, last], the late readings bordering
# them (number -> (stamp, value, reception µs); held by an older version: without the
# reception), the stamp of the reading before the gap and the interval expected then (µs).
# Pickled; held by an older version: the first five only.
_HeldGap = tuple[int, int, int, FaultEvent, list[list[int]], dict[int, tuple[int, float, int]], int,
                 int]


def _micros(ts: datetime | int) -> int:
    """Microseconds since the epoch of an aware datetime or of epoch nanoseconds (the
    rules keep their stamps so: datetimes are made only for the events)."""
    if isinstance(ts, datetime):
        if ts.tzinfo is None:
            raise DetectError(f"timestamp {ts.isoformat()} has no time zone (UTC expected)")
        return to_epoch_ns(ts) // 1000
    return int(ts) // 1000


def _stamp(us: int) -> datetime:
    """The aware UTC datetime of `_micros`."""
    return from_epoch_ns(us * 1000)


def _rx(received: datetime | int | None) -> datetime | None:
    """A reception (the cloud's clock, as `update(received=)` takes it) for `FaultEvent.received`."""
    return None if received is None else _stamp(_micros(received))


class FaultMonitor:
    """The fault rules for one field of one sensor.

    A city holds one per sensor field, so it is kept small (docs/anomaly-detection.md,
    "Memory"): its attributes are slots (an instance dict of 49 took 1.6 KB: too many for
    the keys the class's instances share); its rings of numbers are arrays, of the gaps
    (floats) or of integer stamps (`_leads`, `_rx_gaps`, `_pair`), the spike window and the
    glitches lists (a deque took 0.8 KB even empty, 8 per monitor, and a float in one 32
    bytes); a rule the field's settings leave off has None for its containers. Pickled as
    its slots' names (one tuple for all) and values (`__getstate__`); the layouts of the code
    before (by name, without what was None; the last 240 gaps whole; its instance dict,
    with deques) load and resume as they were (`__setstate__`)."""

    kind: str
    field: str
    sensor: str
    spec: FieldSpec
    settings: FaultSettings
    # Stamps are microseconds since the epoch (`_micros`), but where the ticks' clock is kept.
    _last_ts: int | None
    _last_seq: int | None
    # Gaps (s) between judged readings: how many were remembered, the newest `_GAPS` of them
    # (gap number n at n % _GAPS; their median is the expected interval), and the
    # largest of the newest `_LONG_GAPS`. That largest is kept exactly as a sliding maximum:
    # `_tops` holds the gaps of that span larger than every gap after them (so decreasing,
    # the largest first), each followed by its number in `_gap_count` (a flat list: pickled
    # without an object per pair). A regular sensor's gaps keep one to a few there, where the
    # code before pickled all 240 (`_remember_gap`).
    _gap_count: int
    _last_gaps: array[float]
    _tops: list[float]
    _longest: float
    # Arrival as the ticks see it: cloud time, not the node's stamps.
    _arrived: int | None
    _heard: datetime | None
    _now: datetime | None
    _silent: bool
    _silence_seen: bool
    _out_of_range: bool
    _run_start: int | None
    _run_value: float
    _run_count: int
    _stuck: bool
    _nonzero: float
    _seen: int
    _zero_start: int | None
    _zero_p: float
    _zero_count: int
    _zero_fired: bool
    # The spike rule's last `spike_window` values, oldest first (None: no spike rule): the
    # values given, as given (a list, not an array: an int stays an int in a detail).
    _window: list[float] | None
    _candidate: tuple[int, float, float, float] | None
    _spike_last: int | None  # the last spike's stamp (µs), raised or not
    _cut_start: int | None
    _cut_count: int
    # The glitch span's readings with glitches, as (stamp, count) (None: no glitch rule).
    _glitches: list[tuple[int, float]] | None
    _glitch_fired: bool
    # Stamps of the last hour's readings by value (0 and 1), for `pair_busy` (else None).
    _pair: tuple[array[int], array[int]] | None
    _tickets: tuple[float, float]  # the last ticket issued, the last called
    _pair_fired: bool
    # Stamp and sequence number of the reading with the highest number, for `clock_back`.
    _order: tuple[int, int] | None
    _span: float
    # The node clock's stamp (µs) at which the node's agent last started, from its heartbeat:
    # consecutive readings on either side of it are apart by the time the agent was down,
    # not by a clock set forward.
    _agent_start: int | None
    # The node clock's lead on the cloud's (µs): the stamp of a heartbeat taken in order less
    # its reception, the largest of the node's last `_LEADS_KEPT` (`node_heartbeat`: a
    # transit delay, an ingest that stamped it late, makes one look behind); None before one.
    _lead: int | None
    _leads: array[int] | None
    # Forward clock jumps judged but not raised yet (`_hold`): (the stamp before the gap, the
    # stamp after it, the cloud's reception of the reading after it (µs), the event).
    _held: list[tuple[int, int, int, FaultEvent]] | None
    # Sequence gaps judged a silence but not raised yet (`_hold_gap`, `_HeldGap`).
    _gaps_held: list[_HeldGap] | None
    # Numbers taken without judging (`unjudged`) since the last reading judged: the next one
    # judged is not consecutive to it, and only the numbers after them are missing.
    _unjudged: bool
    # When the node's agent last started by the cloud's clock (µs): the reception of the
    # heartbeat that dated the start less the agent's uptime (`node_heartbeat`). A sensor
    # cannot report before its agent started: the ticks measure its silence from then at the
    # earliest.
    _start_rx: int | None
    # The cloud's reception (µs) of the newest heartbeat of the node taken in order.
    _hb_rx: int | None
    # A silence the ticks saw right after the node came back from a quiet, left to the next
    # tick once in case the heartbeat dating a restart within that quiet is on its way.
    _deferred: bool
    # The cloud's reception (µs) of the newest message that brought the field a new reading,
    # and the last gaps between two such (`_note_reception`): a node sending its readings in
    # batches brings a fast sensor's readings a batch apart, not a reading interval.
    _rx_last: int | None
    _rx_gaps: array[int] | None
    # A reading numbered after the newest judged but stamped before it raised a clock set
    # back (`stamped_before`): the readings after it, until one is judged again, raise none.
    _set_back: bool
    # `snapshot_parts`' pickled part, until the monitor changes (not pickled)
    _cold: bytes | None

    __slots__ = (
        "_agent_start", "_arrived", "_candidate", "_cold", "_cut_count", "_cut_start", "_deferred",
        "_gap_count", "_gaps_held", "_glitch_fired", "_glitches", "_hb_rx", "_heard", "_held",
        "_last_gaps", "_last_seq", "_last_ts", "_lead", "_leads", "_longest", "_nonzero", "_now",
        "_order", "_out_of_range", "_pair", "_pair_fired", "_run_count", "_run_start", "_run_value",
        "_rx_gaps", "_rx_last", "_seen", "_set_back", "_silence_seen", "_silent", "_span",
        "_spike_last", "_start_rx", "_stuck", "_tickets", "_tops", "_unjudged", "_window",
        "_zero_count", "_zero_fired", "_zero_p", "_zero_start", "field", "kind", "sensor",
        "settings", "spec",
    )

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
        self.spec = KINDS[kind].fields[field]
        self.settings = s = settings or FAULT_SETTINGS.get((kind, field), FaultSettings())
        for name, value in _FIRST.items():
            setattr(self, name, value)
        for name in _FALSE:
            setattr(self, name, False)
        self._gap_count = 0
        self._last_gaps = array("d")
        self._tops = []
        self._longest = 0.0
        self._run_value = 0.0
        self._run_count = 0
        self._nonzero = 0.0
        self._seen = 0
        self._zero_p = 0.0
        self._zero_count = 0
        self._cut_count = 0
        self._tickets = (0.0, 0.0)
        self._containers(s)
        low, high = self.spec.low, self.spec.high
        self._span = 0.0 if low is None or high is None else high - low
        self._cold = None

    def _containers(self, s: FaultSettings) -> None:
        """The rules' containers that `s` turns on, empty; None for the others."""
        self._window = [] if s.spike_window is not None else None
        self._glitches = [] if s.glitch_count is not None else None
        self._pair = (array("q"), array("q")) if s.pair_busy is not None else None

    def __getstate__(self) -> tuple[tuple[str, ...], tuple[object, ...]]:
        # (names, values) (`compat.slot_state`): the names' tuple is one object, pickled
        # once per snapshot, and one C call takes the values, where a dict made per monitor
        # was a third of a ward's snapshot CPU. Its arrays go as their bytes and its two
        # datetimes as µs: pickle makes a reduce of each array and datetime, where bytes and
        # ints it writes as they are (a ward's fault rules pickled in a third of the CPU).
        values = list(_pickled_values(self))
        for at in _ARRAYS_AT:
            ring = values[at]
            if ring is not None:
                values[at] = ring.tobytes()
        pair = values[_PAIR_AT]
        if pair is not None:
            issues, calls = pair
            values[_PAIR_AT] = (issues.tobytes(), calls.tobytes())
        for at in _TIMES_AT:
            when = values[at]
            if when is not None:
                values[at] = _micros(when)
        return _PICKLED, tuple(values)

    def snapshot_parts(self) -> tuple[object, ...]:
        """The state as a node's snapshot holds it (`events.watch_state`; `__setstate__`
        loads it): `__getstate__`'s values pickled but for `_OUTSIDE`, the bytes kept until
        the monitor changes (`_cold`, let go by every call that changes any of them), then
        the settings, the spec and what every tick or heartbeat of the node writes (`_now`
        as µs, `_leads` as bytes). A sensor that sent nothing since the last snapshot (most
        of a ward's beds in an epoch) costs that snapshot a copy of its bytes."""
        cold = self._cold
        if cold is None:
            values = list(self.__getstate__()[1])
            for at in _OUTSIDE_AT:
                values[at] = None
            cold = self._cold = pickle.dumps(tuple(values), protocol=pickle.HIGHEST_PROTOCOL)
        now, leads = self._now, self._leads
        return (cold, self.settings, self.spec, None if now is None else _micros(now),
                self._hb_rx, self._lead, None if leads is None else leads.tobytes())

    def __setstate__(self, state: object) -> None:
        # This layout (`__getstate__`), or the code before's: by name, leaving out what
        # was None (`_FIRST`); the last 240 gaps
        # (`_long_gaps`, remembered again one by one), or before session 19 its instance
        # dict, with deques where this one keeps arrays or lists, the last 15 gaps kept apart
        # too (`_gaps`: the newest of `_long_gaps`, dropped), the containers of rules a field does not use
        # made empty, and without the attributes it kept on the class until set (their
        # first value), nor `_spike_last` from before spike episodes (None).
        self._cold = None
        if type(state) is tuple and len(state) == 7 and type(state[0]) is bytes:  # `snapshot_parts`
            values = list(pickle.loads(state[0]))
            for at, value in zip(_OUTSIDE_AT, state[1:], strict=True):
                values[at] = value
            state = (_PICKLED, tuple(values))
        got = slot_state(state)
        for name, first in _FIRST.items():
            setattr(self, name, got.get(name, first))
        for name in _TIMES:  # as µs since session 27
            when = getattr(self, name)
            if type(when) is int:
                setattr(self, name, _stamp(when))
        got = {**dict.fromkeys(_FALSE, False), **got}
        missing = [name for name in _ALWAYS if name not in got]
        if missing:  # (no snapshot the dataflow loads lacks them; a fresh monitor's values)
            try:
                fresh = FaultMonitor(got["kind"], got["field"], got.get("sensor", ""),
                                     got.get("settings"))
            except KeyError as e:
                raise DetectError(f"fault monitor state without {e.args[0]!r}") from None
            got = {**{name: getattr(fresh, name) for name in missing}, **got}
        for name in _ALWAYS:
            setattr(self, name, got[name])
        key = (self.kind, self.field)
        canonical = FAULT_SETTINGS.get(key)
        if key in _LISTED_SINCE and self.settings == FaultSettings():
            self.settings = FAULT_SETTINGS[key]
        elif canonical is not None and self.settings == canonical:
            self.settings = canonical  # one object for all, as made (pickle makes a copy)
        spec = KINDS[self.kind].fields.get(self.field) if self.kind in KINDS else None
        if spec is not None and spec == self.spec:
            self.spec = spec
        self.kind, self.field = sys.intern(self.kind), sys.intern(self.field)
        s = self.settings
        long_gaps = got.get("_long_gaps")
        if long_gaps is not None:  # the layouts before this one kept the last 240 gaps
            self._gap_count = 0
            self._last_gaps, self._tops = array("d"), []
            for gap in list(long_gaps)[-_LONG_GAPS:]:
                self._remember_gap(gap)
        window, glitches, pair = self._window, self._glitches, self._pair
        self._containers(s)
        if window and s.spike_window is not None:
            self._window = list(window)[-s.spike_window:]
        if glitches and self._glitches is not None:
            self._glitches = list(glitches)
        if pair and self._pair is not None:
            issues, calls = pair
            self._pair = (array("q", issues), array("q", calls))
        for name, code in _ARRAYS.items():  # as lists or deques before, as bytes since session 27
            ring = getattr(self, name)
            if ring is not None and type(ring) is not array:
                setattr(self, name, array(code, ring))

    # -- the public calls -------------------------------------------------------------

    def agent_started(self, at: datetime | int) -> None:
        """The node's agent (re)started at `at` (a datetime or epoch ns), by the node's clock
        (its heartbeat's stamp less its uptime). A held clock jump whose gap holds that start
        is dropped."""
        self._cold = None  # (`snapshot_parts`)
        start = self._agent_start = _micros(at)
        if self._held:
            self._held = [h for h in self._held if not h[0] < start <= h[1]]

    def node_heartbeat(self, ts: datetime | int, received: datetime | int | None = None,
                       started: datetime | int | None = None,
                       synchronised: bool | None = None) -> list[FaultEvent]:
        """A heartbeat of the node's agent, taken in order (`HeartbeatMonitor.taken`):
        stamped `ts` by the node's clock, `received` by the cloud's (datetimes or epoch ns);
        `started`: when the agent started, where the heartbeat began a run or dated it again
        (`HeartbeatMonitor.started_at`); `synchronised`: the heartbeat's word on the node's
        clock (`Heartbeat.synchronised`). Returns the held clock jumps it lets go: those of
        readings stamped at or before it (the agent that sent it was running then: a
        restart in their gap would have been told first) and those received `clock_hold_s`
        before it; a jump whose gap holds `started` is dropped instead. The node clock's
        lead is the largest of the last `_LEADS_KEPT` heartbeats' (a transit delay only makes
        one smaller). One saying the clock not synchronised shows no lead: its clock is to
        be set right (a Pi without RTC on its saved time), and the readings stamped meanwhile
        are kept out of the rules."""
        stamp = _micros(ts)
        got = None if received is None else _micros(received)
        if got is not None:
            hb_rx = self._hb_rx
            self._hb_rx = got if hb_rx is None else max(hb_rx, got)
            if started is not None:
                self._cold = None  # (`snapshot_parts` keeps `_hb_rx`, `_lead`, `_leads` out)
                # By the agent's uptime (the heartbeat's stamp less its start), which no
                # wall clock moves: the start on the cloud's clock, for the ticks.
                start_rx = got - (stamp - _micros(started))
                known = self._start_rx
                self._start_rx = start_rx if known is None else max(known, start_rx)
        if synchronised is False or got is None:
            self._lead = None if synchronised is False else 0
            self._leads = None
        else:
            leads = self._leads
            if leads is None:
                leads = self._leads = array("q")
            elif len(leads) == _LEADS_KEPT:
                del leads[0]
            leads.append(stamp - got)
            self._lead = max(leads)  # a transit delay only makes a lead smaller
        if started is not None:
            self.agent_started(started)
        events: list[FaultEvent] = []
        if self._held:
            self._cold = None
            self._release(got, stamp, events)
        if self._gaps_held and got is not None:
            self._cold = None
            self._release_gaps(got, events)
        return events

    def update(self, ts: datetime | int, value: float, seq: int | None = None,
               values: Mapping[str, float] | None = None,
               received: datetime | int | None = None) -> list[FaultEvent]:
        """Rules that fire on this reading; `values` are all the reading's fields (the
        kiosk rule needs `called`); `received`: when the cloud received it (its clock,
        as `ts`; the forward clock rule holds a jump it cannot yet tell from a restart,
        see `_hold`; None: judged at once)."""
        self._cold = None  # (`snapshot_parts`)
        if not math.isfinite(value):
            raise DetectError(f"{self.sensor}/{self.field}: value {value!r} is not finite")
        s = self.settings
        called: float | None = None
        if s.pair_busy is not None:
            called = None if values is None else values.get("called")
            if called is None:
                raise DetectError(f"{self.sensor}/{self.field}: the kiosk rule needs the "
                                  "reading's `called` (pass the reading's values)")
        events: list[FaultEvent] = []
        if (type(ts) is int and type(seq) is int and type(received) is int
                and not self._held and not self._gaps_held and not self._unjudged
                and not self._silence_seen):
            # The common case, as `_arrival` takes it but without its calls: the next
            # number, stamped after the reading before, nothing held.
            at = ts // 1000
            last_seq, last_ts = self._last_seq, self._last_ts
            if last_seq is not None and seq == last_seq + 1 and last_ts is not None \
                    and at > last_ts:
                self._last_seq = seq
                self._arrived = at
                got = received // 1000
                rx = self._rx_last
                if rx is None or got > rx:
                    self._note_reception(got)
                self._last_ts = at
                self._silent = False
                start = self._agent_start
                if start is None or not last_ts < start <= at:
                    gap = (at - last_ts) / 1_000_000  # as `_forward`
                    n = self._gap_count
                    if n < _LEARN_LONGEST or not s.regular \
                            or gap <= self._longest + s.clock_min_s:
                        # `_remember_gap`, inlined
                        self._gap_count = n + 1
                        if n < _GAPS:
                            self._last_gaps.append(gap)
                        else:
                            self._last_gaps[n % _GAPS] = gap
                        tops = self._tops
                        if tops and tops[-2] == gap:  # a regular sensor's usual gap
                            tops[-1] = n
                        else:
                            while tops and tops[-2] <= gap:
                                del tops[-2:]
                            tops += (gap, n)
                        if tops[1] <= n - _LONG_GAPS:
                            del tops[:2]
                        self._longest = tops[0]
                    else:
                        self._forward(last_ts, at, seq, value, got, events)
            else:
                self._arrival(at, seq, value, events, received)
        else:
            at = ts // 1000 if type(ts) is int else _micros(ts)
            if received is not None:
                if self._held:
                    self._release(_micros(received), None, events)
                if self._gaps_held:
                    self._release_gaps(_micros(received), events)
            self._arrival(at, seq, value, events, received)
        if s.clock_back:
            self._clock_back(at, seq, value, events, received)
        # Each rule only where its settings turn it on (most fields have a few).
        spec = self.spec
        low, high = spec.low, spec.high
        if (
            self._out_of_range
            or (low is not None and value < low)
            or (high is not None and value > high)
        ):
            self._range(at, value, events)
        if s.stuck_count is not None:
            self._stuck_rule(at, value, events)
        if s.zero_alpha is not None:
            self._zero_rule(at, value, events)
        if s.spike_window is not None and not self._out_of_range:  # (no measurement)
            self._spike(at, value, events)
        if s.glitch_count is not None:
            self._glitch_rule(at, value, events)
        if s.cut_at is not None:
            self._cut(at, value, events)
        if called is not None:
            self._pair_note(at, value, called != 0)
        return events

    def unjudged(self, seq: int | None, received: datetime | int | None = None
                 ) -> list[FaultEvent]:
        """A reading the dataflow took but keeps out of the rules (flagged `clock_unsynced`:
        its stamp is on a clock about to be set right; or `warmup`: its value is the module's
        preheat), numbered `seq` and received at `received` (the cloud's clock). It arrived:
        the ticks see data coming (by its reception), held events are let go as by any
        reading of the field received then, and its number is not missing: a gap in the
        numbers counts only the numbers never received (a held gap it falls in is filled).
        Its stamp and value judge nothing: the readings judged on either side of it are not
        consecutive for the forward clock rule (the boot step that synchronised the clock
        lies between them), and a run of numbers never received that it ends is not raised
        (its stamp cannot place the event)."""
        self._cold = None  # (`snapshot_parts`)
        events: list[FaultEvent] = []
        if received is not None:
            got = _micros(received)
            if self._held:
                self._release(got, None, events)
            if self._gaps_held:
                self._release_gaps(got, events)
            arrived = self._arrived
            self._arrived = got if arrived is None else max(arrived, got)
            self._silent = False
            self._note_reception(got)
        if seq is None:
            return events
        last = self._last_seq
        if last is not None and seq <= last:
            if self._gaps_held:
                self._fill(seq, None, math.nan, events)
            return events
        self._last_seq = seq
        self._unjudged = True
        return events

    def restarted(self) -> tuple[FaultMonitor, list[FaultEvent]]:
        """The sensor's numbering started again (the edge lost its count, or named a new
        numbering): a fresh monitor for the new numbering, as what the rules learnt of the
        numbers and their order no longer holds, and the events of what this one held.
        The fresh one keeps what is the node's, not the numbering's: when its agent started,
        its clock's lead, and the forward clock jumps held until a heartbeat tells them from
        a restart (a heartbeat or a later reading decides them as before). The sequence
        gaps held are raised (returned), as at the end of their grace: the readings missing
        from them are of the numbering before, which the dataflow keeps out of the rules
        from now on, so none can fill them."""
        self._cold = None  # (`snapshot_parts`)
        fresh = FaultMonitor(self.kind, self.field, self.sensor, self.settings)
        for name in ("_agent_start", "_lead", "_leads", "_held", "_start_rx", "_hb_rx",
                     "_rx_last", "_rx_gaps"):
            setattr(fresh, name, getattr(self, name))
        events = [ev for gap in self._gaps_held or () for ev in self._gap_events(gap)]
        self._gaps_held = None
        return fresh, events

    def stamped_before(self, ts: datetime | int, value: float, seq: int | None = None,
                       received: datetime | int | None = None) -> list[FaultEvent]:
        """A reading stamped before the newest one given to `update`, which the dataflow
        leaves out of the rules, received at `received` (the cloud's clock). Numbered before
        the newest (late: a swapped message, a duplicate), its number fills a held sequence
        gap (`_hold_gap`). Numbered after it, on a field with `regular` readings, the node's
        clock was set back (or a forward step ended): raised at once (`_set_back`, once until
        a reading is judged again), and the reading is an arrival the rules do not judge
        (`unjudged`): the sensor is not silent, and its number is not missing when the
        stamps catch up. Only `clock_back` judges the others (event sensors)."""
        self._cold = None  # (`snapshot_parts`)
        events: list[FaultEvent] = []
        at = _micros(ts)
        s = self.settings
        last_seq, last_ts = self._last_seq, self._last_ts
        if (s.regular and not s.clock_back and seq is not None and last_seq is not None
                and seq > last_seq and last_ts is not None and at < last_ts):
            events += self.unjudged(seq, received)
            if not self._set_back:
                self._set_back = True
                stamp = _stamp(at)
                events.append(FaultEvent(
                    self.sensor, self.field, FaultType.CLOCK_JUMP, stamp, stamp, value,
                    f"stamped {(last_ts - at) / 1_000_000:g} s before the reading before it "
                    f"(seq {last_seq} -> {seq}): clock set back", seq, _rx(received)))
            return events
        if seq is not None and self._gaps_held:
            self._fill(seq, at, value, events, received)
        if s.clock_back:
            self._clock_back(at, seq, value, events, received)
        return events

    def heartbeat(self, ts: datetime | int, seq: int | None = None) -> list[FaultEvent]:
        """A sign of life without a value: counts for the silence and clock rules only."""
        self._cold = None  # (`snapshot_parts`)
        events: list[FaultEvent] = []
        self._arrival(_micros(ts), seq, None, events)
        return events

    def tick(self, now: datetime, quiets: Sequence[tuple[int, int]] = (),
             away_s: float = AWAY_DEFAULT_S) -> list[FaultEvent]:
        """Silence seen at `now` (aware UTC), reported once until data comes back.
        `quiets`: the node's recent quiets, (from, to) in µs of the cloud's clock: the
        receptions of two consecutive messages of the node (data or heartbeat) between
        which it sent nothing (`NodeState`), each longer than every later one. `away_s`:
        the least quiet that is the node away rather than its usual spacing of messages
        (`AWAY_HEARTBEATS` x its heartbeat interval: `HeartbeatMonitor.heartbeat_interval`).

        A sensor cannot report before its agent started, nor while its node is silent as a
        whole (the node's heartbeat alert says that): its silence is measured from the
        agent's last start (`node_heartbeat`) if later than its last arrival, and from the
        node's return after a quiet at least as long as the silence rule's limit and as
        `away_s` (a node whose only other messages are its heartbeats is quiet a heartbeat
        interval between each, as long as a 10-s sensor's limit: no absence). A silence
        seen within `clock_hold_s` of the node's return from a quiet longer than an interval,
        which a restart within that quiet would excuse, waits one tick if the heartbeat of
        that return (sent before its data) is not in: with several ingests it can follow."""
        if now.tzinfo is None:
            raise DetectError("tick() needs an aware UTC datetime")
        # (`snapshot_parts` keeps `_now` out; the rest of a tick's writes let `_cold` go)
        previous, self._now = self._now, now
        if self._arrived is not None:
            self._cold = None
            # The data came in after the previous tick and by this one.
            arrived = _stamp(self._arrived)
            heard = arrived if previous is None else max(arrived, previous)
            self._heard = min(heard, now)
            self._arrived = None
            self._deferred = False
        if self.settings.pair_busy is not None:
            self._cold = None
            return self._pair_rule(now, quiets, away_s)
        s = self.settings
        interval_s = s.expected_interval_s
        if self._silent or self._heard is None or not s.regular or (
                interval_s is None and self._gap_count < _LEARN_GAPS):  # no interval yet
            return []
        # A floor of `_silence_after`'s limit, without its medians: most ticks find the
        # sensor heard from within it, and nothing else to do.
        floor = (timedelta(seconds=1.5 * self._longest) if interval_s is None
                 else timedelta(seconds=interval_s) * s.silence_intervals)
        if now - self._heard < floor:
            return []
        self._cold = None  # (the silence rule may write)
        interval = self.expected_interval()
        assert interval is not None
        limit = self._silence_after(interval)
        if now - self._heard >= limit and self._excused(now, limit, interval, quiets, away_s):
            return []
        if now - self._heard >= limit:
            self._silent = self._silence_seen = True
            self._deferred = False
            since = _stamp(self._last_ts).isoformat() if self._last_ts is not None else "?"
            return [
                self._event(
                    FaultType.SILENCE,
                    self._heard + interval,
                    now,
                    None,
                    f"no data since {since}",
                )
            ]
        return []

    def _excused(self, now: datetime, limit: timedelta, interval: timedelta,
                 quiets: Sequence[tuple[int, int]], away_s: float = AWAY_DEFAULT_S) -> bool:
        """Whether a silence the tick sees (`now` - `_heard` >= `limit`) is the node's or its
        agent's absence (`tick`): `_heard` moved to the agent's last start or the node's
        return after a quiet of `limit` or more and `away_s` or more, if later; or the tick
        to wait for the heartbeat of a fresh return, or for the data of one after a quiet
        with a heartbeat lost (`LOST_HEARTBEATS`: a node with long heartbeats back from an
        outage, its heartbeat read before its data). False: the silence is the sensor's."""
        heard = _micros(self._heard) if self._heard is not None else 0
        at = _micros(now)
        span = round(limit.total_seconds() * 1e6)
        # A quiet within the node's usual spacing (its heartbeats') is no absence, however
        # short the sensor's limit: else every gap between heartbeats excuses a dead sensor.
        away = max(span, round(away_s * 1e6))
        floor = self._start_rx
        for q0, q1 in quiets:
            if q1 - q0 >= away and q1 > heard and (floor is None or q1 > floor):
                floor = q1  # the node away for the sensor's limit: not the sensor's silence
        if floor is not None and floor > heard:
            heard = min(floor, at)
            self._heard = _stamp(heard)
            if at - heard < span:
                self._deferred = False  # a silence seen anew may wait again
                return True
        if self._deferred:
            return False
        step = round(interval.total_seconds() * 1e6)
        hb_rx, hold = self._hb_rx, self.settings.clock_hold_s * 1e6
        lost = round(LOST_HEARTBEATS * away_s / AWAY_HEARTBEATS * 1e6)
        for q0, q1 in quiets:
            if (q1 - q0 >= step and heard < q1 and at - q1 < min(hold, span)
                    and (hb_rx is None or hb_rx < q1 or q1 - q0 >= lost)):
                self._deferred = True  # a restart within the quiet would excuse it: one tick
                return True
        return False

    def _note_reception(self, got: int) -> None:
        """A message received at `got` (µs, the cloud's clock) brought the field a new
        reading: the gap since the one before (readings of one message, none) is kept."""
        last = self._rx_last
        if last is not None and got <= last:
            return
        self._rx_last = got
        if last is None:
            return
        gaps = self._rx_gaps
        if gaps is None:
            gaps = self._rx_gaps = array("q")
        elif len(gaps) == _RX_GAPS_KEPT:
            del gaps[0]
        gaps.append(got - last)

    def _silence_after(self, interval: timedelta) -> timedelta:
        limit = interval * self.settings.silence_intervals
        gaps = self._rx_gaps
        if gaps:
            # The silence is judged on the cloud's clock: `silence_intervals` of the gaps
            # at which the readings arrive (a node sending them in batches), when longer.
            ordered = sorted(gaps)
            arrive = timedelta(microseconds=ordered[len(ordered) // 2])
            limit = max(limit, arrive * self.settings.silence_intervals)
        if self.settings.expected_interval_s is None:
            # Irregular reports (a bed pad's changes between heartbeats) shorten the
            # median gap: never less than 1.5 x the longest gap seen.
            limit = max(limit, timedelta(seconds=1.5 * self._longest))
        return limit

    def expected_interval(self) -> timedelta | None:
        if self.settings.expected_interval_s is not None:
            return timedelta(seconds=self.settings.expected_interval_s)
        if self._gap_count < _LEARN_GAPS:
            return None
        gaps = sorted(self._last_gaps)
        return timedelta(seconds=gaps[len(gaps) // 2])

    # -- the rules ------------------------------------------------------------------
    # Each appends what fired to `events`; stamps in microseconds (`_micros`).

    def _event(
        self, fault: FaultType, start: datetime, at: datetime, value: float | None, detail: str,
        received: datetime | int | None = None
    ) -> FaultEvent:
        return FaultEvent(self.sensor, self.field, fault, start, at, value, detail,
                          received=_rx(received))

    def _arrival(self, at: int, seq: int | None, value: float | None,
                 events: list[FaultEvent], received: datetime | int | None = None) -> None:
        previous_seq, last_ts = self._last_seq, self._last_ts
        if seq is not None:
            if previous_seq is not None and seq <= previous_seq:
                if self._gaps_held and value is not None:
                    self._fill(seq, at, value, events, received)
                return  # a duplicate or a late reading: nothing new about liveness
            self._last_seq = seq
        if last_ts is not None and at <= last_ts:
            return
        self._arrived = at
        if received is not None:
            self._note_reception(_micros(received))
        if self._set_back:
            self._set_back = False  # the stamps caught up: the episode is over
        silence_seen, self._silence_seen = self._silence_seen, False
        self._last_ts = at
        self._silent = False
        unjudged = self._unjudged
        if unjudged:
            self._unjudged = False
        if last_ts is None:
            return
        gap = (at - last_ts) / 1_000_000  # as timedelta.total_seconds() gives it
        if seq is None or previous_seq is None:
            if not unjudged:
                self._remember_gap(gap)
            return
        missing = seq - previous_seq - 1
        if unjudged:
            if not silence_seen:
                self._after_unjudged(at, seq, previous_seq, missing, value, received, events)
            return
        if missing == 0:
            # A forward jump of the clock: consecutive readings much further apart than
            # any gap seen (unless that gap is the silence already reported).
            if silence_seen:
                return
            self._forward(last_ts, at, seq, value, None if received is None else _micros(received),
                          events)
            return
        if not self.settings.every_reading or missing < self.settings.silence_intervals:
            return  # (before the interval, which sorts the last gaps)
        interval = self.expected_interval()
        if interval is None:
            return
        step = interval.total_seconds()
        if self.settings.regular and gap < (missing + 1) * step / 2:
            stamp = _stamp(at)
            events.append(self._event(
                FaultType.CLOCK_JUMP, stamp, stamp, value,
                f"{missing} readings skipped but the stamps moved {gap:g} s: clock set back",
                received))
            return
        if silence_seen:
            return
        event = self._event(
            FaultType.SILENCE, _stamp(last_ts) + interval, _stamp(at), value,
            f"{missing} readings missing (seq {previous_seq} -> {seq})")
        if received is None:
            events.append(event)
        else:
            self._hold_gap(_micros(received), previous_seq, seq, replace(event, seq=seq), last_ts,
                           round(step * 1e6), events)

    def _after_unjudged(self, at: int, seq: int, previous_seq: int, missing: int,
                        value: float | None, received: datetime | int | None,
                        events: list[FaultEvent]) -> None:
        """The gap rule on a reading judged after readings taken without judging (`unjudged`),
        the last numbered `previous_seq`: `missing` numbers never received in between. The
        reading before them has no stamp to go by, so the run is placed back from this
        reading (the first missing one due `missing` intervals before it) and not judged for
        a clock set back; no forward clock rule (the readings are not consecutive)."""
        s = self.settings
        if not s.every_reading or missing < s.silence_intervals:
            return
        interval = self.expected_interval()
        if interval is None:
            return
        step = round(interval.total_seconds() * 1e6)
        prior = at - (missing + 1) * step  # where the reading before the run would stand
        event = self._event(
            FaultType.SILENCE, _stamp(prior + step), _stamp(at), value,
            f"{missing} readings missing (seq {previous_seq} -> {seq})")
        if received is None:
            events.append(event)
        else:
            self._hold_gap(_micros(received), previous_seq, seq, replace(event, seq=seq), prior,
                           step, events)

    def _forward(self, last_ts: int, at: int, seq: int | None, value: float | None,
                 got: int | None, events: list[FaultEvent]) -> None:
        """The forward clock rule on two consecutive readings stamped `last_ts` and `at`, the
        second numbered `seq`, valued `value` and received at `got` (the cloud's clock, µs;
        None: judged at once)."""
        start = self._agent_start
        if start is not None and last_ts < start <= at:
            return  # the agent was down in between: a restart, not a clock jump
        gap = (at - last_ts) / 1_000_000  # as timedelta.total_seconds() gives it
        s = self.settings
        if self._gap_count < _LEARN_LONGEST or not s.regular \
                or gap <= self._longest + s.clock_min_s:
            self._remember_gap(gap)
            return
        stamp = _stamp(at)
        event = self._event(
            FaultType.CLOCK_JUMP, stamp, stamp, value,
            f"stamps moved {gap:g} s between consecutive readings (at most "
            f"{self._longest:g} s before): clock set forward")
        if got is not None:
            event = replace(event, received=_stamp(got))
        if got is None or at - got - (self._lead or 0) > s.clock_ahead_s * 1e6:
            events.append(event)  # stamped ahead of the cloud's clock: no restart does that
        else:
            self._hold(last_ts, at, got, replace(event, seq=seq), events)

    def _hold(self, last_ts: int, at: int, received: int, event: FaultEvent,
              events: list[FaultEvent]) -> None:
        """A forward jump whose reading is not stamped ahead of the cloud's clock (more than
        `clock_ahead_s` beyond the lead the node's heartbeats show) may be an agent restart
        whose first heartbeat has not reached the node's state yet: with several ingests
        the merged journals can give it the run's first data first. Held until a heartbeat
        tells (`node_heartbeat`: dropped if it dates a start within the gap, let go
        otherwise) or a reading received `clock_hold_s` later comes. At most `_HELD_MAX`
        are held, the oldest let go first."""
        held = self._held
        if held is None:
            held = self._held = []
        held.append((last_ts, at, received, event))
        while len(held) > _HELD_MAX:
            events.append(held.pop(0)[3])

    def _release(self, now: int | None, stamp: int | None, events: list[FaultEvent]) -> None:
        """Lets go (appends to `events`) the held jumps received `clock_hold_s` before the
        cloud's `now`, and those of readings stamped at or before `stamp` (node clock)."""
        hold = self.settings.clock_hold_s * 1e6
        kept: list[tuple[int, int, int, FaultEvent]] = []
        for h in self._held or ():
            if (now is not None and now >= h[2] + hold) or (stamp is not None and stamp >= h[1]):
                events.append(h[3])
            else:
                kept.append(h)
        self._held = kept

    def _hold_gap(self, received: int, previous_seq: int, seq: int, event: FaultEvent,
                  last_ts: int, interval: int, events: list[FaultEvent]) -> None:
        """A jump in the sequence numbers may be two messages of the node swapped on their
        way (two ingests stamp on receipt, and the processor reads their journals merged by
        those stamps): the missing numbers can still come, stamped before the newest reading
        (`stamped_before`). Held until a reading of the field or a heartbeat of the node
        received `gap_grace_s` later (`_release_gaps`); dropped if the numbers that came
        leave no run of `silence_intervals` missing (`_fill`). At most `_HELD_MAX` are held,
        the oldest raised first."""
        held = self._gaps_held
        if held is None:
            held = self._gaps_held = []
        held.append((received, previous_seq, seq, event, [[previous_seq + 1, seq - 1]], {},
                     last_ts, interval))
        while len(held) > _HELD_MAX:
            events += self._gap_events(held.pop(0))

    def _fill(self, seq: int, at: int | None, value: float, events: list[FaultEvent],
              received: datetime | int | None = None) -> None:
        """A reading numbered `seq`, stamped `at` (None: taken without judging, `unjudged`:
        its number fills, its stamp and value are not kept), received at `received` (None:
        as the gap), came late: its number is no longer missing
        from the held gap it falls in (if stamped before the reading after the gap), which
        is dropped when no run of `silence_intervals` numbers is left missing and the reading
        before the one after the gap has come (raised at once
        instead when its runs would be more than `_HOLES_MAX`). Its stamp and value are kept
        while a run still missing borders it: each run is raised as the reading after it
        would have raised it, had the readings come in order. The one just before the
        reading after the gap gets that reading judged by the forward clock rule, as it
        would have been (two consecutive readings)."""
        held = self._gaps_held
        if not held:
            return
        for k, gap in enumerate(held):
            got, before, after, event, holes, came, _, _ = gap = _upgraded(gap)
            if not before < seq < after or (at is not None and at >= _micros(event.detected_at)):
                continue
            held[k] = gap
            for i, (first, last) in enumerate(holes):
                if first <= seq <= last:
                    parts = [[a, b] for a, b in ((first, seq - 1), (seq + 1, last)) if a <= b]
                    holes[i:i + 1] = parts
                    break
            else:
                return  # come already (a duplicate)
            if at is not None:
                came[seq] = (at, value, got if received is None else _micros(received))
            for kept in [n for n in came if not any(a - 1 <= n <= b + 1 for a, b in holes)]:
                del came[kept]
            if seq == after - 1 and at is not None and event.value is not None:
                jumped: list[FaultEvent] = []
                self._forward(at, _micros(event.detected_at), after, event.value, got, jumped)
                events += [ev if ev.seq is not None else replace(ev, seq=after) for ev in jumped]
            if not holes or (max(b - a + 1 for a, b in holes) < self.settings.silence_intervals
                             and holes[-1][1] < after - 1):
                del held[k]  # (kept while the reading before the one after it may still come)
            elif len(holes) > _HOLES_MAX:
                del held[k]
                # too scattered to follow: raised now, as before the hold
                events += self._gap_events(gap)
            return

    def _release_gaps(self, now: int, events: list[FaultEvent]) -> None:
        """Raises (appends to `events`) the held sequence gaps received `gap_grace_s` before
        the cloud's `now`, with the numbers still missing."""
        grace = self.settings.gap_grace_s * 1e6
        kept: list[_HeldGap] = []
        for h in self._gaps_held or ():
            if now >= h[0] + grace:
                events += self._gap_events(h)
            else:
                kept.append(h)
        self._gaps_held = kept

    def _gap_events(self, gap: _HeldGap) -> list[FaultEvent]:
        """The events of a held sequence gap let go: each run of at least `silence_intervals`
        numbers still missing, as the reading after it would have raised it had the readings
        come in order (a SILENCE from one interval after the reading before it, on the
        reading after it; a clock set back where their stamps moved less than half of what
        the run takes). A run ending at a reading taken without judging (`unjudged`) is not
        raised (its stamp cannot place it); one after such a reading is placed back from the
        reading after it, as `_after_unjudged` places it. Each carries the reception of the
        reading it is raised on (`FaultEvent.received`), whichever message lets it go."""
        received, before, after, event, holes, came, last_ts, interval = _upgraded(gap)
        out: list[FaultEvent] = []
        for first, last in holes:
            missing = last - first + 1
            if missing < self.settings.silence_intervals:
                continue
            if first - 1 == before and last + 1 == after:
                # nothing came: the event as judged on its reading (and received with it)
                out.append(event if event.received is not None
                           else replace(event, received=_stamp(received)))
                continue
            if last + 1 == after:
                at, value, got = _micros(event.detected_at), event.value, received
            elif last + 1 in came:
                at, value, *rest = came[last + 1]
                got = rest[0] if rest else received  # (kept since late readings' receptions are)
            else:
                continue  # ends at a reading not judged
            if first - 1 == before:
                prior = last_ts
            elif first - 1 in came:
                prior = came[first - 1][0]
            else:
                prior = at - (missing + 1) * interval  # after a reading not judged
            stamp = _stamp(at)
            if self.settings.regular and at - prior < (missing + 1) * interval / 2:
                out.append(FaultEvent(
                    self.sensor, self.field, FaultType.CLOCK_JUMP, stamp, stamp, value,
                    f"{missing} readings skipped but the stamps moved {(at - prior) / 1e6:g} s: "
                    "clock set back", last + 1, _stamp(got)))
            else:
                out.append(FaultEvent(
                    self.sensor, self.field, FaultType.SILENCE,
                    _stamp(prior) + timedelta(microseconds=interval), stamp, value,
                    f"{missing} readings missing (seq {first - 1} -> {last + 1})", last + 1,
                    _stamp(got)))
        return out

    def _remember_gap(self, gap: float) -> None:
        """Remembers the gap after the others: one of the last `_GAPS`, and `_longest` the
        largest of the last `_LONG_GAPS` (gaps are positive: a reading stamped at or before
        the one judged before it is not judged)."""
        n = self._gap_count
        self._gap_count = n + 1
        if n < _GAPS:
            self._last_gaps.append(gap)
        else:  # a ring: gap number n at n % _GAPS
            self._last_gaps[n % _GAPS] = gap
        tops = self._tops
        while tops and tops[-2] <= gap:  # never the largest again while this one is kept
            del tops[-2:]
        tops += (gap, n)
        if tops[1] <= n - _LONG_GAPS:  # the largest is older than the span: it leaves
            del tops[:2]
        self._longest = tops[0]

    def _range(self, at: int, value: float, events: list[FaultEvent]) -> None:
        low, high = self.spec.low, self.spec.high
        outside = (low is not None and value < low) or (high is not None and value > high)
        fired = outside and not self._out_of_range
        self._out_of_range = outside
        if fired:
            stamp = _stamp(at)
            events.append(self._event(
                FaultType.OUT_OF_RANGE, stamp, stamp, value, f"{value} outside [{low}, {high}]"))

    def _stuck_rule(self, at: int, value: float, events: list[FaultEvent]) -> None:
        s = self.settings
        start = self._run_start
        if start is None or abs(value - self._run_value) > s.stuck_tolerance:
            self._run_start, self._run_value, self._run_count = at, value, 1
            self._stuck = False
            return
        self._run_count = count = self._run_count + 1
        if (
            not self._stuck
            and s.stuck_count is not None
            and count >= s.stuck_count
            and (at - start) / 1_000_000 >= s.stuck_min_s
        ):
            self._stuck = True
            detail = f"{count} readings at {self._run_value}"
            if full_scale(self.kind, self.field, self._run_value):
                detail += (": the module's full scale, so saturated (what it measures above "
                           "its range) as likely as stuck")
            events.append(self._event(FaultType.STUCK, _stamp(start), _stamp(at), value, detail))

    def _zero_rule(self, at: int, value: float, events: list[FaultEvent]) -> None:
        s = self.settings
        if s.zero_alpha is None:
            return
        if value != 0:
            self._zero_start, self._zero_count, self._zero_fired = None, 0, False
        else:
            if self._zero_start is None:
                self._zero_start, self._zero_p = at, self._nonzero
            self._zero_count += 1
            p = min(self._zero_p, 0.95)
            if (
                not self._zero_fired
                and self._seen >= 3 * _ZERO_SPAN
                and self._zero_count >= s.zero_min
                and p >= s.zero_busy
                and self._zero_count * math.log1p(-p) < math.log(s.zero_alpha)
            ):
                self._zero_fired = True
                events.append(self._event(
                    FaultType.STUCK, _stamp(self._zero_start), _stamp(at), value,
                    f"{self._zero_count} zeros in a row where {p:.0%} of readings were not 0"))
        self._seen += 1
        seen = self._seen
        weight = 1 / (seen if seen < _ZERO_SPAN else _ZERO_SPAN)  # 1 / min(seen, _ZERO_SPAN)
        self._nonzero += weight * ((value != 0) - self._nonzero)

    def _spike(self, at: int, value: float, events: list[FaultEvent]) -> None:
        s = self.settings
        candidate = self._candidate
        window, size = self._window, s.spike_window
        if window is None or size is None:
            return
        if candidate is not None:
            self._candidate = None
            start, spike_value, median, distance = candidate
            if abs(value - median) <= distance / 2:
                last, self._spike_last = self._spike_last, start
                if last is None or start - last > SPIKE_REARM_US:  # once per episode
                    events.append(self._event(
                        FaultType.SPIKE, _stamp(start), _stamp(at), spike_value,
                        f"{spike_value} against a median of {median}"))
            else:
                window.append(spike_value)  # a level change, not a spike
                if len(window) > size:
                    del window[0]
        if len(window) == size:
            ordered = sorted(window)
            median = ordered[len(ordered) // 2]
            distance = abs(value - median)
            span = self._span
            floor = s.spike_floor * span if span else 0.0
            # max(floor, s.spike_rel * abs(median), 1e-12), by comparisons: the same float
            # as no operand is NaN (all >= 0). FaultSettings guarantees it: spike_floor and
            # spike_rel finite and >= 0 (a product may overflow to inf, never inf * 0), the
            # span a finite contract range, the values finite (`update`).
            least = s.spike_rel * abs(median)
            if least < floor:
                least = floor
            if least < 1e-12:
                least = 1e-12
            # The MAD can only raise the scale above `least`: not needed when the value
            # is within spike_k of that.
            if distance > s.spike_k * least:
                mad = sorted([abs(v - median) for v in window])[len(window) // 2]
                scale = max(1.4826 * mad, floor, s.spike_rel * abs(median), 1e-12)
                if distance > s.spike_k * scale:
                    self._candidate = (at, value, median, distance)
                    return
        window.append(value)
        if len(window) > size:
            del window[0]

    def _glitch_rule(self, at: int, value: float, events: list[FaultEvent]) -> None:
        s = self.settings
        if s.glitch_count is None:
            return
        recent = self._glitches
        if recent is None:
            return
        while recent and (at - recent[0][0]) / 1_000_000 > s.glitch_span_s:
            del recent[0]
        if not recent:
            self._glitch_fired = False
        if value <= 0:
            return
        recent.append((at, value))
        total = sum(n for _, n in recent)
        if self._glitch_fired or total < s.glitch_count:
            return
        self._glitch_fired = True
        events.append(self._event(
            FaultType.SPIKE, _stamp(recent[0][0]), _stamp(at), value,
            f"{total:g} pulses too short to be real within {s.glitch_span_s / 60:g} min"))

    def _clock_back(self, at: int, seq: int | None, value: float, events: list[FaultEvent],
                    received: datetime | int | None = None) -> None:
        """Stamps going back while the sequence numbers go up (events come in time order);
        `received`: the reading's reception."""
        if seq is None:
            return
        order = self._order
        if order is None or seq > order[1]:
            self._order = (at, seq)
            if order is not None and at < order[0]:
                back = (order[0] - at) / 1_000_000
                stamp = _stamp(at)
                events.append(self._event(
                    FaultType.CLOCK_JUMP, stamp, stamp, value,
                    f"stamped {back:g} s before the reading before it (seq {order[1]} -> "
                    f"{seq}): clock set back", received))
        elif at > order[0] and (self._last_ts is None or at > self._last_ts):
            # Lower numbers stamped after everything seen: the numbering restarted (the
            # edge lost its count). A late reading is stamped before the newest seen.
            self._order = (at, seq)

    def _pair_note(self, at: int, value: float, called: bool) -> None:
        """A kiosk's ticket numbers: the last issued (tickets are numbered in order,
        from 1 again when the numbering restarts) and the last called."""
        top, last_called = self._tickets
        if called:
            last_called = value
        else:
            top = value
        self._tickets = (top, last_called)
        pair = self._pair
        if pair is None:
            return
        pair[int(called)].append(at)
        for kept in pair:
            old = 0
            while old < len(kept) and at - kept[old] > _PAIR_SPAN_US:
                old += 1
            if old:
                del kept[:old]
        self._pair_fired = False

    def _pair_rule(self, now: datetime, quiets: Sequence[tuple[int, int]] = (),
                   away_s: float = AWAY_DEFAULT_S) -> list[FaultEvent]:
        """Both kinds of event (a kiosk's issues and calls) stopped at the same moment
        while both were busy and tickets were waiting; judged on arrival, like SILENCE.
        A closing kiosk stops issuing before its counters stop calling, or its last
        ticket is called; a lunch break stops the calls only. As SILENCE (`tick`), the
        quiet is measured from the agent's last start and from the node's return after a
        quiet of the whole node at least the improbable time, if later than the last
        event; a silence seen right after a return waits a tick for its heartbeat."""
        s = self.settings
        assert s.pair_busy is not None
        if self._pair_fired or self._heard is None:
            return []
        if self._pair is None:
            return []
        issues, calls = self._pair
        if len(issues) < s.pair_busy or len(calls) < s.pair_busy:
            return []
        span = _PAIR_SPAN.total_seconds()
        rates = (len(issues) / span, len(calls) / span)
        apart = abs((issues[-1] - calls[-1]) / 1_000_000)
        if min(rates) * apart > s.pair_together:
            return []  # one stream had stopped well before the other: a closing
        top, called = self._tickets
        if top <= called:
            return []  # nobody waiting: the last ticket of the day may have been called
        quiet = (now - self._heard).total_seconds()
        if quiet > span:
            return []  # the rates of an hour ago say nothing about the silence now
        rate = sum(rates)
        if math.exp(-rate * quiet) >= s.pair_alpha:
            return []
        # The quiet the rates make improbable (exp(-rate * limit) = pair_alpha): the node
        # silent as a whole that long, or its agent started since, is no kiosk's silence.
        limit = timedelta(seconds=-math.log(s.pair_alpha) / rate)
        if self._excused(now, limit, timedelta(seconds=1.0 / rate), quiets, away_s):
            return []
        self._pair_fired = True
        self._deferred = False
        return [self._event(
            FaultType.SILENCE, self._heard, now, None,
            f"no issue nor call since {_stamp(max(issues[-1], calls[-1])).isoformat()} with "
            f"{top - called:g} waiting; {len(issues)} issues and {len(calls)} calls in "
            "the hour before")]

    def _cut(self, at: int, value: float, events: list[FaultEvent]) -> None:
        s = self.settings
        if s.cut_at is None:
            return
        if value < s.cut_at:
            self._cut_start, self._cut_count = None, 0
            return
        if self._cut_start is None:
            self._cut_start = at
        self._cut_count += 1
        if self._cut_count != s.cut_count:
            return
        events.append(self._event(
            FaultType.CUT_CABLE, _stamp(self._cut_start), _stamp(at), value,
            f"{self._cut_count} readings at {value:g}: wiring cut"))


# A monitor's attributes that start None (`FaultMonitor.__init__`): pickled only once they
# are not (`__getstate__`; the state-version guard still sees their type then), None where a
# state lacks them. Its flags start False: the code before kept some on the class until set,
# they load False (`_FALSE`).
_FIRST: dict[str, object] = dict.fromkeys((
    "_last_ts", "_last_seq", "_arrived", "_heard", "_now", "_run_start", "_zero_start", "_window",
    "_candidate", "_spike_last", "_cut_start", "_glitches", "_pair", "_order", "_agent_start",
    "_lead", "_leads", "_held", "_gaps_held", "_start_rx", "_hb_rx", "_rx_last", "_rx_gaps"))
_FALSE = ("_silent", "_silence_seen", "_out_of_range", "_stuck", "_zero_fired", "_glitch_fired",
          "_pair_fired", "_unjudged", "_deferred", "_set_back")
# The others, always set.
_ALWAYS = tuple(name for name in FaultMonitor.__slots__ if name not in _FIRST and name != "_cold")
# What a monitor pickles (`FaultMonitor.__getstate__`): every slot, None included.
_PICKLED = tuple(name for name in FaultMonitor.__slots__ if name != "_cold")
_pickled_values = operator.attrgetter(*_PICKLED)
# The slots pickled as bytes (their arrays' type codes), `_pair`'s two arrays too, and as µs.
_ARRAYS = {"_last_gaps": "d", "_leads": "q", "_rx_gaps": "q"}
_TIMES = ("_heard", "_now")
_ARRAYS_AT = tuple(_PICKLED.index(name) for name in _ARRAYS)
_PAIR_AT = _PICKLED.index("_pair")
_TIMES_AT = tuple(_PICKLED.index(name) for name in _TIMES)
# `FaultMonitor.snapshot_parts`: the slots every tick or heartbeat of the node writes, and the
# settings and spec (shared by monitors: pickled once in a node's snapshot), out of the part kept
_OUTSIDE = ("settings", "spec", "_now", "_hb_rx", "_lead", "_leads")
_OUTSIDE_AT = tuple(_PICKLED.index(name) for name in _OUTSIDE)


def _upgraded(gap: _HeldGap) -> _HeldGap:
    """A held gap as this version keeps it: one pickled by a version that kept only its
    first five parts (no late readings' stamps) gets none, and its event's start as the
    start of a silence from the reading before the gap (interval 0: its runs are raised
    as silences, the later ones from the late reading before them)."""
    if len(gap) == 8:
        return gap
    event = gap[3]
    return (*gap[:5], {}, _micros(event.start), 0)


# -- rules on a node's heartbeats ---------------------------------------------------

# The events already raised for heartbeats without a run id (older agents), remembered to
# raise none twice for one heartbeat that comes again (an MQTT redelivery, a retained
# status after the ingest reconnects).
_RAISED_KEPT = 64
_HB_GAPS_KEPT = 9  # heartbeat gaps whose median is the node's heartbeat interval
# Supervised drivers followed per node (the status decoder passes as many per heartbeat):
# those named first, by sensor id, when a heartbeat names more.
MAX_SUPERVISED = 256


# An agent's run id (edge/agent.py makes 16 hex digits at its start).
RUN_ID = re.compile(r"[0-9A-Za-z_.-]{1,64}")

CABLE_STATES = ("ok", "cut")
SELF_TEST_RESULTS = ("ok", "failed")


@dataclass(frozen=True, slots=True)
class Supervision:
    """What a supervised driver says of its wiring in the heartbeat: `cable` "ok" or
    "cut" (a loopback pair), `ready` the device's "in service" output, `self_test`
    "ok" or "failed" (a door beam's last self-test), `blocked` a beam held broken;
    None where the driver does not watch it."""

    cable: str | None = None
    ready: bool | None = None
    self_test: str | None = None
    blocked: bool | None = None

    @classmethod
    def from_report(cls, report: Mapping[str, object]) -> Supervision:
        """From a driver's entry in the agent's health (`drivers.<id>.supervision`):
        a value of the wrong type or an unknown state is left out (None)."""
        cable, ready = report.get("cable"), report.get("ready")
        test, blocked = report.get("self_test"), report.get("blocked")
        return cls(cable if isinstance(cable, str) and cable in CABLE_STATES else None,
                   ready if isinstance(ready, bool) else None,
                   test if isinstance(test, str) and test in SELF_TEST_RESULTS else None,
                   blocked if isinstance(blocked, bool) else None)


@dataclass(frozen=True, slots=True)
class Heartbeat:
    """What the fault rules read of a node's status message: its stamp (the node's
    clock), the agent's uptime and wall-clock jump count, each supervised driver's
    `Supervision` by sensor id, the agent's run id (made at its start; None from older
    agents) and when the cloud received it (its clock; None where unknown, then the
    node's stamp stands for it). None where the heartbeat does not say."""

    ts: datetime
    uptime_s: float | None = None
    clock_jumps: int | None = None
    supervision: Mapping[str, Supervision] | None = None
    run: str | None = None
    received: datetime | None = None
    # Every driver the health lists, supervised or not at that moment (a restarting driver
    # reports no supervision): only drivers missing from it are forgotten. None: unknown.
    drivers: frozenset[str] | None = None
    # Whether the node's clock was synchronised (the agent's `clock.synchronised`, the
    # kernel's word); None where the agent does not check (`clock_check = "off"`) or says not.
    synchronised: bool | None = None

    def __post_init__(self) -> None:
        for name, stamp in (("stamp", self.ts), ("reception", self.received)):
            if stamp is not None and stamp.tzinfo is None:
                raise DetectError(f"heartbeat {name} {stamp.isoformat()} has no time zone")


# Heartbeats of another run, each newer than the one before, refused in a row while the
# current run sent none, after which that run is taken as the current one.
FOREIGN_STREAK = 3


def _agent_start(hb: Heartbeat, uptime: float) -> datetime | None:
    """When the agent of a run's first heartbeat started, by the clock its readings were
    stamped with: its stamp less its uptime. None when the agent counted a wall-clock jump
    since its start: the stamp is then on the clock as it is after the jump (a Pi without
    RTC stepped forward by NTP before its agent connected), and a start dated so would fall
    within the jump's gap and excuse it."""
    if hb.clock_jumps:
        return None
    return hb.ts - timedelta(seconds=uptime)


class HeartbeatMonitor:
    """The fault rules on one node's heartbeats; picklable. `update(hb)` returns the
    events that fired, stamped when the cloud received the heartbeat.

    Heartbeats are put in order by (run, uptime): one older than the newest of its run,
    or the same again, is ignored entirely (an MQTT redelivery, a retained status); a run
    id not seen before is a restart, unless by the cloud's clock its run began before the
    current one did (received - uptime: a late heartbeat of a run already over), then it
    is ignored too. Without a run id (older agents) an uptime going down is a restart and
    a heartbeat seen again raises nothing twice (its events are remembered).

    Each supervised driver is followed while the heartbeats name it: one that a
    heartbeat no longer names is forgotten (its next report starts afresh), and at most
    `MAX_SUPERVISED` are followed."""

    def __init__(self) -> None:
        self._run: str | None = None  # of the current run; None: an older agent's
        self._run_start: datetime | None = None  # the current run's start, cloud's clock
        self._uptime: float | None = None  # of the newest heartbeat of the current run
        self._jumps: int | None = None
        self._cut: set[str] = set()  # sensors whose cable is reported cut
        self._down: set[str] = set()  # sensors whose device is reported not ready
        self._stuck: set[tuple[str, str]] = set()  # (sensor, "self_test" | "blocked")
        self._raised: deque[tuple[datetime, str, FaultType]] = deque(maxlen=_RAISED_KEPT)
        # Another run's heartbeats refused in a row: (run, newest uptime, how many).
        self._foreign: tuple[str, float, int] | None = None
        # Set by `update` when its heartbeat began a run: when the agent started, by the
        # node's clock (for the sensors' clock rule); None otherwise (`_agent_start`). Also
        # when it is the run's first to say the clock synchronised after one said not: the
        # start dated again on the clock set right (the run's first heartbeat dated it on a
        # clock about to be stepped: a Pi without RTC on fake-hwclock's saved time).
        self.started_at: datetime | None = None
        # Set by `update`: whether it took its heartbeat in order (an old one delivered
        # again, or a late one of a run already over, is not).
        self.taken = False
        # Of the current run's newest heartbeat: whether the clock was synchronised.
        self._synced: bool | None = None
        # A jump counted by a heartbeat of the run that, like the one before, said the clock
        # was not synchronised: the next one tells whether it was the synchronising step.
        self._sync_held: FaultEvent | None = None
        # The last gaps (s of uptime) between consecutive heartbeats of a run taken in order:
        # their median is the node's heartbeat interval (`heartbeat_interval`).
        self._gaps: deque[float] = deque(maxlen=_HB_GAPS_KEPT)

    def __getstate__(self) -> dict[str, object]:
        # Its two rings as lists and the run's start as µs: pickle makes a reduce of each
        # deque and datetime (with the MRO walk of copyreg._slotnames for a deque: it cannot
        # keep its slot names on the type), where lists and ints it writes as they are.
        state = self.__dict__.copy()
        # (`get`: tests make the older layouts by deleting attributes)
        for name in ("_raised", "_gaps"):
            ring = state.get(name)
            if ring is not None:
                state[name] = list(ring)
        run_start = state.get("_run_start")
        if run_start is not None:
            state["_run_start"] = _micros(run_start)
        return state

    def __setstate__(self, state: dict[str, object]) -> None:
        # Snapshots from before the beam rules, the run ids, the clock's sync and the
        # heartbeat interval load; and those that pickled the rings as deques and the run's
        # start as a datetime (before session 27).
        self.__dict__.update({"_stuck": set(), "_run": None, "_run_start": None, "_foreign": None,
                              "started_at": None, "taken": False, "_synced": None,
                              "_sync_held": None, "_gaps": deque(maxlen=_HB_GAPS_KEPT)})
        self.__dict__.update(state)
        if type(self._raised) is not deque:
            self._raised = deque(self._raised, maxlen=_RAISED_KEPT)
        if type(self._gaps) is not deque:
            self._gaps = deque(self._gaps, maxlen=_HB_GAPS_KEPT)
        run_start: object = self._run_start
        if type(run_start) is int:
            self._run_start = _stamp(run_start)

    def heartbeat_interval(self) -> float:
        """The node's heartbeat interval (s): the median of the last gaps between two
        consecutive heartbeats of a run (by their uptimes: a heartbeat lost or an extra one
        sent on a reconnection moves it little), `HEARTBEAT_DEFAULT_S` (the edge agent's
        default `heartbeat_s`) until one is seen."""
        gaps = sorted(self._gaps)
        if not gaps:
            return HEARTBEAT_DEFAULT_S
        mid = len(gaps) // 2
        return gaps[mid] if len(gaps) % 2 else (gaps[mid - 1] + gaps[mid]) / 2

    def update(self, hb: Heartbeat) -> list[FaultEvent]:
        at = (hb.ts if hb.received is None else hb.received).astimezone(UTC)
        self.started_at = None
        take, gap = self._order(hb, at) if hb.run is not None else self._legacy_order(hb)
        self.taken = take
        if not take:
            return []
        if gap is not None and gap > 0:
            self._gaps.append(gap)
        since = at if gap is None else at - timedelta(seconds=gap)
        events: list[FaultEvent] = []
        jumps = hb.clock_jumps
        prior = self._jumps
        counted = gap is not None and jumps is not None and prior is not None and jumps > prior
        held, self._sync_held = self._sync_held, None
        if held is not None and (gap is None or counted or hb.synchronised is not True):
            events.append(held)  # not followed by the clock's sync alone: a jump all the same
        if gap is not None and jumps is not None and prior is not None and jumps > prior:
            n = jumps - prior
            event = FaultEvent(
                "", "clock_jumps", FaultType.CLOCK_JUMP, since, at, float(jumps),
                f"the node counted {n} wall-clock jump{'s' if n > 1 else ''} in the "
                f"{gap:g} s before its heartbeat (uptime {hb.uptime_s:g} s)")
            if self._synced is not False:
                events.append(event)
            elif hb.synchronised is False:
                self._sync_held = event  # the sync may have been counted before it was seen
            # else: the step that synchronised the clock (set right, no jump of a good one)
        if gap is not None and self._synced is False and hb.synchronised is True \
                and hb.uptime_s is not None:
            self.started_at = hb.ts - timedelta(seconds=hb.uptime_s)  # on the clock set right
        self._synced = hb.synchronised
        if hb.uptime_s is not None and jumps is not None:
            self._jumps = jumps
        named = sorted(hb.supervision or {})[:MAX_SUPERVISED]
        for sensor in named:
            events += self._supervised(sensor, (hb.supervision or {})[sensor], since, at)
        self._forget_all_but(set(named) if hb.drivers is None else set(named) | hb.drivers)
        if hb.run is None:
            events = [ev for ev in events if self._first(hb.ts, ev)]
        return events

    def _order(self, hb: Heartbeat, at: datetime) -> tuple[bool, float | None]:
        """For a heartbeat with a run id: whether to take it, and the seconds since the
        heartbeat before of its run (None for the first of a run: a baseline)."""
        uptime = hb.uptime_s
        if uptime is None:
            return False, None  # cannot be put in order
        start = None if hb.received is None else at - timedelta(seconds=uptime)
        if hb.run == self._run:
            self._foreign = None
            last = self._uptime
            if last is not None and uptime <= last:
                return False, None  # older than, or the same as, the newest of its run
            if start is not None and (self._run_start is None or start < self._run_start):
                self._run_start = start  # transit delays only make a later estimate
            self._uptime = uptime
            return True, None if last is None else uptime - last
        if start is not None and self._run_start is not None and start <= self._run_start:
            # A run that began before the current one: over. Unless it keeps sending while
            # the current one is silent: then the current one was a late heartbeat of a run
            # already over (its transit delay made it look newer), and this run is live.
            run = hb.run or ""
            seen = self._foreign
            count = seen[2] + 1 if seen is not None and seen[0] == run and seen[1] < uptime else 1
            self._foreign = (run, uptime, count)
            if count < FOREIGN_STREAK:
                return False, None
        self._foreign = None
        self._run, self._run_start, self._uptime, self._jumps = hb.run, start, uptime, None
        self.started_at = _agent_start(hb, uptime)
        return True, None

    def _legacy_order(self, hb: Heartbeat) -> tuple[bool, float | None]:
        """As `_order`, for a heartbeat without a run id: the same one again is ignored,
        an uptime going down is a restart (or an older heartbeat): a new baseline."""
        uptime = hb.uptime_s
        if self._run is not None:  # an agent went back to a version without run ids
            self._run = self._run_start = None
            self._uptime = self._jumps = None
        if uptime is None:
            return True, None
        last = self._uptime
        if last is not None and uptime == last:
            return False, None  # the same heartbeat again
        self._uptime = uptime
        if last is None or uptime < last:
            self._jumps = None
            self.started_at = _agent_start(hb, uptime)
            return True, None
        return True, uptime - last

    def _supervised(self, sensor: str, sup: Supervision, since: datetime, at: datetime
                    ) -> list[FaultEvent]:
        events: list[FaultEvent] = []
        if sup.cable == "cut":
            if sensor not in self._cut:
                self._cut.add(sensor)
                events.append(FaultEvent(sensor, "cable", FaultType.CUT_CABLE, since, at, 1.0,
                                         "the driver reports its supervised cable cut"))
            return events  # a device's ready line is not read through a cut cable
        if sup.cable is not None:
            self._cut.discard(sensor)
        if sup.ready is False:
            if sensor not in self._down:
                self._down.add(sensor)
                events.append(FaultEvent(sensor, "ready", FaultType.SILENCE, since, at, 0.0,
                                         "the device's in-service output is off, its cable "
                                         "whole: a dead device"))
        else:
            # In service, or the line not judged now (a kiosk's report outside its opening
            # hours): the episode ends, and a kiosk still off when judged again is reported.
            self._down.discard(sensor)
        for name, stuck, detail in (
                ("self_test", sup.self_test == "failed" if sup.self_test else None,
                 "the beam's self-test failed: a receiver read clear with its emitter off"),
                ("blocked", sup.blocked,
                 "a beam has been broken longer than anyone takes through a door")):
            if stuck is None:
                continue
            if not stuck:
                self._stuck.discard((sensor, name))
            elif (sensor, name) not in self._stuck:
                self._stuck.add((sensor, name))
                events.append(FaultEvent(sensor, name, FaultType.STUCK, since, at, 1.0, detail))
        return events

    def _forget_all_but(self, named: set[str]) -> None:
        """Drivers the heartbeat no longer names: their state goes."""
        self._cut &= named
        self._down &= named
        self._stuck = {key for key in self._stuck if key[0] in named}

    def _first(self, ts: datetime, ev: FaultEvent) -> bool:
        """Not raised yet for a heartbeat with this (node) stamp."""
        key = (ts, ev.sensor, ev.fault)
        if key in self._raised:
            return False
        self._raised.append(key)
        return True


# -- one clock jump per node and jump ----------------------------------------------

# A node's clock is one clock: the CLOCK_JUMP events of its sensors' rules and of its
# heartbeat rule received within this of the first one of a jump (the cloud's clock) are
# that jump's. Each sensor sees a step of the node's clock on its first reading after it,
# within its longest interval (a bed pad's 300 s); a clock set back shows in the sensors'
# stamps only when they pass where they were, the step's size later: a second event then.
CLOCK_EPISODE_S = 600.0


class NodeClockJumps:
    """One CLOCK_JUMP per node and jump; picklable. `fold(event, received)` takes every
    event the node's rules raise: any but a CLOCK_JUMP is returned as it is; the first
    CLOCK_JUMP of a jump is returned as the node's (`sensor` "", the sensor that saw it
    named first in its detail, the heartbeat rule's as it is); one received within
    `CLOCK_EPISODE_S` of it (the same jump, seen by another sensor or field, or counted
    by the agent) is folded into it: None, and `seen` notes its sensor; but the heartbeat
    rule's for a jump the node counted already is another jump (the agent counts each). `detail()` is the
    node event's detail with the sensors that saw the jump since; `stamp_ns` is left to
    the caller (where it wrote the event, to write its detail again)."""

    def __init__(self) -> None:
        self.opened: datetime | None = None  # the cloud's clock, when the jump's first came
        self.event: FaultEvent | None = None  # the node's event of the jump
        self.seen: list[str] = []  # the sensors that saw it, in order ("": the heartbeat rule)
        self.stamp_ns = 0
        self.changed = False  # `seen` grew since the event was raised or its detail written

    def fold(self, event: FaultEvent, received: datetime | None = None) -> FaultEvent | None:
        """The event to raise for `event` (received by the cloud at `received`; None: its
        detection stands for it), or None when it is folded into the jump's event."""
        if event.fault is not FaultType.CLOCK_JUMP:
            return event
        at = event.detected_at if received is None else received
        opened = self.opened
        if (opened is not None and self.event is not None
                and abs((at - opened).total_seconds()) <= CLOCK_EPISODE_S
                and not (not event.sensor and "" in self.seen)):  # the node counts each jump
            if event.sensor not in self.seen:
                self.seen.append(event.sensor)
                self.changed = True
            return None
        self.opened, self.seen, self.changed = at, [event.sensor], False
        node = event if not event.sensor else replace(
            event, sensor="", detail=f"{event.sensor}: {event.detail}")
        self.event = node
        return node

    def detail(self) -> str:
        """The node event's detail, and who else saw the jump since it was raised."""
        assert self.event is not None
        first, others = self.seen[0], [s for s in self.seen[1:] if s]
        more = []
        if others:
            named = ", ".join(others[:3])
            rest = len(others) - 3
            more.append(f"seen by {named}" + (f" and {rest} other sensor{'s' if rest > 1 else ''}"
                                              if rest > 0 else ""))
        if first and "" in self.seen:
            more.append("counted by the node")
        return self.event.detail + (f" ({'; '.join(more)})" if more else "")
