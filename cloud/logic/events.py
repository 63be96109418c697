"""Anomaly scores and sensor-fault rules per sensor field, turned into `events` points.

Detectors need each series in event-time order: a reading older than the newest one
already scored (a node's backlog interleaving with live data) is stored and aggregated
but not scored; the fault rules are told of it (`FaultMonitor.stamped_before`): numbered
after the newest, the node's clock was set back (raised once, and the reading counts as
an arrival not judged), or for event sensors their clock rule (a kiosk's stamps going back
while its sequence numbers go up). A reading
flagged out of the windows (`warmup`, `clock_unsynced`) is neither scored nor judged, but
the fault rules are told it came and took its number (`FaultMonitor.unjudged`): it is no
missing reading, and the sensor is not silent.

A node's heartbeats (its status messages) go to the node's `NodeWatch`: a clock jump the
agent counted, a supervised driver's cut cable, dead device or stuck beam. Their events
are stamped when the cloud received the heartbeat (journalled, so a replay overwrites
them), not by the node's clock, which may be the one that jumped; the node's stamp is a
field (`node_ts`).

A node's clock is one clock: its CLOCK_JUMP events, its sensors' rules' and its heartbeat
rule's, go through the node's `NodeClockJumps` (kept in its `NodeWatch`), which raises one
per jump, as an event of the node (tag `kind=node`, no `sensor`; the sensor that saw it
first named in its detail) and folds the others of the jump into it: the event's point is
written again (`clock_rewrite`) with the sensors that saw the jump since in its detail.
The node's event is stamped when the cloud received the message that raised it, as the
heartbeat rule's: a sensor's reading is stamped by the clock that jumped. Every other event
of a reading keeps the reading's stamp (the node's clock: see docs/anomaly-detection.md).
"""

from __future__ import annotations

import math
from array import array
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from cloud.detect import AnomalyDetector, DetectError, FaultEvent, FaultMonitor, make_detector
from cloud.detect.faults import AWAY_DEFAULT_S, FaultType, Heartbeat, HeartbeatMonitor, NodeClockJumps
from cloud.detect.profiles import scored
from cloud.logic.detector_book import Journal
from cloud.logic.lines import line
from cloud.logic.records import RP_RAW, Point
from cloud.logic.rollup import OUT_OF_WINDOWS
from urbanpulse.clock import from_epoch_ns, to_epoch_ns
from urbanpulse.wire import Reading, field_range, format_ts

EVENTS = "events"
_NO_VALUES: array[float] = array("d")  # (`_check_run` without a journal: never appended to)
NODE_KIND = "node"  # the `kind` tag of an event about a whole node (no `sensor` tag)


@dataclass
class FieldWatch:
    detector: AnomalyDetector | None
    faults: FaultMonitor
    last_ts_ns: int = 0
    # The contract's physical range: a value outside it is no measurement, so it is not
    # scored (the fault rules raise OUT_OF_RANGE). None until known: a watch unpickled from
    # a snapshot taken before the range was kept has the class's None, and gets it on its
    # next reading.
    low: float | None = None
    high: float = math.inf


@dataclass(frozen=True, slots=True)
class Alert:
    """An event for the MQTT alerts topic (operators' tools subscribe there)."""

    site: str
    node: str
    sensor: str
    kind: str
    type: str
    field: str
    value: float
    ts_ns: int
    detail: str
    score: float | None = None

    def as_json(self) -> dict[str, object]:
        return {"v": 1, "site": self.site, "node": self.node, "sensor": self.sensor,
                "kind": self.kind, "type": self.type, "field": self.field, "value": self.value,
                "score": self.score, "ts": format_ts(from_epoch_ns(self.ts_ns)), "detail": self.detail}


