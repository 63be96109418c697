"""The Bytewax wiring, and only the wiring: the logic lives in cloud.logic.

journal ─▶ decode ─┬─ dead letters, node status ─────────────────┐
                   └─ readings ─▶ key by node ─▶ node state ─────┴─▶ InfluxDB
"""

from __future__ import annotations

import pickle
import time
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import bytewax.operators as op
from bytewax.dataflow import Dataflow
from bytewax.inputs import FixedPartitionedSource, StatefulSourcePartition
from bytewax.outputs import DynamicSink, StatelessSinkPartition

from cloud.alerts import AlertPublisher, make_alert_publisher
from cloud.config import CloudConfig
from cloud.journal import Journal, JournalRecord, journal_path
from cloud.logic.domain.hospital import SiteUpdate
from cloud.logic.domain.hospital_site import HospitalSite
from cloud.logic.events import Alert
from cloud.logic.node import NodeState
from cloud.logic.records import NodeData, Point, decode_record
from cloud.sink import InfluxWriter, make_writer
from urbanpulse.clock import SystemClock, to_epoch_ns

READ_BATCH = 50  # messages per source batch: bounds the latency of one step (50 x 500 readings)
IDLE_WAIT = timedelta(milliseconds=20)
TRIM_EVERY_S = 60.0
TICK = timedelta(seconds=30)  # how often time-based fault rules (silence) are checked


class JournalPartition(StatefulSourcePartition[JournalRecord, int]):
    def __init__(self, journal: Journal, offset: int, retention_s: int) -> None:
        self.journal = journal
        self.offset = offset
        self.retention_s = retention_s
        self._idle = False
        self._snapshots: list[tuple[float, int]] = []
        self._next_trim = time.monotonic() + TRIM_EVERY_S

    def next_batch(self) -> list[JournalRecord]:
        records = self.journal.read(self.offset, READ_BATCH)
        if records:
            self.offset = records[-1].offset
        self._idle = len(records) < READ_BATCH
        if time.monotonic() >= self._next_trim:
            self._trim()
        return records

    def next_awake(self) -> datetime | None:
        return SystemClock().now() + IDLE_WAIT if self._idle else None

    def snapshot(self) -> int:
        self._snapshots.append((time.monotonic(), self.offset))
        return self.offset

    def _trim(self) -> None:
        # Only below an offset snapshotted so long ago that its epoch is surely committed.
        self._next_trim = time.monotonic() + TRIM_EVERY_S
        cutoff = time.monotonic() - self.retention_s
        old = [o for t, o in self._snapshots if t < cutoff]
        if old:
            self._snapshots = [(t, o) for t, o in self._snapshots if t >= cutoff]
            received_before = to_epoch_ns(SystemClock().now()) - self.retention_s * 1_000_000_000
            self.journal.trim(max(old) + 1, received_before)

    def close(self) -> None:
        self.journal.close()


class JournalSource(FixedPartitionedSource[JournalRecord, int]):
    def __init__(self, directory: Path, partitions: list[str], retention_s: int) -> None:
        self.directory = directory
        self.partitions = partitions
        self.retention_s = retention_s

    def list_parts(self) -> list[str]:
        return list(self.partitions)

    def build_part(self, step_id: str, for_part: str, resume_state: int | None) -> JournalPartition:
        journal = Journal(journal_path(self.directory, for_part), for_part).open()
        return JournalPartition(journal, resume_state or 0, self.retention_s)


NodeOut = tuple[list[Point], list[SiteUpdate], list[Alert]]


class NodeLogic(op.StatefulBatchLogic[NodeData, NodeOut, bytes]):
    def __init__(self, state: NodeState) -> None:
        self.state = state
        self._next_tick: datetime = SystemClock().now() + TICK

    def on_batch(self, values: list[NodeData]) -> tuple[list[NodeOut], bool]:
        out = [(self.state.process(v), self.state.take_site_updates(), self.state.take_alerts())
               for v in values]
        # Time-based rules (a sensor gone silent while its node still talks) ride on the
        # node's own traffic: a Bytewax notify_at would hold every epoch open until it fires
        # and delay all output by up to the tick. A node silent as a whole is the heartbeat
        # alert's job (node_status).
        now = SystemClock().now()
        if now >= self._next_tick:
            self._next_tick = now + TICK
            points = self.state.tick(now)
            alerts = self.state.take_alerts()
            if points or alerts:
                out.append((points, [], alerts))
        return out, op.StatefulBatchLogic.RETAIN

    def snapshot(self) -> bytes:
        return pickle.dumps(self.state, protocol=pickle.HIGHEST_PROTOCOL)


