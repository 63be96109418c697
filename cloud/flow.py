"""The Bytewax wiring, and only the wiring: the logic lives in cloud.logic.

journal ─▶ decode ─┬─ dead letters, node status ─────────────────┐
                   └─ readings ─▶ key by node ─▶ node state ─────┴─▶ InfluxDB
"""

from __future__ import annotations

import pickle
import threading
import time
from collections import deque
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import bytewax.operators as op
from bytewax.dataflow import Dataflow
from bytewax.inputs import FixedPartitionedSource, StatefulSourcePartition
from bytewax.outputs import (
    DynamicSink,
    FixedPartitionedSink,
    StatefulSinkPartition,
    StatelessSinkPartition,
)

from cloud.alerts import AlertPublisher, make_alert_publisher
from cloud.config import CloudConfig
from cloud.errors import SinkError
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
MAX_PENDING_POINTS = 200_000  # handed to the InfluxDB writer thread, not yet written
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


class InfluxPartition(StatefulSinkPartition[list[Point], None]):
    """Writes on a thread of its own, so that the dataflow goes on processing while InfluxDB
    takes a batch in. Bytewax calls `snapshot` at the end of every epoch, before it commits
    the epoch: it returns only once everything handed over so far is written, so a
    committed epoch never has points still in flight (exactly once in effect, as with
    synchronous writes). `write_batch` blocks while `max_pending` points wait (InfluxDB
    slow or down), which holds the dataflow back and leaves the data in the journal."""

    def __init__(self, writer: InfluxWriter, max_pending: int = MAX_PENDING_POINTS) -> None:
        self.writer = writer
        self.max_pending = max_pending
        self._cond = threading.Condition()
        self._queue: deque[list[Point]] = deque()
        self._pending = 0  # points queued or being written
        self._error: BaseException | None = None
        self._closing = False
        self._thread: threading.Thread | None = None

    def write_batch(self, values: list[list[Point]]) -> None:
        points = [p for batch in values for p in batch]
        if not points:
            return
        with self._cond:
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="influx-writer", daemon=True)
                self._thread.start()
            while self._pending >= self.max_pending and self._error is None:
                self._cond.wait()
            self._raise_failure()
            self._queue.append(points)
            self._pending += len(points)
            self._cond.notify_all()

    def snapshot(self) -> None:
        self.flush()

    def flush(self) -> None:
        with self._cond:
            while self._pending and self._error is None:
                self._cond.wait()
            self._raise_failure()

    def close(self) -> None:
        self.flush()
        with self._cond:
            self._closing = True
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join()

    def _raise_failure(self) -> None:
        if self._error is not None:
            raise SinkError(f"the InfluxDB writer failed: {self._error}") from self._error

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._queue and not self._closing:
                    self._cond.wait()
                if not self._queue:
                    return
                batch: list[Point] = []
                while self._queue:  # whatever piled up goes out as one set of requests
                    batch.extend(self._queue.popleft())
            try:
                self.writer.write(batch)
            except Exception as exc:  # noqa: BLE001 - not swallowed: the dataflow's thread raises it
                with self._cond:
                    self._error = exc
                    self._cond.notify_all()
                return
            with self._cond:
                self._pending -= len(batch)
                self._cond.notify_all()


class InfluxSink(FixedPartitionedSink[list[Point], None]):
    """One partition per process, named after it: each process writes its own points (the
    `to_sink` key routes them to the local partition, so nothing crosses processes)."""

    def __init__(self, cfg: CloudConfig, process_id: int) -> None:
        self.cfg = cfg
        self.process_id = process_id

    def list_parts(self) -> list[str]:
        return [sink_part(self.process_id)]

    def part_fn(self, item_key: str) -> int:
        return int(item_key.rsplit("-", 1)[1])

    def build_part(self, step_id: str, for_part: str, resume_state: None) -> InfluxPartition:
        return InfluxPartition(make_writer(self.cfg.influx))


def sink_part(process_id: int) -> str:
    return f"influx-{process_id:04d}"  # zero-padded: Bytewax orders partitions by name


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
               alert_sink: Any = None, process_id: int = 0) -> Dataflow:
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
    local = sink_part(process_id)
    to_sink = op.key_on("to_sink", points, lambda _: local)
    op.output("influx", to_sink, sink if sink is not None else InfluxSink(cfg, process_id))
    return flow
