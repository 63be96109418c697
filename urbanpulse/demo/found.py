"""Which of a run's injected events the cloud has found so far: each event of the ground
truth against the cloud's own events (`raw.events`), for the demo's closing summary.

An injected event counts as found when the cloud raised an event of the matching type
(`anomaly` for the anomalies, the fault's own name for a fault: `spikes` as `spike`) on
its target (the site, the node and the sensor, as deep as the event names one), stamped
from the event's start to GRACE_S after its end (a rule fires on the reading completing
it: a stuck CO2 sensor's tenth unchanged reading, nine minutes in)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from urbanpulse.clock import to_epoch_ns
from urbanpulse.influx_http import InfluxHTTP
from urbanpulse.simulate import Event
from urbanpulse.simulate.timebase import TimeBase

GRACE_S = 600.0
# The cloud's event type for each injected fault (cloud.detect.faults.FaultType).
FAULT_TYPE = {"spikes": "spike", "stuck": "stuck", "silence": "silence", "drift": "drift",
              "cut_cable": "cut_cable", "clock_jump": "clock_jump"}


@dataclass(frozen=True)
class Finding:
    event: Event
    found_ns: int | None  # the first matching cloud event's stamp; None: not found (yet)
    cloud_type: str


def cloud_type(event: Event) -> str | None:
    """The type of cloud event that finds `event`; None for context (weather), which is
    not for the detectors to find."""
    if event.category == "anomaly":
        return "anomaly"
    if event.category == "fault":
        return FAULT_TYPE.get(event.type, event.type)
    return None


def findings(events: Sequence[Event], timebase: TimeBase,
             cloud_events: Sequence[Mapping[str, Any]]) -> list[Finding]:
    """Each event that is for the detectors to find, with the first cloud event that finds
    it. `cloud_events`: rows of `raw.events` (`time` in epoch ns, tags, `type`)."""
    out = []
    for event in events:
        wanted = cloud_type(event)
        if wanted is None:
            continue
        start = timebase.start_ns + round(event.start_s * 1e9)
        end = timebase.start_ns + round((event.end_s + GRACE_S) * 1e9)
        stamps = [int(row["time"]) for row in cloud_events
                  if row.get("type") == wanted and start <= int(row["time"]) <= end
                  and all(want is None or row.get(key) == want for key, want in
                          (("site", event.site), ("node", event.node),
                           ("sensor", event.sensor)))]
        out.append(Finding(event, min(stamps) if stamps else None, wanted))
    return out


def read_cloud_events(client: InfluxHTTP, database: str, since: datetime) -> list[dict[str, Any]]:
    """The cloud's events stamped from `since` on (InfluxError if InfluxDB fails)."""
    return client.query_points(f"SELECT * FROM raw.events WHERE time >= {to_epoch_ns(since)}",
                               db=database, epoch="ns")


def _clock(seconds: float) -> str:
    sign = "-" if seconds < 0 else ""
    whole = round(abs(seconds))
    return f"{sign}{whole // 60}:{whole % 60:02d}"


def _target(event: Event) -> str:
    return "/".join(p for p in (event.site, event.node, event.sensor) if p is not None)


def render(found: Sequence[Finding], later: Sequence[Event], timebase: TimeBase,
           run_start_s: float) -> list[str]:
    """Lines for the closing summary: each injected event, from when (minutes:seconds into
    the run; negative: before it), found when, or not yet; then the demo's events still to
    come (`later`, not begun when the run ended)."""
    lines = []
    for f in found:
        e = f.event
        when = ("not found (yet)" if f.found_ns is None else
                f"found at {_clock((f.found_ns - timebase.start_ns) / 1e9 - run_start_s)}"
                f" ({f.cloud_type})")
        lines.append(f"  {e.type:<16} {_target(e):<36} from {_clock(e.start_s - run_start_s):>6}"
                     f"   {when}")
    for e in later:
        lines.append(f"  {e.type:<16} {_target(e):<36} from {_clock(e.start_s - run_start_s):>6}"
                     "   not begun: a longer run")
    return lines
