"""A node's outbox on disk per reading: the workload's readings appended to the edge's real
outbox (edge.outbox, SQLite) node by node as an agent appends them, the file measured once
its WAL is checkpointed; and how long an outage each node of the city could then ride out
within the default `outbox.max_rows`."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

from bench.pipeline.workload import Workload
from bench.sizing.files import total_bytes
from edge.drivers.base import Sample
from edge.outbox import Outbox
from urbanpulse.wire import decode_batch

# An agent commits a few readings at a time; the benchmark commits more (each commit is an
# fsync), which leaves the pages as full as they would be.
APPEND_SAMPLES = 200
MAX_ROWS = 2_000_000  # edge.config: outbox.max_rows' default


@dataclass(frozen=True)
class NodeOutbox:
    node: str
    readings: int
    bytes: int
    readings_per_hour: float

    empty_bytes: int  # the same outbox with no reading: schema, numbering, sequence table

    @property
    def per_reading(self) -> float:
        return (self.bytes - self.empty_bytes) / self.readings

    @property
    def hours_at_max_rows(self) -> float:
        return MAX_ROWS / self.readings_per_hour

    @property
    def bytes_at_max_rows(self) -> float:
        return self.empty_bytes + MAX_ROWS * self.per_reading


def _samples(workload: Workload) -> dict[str, list[Sample]]:
    by_node: dict[str, list[Sample]] = defaultdict(list)
    for m in workload.messages:
        batch = decode_batch(m.payload)
        by_node[f"{batch.site}/{batch.node}"].extend(
            Sample(r.sensor, r.kind, r.values, r.ts, r.flags) for r in batch.readings)
    return by_node


def _filled(path: Path, samples: list[Sample]) -> int:
    """Bytes of an outbox at `path` once `samples` are appended and its WAL checkpointed."""
    outbox = Outbox(path, max_rows=MAX_ROWS).open()
    try:
        for j in range(0, len(samples), APPEND_SAMPLES):
            outbox.append(samples[j:j + APPEND_SAMPLES], 0)
    finally:
        outbox.close()  # the last connection's close checkpoints the WAL into the file
    return total_bytes([path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")])


def measure(workload: Workload, directory: Path) -> list[NodeOutbox]:
    span_h = (workload.last_ts_ns - workload.first_ts_ns) / 3.6e12
    directory.mkdir(parents=True, exist_ok=True)
    empty = _filled(directory / "outbox-empty.sqlite3", [])
    out = []
    for i, (node, samples) in enumerate(sorted(_samples(workload).items())):
        filled = _filled(directory / f"outbox-{i}.sqlite3", samples)
        out.append(NodeOutbox(node, len(samples), filled, len(samples) / span_h, empty))
    return out