@dataclass
class SensorWatch:
    fields: dict[str, FieldWatch | None] = field(default_factory=dict)

    def tick(self, site: str, node: str, sensor: str, kind: str, now: datetime,
             alerts: list[Alert] | None = None, quiets: Sequence[tuple[int, int]] = (),
             away_s: float = AWAY_DEFAULT_S) -> list[Point]:
        """Silence is judged on arrival time, so it needs a clock tick, not a reading;
        `quiets`: the node's recent quiets, `away_s` the least of them that is the node
        away (`FaultMonitor.tick`)."""
        out: list[Point] = []
        tags = {"site": site, "node": node, "sensor": sensor, "kind": kind}
        for place, (name, watch) in enumerate(self.fields.items()):
            if watch is None:
                continue
            for ev in watch.faults.tick(now, quiets, away_s):
                at = to_epoch_ns(ev.detected_at)
                value = float("nan") if ev.value is None else float(ev.value)
                fields: dict[str, float | int | str | bool] = {
                    "field": name, "delay_s": ev.delay.total_seconds(), "detail": ev.detail}
                if ev.value is not None:
                    fields["value"] = value
                out.append((RP_RAW, line(EVENTS, dict(tags, type=str(ev.fault)), fields, at + place)))
                if alerts is not None:
                    alerts.append(Alert(site, node, sensor, kind, str(ev.fault), name,
                                        0.0 if ev.value is None else value, at, ev.detail))
        return out

    def check(self, site: str, node: str, r: Reading, alerts: list[Alert] | None = None,
              out: list[Point] | None = None, received_ns: int | None = None,
              jumps: NodeClockJumps | None = None) -> list[Point]:
        """The events of one reading, as points (appended to `out` if given, and returned);
        their alerts appended to `alerts`; `received_ns`: when the cloud received it;
        `jumps`: the node's, which its clock jumps go through (None: each as raised)."""
        if out is None:
            out = []
        tags: dict[str, str] | None = None  # made only when an event fires
        fields, ts = self.fields, r.ts_ns
        values = r.values
        unjudged = _unjudged(r)
        for name, value in values.items():
            watch = fields.get(name, ...)
            if watch is ...:
                watch = fields[name] = _make(r.kind, name, r.sensor)
            if watch is None:
                continue
            v = float(value)
            if unjudged:
                events = watch.faults.unjudged(r.seq, received_ns)
                if events:
                    if tags is None:
                        tags = {"site": site, "node": node, "sensor": r.sensor, "kind": r.kind}
                    _fault_points(events, tags, name, v, r.seq, list(values).index(name), out, alerts,
                                  jumps, received_ns)
                continue
            if ts < watch.last_ts_ns:
                # Not scored nor checked: late, or the node's clock set back (a regular
                # sensor's clock rule raises it, and it arrived); an event sensor's clock rule.
                events = watch.faults.stamped_before(ts, v, r.seq, received_ns)
                if events:
                    if tags is None:
                        tags = {"site": site, "node": node, "sensor": r.sensor, "kind": r.kind}
                    _fault_points(events, tags, name, v, r.seq, list(values).index(name), out, alerts,
                                  jumps, received_ns)
                continue
            watch.last_ts_ns = ts
            detector = watch.detector
            if watch.low is None:
                watch.low, watch.high = field_range(r.kind, name)
            if detector is not None and watch.low <= v <= watch.high:
                score = detector.update(ts, v)
                if score >= detector.settings.threshold:
                    if tags is None:
                        tags = {"site": site, "node": node, "sensor": r.sensor, "kind": r.kind}
                    detail = f"{name}={v:g} scored {score:.2f}"
                    at = ts + list(values).index(name)
                    out.append((RP_RAW, line(EVENTS, dict(tags, type="anomaly"), {
                        "field": name, "value": v, "score": round(score, 4), "seq": r.seq,
                        "detail": detail}, at)))
                    if alerts is not None:
                        alerts.append(Alert(site, node, r.sensor, r.kind, "anomaly", name, v, ts,
                                            detail, round(score, 4)))
            events = watch.faults.update(ts, v, r.seq, values, received_ns)
            if not events:
                continue
            if tags is None:
                tags = {"site": site, "node": node, "sensor": r.sensor, "kind": r.kind}
            _fault_points(events, tags, name, v, r.seq, list(values).index(name), out, alerts,
                          jumps, received_ns)
        return out

    def restarted(self, site: str, node: str, sensor: str, kind: str,
                  alerts: list[Alert] | None = None, jumps: NodeClockJumps | None = None,
                  received_ns: int | None = None) -> tuple[SensorWatch, list[Point]]:
        """The watch for the sensor's numbering started again, and the points of what this
        one held: fresh fault rules (they judge gaps and order by the numbers), which keep
        what this one knows of the node and the clock jumps it held, and the same anomaly
        detectors (what they learnt is the series', not its numbers'); the
        sequence gaps it held are raised (`FaultMonitor.restarted`), their alerts appended
        to `alerts`."""
        fresh = SensorWatch()
        out: list[Point] = []
        tags = {"site": site, "node": node, "sensor": sensor, "kind": kind}
        for place, (name, watch) in enumerate(self.fields.items()):
            if watch is None:
                fresh.fields[name] = None
                continue
            faults, events = watch.faults.restarted()
            made = _make(faults.kind, name, sensor)
            if made is not None:
                made.faults = faults
                if watch.detector is not None:
                    # The air it learnt is the sensor's, not the numbering's: kept (it
                    # takes its values in time order only, `AnomalyDetector.update`).
                    made.detector = watch.detector
            fresh.fields[name] = made
            if events:
                _fault_points(events, tags, name, math.nan, 0, place, out, alerts, jumps,
                              received_ns)
        return fresh, out


