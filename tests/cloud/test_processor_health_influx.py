"""The InfluxDB partition's writer thread writes the `processor` point itself, on the real
InfluxDB of the test session: from its start with no data yet, beside the data it writes
(which it counts, not itself), and again after InfluxDB was out of its reach (a real TCP
partition, tests/netfault.py), having said so once in the log."""

from __future__ import annotations

import itertools
import logging
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any

import pytest

from cloud.flow import MID_BATCH_REPORT_S, InfluxPartition
from cloud.health import ProcessorHealth
from cloud.logic.lines import line
from cloud.sink import InfluxWriter
from tests.netfault import proxy_for_url
from urbanpulse.clock import FakeClock, SystemClock, to_epoch_ns
from urbanpulse.influx_http import InfluxHTTP
from urbanpulse.stack import StackInfo
from urbanpulse.testing import wait_for

pytestmark = pytest.mark.stack

EVERY_S = 0.2  # below the config's 1 s minimum: the class takes any interval


@pytest.fixture
def writer_client(db_ready: StackInfo) -> Iterator[InfluxHTTP]:
    creds = db_ready.influx("writer")
    with InfluxHTTP(creds.url, creds.username, creds.password()) as client:
        yield client


def _reports(reader: InfluxHTTP, process: int, since: datetime) -> list[dict[str, Any]]:
    return reader.query_points(
        f'SELECT * FROM "raw"."processor" WHERE "process" = \'{process}\' '
        f"AND time >= {to_epoch_ns(since)} ORDER BY time", db="urbanpulse")


def test_reports_start_with_the_partition_and_count_the_data_it_writes(
        db_ready: StackInfo, writer_client: InfluxHTTP, reader: InfluxHTTP) -> None:
    since = datetime.now(UTC)
    writer = InfluxWriter(writer_client, db_ready.database, 5000)
    part = InfluxPartition(writer, health=ProcessorHealth(71, EVERY_S, SystemClock()))
    part.start()
    try:
        idle = wait_for(lambda: (lambda r: r if len(r) >= 2 else None)(_reports(reader, 71, since)),
                        20, "two reports before any data")
        assert [r["points_written"] for r in idle] == [0] * len(idle)
        assert idle[0].get("records_read") is None  # no journal partition in this process
        tags = {"site": "health-test", "node": "n-71", "sensor": "co2-1", "kind": "air.co2"}
        t = to_epoch_ns(since)
        part.write_batch([[("raw", line("air_co2", tags, {"co2": 400.0 + i, "seq": i}, t + i))
                           for i in range(3)]])
        part.flush()
        after = wait_for(lambda: [r for r in _reports(reader, 71, since) if r["points_written"] == 3],
                         20, "a report counting the 3 points")
        counts = after[0]["write_requests"], after[0]["write_retries"], after[0]["points_pending"]
        assert counts == (1, 0, 0)
        assert writer.stats.points == 3  # the reports are not counted as data
        uptimes = [r["uptime_s"] for r in _reports(reader, 71, since)]
        assert uptimes == sorted(uptimes)
        assert uptimes[-1] > uptimes[0]
    finally:
        part.close()
    assert part._thread is not None
    assert not part._thread.is_alive()


def test_reports_stop_while_influxdb_is_unreachable_and_resume_after(
        db_ready: StackInfo, reader: InfluxHTTP, caplog: pytest.LogCaptureFixture) -> None:
    creds = db_ready.influx("writer")
    with proxy_for_url(creds.url) as proxy, \
            InfluxHTTP(f"http://127.0.0.1:{proxy.port}", creds.username, creds.password(),
                       timeout_s=0.5) as client:
        part = InfluxPartition(InfluxWriter(client, db_ready.database, 5000),
                               health=ProcessorHealth(72, EVERY_S, SystemClock()))
        since = datetime.now(UTC)
        part.start()
        try:
            wait_for(lambda: _reports(reader, 72, since), 20, "a first report")
            with caplog.at_level(logging.WARNING, logger="urbanpulse.cloud.flow"):
                proxy.partition()
                opened = proxy.accepted
                wait_for(lambda: proxy.accepted >= opened + 3, 20, "three reports into the dead link")
                warned = [r for r in caplog.records if "health point was not written" in r.getMessage()]
                assert len(warned) == 1
                proxy.heal()
                healed = datetime.now(UTC)
                back = wait_for(lambda: _reports(reader, 72, healed), 20, "a report after the heal")
            assert back[0]["uptime_s"] > 0
            assert part._thread is not None
            assert part._thread.is_alive()
        finally:
            part.close()


class TimedWrites:
    """The real InfluxDB client, with each request taking `request_s` on the health's fake
    clock (a slow InfluxDB, or a long catch-up, without waiting for it), and a log of what
    each request carried and when it began, in order."""

    def __init__(self, client: InfluxHTTP, clock: FakeClock, request_s: float,
                 during_data: Callable[[], None] | None = None) -> None:
        self.client = client
        self.clock = clock
        self.request_s = request_s
        self.during_data = during_data  # what the dataflow does while a data request runs
        self.log: list[tuple[str, float]] = []

    def write(self, lines: bytes, *, db: str, rp: str | None = None, precision: str = "ns") -> None:
        self.client.write(lines, db=db, rp=rp, precision=precision)
        data = not lines.startswith(b"processor,")
        self.log.append(("data" if data else "report", self.clock.monotonic()))
        self.clock.advance(self.request_s)
        if data and self.during_data is not None:
            self.during_data()


