"""The "Processor" panels of the data-health dashboard and the "Processor silent",
"Processor behind", "Processor cannot read back" and "State disk low" rules, run against
the real InfluxDB of the test session over `processor` points made by the processor's own
class (cloud.health.ProcessorHealth) on a fake clock: one process caught up, one behind,
one silent for 20 minutes, one whose state disk runs low, one that holds rebuilds InfluxDB
refused to read for (the last 15 minutes) and was denied writes before. Their disks' free space comes from a
fake statvfs (a real disk cannot be made to run low here). Grafana cannot run here;
check.py sends the queries as Grafana would."""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path

import pytest

from cloud.health import ProcessorHealth
from cloud.journal import JournalRecord
from cloud.logic.records import Point
from cloud.sink import SinkStats
from urbanpulse.clock import FakeClock, to_epoch_ns
from urbanpulse.dashboards.alerts import PROCESSOR_BEHIND_S, RULES, STATE_DISK_LOW_BYTES, AlertRule
from urbanpulse.dashboards.check import check_alerts, check_dashboards
from urbanpulse.dashboards.city import data_health
from urbanpulse.dashboards.queries import TimeRange
from urbanpulse.influx_http import InfluxHTTP
from urbanpulse.stack import StackInfo

pytestmark = pytest.mark.stack

UP, BEHIND, GONE, LOW, REFUSED = 91, 92, 93, 94, 95  # ids no processor of the test session uses
REFUSED_SINCE_S = 15 * 60  # before the end: the rule's pending time (10 minutes) has passed
EVERY_S = 10.0
BEHIND_BY_S = 600.0
FRSIZE = 4096
AMPLE = 200 * 1024**3  # free on the state disk
FILLING_BY = 11_000_000 * EVERY_S  # a journal growing 11 MB/s (100,000 readings/s)


class ShrinkingDisk:
    """statvfs of a disk with `free` bytes available, less `by` at every look."""

    def __init__(self, free: float, by: float) -> None:
        self.free = free
        self.by = by

    def __call__(self, path: Path) -> os.statvfs_result:
        blocks = int(self.free) // FRSIZE
        self.free = max(0.0, self.free - self.by)
        return os.statvfs_result((FRSIZE, FRSIZE, 10**9, blocks, blocks, 10**6, 10**6, 10**6, 0, 255))


@dataclass(frozen=True)
class Seeded:
    now: datetime
    reader: InfluxHTTP
    database: str


def _reports(process: int, start: datetime, end: datetime, behind: bool,
             disk: ShrinkingDisk | None = None, refused_from: datetime | None = None) -> list[Point]:
    """What a process reports from `start` to `end`, every EVERY_S: caught up, or reading
    records received BEHIND_BY_S before it read them, with a shrinking backlog; its state
    disk has AMPLE free unless `disk` says otherwise. From `refused_from` on, it holds 2
    domain spans and 3 windows InfluxDB refused to read for, after 4 writes denied."""
    clock = FakeClock(start)
    health = ProcessorHealth(process, EVERY_S, clock, state_dir=Path("/state"),
                             statvfs=disk or ShrinkingDisk(AMPLE, 0))
    stats = SinkStats()
    points: list[Point] = []
    backlog = 50_000
    while clock.now() <= end:
        received = to_epoch_ns(clock.now() - timedelta(seconds=BEHIND_BY_S))
        records = [JournalRecord("i0", k, received, "urbanpulse/v1/s/n/data", b"") for k in range(50)]
        backlog -= 50
        health.journal_read(records, caught_up=not behind, backlog=partial(int, backlog))
        stats.points += 2000
        stats.requests += 1
        stats.retries += 1 if behind else 0
        if refused_from is not None and clock.now() >= refused_from:
            stats.spans_refused, stats.windows_refused = 2, 3
            stats.denied, stats.denied_s = 4, 7.5
        points.append(health.report(stats, 0))
        clock.advance(EVERY_S)
    return points


@pytest.fixture(scope="module")
def seeded(db_ready: StackInfo) -> Iterator[Seeded]:
    stack = db_ready
    now = datetime.now(UTC)
    points = (_reports(UP, now - timedelta(minutes=40), now, behind=False)
              + _reports(BEHIND, now - timedelta(minutes=40), now, behind=True)
              + _reports(GONE, now - timedelta(minutes=40), now - timedelta(minutes=20), behind=False)
              # 40 minutes of filling at full load from 30 GB free: about 4 GB left at the end
              + _reports(LOW, now - timedelta(minutes=40), now, behind=False,
                         disk=ShrinkingDisk(30e9, FILLING_BY))
              + _reports(REFUSED, now - timedelta(minutes=40), now, behind=False,
                         refused_from=now - timedelta(seconds=REFUSED_SINCE_S)))
    writer_creds = stack.influx("writer")
    with InfluxHTTP(writer_creds.url, writer_creds.username, writer_creds.password()) as writer:
        writer.write("\n".join(text for _, text in points).encode(), db=stack.database, rp="raw")
    reader_creds = stack.influx("reader")
    with InfluxHTTP(reader_creds.url, reader_creds.username, reader_creds.password()) as reader:
        yield Seeded(now, reader, stack.database)