def _unjudged(r: Reading) -> bool:
    """Whether the reading is kept out of the rules but told to them (`FaultMonitor.unjudged`):
    flagged as the windows leave it out (its stamp or value is not to be judged)."""
    return bool(r.flags) and not OUT_OF_WINDOWS.isdisjoint(r.flags)


# A reading's fault event is stamped by the reading when the cloud received that reading
# within these of its stamp, else when the cloud received it (`_fault_points`): the "Sensor
# fault" alert counts the events of the last 15 minutes (urbanpulse/dashboards/alerts.py) by
# their stamps, evaluated every minute, and the processor writes them some time after the
# reception; 5 min behind leaves it most of that. Ahead, the alert would wait for the stamp.
RECEIVED_AFTER_MAX_NS = 5 * 60 * 10**9
STAMPED_AHEAD_MAX_NS = 60 * 10**9
# A fault event's point stamped at a reception is placed this many ns after it per sequence
# number (mod RECEPTION_SEQS) and 1 per field place: below 4000 ns, the least step between two
# receptions of one journal (RECEIVED_STEP_NS, 4096) once taken to the microsecond, so the
# events of two messages never share a stamp, and two of one type and sensor in one message
# do only on one field of readings RECEPTION_SEQS numbers apart.
RECEPTION_PLACES = 8
RECEPTION_SEQS = 500


def reception_stamp(received_ns: int, seq: int, place: int) -> int:
    """The stamp of a fault event of reading `seq`'s field `place` received at `received_ns`:
    the reception to the microsecond (as `FaultEvent.received` keeps it) and the offset
    above."""
    return (received_ns // 1000 * 1000 + seq % RECEPTION_SEQS * RECEPTION_PLACES
            + place % RECEPTION_PLACES)


def stamped_at_reception(stamp_ns: int, received_ns: int) -> bool:
    """Whether a fault event on a reading stamped `stamp_ns` (the node's clock) and received
    at `received_ns` (the cloud's) is stamped at the reception: the reading came more than
    RECEIVED_AFTER_MAX_NS after its stamp (a node's clock behind, a backlog) or is stamped
    more than STAMPED_AHEAD_MAX_NS ahead of it (a node's clock ahead)."""
    got = received_ns // 1000 * 1000
    return got - stamp_ns > RECEIVED_AFTER_MAX_NS or stamp_ns - got > STAMPED_AHEAD_MAX_NS


