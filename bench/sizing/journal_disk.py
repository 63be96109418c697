"""The cloud journal's disk per reading: the workload's messages appended as the ingest
appends them (commits of several messages), the file measured once its WAL is checkpointed.

The journal holds what the processor has not yet written to InfluxDB (trimmed behind it), so
its size is the backlog an InfluxDB outage leaves, and depends on the message shape: a node
that keeps up sends a message a second with what it read in it (a reading or two), a node
sending its outbox backlog sends up to `outbox.batch_max_readings` per message."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from bench.pipeline.workload import Workload
from bench.sizing.files import total_bytes
from cloud.journal import Journal

COMMIT_MESSAGES = 10


@dataclass(frozen=True)
class JournalDisk:
    readings_per_message: float
    readings: int
    messages: int
    bytes: int

    @property
    def per_reading(self) -> float:
        return self.bytes / self.readings


def measure(workload: Workload, path: Path) -> JournalDisk:
    journal = Journal(path, "i0").open()
    try:
        msgs = [(m.topic, m.payload) for m in workload.messages]
        for i in range(0, len(msgs), COMMIT_MESSAGES):
            journal.append(msgs[i:i + COMMIT_MESSAGES], workload.last_ts_ns)
    finally:
        journal.close()  # the last connection's close checkpoints the WAL into the file
    files = [path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")]
    n = workload.readings
    return JournalDisk(n / len(msgs), n, len(msgs), total_bytes(files))
