"""A processor killed mid-request: the request its run had sent in the epoch no snapshot
committed, unanswered when it died, is named by no snapshot (`InfluxWriter.owed` holds only
the writes seen without an answer), yet the kernel goes on sending what the dead process's
socket held and InfluxDB may apply it after the resumed run wrote newer values of the same
windows: the older value stood for good. A resumed sink partition now owes a rewrite of
every point of the aggregate policies it writes in its first REWRITE_AFTER_S
(`InfluxWriter.owe_after_restart`), written again with its newest line then.

Real InfluxDB; the late request is a write of the older values by another client, made
after the resumed writer's (what a late retransmission is to InfluxDB); the writer's clock
is injected."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from cloud import sink
from cloud.config import parse_cloud_config
from cloud.flow import InfluxPartition, InfluxSink, sink_part
from cloud.logic.records import RP_1H, RP_1M, RP_RAW
from cloud.sink import InfluxWriter
from cloud.stack_config import cloud_config_for_stack
from urbanpulse.influx_http import InfluxHTTP
from urbanpulse.stack import StackInfo

pytestmark = pytest.mark.stack


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _stored(admin: InfluxHTTP, db: str, rp: str, measurement: str, t: int) -> dict[str, float]:
    rows = admin.query_points(f'SELECT "v", "sensor" FROM "{rp}"."{measurement}" WHERE time = {t}', db=db)
    return {row["sensor"]: float(row["v"]) for row in rows}


def test_a_late_request_of_the_run_before_does_not_stand_over_what_the_resumed_run_wrote(
        db_ready: StackInfo, admin: InfluxHTTP) -> None:
    creds = db_ready.influx("writer")
    clock = Clock()
    t = time.time_ns() // 60_000_000_000 * 60_000_000_000
    m = f"sink_resumed_{time.monotonic_ns() % 10**9}"

    def line(sensor: str, v: float) -> str:
        return f"{m},sensor={sensor} v={v} {t}"

    with InfluxHTTP(creds.url, creds.username, creds.password()) as client, \
            InfluxHTTP(creds.url, creds.username, creds.password()) as dead_run:
        writer = InfluxWriter(client, db_ready.database, 5000, monotonic=clock)
        writer.owe_after_restart()
        assert writer.seconds_to_rewrite() == sink.REWRITE_AFTER_S
        # the resumed run: the windows' newest values, and a raw point
        writer.write([(RP_1M, line("a", 3.0)), (RP_1H, line("b", 3.0)), (RP_RAW, line("r", 3.0))])
        clock.now += 60
        writer.write([(RP_1M, line("a", 4.0))])  # a written again within the 120 s: its newest
        # the run before's request lands late, older values
        for rp in (RP_1M, RP_1H):
            dead_run.write(line("a" if rp == RP_1M else "b", 1.0).encode(), db=db_ready.database, rp=rp)
        assert _stored(admin, db_ready.database, RP_1M, m, t) == {"a": 1.0}
        clock.now += sink.REWRITE_AFTER_S  # past the first 120 s: what is written now is not owed
        assert writer.seconds_to_rewrite() == 0
        writer.write([(RP_1M, line("c", 5.0))])  # the writer rewrites what is due first
        assert writer.stats.rewritten == 2  # a (its newest line) and b; not the raw point, not c
        assert _stored(admin, db_ready.database, RP_1M, m, t) == {"a": 4.0, "c": 5.0}
        assert _stored(admin, db_ready.database, RP_1H, m, t) == {"b": 3.0}
        assert writer.seconds_to_rewrite() is None
        assert writer.owed() == []


def test_only_a_resumed_partition_owes_it(db_ready: StackInfo, tmp_path: Path) -> None:
    cfg = parse_cloud_config(cloud_config_for_stack(db_ready, tmp_path / "state"))
    fresh = InfluxSink(cfg, process_id=0).build_part("influx", sink_part(0), None)
    resumed = InfluxSink(cfg, process_id=0).build_part("influx", sink_part(0), [])
    assert isinstance(fresh, InfluxPartition)
    assert isinstance(resumed, InfluxPartition)
    try:
        assert fresh.writer.seconds_to_rewrite() is None
        assert resumed.writer.seconds_to_rewrite() is not None
    finally:
        for part in (fresh, resumed):
            part.stop.set()
            part.close()


def test_the_points_owed_so_are_bounded_and_not_in_snapshots(
        db_ready: StackInfo, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every epoch's snapshot in the 120 s would carry them all; a next resume owes its own
    first 120 s instead."""
    monkeypatch.setattr(sink, "RESUMED_OWED_MAX_POINTS", 3)
    creds = db_ready.influx("writer")
    clock = Clock()
    t = time.time_ns() // 60_000_000_000 * 60_000_000_000
    with InfluxHTTP(creds.url, creds.username, creds.password()) as client:
        writer = InfluxWriter(client, db_ready.database, 5000, monotonic=clock)
        writer.owe_after_restart()
        writer.write([(RP_1M, f"sink_resumed_bound,sensor=s{k} v=1 {t}") for k in range(5)])
        assert writer.owed() == []
        clock.now += sink.REWRITE_AFTER_S
        writer.write([(RP_1M, f"sink_resumed_bound,sensor=x v=1 {t}")])
        assert writer.stats.rewritten == 3
