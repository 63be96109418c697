"""The state the dataflow keeps per node: seen sequence numbers, open windows, the ledger."""

from __future__ import annotations

import pickle
from dataclasses import dataclass, field
from datetime import datetime

from cloud.detect import STATE_VERSION as DETECT_STATE_VERSION
from cloud.logic.domain.hospital import SiteUpdate
from cloud.logic.domain.node import DomainNode
from cloud.logic.events import Alert, NodeWatch, SensorWatch, check_readings
from cloud.logic.lines import float_fields, line, series_head, string_field
from cloud.logic.recompute import RECOMPUTE, Recompute
from cloud.logic.records import RP_1H, RP_1M, RP_RAW, NodeData, Point
from cloud.logic.rollup import HOUR_NS, MINUTE_NS, SensorRollup, Window
from cloud.logic.seqs import SeqRanges
from urbanpulse.wire import KINDS, Reading, outside_range

LATE_AFTER_NS = 5 * MINUTE_NS


@dataclass(slots=True)
class LedgerHour:
    received: int = 0
    duplicates: int = 0
    late: int = 0
    seq_span: dict[str, list[int]] = field(default_factory=dict)  # sensor -> [min, max]

    def note(self, sensor: str, seq: int) -> None:
        span = self.seq_span.get(sensor)
        if span is None:
            self.seq_span[sensor] = [seq, seq]
        elif seq < span[0]:
            span[0] = seq
        elif seq > span[1]:
            span[1] = seq

    def fields(self) -> dict[str, int | float | str | bool]:
        expected = sum(hi - lo + 1 for lo, hi in self.seq_span.values())
        unique = self.received - self.duplicates
        return {"expected": expected, "received": self.received, "duplicates": self.duplicates,
                "late": self.late, "missing": max(0, expected - unique)}


def raw_time(r: Reading) -> int:
    """The raw point's timestamp: the reading's (microsecond precision on the wire) plus its
    sequence number mod 1000 in nanoseconds, so that two readings of one sensor in the same
    microsecond (kiosk events, a node whose clock stepped back) do not overwrite each other
    in InfluxDB, where series + timestamp is the identity. Deterministic, so a replay still
    overwrites itself."""
    return r.ts_ns - r.ts_ns % 1000 + r.seq % 1000