def test_the_processor_panels_run_and_return_rows(seeded: Seeded) -> None:
    results = check_dashboards(seeded.reader, seeded.database,
                               TimeRange.last(seeded.now + timedelta(minutes=1), timedelta(hours=1)),
                               (data_health(),))
    processor = [r for r in results if r.measurement == "processor"]
    panels = [p for p in data_health().panels if p.title.startswith("Processor")]
    assert len(processor) == 2 * sum(len(p.queries) for p in panels) == 18
    assert [r.where for r in processor if not r.ok or r.rows == 0] == []


def test_the_read_lag_panel_shows_each_process_lag(seeded: Seeded) -> None:
    (result,) = [r for r in check_dashboards(
        seeded.reader, seeded.database, TimeRange.last(seeded.now + timedelta(minutes=1),
                                                       timedelta(minutes=30)), (data_health(),))
        if r.where == "urbanpulse-data-health / Processor: read lag / A [all]"]
    lags = {s["tags"]["process"]: [v[1] for v in s["values"] if v[1] is not None]
            for s in seeded.reader.query(result.influxql, db=seeded.database)}
    assert max(lags[str(BEHIND)]) == BEHIND_BY_S
    assert max(lags[str(UP)]) == 0.0


def _rule(uid: str) -> AlertRule:
    (rule,) = [r for r in RULES if r.uid == uid]
    return rule


def _firing(seeded: Seeded, uid: str) -> dict[int, bool]:
    """Per seeded process: what the rule's threshold decides on the last value of its series."""
    rule = _rule(uid)
    (result,) = [r for r in check_alerts(seeded.reader, seeded.database, seeded.now)
                 if r.where == f"alert {uid}"]
    assert result.ok, result.error
    out = {}
    for series in seeded.reader.query(result.influxql, db=seeded.database):
        process = int(series["tags"]["process"])
        if process in (UP, BEHIND, GONE, LOW, REFUSED):
            out[process] = rule.fires(float(series["values"][-1][1]))
    return out


def test_processor_silent_fires_for_the_process_gone_quiet_only(seeded: Seeded) -> None:
    assert _firing(seeded, "urbanpulse-processor-silent") == {UP: False, BEHIND: False, GONE: True,
                                                               LOW: False, REFUSED: False}


def test_processor_behind_fires_for_the_lagging_process_only(seeded: Seeded) -> None:
    # The silent process has no point in the rule's 10 minutes: no series, no alert of this rule.
    assert BEHIND_BY_S > PROCESSOR_BEHIND_S
    assert _firing(seeded, "urbanpulse-processor-behind") == {UP: False, BEHIND: True, LOW: False,
                                                               REFUSED: False}


def test_state_disk_low_fires_for_the_process_whose_disk_runs_low_only(seeded: Seeded) -> None:
    assert 0 < 30e9 - 240 * FILLING_BY < STATE_DISK_LOW_BYTES < AMPLE
    assert _firing(seeded, "urbanpulse-state-disk-low") == {UP: False, BEHIND: False, LOW: True,
                                                             REFUSED: False}


def test_the_state_disk_panel_shows_the_disk_filling(seeded: Seeded) -> None:
    (result,) = [r for r in check_dashboards(
        seeded.reader, seeded.database, TimeRange.last(seeded.now + timedelta(minutes=1),
                                                       timedelta(minutes=30)), (data_health(),))
        if r.where == "urbanpulse-data-health / Processor: state disk free / A [all]"]
    free = {s["tags"]["process"]: [v[1] for v in s["values"] if v[1] is not None]
            for s in seeded.reader.query(result.influxql, db=seeded.database)}
    assert free[str(UP)][-1] == AMPLE
    low = free[str(LOW)]
    assert low == sorted(low, reverse=True)
    assert low[-1] < STATE_DISK_LOW_BYTES


def test_processor_cannot_read_back_fires_for_the_process_holding_refused_rebuilds_only(
        seeded: Seeded) -> None:
    """It has held them for longer than the rule's pending time (Grafana waits that long on
    a firing series; here the last value decides)."""
    rule = _rule("urbanpulse-processor-read-refused")
    assert rule.pending == "10m"
    assert REFUSED_SINCE_S > 10 * 60
    assert _firing(seeded, rule.uid) == {UP: False, BEHIND: False, LOW: False, REFUSED: True}
    (result,) = [r for r in check_alerts(seeded.reader, seeded.database, seeded.now)
                 if r.where == f"alert {rule.uid}"]
    held = {int(s["tags"]["process"]): s["values"][-1][1]
            for s in seeded.reader.query(result.influxql, db=seeded.database)}
    assert held[REFUSED] == 5  # 2 spans + 3 windows


def test_the_processor_now_table_shows_denied_writes_and_refused_rebuilds(seeded: Seeded) -> None:
    (result,) = [r for r in check_dashboards(
        seeded.reader, seeded.database, TimeRange.last(seeded.now + timedelta(minutes=1),
                                                       timedelta(minutes=30)), (data_health(),))
        if r.where == "urbanpulse-data-health / Processor now / A [all]"]
    rows = {s["tags"]["process"]: dict(zip(s["columns"], s["values"][-1], strict=True))
            for s in seeded.reader.query(result.influxql, db=seeded.database)}
    assert (rows[str(REFUSED)]["denied"], rows[str(REFUSED)]["spans refused"],
            rows[str(REFUSED)]["windows refused"]) == (4, 2, 3)
    assert (rows[str(UP)]["denied"], rows[str(UP)]["spans refused"]) == (0, 0)