def test_a_long_batch_does_not_hold_the_reports_back_nor_do_they_crowd_its_requests(
        db_ready: StackInfo, writer_client: InfluxHTTP, reader: InfluxHTTP) -> None:
    # A catch-up batch of many requests (the 200,000 points handed over at most, or
    # thousands of windows to rebuild) may take minutes: reports must go on between its
    # requests, or "Processor silent" (5 minutes) fires on a process hard at work; but on a
    # slow InfluxDB not every interval, which would take a request in three from the data.
    since = datetime.now(UTC)
    clock = FakeClock(since)
    timed = TimedWrites(writer_client, clock, request_s=4.0)
    part = InfluxPartition(InfluxWriter(timed, db_ready.database, batch_lines=1),
                           health=ProcessorHealth(73, 10.0, clock))
    part.start()
    try:
        wait_for(lambda: [w for w, _ in timed.log] == ["report"], 20, "the first report")
        tags = {"site": "health-test", "node": "n-73", "sensor": "co2-1", "kind": "air.co2"}
        t = to_epoch_ns(since)
        part.write_batch([[("raw", line("air_co2", tags, {"co2": 400.0 + i, "seq": i}, t + i))
                           for i in range(90)]])  # 90 requests: 6 minutes on the clock
        part.flush()
    finally:
        part.close()
    reports_at = [at for what, at in timed.log if what == "report"]
    assert timed.log[-1][0] == "report"  # and one when the batch is done
    gaps = [b - a for a, b in itertools.pairwise(reports_at)]
    assert max(gaps) <= MID_BATCH_REPORT_S + 4.0, timed.log  # well within the 5 minutes
    assert len(reports_at) <= 2 + 6 * 60 / MID_BATCH_REPORT_S, timed.log
    assert len(_reports(reader, 73, since)) == len(reports_at)


def test_batches_back_to_back_on_a_slow_influxdb_get_reports_as_one_long_batch(
        db_ready: StackInfo, writer_client: InfluxHTTP, reader: InfluxHTTP) -> None:
    # The dataflow hands over a batch of one request's points while each request runs: the
    # writer never idles, and its reports go once a minute, not every interval.
    since = datetime.now(UTC)
    clock = FakeClock(since)
    tags = {"site": "health-test", "node": "n-74", "sensor": "co2-1", "kind": "air.co2"}
    t = to_epoch_ns(since)
    handed = [0]

    def hand_over() -> None:
        if handed[0] < 90:
            handed[0] += 1
            part.write_batch([[("raw", line("air_co2", tags, {"co2": 400.0, "seq": handed[0]},
                                            t + handed[0]))]])

    timed = TimedWrites(writer_client, clock, request_s=4.0, during_data=hand_over)
    part = InfluxPartition(InfluxWriter(timed, db_ready.database, batch_lines=1),
                           health=ProcessorHealth(74, 10.0, clock))
    part.start()
    try:
        wait_for(lambda: [w for w, _ in timed.log] == ["report"], 20, "the first report")
        hand_over()
        wait_for(lambda: handed[0] == 90, 30, "90 batches handed over")
        part.flush()
    finally:
        part.close()
    reports_at = [at for what, at in timed.log if what == "report"]
    assert len([w for w, _ in timed.log if w == "data"]) == 90
    assert max(b - a for a, b in itertools.pairwise(reports_at)) <= MID_BATCH_REPORT_S + 4.0, timed.log
    assert len(reports_at) <= 2 + 6 * 60 / MID_BATCH_REPORT_S, timed.log


def test_a_health_point_refused_for_a_missing_policy_names_init_db(
        db_ready: StackInfo, admin: InfluxHTTP, caplog: pytest.LogCaptureFixture) -> None:
    """A processor started before `cloud init-db` (found by the docs walk): the warning
    said only "retention policy not found"."""
    import time

    db = f"s11_health_no_policies_{time.monotonic_ns()}"
    admin.query(f'CREATE DATABASE "{db}"', post=True)
    creds = db_ready.influx("admin")
    part = InfluxPartition(InfluxWriter(InfluxHTTP(creds.url, creds.username, creds.password()),
                                        db, 5000),
                           health=ProcessorHealth(73, EVERY_S, SystemClock()))
    try:
        with caplog.at_level(logging.WARNING, logger="urbanpulse.cloud.flow"):
            part.start()
            warned = wait_for(lambda: [r.getMessage() for r in caplog.records
                                       if "health point was not written" in r.getMessage()],
                              20, "the warning")
        assert "create the policies with urbanpulse cloud init-db" in warned[0], warned
    finally:
        part.close()
        admin.query(f'DROP DATABASE "{db}"', post=True)