class SiteLogic(op.StatefulBatchLogic[SiteUpdate, list[Point], bytes]):
    def __init__(self, state: HospitalSite) -> None:
        self.state = state

    def on_batch(self, values: list[SiteUpdate]) -> tuple[list[list[Point]], bool]:
        return [self.state.process(values[0].site, values)], op.StatefulBatchLogic.RETAIN

    def snapshot(self) -> bytes:
        return pickle.dumps(self.state, protocol=pickle.HIGHEST_PROTOCOL)


class InfluxPartition(StatelessSinkPartition[list[Point]]):
    def __init__(self, writer: InfluxWriter) -> None:
        self.writer = writer

    def write_batch(self, items: list[list[Point]]) -> None:
        self.writer.write(p for points in items for p in points)


class InfluxSink(DynamicSink[list[Point]]):
    def __init__(self, cfg: CloudConfig) -> None:
        self.cfg = cfg

    def build(self, step_id: str, worker_index: int, worker_count: int) -> InfluxPartition:
        return InfluxPartition(make_writer(self.cfg.influx))


class AlertPartition(StatelessSinkPartition[list[Alert]]):
    def __init__(self, publisher: AlertPublisher) -> None:
        self.publisher = publisher

    def write_batch(self, items: list[list[Alert]]) -> None:
        self.publisher.publish([a for alerts in items for a in alerts])

    def close(self) -> None:
        self.publisher.stop()


class AlertSink(DynamicSink[list[Alert]]):
    def __init__(self, cfg: CloudConfig) -> None:
        self.cfg = cfg

    def build(self, step_id: str, worker_index: int, worker_count: int) -> AlertPartition:
        client_id = f"{self.cfg.mqtt.client_id}-alerts-{self.cfg.flow.process_id or 0}-{worker_index}"
        return AlertPartition(make_alert_publisher(self.cfg.mqtt, client_id))


def build_flow(cfg: CloudConfig, partitions: list[str], sink: Any = None,
               alert_sink: Any = None) -> Dataflow:
    horizon_ns = cfg.flow.aggregate_horizon_s * 1_000_000_000
    max_dl = cfg.flow.dead_letter_max_bytes
    flow = Dataflow("urbanpulse")
    records = op.input("journal", flow,
                       JournalSource(cfg.journal_dir, partitions, cfg.flow.journal_retention_s))
    decoded = op.map("decode", records, lambda rec: decode_record(rec, max_dl))
    direct = op.filter_map("direct_points", decoded, lambda d: d[1] or None)
    data = op.filter_map("node_data", decoded, lambda d: d[0])
    keyed = op.key_on("by_node", data, lambda d: d.key)

    def builder(resume: bytes | None) -> NodeLogic:
        if resume is not None:
            state: NodeState = pickle.loads(resume)
            return NodeLogic(state)
        return NodeLogic(NodeState(horizon_ns, cfg.flow.detect))

    processed = op.stateful_batch("node_state", keyed, builder)
    node_points = op.map("node_points", processed, lambda kv: kv[1][0])
    site_updates = op.flat_map("site_updates", processed, lambda kv: kv[1][1])
    by_site = op.key_on("by_site", site_updates, lambda u: u.site)

    def site_builder(resume: bytes | None) -> SiteLogic:
        state: HospitalSite = pickle.loads(resume) if resume is not None else HospitalSite(horizon_ns)
        return SiteLogic(state)

    site_points = op.map("site_points", op.stateful_batch("site_state", by_site, site_builder),
                         lambda kv: kv[1])
    points = op.merge("points", direct, node_points, site_points)
    alerts = op.filter_map("alerts", processed, lambda kv: kv[1][2] or None)
    op.output("mqtt_alerts", alerts, alert_sink if alert_sink is not None else AlertSink(cfg))
    op.output("influx", points, sink if sink is not None else InfluxSink(cfg))
    return flow
