"""`python -m bench.sizing [--readings N]`: disk per reading of InfluxDB (per retention
policy, compacted), of the cloud journal (live and backlog message shapes) and of a node's
outbox, on the pipeline benchmark's city (bench.pipeline.workload), printed with what they
come to per day at 1,000 readings/s. docs/sizing.md turns them into a deployment's sizes."""

from __future__ import annotations

import argparse
import sys
import tempfile
from datetime import UTC, datetime
from pathlib import Path

from bench.influx.points import make_points
from bench.pipeline.workload import generate
from bench.sizing import influx_disk, journal_disk, outbox_disk
from cloud.logic.records import RP_1H, RP_1M, RP_RAW

# The city's time ends here, whenever the benchmark runs: the same readings every run.
NOW = datetime(2026, 6, 1, 12, tzinfo=UTC)
DAY_S = 86_400
PER_S = 1_000  # readings a second the daily figures are given for
RETENTION_DAYS = {RP_RAW: 30, RP_1M: 400, RP_1H: 365}  # cloud.config defaults; 1h: a year of "forever"
GB = 1e9


def _per_day_gb(bytes_per_reading: float) -> float:
    return bytes_per_reading * PER_S * DAY_S / GB


def report_influx(disk: influx_disk.InfluxDisk) -> list[str]:
    out = [f"InfluxDB: {disk.readings} readings over {disk.span_h:.1f} h of data time, "
           f"compacted in {disk.compact_s:.0f} s (WAL left {disk.wal_bytes} B)",
           f"{'policy':8} {'written':>9} {'stored':>9} {'bytes':>11} {'B/point':>8} "
           f"{'B/reading':>9} {'GB/day @1k/s':>12} {'GB kept':>8} {'shards/TSM':>10}"]
    for r in disk.rps:
        per_reading = disk.per_reading(r.rp)
        days = RETENTION_DAYS[r.rp]
        out.append(f"{r.rp:8} {r.written:9d} {r.stored:9d} {r.bytes:11d} {r.per_point:8.1f} "
                   f"{per_reading:9.2f} {_per_day_gb(per_reading):12.2f} "
                   f"{_per_day_gb(per_reading) * days:8.1f} {r.shards:4d}/{r.tsm_files:<5d} ({days} days)")
    out.append(f"series file {disk.series_file_bytes} B; all policies and the series file: "
               f"{disk.total_per_reading:.2f} B/reading")
    return out


def report_journal(shapes: list[journal_disk.JournalDisk]) -> list[str]:
    out = ["Cloud journal (what an InfluxDB outage piles up):"]
    for j in shapes:
        out.append(f"  {j.readings_per_message:6.1f} readings a message: {j.per_reading:7.1f} B/reading, "
                   f"{j.per_reading * PER_S * 3600 / GB:6.2f} GB an hour of outage @1k/s")
    return out


def report_outbox(nodes: list[outbox_disk.NodeOutbox]) -> list[str]:
    out = [f"Node outbox (default max_rows {outbox_disk.MAX_ROWS}):",
           f"  {'node':32} {'readings':>8} {'B/reading':>9} {'readings/h':>10} "
           f"{'hours held':>10} {'MB when full':>12}"]
    for n in nodes:
        out.append(f"  {n.node:32} {n.readings:8d} {n.per_reading:9.1f} {n.readings_per_hour:10.0f} "
                   f"{n.hours_at_max_rows:10.0f} {n.bytes_at_max_rows / 1e6:12.0f}")
    return out


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.sizing", description=__doc__)
    p.add_argument("--readings", type=int, default=300_000, help="readings of the city")
    p.add_argument("--outbox-readings", type=int, default=200_000,
                   help="readings appended to the nodes' outboxes (each commit is an fsync)")
    p.add_argument("--workdir", type=Path, help="keep the files here (default: a temporary folder)")
    args = p.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="urbanpulse-sizing-") as tmp:
        work = args.workdir or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        lines = report_influx(influx_disk.measure(make_points(args.readings, now=NOW), work))
        shapes = [journal_disk.measure(generate(args.readings, batch=b, now=NOW),
                                       work / f"journal-{b}.sqlite3") for b in (1, 500)]
        lines += report_journal(shapes)
        # a node's readings one by one: the outbox holds readings, not messages
        lines += report_outbox(outbox_disk.measure(generate(args.outbox_readings, batch=1, now=NOW),
                                                   work / "outboxes"))
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