def _fault_points(events: list[FaultEvent], tags: dict[str, str], name: str, v: float, seq: int,
                  place: int, out: list[Point], alerts: list[Alert] | None,
                  jumps: NodeClockJumps | None = None, received_ns: int | None = None) -> None:
    """The points (appended to `out`) and alerts of a reading's fault events on its field
    `name`, the reading's `place`-th.

    An event is stamped by the reading it fired on (`place` ns after its stamp, so that
    events of one type on two fields of a reading stay two points), unless the cloud received
    that reading more than 5 min after its stamp or more than 1 min before it
    (`stamped_at_reception`): then when the cloud received it, `received_ns` (the journal's
    stamp of the message, so a replay writes the same point) or `FaultEvent.received` for an
    event raised later, held until another message let it go (the same point whichever
    message lets it go), placed after it by the reading's number and field
    (`reception_stamp`). Grafana's "Sensor fault" alert counts the events of the last 15
    minutes by their stamps: an event of a node whose clock is behind by more than that (or
    of a backlog that old) was never alerted, and one of a node ahead was alerted that much
    late. The reading's stamp is then the field `node_ts` (as the heartbeat rules' events
    keep the heartbeat's), the fault's start `delay_s` before it; the alert carries the
    point's moment. Without a reception (a caller that has none): the reading's stamp.

    With the node's `jumps`, a clock jump is the node's event, or none when folded into the
    one raised for its jump (received by the cloud at `received_ns`: `NodeClockJumps.fold`),
    always stamped at the reception, `place` ns after it, as the heartbeat rule's are: the
    reading's stamp is on the clock that jumped (and not kept: `delay_s` and `seq`)."""
    for ev in events:
        event_tags = tags
        at = to_epoch_ns(ev.detected_at)
        if jumps is not None and ev.fault is FaultType.CLOCK_JUMP:
            node_event = jumps.fold(ev, None if received_ns is None else from_epoch_ns(received_ns))
            if node_event is None:
                continue
            ev = node_event
            event_tags = {"site": tags["site"], "node": tags["node"], "sensor": "", "kind": NODE_KIND}
        event_seq = seq if ev.seq is None else ev.seq
        rx = to_epoch_ns(ev.received) if ev.received is not None else received_ns
        node_ts = None  # the reading's stamp, where the point is not
        if event_tags is not tags:
            if rx is not None:
                at = rx
            stamp = at + place
        elif rx is not None and stamped_at_reception(at, rx):
            node_ts = format_ts(ev.detected_at)
            at = rx // 1000 * 1000
            stamp = reception_stamp(rx, event_seq, place)
        else:
            stamp = at + place
        value = v if ev.value is None else float(ev.value)
        fields: dict[str, float | int | str | bool] = {
            "field": name, "value": value, "delay_s": ev.delay.total_seconds(), "seq": event_seq,
            "detail": ev.detail}
        if node_ts is not None:
            fields["node_ts"] = node_ts
        out.append((RP_RAW, line(EVENTS, dict(event_tags, type=str(ev.fault)), fields, stamp)))
        if event_tags is not tags and jumps is not None:
            jumps.stamp_ns = stamp
        if alerts is not None:
            alerts.append(Alert(event_tags["site"], event_tags["node"], event_tags["sensor"],
                                event_tags["kind"], str(ev.fault), name, value, at, ev.detail))


def clock_rewrite(site: str, node: str, jumps: NodeClockJumps) -> Point | None:
    """The node's clock-jump event written again with the sensors that saw the jump since
    it was raised (`NodeClockJumps.detail`), when they changed: the same series and stamp,
    so InfluxDB keeps one event with this detail (no alert: it fired with the event)."""
    if not jumps.changed or jumps.event is None:
        return None
    jumps.changed = False
    tags = {"site": site, "node": node, "sensor": "", "kind": NODE_KIND,
            "type": str(FaultType.CLOCK_JUMP)}
    return RP_RAW, line(EVENTS, tags, {"detail": jumps.detail()}, jumps.stamp_ns)