class NodeState:
    def __init__(self, horizon_ns: int, detect: bool = True) -> None:
        self.horizon_ns = horizon_ns
        self.detect = detect
        self.watch: dict[str, SensorWatch] = {}
        self.node_watch = NodeWatch()  # the rules on the node's heartbeats
        self.detect_version = DETECT_STATE_VERSION
        self.domain = DomainNode(horizon_ns)
        self.site_updates: list[SiteUpdate] = []
        self.alerts: list[Alert] = []
        self.seqs: dict[str, SeqRanges] = {}
        self.kinds: dict[str, str] = {}
        self.minute: dict[str, SensorRollup] = {}
        self.hour: dict[str, SensorRollup] = {}
        self.ledger: dict[int, LedgerHour] = {}
        self._heads: dict[str, tuple[str, str]] = {}  # sensor -> (kind, series head); a cache

    def __getstate__(self) -> dict[str, object]:
        state = self.__dict__.copy()
        state.pop("_heads", None)
        # Pickled apart: a snapshot from another code version is dropped without being
        # unpickled, whatever its detectors' layout was.
        for name in ("watch", "node_watch"):
            if name in state:
                state[name] = pickle.dumps(state[name], protocol=pickle.HIGHEST_PROTOCOL)
        return state

    def __setstate__(self, state: dict[str, object]) -> None:
        # Snapshots outlive code versions: attributes added since a snapshot was taken get
        # their defaults, so an upgrade resumes instead of crashing on old state.
        defaults = {"detect": True, "watch": {}, "ledger": {}, "site_updates": [], "alerts": []}
        self.__dict__.update(defaults)
        self.__dict__.update(state)
        self._heads = {}
        if "domain" not in state:
            self.domain = DomainNode(self.horizon_ns)
        if state.get("detect_version") != DETECT_STATE_VERSION:
            self.watch = {}
            self.node_watch = NodeWatch()
            self.detect_version = DETECT_STATE_VERSION
            return
        if isinstance(self.watch, bytes):
            self.watch = pickle.loads(self.watch)
        node_watch = state.get("node_watch")
        self.node_watch = pickle.loads(node_watch) if isinstance(node_watch, bytes) else NodeWatch()

    def process(self, data: NodeData) -> list[Point]:
        if data.status is not None:
            return self.heartbeat(data)
        out: list[Point] = []
        touched: dict[tuple[str, str, int], Window] = {}
        ledger_touched: set[int] = set()
        measured: list[Reading] = []  # fresh readings within the contract's ranges
        checked: list[Reading] = []  # fresh readings for the detectors
        detect = self.detect
        site, node = data.site, data.node
        self.site, self.node = site, node
        received_ns = data.received_ns
        ledgers, seqs_of, heads = self.ledger, self.seqs, self._heads
        minute, hour_rollups, horizon_ns = self.minute, self.hour, self.horizon_ns
        for r in data.readings:
            ts, sensor, kind = r.ts_ns, r.sensor, r.kind
            hour = ts - ts % HOUR_NS
            ledger = ledgers.get(hour)
            if ledger is None:
                ledger = ledgers[hour] = LedgerHour()
            ledger_touched.add(hour)
            ledger.received += 1
            seqs = seqs_of.get(sensor)
            if seqs is None:
                seqs = seqs_of[sensor] = SeqRanges()
            if not seqs.add(r.seq):
                ledger.duplicates += 1
                continue
            ledger.note(sensor, r.seq)
            if received_ns - ts > LATE_AFTER_NS:
                ledger.late += 1
            self.kinds[sensor] = kind
            head = heads.get(sensor)
            if head is None or head[0] != kind:
                head = self._new_head(site, node, sensor, kind)
            flags = r.flags
            extra = f",flags={string_field(','.join(flags))}" if flags else ""
            out.append((RP_RAW, f"{head[1]} {float_fields(r.values)},seq={r.seq}i{extra} "
                                f"{ts - ts % 1000 + r.seq % 1000}"))  # raw_time(r), inlined
            if flags and "warmup" in flags:
                continue  # stored, but a warming-up sensor's zeros are not air quality
            if detect:
                checked.append(r)  # the fault rules raise OUT_OF_RANGE; nothing else sees it
            if outside_range(kind, r.values) is not None:
                continue
            measured.append(r)
            for rp, rollups, width in ((RP_1M, minute, MINUTE_NS), (RP_1H, hour_rollups, HOUR_NS)):
                rollup = rollups.get(sensor)
                if rollup is None:
                    rollup = rollups[sensor] = SensorRollup(width, horizon_ns)
                window = rollup.add(ts, r.values)
                if window is not None:
                    touched[(rp, sensor, window.start_ns)] = window
                else:  # older than the horizon: rebuilt from the raw points by the sink
                    start = ts - ts % width
                    out.append((RECOMPUTE, Recompute(rp, KINDS[kind].measurement, site, node, sensor,
                                                     kind, width, start).encode()))
        if checked:  # the detectors' events, in reading order, after the raw points
            out.extend(check_readings(site, node, checked, self.watch, self.alerts))
        for (rp, sensor, start), window in touched.items():
            out.append((rp, f"{heads[sensor][1]} {window.field_text()} {start}"))  # head set above
        domain_points, updates = self.domain.process(site, node, measured)
        out.extend(domain_points)
        self.site_updates.extend(updates)
        for hour in sorted(ledger_touched):
            out.append((RP_1H, line("ledger", {"site": site, "node": node},
                                    self.ledger[hour].fields(), hour)))
        self._evict()
        return out

    def heartbeat(self, data: NodeData) -> list[Point]:
        """A status message's heartbeat: the events of the rules on heartbeats (alerts to
        take_alerts()); its `node_status` point is written by the caller."""
        if data.status is None or not self.detect:
            return []
        self.site, self.node = data.site, data.node
        return self.node_watch.check(data.site, data.node, data.status, self.kinds, self.alerts)

    def _new_head(self, site: str, node: str, sensor: str, kind: str) -> tuple[str, str]:
        """The series head of a sensor's raw and aggregate points (same measurement, tags)."""
        head = self._heads[sensor] = (kind, series_head(KINDS[kind].measurement, {
            "site": site, "node": node, "sensor": sensor, "kind": kind}))
        return head

    def tick(self, now: datetime) -> list[Point]:
        """Fault rules that need time to pass (silence); alerts go to take_alerts()."""
        site, node = getattr(self, "site", ""), getattr(self, "node", "")
        out: list[Point] = []
        for sensor, watch in self.watch.items():
            out.extend(watch.tick(site, node, sensor, self.kinds.get(sensor, ""), now, self.alerts))
        return out

    def take_alerts(self) -> list[Alert]:
        alerts, self.alerts = self.alerts, []
        return alerts

    def take_site_updates(self) -> list[SiteUpdate]:
        """What the per-hospital (site) step needs from this node since the last call."""
        updates, self.site_updates = self.site_updates, []
        return updates

    def _evict(self) -> None:
        newest = 0
        for rollups in (self.minute, self.hour):
            for r in rollups.values():
                r.evict()
                newest = max(newest, r.newest_ns)
        floor = newest - self.horizon_ns - HOUR_NS
        for hour in [h for h in self.ledger if h < floor]:
            del self.ledger[hour]
