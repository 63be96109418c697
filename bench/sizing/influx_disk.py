"""InfluxDB's disk per reading, per retention policy: the processor's points for the
benchmark city written to a private influxd (the stack's config), then compacted as a shard
is once it goes cold, and the shards measured.

The points are those the dataflow writes (bench.influx.points), windows re-emitted as
readings arrive included: InfluxDB keeps one point per series and time, so what is stored is
counted apart from what is written.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

from bench.influx.measure import Sender, requests, settle
from bench.influx.points import PointSet, series_key, timestamp
from bench.influx.server import Server
from bench.influx.variants import VARIANTS
from bench.sizing.errors import SizingError
from bench.sizing.files import disk_bytes
from cloud.logic.records import RP_1H, RP_1M, RP_RAW

RPS = (RP_RAW, RP_1M, RP_1H)
# Cold after a second instead of 10 min (cache) and 4 h (full compaction): the shards
# reach the layout they keep for the rest of their life while the benchmark waits.
COLD_NOW = {"data": {"cache-snapshot-write-cold-duration": '"1s"',
                     "compact-full-write-cold-duration": '"1s"'}}
COMPACT_TIMEOUT_S = 180.0
STABLE_POLLS = 3
POLL_S = 1.0
WAL_LEFT_BYTES = 1 << 20


@dataclass(frozen=True)
class RpDisk:
    rp: str
    written: int  # lines sent
    stored: int  # distinct series and time among them
    bytes: int  # the retention policy's shards on disk, compacted
    shards: int
    tsm_files: int

    @property
    def per_point(self) -> float:
        return self.bytes / self.stored if self.stored else 0.0


@dataclass(frozen=True)
class InfluxDisk:
    readings: int
    span_h: float
    rps: tuple[RpDisk, ...]
    series_file_bytes: int  # the database's series file (_series), shared by its policies
    wal_bytes: int  # what the write-ahead log still held at the end
    compact_s: float

    def per_reading(self, rp: str) -> float:
        return next(r.bytes for r in self.rps if r.rp == rp) / self.readings

    @property
    def total_per_reading(self) -> float:
        return (sum(r.bytes for r in self.rps) + self.series_file_bytes) / self.readings


def stored_points(points: PointSet, rp: str) -> tuple[int, int]:
    """(lines written, distinct series and time) of `rp`."""
    lines = [ln for p, ln in points.points if p == rp]
    return len(lines), len({(series_key(ln), timestamp(ln)) for ln in lines})


def _layout_sizes(data: Path, wal: Path) -> tuple[int, int, bool]:
    """(data bytes, wal bytes, a compaction is writing)."""
    compacting = any(data.rglob("*.tmp"))
    return disk_bytes(data), disk_bytes(wal), compacting


def wait_compacted(data: Path, wal: Path, timeout_s: float = COMPACT_TIMEOUT_S) -> float:
    """Poll until the WAL is flushed and the shards stop changing; seconds waited."""
    start = time.monotonic()
    last: tuple[int, int, bool] | None = None
    stable = 0
    while time.monotonic() - start < timeout_s:
        now = _layout_sizes(data, wal)
        done = not now[2] and now[1] <= WAL_LEFT_BYTES
        stable = stable + 1 if done and now == last else 0
        if stable >= STABLE_POLLS:
            return time.monotonic() - start
        last = now
        time.sleep(POLL_S)  # a sampling interval: nothing signals the end of a compaction
    raise SizingError(f"influxd's shards in {data} still changed {timeout_s:.0f} s after the writes")


def measure(points: PointSet, workdir: Path) -> InfluxDisk:
    base = next(v for v in VARIANTS if v.name == "base")
    server = Server(workdir / "influx", COLD_NOW, base.env)
    server.start()
    try:
        sender = Sender(server.url(), "writer", server.password("writer"), server.database)
        try:
            for request in requests(points, base, 0):
                sender.write(request, compress=False, sort_by_series=False)
        finally:
            sender.close()
        if server.pid is None:
            raise SizingError("influxd has no pid")
        settle(server.pid, timeout_s=60)
        db_dir = server.layout.influx_dir / "data" / server.database
        compact_s = wait_compacted(server.layout.influx_dir / "data",
                                   server.layout.influx_dir / "wal")
        rps = []
        for rp in RPS:
            written, stored = stored_points(points, rp)
            shards = [d for d in (db_dir / rp).iterdir() if d.is_dir()]
            rps.append(RpDisk(rp, written, stored, disk_bytes(db_dir / rp), len(shards),
                              len(list((db_dir / rp).rglob("*.tsm")))))
        return InfluxDisk(points.readings, points.span_ns / 3.6e12, tuple(rps),
                          disk_bytes(db_dir / "_series"),
                          disk_bytes(server.layout.influx_dir / "wal"), compact_s)
    finally:
        server.stop()