@dataclass
class NodeWatch:
    """The fault rules on a node's heartbeats."""

    monitor: HeartbeatMonitor = field(default_factory=HeartbeatMonitor)
    jumps: NodeClockJumps = field(default_factory=NodeClockJumps)  # one event per clock jump

    def __setstate__(self, state: dict[str, object]) -> None:
        self.jumps = NodeClockJumps()  # absent from a watch pickled before it was kept
        self.__dict__.update(state)

    def check(self, site: str, node: str, hb: Heartbeat, kinds: dict[str, str],
              alerts: list[Alert] | None = None,
              sensors: Mapping[str, SensorWatch] | None = None) -> list[Point]:
        """The events of one heartbeat as points, their alerts appended to `alerts`;
        `kinds`: each sensor's kind (a sensor's event is tagged with it). The i-th event
        of a heartbeat is stamped i ns after its reception: two of one sensor and type
        (a beam's self-test and blocked) do not overwrite each other.

        A heartbeat taken in order goes to every field's rules of the node's `sensors`
        (`FaultMonitor.node_heartbeat`): the node clock's lead on the cloud's, when the
        agent started if it began a run; the forward clock jumps they held until a heartbeat
        could tell them from a restart, and the sequence gaps they held in case the missing
        readings were only late (a swapped message), that it now lets go are appended as
        the sensors' events (stamped as if raised on their reading). Clock jumps, the
        heartbeat rule's and the sensors', go through `jumps` (one event per jump)."""
        out: list[Point] = []
        received_ns = None if hb.received is None else to_epoch_ns(hb.received)
        events = self.monitor.update(hb)
        if self.monitor.taken and sensors:
            # As epoch ns, which the rules take as they take the datetimes: made once here,
            # not once per field.
            started_at = self.monitor.started_at
            started = None if started_at is None else to_epoch_ns(started_at)
            ts_ns, synchronised = to_epoch_ns(hb.ts), hb.synchronised
            for sensor_id, sensor in sensors.items():
                tags: dict[str, str] | None = None
                for place, (name, watch) in enumerate(sensor.fields.items()):
                    if watch is None:
                        continue
                    released = watch.faults.node_heartbeat(ts_ns, received_ns, started,
                                                            synchronised)
                    if released:
                        if tags is None:
                            tags = {"site": site, "node": node, "sensor": sensor_id,
                                    "kind": kinds.get(sensor_id, "")}
                        _fault_points(released, tags, name, math.nan, 0, place, out, alerts,
                                      self.jumps, received_ns)
        i = -1
        node_ts = format_ts(hb.ts) if events else ""
        for ev in events:
            if ev.fault is FaultType.CLOCK_JUMP and self.jumps.fold(ev, ev.detected_at) is None:
                continue
            i += 1
            kind = kinds.get(ev.sensor, "") if ev.sensor else NODE_KIND
            tags = {"site": site, "node": node, "sensor": ev.sensor, "kind": kind}
            value = 0.0 if ev.value is None else float(ev.value)
            at = to_epoch_ns(ev.detected_at) + i
            out.append((RP_RAW, line(EVENTS, dict(tags, type=str(ev.fault)), {
                "field": ev.field, "value": value, "delay_s": ev.delay.total_seconds(),
                "detail": ev.detail, "node_ts": node_ts}, at)))
            if ev.fault is FaultType.CLOCK_JUMP:
                self.jumps.stamp_ns = at
            if alerts is not None:
                alerts.append(Alert(site, node, ev.sensor, kind, str(ev.fault), ev.field, value,
                                    at, ev.detail))
        return out


def check_readings(site: str, node: str, readings: list[Reading], watches: dict[str, SensorWatch],
                   alerts: list[Alert] | None = None, received_ns: int | None = None,
                   jumps: NodeClockJumps | None = None, journal: Journal | None = None
                   ) -> list[Point]:
    """`SensorWatch.check` of each reading in turn, with each sensor's watch taken from (or
    added to) `watches`: the same points and alerts in the same order, in one call per
    message instead of one per reading; `received_ns`: when the cloud received the message;
    `jumps`: the node's (`SensorWatch.check`), which its clock jumps go through in reading
    order; `journal`: each value a detector takes is noted there too
    (cloud/logic/detector_book.py).

    The values are scored per sensor and field, each field's run in reading order, and the
    events then put back in reading order: a field's detector and rules see the values
    they saw reading by reading, but while their state is still in the CPU's caches (a
    city's detectors taken in turn find theirs evicted by the others')."""
    # sensor -> field -> indexes of the readings carrying it; both in order of first
    # appearance, which is the order in which reading-by-reading checks add the watches.
    runs: dict[str, dict[str, list[int]]] = {}
    unjudged: set[int] = set()  # indexes of the readings the rules take unjudged
    for i, r in enumerate(readings):
        if r.flags and not OUT_OF_WINDOWS.isdisjoint(r.flags):  # _unjudged(r), inlined
            unjudged.add(i)
        columns = runs.get(r.sensor)
        if columns is None:
            columns = runs[r.sensor] = {}
        for name in r.values:
            run = columns.get(name)
            if run is None:
                columns[name] = [i]
            else:
                run.append(i)
    found: list[_Found] = []
    for sensor, columns in runs.items():
        watch = watches.get(sensor)
        if watch is None:
            watch = watches[sensor] = SensorWatch()
        fields = watch.fields
        for name, run in columns.items():
            field_watch = fields.get(name, ...)
            if field_watch is ...:
                first = readings[run[0]]
                field_watch = fields[name] = _make(first.kind, name, sensor)
            if field_watch is not None:
                _check_run(site, node, name, field_watch, readings, run, found, alerts is not None,
                           received_ns, unjudged, jumps is not None, journal)
    if len(found) > 1:
        found.sort(key=_reading_order)
    if jumps is not None:
        found = _folded(site, node, readings, found, jumps, alerts is not None, received_ns)
    if alerts is not None:
        alerts.extend(alert for _, _, _, alert, _ in found if alert is not None)
    return [point for _, _, point, _, _ in found if point is not None]


# An event of `check_readings`: (reading index, the field's place in the reading, point,
# alert, a clock jump left to the node's `NodeClockJumps` (its point None until then));
# a reading's anomaly comes before its fault events, as the sort is stable.
_Found = tuple[int, int, Point | None, Alert | None, FaultEvent | None]


def _folded(site: str, node: str, readings: list[Reading], found: list[_Found],
            jumps: NodeClockJumps, alerting: bool, received_ns: int | None) -> list[_Found]:
    """`found` with its clock jumps, in reading order, through the node's `jumps`: the
    node's event of a jump, or nothing where folded into it."""
    out: list[_Found] = []
    for i, place, point, alert, jump in found:
        if jump is None:
            out.append((i, place, point, alert, None))
            continue
        r = readings[i]
        name = list(r.values)[place]
        tags = {"site": site, "node": node, "sensor": r.sensor, "kind": r.kind}
        points: list[Point] = []
        alerts: list[Alert] | None = [] if alerting else None
        _fault_points([jump], tags, name, float(r.values[name]), r.seq, place, points, alerts,
                      jumps, received_ns)
        for k, made in enumerate(points):
            out.append((i, place, made, None if alerts is None else alerts[k], None))
    return out


def _reading_order(found: _Found) -> tuple[int, int]:
    return found[0], found[1]


def _check_run(site: str, node: str, name: str, watch: FieldWatch, readings: list[Reading],
               run: list[int], found: list[_Found], alerting: bool,
               received_ns: int | None = None, unjudged: set[int] | None = None,
               defer_jumps: bool = False, journal: Journal | None = None) -> None:
    """`SensorWatch.check`'s work on field `name` of the readings at `run` (indexes, in
    order), its events appended to `found`; `unjudged`: the indexes of the readings only
    told to the rules (`FaultMonitor.unjudged`); `defer_jumps`: clock jumps are left for the
    node's `NodeClockJumps` (`_folded`); `journal`: the values the detector takes noted."""
    detector = watch.detector
    stamps: array[int] | None = None
    fed: array[float] = _NO_VALUES
    if journal is not None and detector is not None:
        noted = journal.get(id(detector))
        if noted is None:
            noted = journal[id(detector)] = (detector, array("q"), array("d"))
        _, stamps, fed = noted
    faults = watch.faults
    update = faults.update
    threshold = math.inf if detector is None else detector.settings.threshold
    for i in run:
        r = readings[i]
        if unjudged and i in unjudged:
            events = faults.unjudged(r.seq, received_ns)
            if events:
                _found_faults(site, node, r, name, float(r.values[name]), events, i, found, alerting,
                              defer_jumps, received_ns)
            continue
        ts = r.ts_ns
        values = r.values
        v = float(values[name])
        if ts < watch.last_ts_ns:
            # Not scored nor checked: late, or the node's clock set back (`stamped_before`).
            events = faults.stamped_before(ts, v, r.seq, received_ns)
            if events:
                _found_faults(site, node, r, name, v, events, i, found, alerting, defer_jumps,
                              received_ns)
            continue
        watch.last_ts_ns = ts
        if watch.low is None:
            watch.low, watch.high = field_range(r.kind, name)
        if detector is not None and watch.low <= v <= watch.high:
            score = detector.update(ts, v)
            if stamps is not None:
                stamps.append(ts)
                fed.append(v)
            if score >= threshold:
                place = list(values).index(name)
                tags = {"site": site, "node": node, "sensor": r.sensor, "kind": r.kind}
                detail = f"{name}={v:g} scored {score:.2f}"
                point = (RP_RAW, line(EVENTS, dict(tags, type="anomaly"), {
                    "field": name, "value": v, "score": round(score, 4), "seq": r.seq,
                    "detail": detail}, ts + place))
                alert = (Alert(site, node, r.sensor, r.kind, "anomaly", name, v, ts, detail,
                               round(score, 4)) if alerting else None)
                found.append((i, place, point, alert, None))
        events = update(ts, v, r.seq, values, received_ns)
        if events:
            _found_faults(site, node, r, name, v, events, i, found, alerting, defer_jumps,
                          received_ns)


def _found_faults(site: str, node: str, r: Reading, name: str, v: float, events: list[FaultEvent],
                  i: int, found: list[_Found], alerting: bool, defer_jumps: bool = False,
                  received_ns: int | None = None) -> None:
    tags = {"site": site, "node": node, "sensor": r.sensor, "kind": r.kind}
    points: list[Point] = []
    alerts: list[Alert] | None = [] if alerting else None
    place = list(r.values).index(name)
    for ev in events:
        if defer_jumps and ev.fault is FaultType.CLOCK_JUMP:
            found.append((i, place, None, None, ev))
            continue
        points.clear()
        if alerts is not None:
            alerts.clear()
        _fault_points([ev], tags, name, v, r.seq, place, points, alerts, None, received_ns)
        for k, point in enumerate(points):
            found.append((i, place, point, None if alerts is None else alerts[k], None))


def new_detector(kind: str, field_name: str, sensor: str) -> AnomalyDetector | None:
    """A fresh anomaly detector for a field of a sensor of `kind`, None if the field is not
    scored (or its settings are refused)."""
    try:
        return make_detector(kind, field_name, sensor) if scored(kind, field_name) else None
    except DetectError:
        return None


def _make(kind: str, field_name: str, sensor: str) -> FieldWatch | None:
    detector = new_detector(kind, field_name, sensor)
    try:
        faults = FaultMonitor(kind, field_name, sensor)
    except DetectError:
        return None
    low, high = field_range(kind, field_name)
    return FieldWatch(detector, faults, low=low, high=high)


# A field's watch as a node's snapshot holds it (`watch_state`): its detector (None when the
# detectors' book holds it), its fault monitor's state (`FaultMonitor.__getstate__`), its
# last stamp and its physical range
FieldState = tuple[AnomalyDetector | None, object, int, float | None, float]


def watch_state(watch: Mapping[str, SensorWatch],
                book: Mapping[tuple[str, str], AnomalyDetector] | None = None
                ) -> dict[str, dict[str, FieldState | None]]:
    """A node's watches as plain tuples (since session 25; the objects before): pickle then
    makes no reduce for each sensor's and field's watch and each fault monitor (a quarter of
    a ward's watches' pickling); each monitor as its `snapshot_parts` (since session 27, its
    `__getstate__` before), most of it bytes kept while the sensor is quiet. A detector that
    `book` holds (the same object at its sensor and field) is left out: the book's
    checkpoint and logs make it again."""
    out: dict[str, dict[str, FieldState | None]] = {}
    for sensor, sw in watch.items():
        fields: dict[str, FieldState | None] = {}
        for name, fw in sw.fields.items():
            if fw is None:
                fields[name] = None
                continue
            detector = fw.detector
            if book is not None and detector is not None and book.get((sensor, name)) is detector:
                detector = None
            fields[name] = (detector, fw.faults.snapshot_parts(), fw.last_ts_ns, fw.low, fw.high)
        out[sensor] = fields
    return out


def watch_of(held: Mapping[str, object]) -> dict[str, SensorWatch]:
    """The watches of `watch_state`, or of a snapshot that pickled the objects."""
    out: dict[str, SensorWatch] = {}
    for sensor, sw in held.items():
        if isinstance(sw, SensorWatch):
            out[sensor] = sw
            continue
        assert isinstance(sw, dict)
        watches = SensorWatch()
        for name, state in sw.items():
            if state is None:
                watches.fields[name] = None
                continue
            detector, faults, last_ts_ns, low, high = state
            monitor = FaultMonitor.__new__(FaultMonitor)
            monitor.__setstate__(faults)
            watches.fields[name] = FieldWatch(detector, monitor, last_ts_ns, low, high)
        out[sensor] = watches
    return out
