"""The sink's side of a long outage's backlog, on the session's real InfluxDB: per-sensor
windows rebuilt from their own site's raw points only, written in requests of
`batch_lines`; the partition closes its writer's connections."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest

from cloud.config import CloudInflux, parse_cloud_config
from cloud.flow import InfluxPartition
from cloud.logic.domain_replay import ReplaySpan, replay
from cloud.logic.lines import line
from cloud.logic.recompute import RECOMPUTE, Recompute
from cloud.logic.records import Point
from cloud.sink import InfluxWriter, make_writer
from cloud.stack_config import cloud_config_for_stack
from urbanpulse.clock import SystemClock, to_epoch_ns
from urbanpulse.influx_http import InfluxHTTP
from urbanpulse.stack import StackInfo

MINUTE = 60 * 10**9
HOUR = 60 * MINUTE
_runs = itertools.count()


def _influx(info: StackInfo) -> CloudInflux:
    return parse_cloud_config(cloud_config_for_stack(info, Path("/nonexistent-state"))).influx


def _start() -> tuple[int, str]:
    """A minute of the last day (the raw policy keeps 30 days) and a suffix for site names."""
    now = to_epoch_ns(SystemClock().now())
    return now - now % HOUR - 10 * HOUR, f"{now % 10**6}-{next(_runs)}"


def test_a_rebuilt_window_counts_only_the_raw_points_of_its_own_site(
        db_ready: StackInfo, reader: InfluxHTTP, request: pytest.FixtureRequest) -> None:
    """Hospitals of one template share node and sensor ids (every opd-hall has a door-main):
    a window of one site rebuilt from all three sites' points counted 3 times its readings."""
    start, suffix = _start()
    writer = make_writer(_influx(db_ready))
    request.addfinalizer(writer.close)
    sites = [f"a-{suffix}", f"b-{suffix}", f"c-{suffix}"]
    raw = [("raw", line("hospital_door", {"site": site, "node": "opd-hall", "sensor": "door-main",
                                          "kind": "hospital.door"},
                        # stamped at their intervals' ends, within (start, start + 1 min]
                        {"count": float(k + 1), "interval_s": 60.0, "seq": i}, start + (i + 1) * 10**9))
           for k, site in enumerate(sites) for i in range(3)]
    writer.write(raw)
    writer.write([(RECOMPUTE, Recompute("agg_1m", "hospital_door", site, "opd-hall", "door-main",
                                        "hospital.door", MINUTE, start).encode()) for site in sites])
    rows = reader.query_points(f'SELECT "count", "count_max" FROM "agg_1m"."hospital_door" '
                               f"WHERE time = {start} AND (" +
                               " OR ".join(f"\"site\" = '{s}'" for s in sites) + ') GROUP BY "site"',
                               db=db_ready.database)
    assert sorted((r["count"], r["count_max"]) for r in rows) == [(3, 1.0), (3, 2.0), (3, 3.0)]


def test_rebuilt_windows_are_written_in_requests_of_batch_lines(
        db_ready: StackInfo, reader: InfluxHTTP, request: pytest.FixtureRequest) -> None:
    start, suffix = _start()
    site = f"n-{suffix}"
    writer = make_writer(_influx(db_ready))
    request.addfinalizer(writer.close)
    tags = {"site": site, "node": "aq", "sensor": "pm", "kind": "air.pm"}
    writer.write([("raw", line("air_pm", tags, {"pm25": float(i), "pm10": 1.0, "seq": i}, start + i * MINUTE))
                  for i in range(5)])
    small = InfluxWriter(writer.client, writer.database, 2, reader=writer.reader)
    small.write([(RECOMPUTE, Recompute("agg_1m", "air_pm", site, "aq", "pm", "air.pm", MINUTE,
                                       start + i * MINUTE).encode()) for i in range(5)])
    assert small.stats.recomputed == 5
    assert small.stats.points == 5
    assert small.stats.requests == 3  # 2 + 2 + 1 lines, not one request of 5
    rows = reader.query_points(f'SELECT "pm25_mean" FROM "agg_1m"."air_pm" WHERE "site" = \'{site}\'',
                               db=db_ready.database)
    assert [r["pm25_mean"] for r in rows] == [0, 1, 2, 3, 4]


def _established_to(port: int) -> int:
    """This process's TCP connections to 127.0.0.1:`port` that are established."""
    inodes = set()
    for fd in Path("/proc/self/fd").iterdir():
        try:
            target = fd.readlink().name
        except OSError:
            continue  # closed meanwhile
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    count = 0
    for row in Path("/proc/self/net/tcp").read_text().splitlines()[1:]:
        cols = row.split()
        remote, state, inode = cols[2], cols[3], cols[9]
        if state == "01" and int(remote.split(":")[1], 16) == port and inode in inodes:
            count += 1
    return count


def test_closing_the_partition_closes_the_writer_s_connections(db_ready: StackInfo) -> None:
    start, suffix = _start()
    influx = _influx(db_ready)
    port = int(influx.url.rsplit(":", 1)[1].split("/")[0])
    before = _established_to(port)
    part = InfluxPartition(make_writer(influx))
    site = f"c-{suffix}"
    tags = {"site": site, "node": "aq", "sensor": "pm", "kind": "air.pm"}
    part.write_batch([[("raw", line("air_pm", tags, {"pm25": 1.0, "seq": 0}, start)),
                       (RECOMPUTE, Recompute("agg_1m", "air_pm", site, "aq", "pm", "air.pm", MINUTE,
                                             start).encode())]])
    part.flush()
    assert _established_to(port) == before + 2  # the writer's and the reader's
    part.close()
    assert _established_to(port) == before


def test_a_node_s_backlog_windows_are_read_once_per_span_not_once_per_window(
        db_ready: StackInfo, reader: InfluxHTTP, request: pytest.FixtureRequest) -> None:
    """Three sensors, two hours of a reading a minute: 360 minute windows and 6 hour
    windows, read in one query (they span less than READ_SPAN_NS), not 366; each window
    as rebuilt alone."""
    start, suffix = _start()
    site = f"r-{suffix}"
    writer = make_writer(_influx(db_ready))
    request.addfinalizer(writer.close)
    raw = []
    windows = []
    for s in ("pm-1", "pm-2", "pm-3"):
        tags = {"site": site, "node": "aq", "sensor": s, "kind": "air.pm"}
        for i in range(120):
            t = start + i * MINUTE + 7 * 10**9
            raw.append(("raw", line("air_pm", tags, {"pm25": float(i % 17), "pm10": 3.0, "seq": i}, t)))
            windows.append(Recompute("agg_1m", "air_pm", site, "aq", s, "air.pm", MINUTE, start + i * MINUTE))
        windows += [Recompute("agg_1h", "air_pm", site, "aq", s, "air.pm", HOUR, start + h * HOUR)
                    for h in range(2)]
    writer.write(raw)
    writer.write([(RECOMPUTE, w.encode()) for w in windows])
    assert writer.stats.recomputed == 366
    assert writer.stats.reads == 1
    assert writer.stats.rows_read == 360
    expected = {}
    for w in windows:
        rows = reader.query_points(f'SELECT * FROM "raw"."air_pm" WHERE "site" = \'{site}\' AND '
                                   f"\"sensor\" = '{w.sensor}' AND time >= {w.start_ns} AND "
                                   f"time < {w.start_ns + w.width_ns}", db=db_ready.database)
        expected[(w.rp, w.sensor, w.start_ns)] = w.rebuild(rows)
    stored = {}
    for rp in ("agg_1m", "agg_1h"):
        for row in reader.query_points(f'SELECT * FROM "{rp}"."air_pm" WHERE "site" = \'{site}\'',
                                       db=db_ready.database):
            stored[(rp, row["sensor"], row["time"])] = row
    assert stored.keys() == expected.keys()
    for (rp, sensor, t), text in expected.items():
        assert text is not None
        fields = dict(kv.split("=") for kv in text.split(" ")[1].split(","))
        assert float(fields["pm25_mean"]) == stored[(rp, sensor, t)]["pm25_mean"]
        assert fields["count"] == f"{stored[(rp, sensor, t)]['count']}i"


def test_an_air_replay_reads_its_lookback_once_a_day_not_every_six_hours(
        db_ready: StackInfo, reader: InfluxHTTP, request: pytest.FixtureRequest) -> None:
    """An air span of 30 h needs the 11 h before each piece it is read in (NowCast): read
    in 6-hour pieces it read 5 x 17 h of the station's points; in pieces of a day, 2."""
    now = to_epoch_ns(SystemClock().now())
    start = now - now % HOUR - 45 * HOUR
    site = f"air-{now % 10**6}-{next(_runs)}"
    writer = make_writer(_influx(db_ready))
    request.addfinalizer(writer.close)
    raw = []
    for i, t in enumerate(range(start - 12 * HOUR, start + 31 * HOUR, 10 * MINUTE)):
        pm = {"site": site, "node": "aq", "sensor": "pm", "kind": "air.pm"}
        co2 = {"site": site, "node": "aq", "sensor": "co2", "kind": "air.co2"}
        raw.append(("raw", line("air_pm", pm, {"pm25": float(10 + i % 40), "pm10": 30.0, "seq": i}, t)))
        raw.append(("raw", line("air_co2", co2, {"co2": 500.0 + i % 7, "seq": i}, t)))
    writer.write(raw)
    span = ReplaySpan("air", site, "aq", start, start + 30 * HOUR)
    reads_before = writer.stats.reads
    written = writer.replay_domain(span)
    assert writer.stats.reads - reads_before == 4  # 2 pieces x (air.pm, air.co2)
    rows = reader.query_points(f'SELECT * FROM "raw"./air_.*/ WHERE "site" = \'{site}\'',
                               db=db_ready.database)
    expected = replay(span, rows)
    assert written == len(expected) > 0
    stored = reader.query_points(f'SELECT "aqi_epa", "pm25_nowcast" FROM "agg_1h"."air_quality" '
                                 f"WHERE \"site\" = '{site}'", db=db_ready.database)
    assert len(stored) == 30
    nowcast = {int(ln.rsplit(" ", 1)[1]): float(ln.split("pm25_nowcast=")[1].split(",")[0].split(" ")[0])
               for rp, ln in expected if rp == "agg_1h" and ln.startswith("air_quality")}
    assert {row["time"]: row["pm25_nowcast"] for row in stored} == nowcast


def _bed(site: str, bed: str, t: int, occupied: float, seq: int, flags: str | None = None) -> Point:
    fields: dict[str, float | int | str | bool] = {"occupied": occupied, "seq": seq}
    if flags:
        fields["flags"] = flags
    return ("raw", line("hospital_bed", {"site": site, "node": "ward", "sensor": bed,
                                         "kind": "hospital.bed"}, fields, t))


def test_a_bed_silent_for_hours_before_a_replayed_span_keeps_its_state(
        db_ready: StackInfo, reader: InfluxHTTP, request: pytest.FixtureRequest) -> None:
    """Each bed's last state before a beds span is read in the 2 hours before it, then
    further back only for the beds without one there (the site's series from InfluxDB's
    index): bed-1 read once 5 h before, bed-3 warming up in the last 2 h with a valid
    reading 4 h before; the replay counts both as a read of all their points would: stale
    (silent for more than STALE_NS at the span's end), not unknown."""
    now = to_epoch_ns(SystemClock().now())
    start = now - now % HOUR - 10 * HOUR
    site = f"beds-{now % 10**6}-{next(_runs)}"
    writer = make_writer(_influx(db_ready))
    request.addfinalizer(writer.close)
    raw = [_bed(site, "bed-1", start - 5 * HOUR, 1.0, 0), _bed(site, "bed-3", start - 4 * HOUR, 1.0, 0)]
    raw += [_bed(site, "bed-3", start - HOUR + i * MINUTE, 0.0, 1 + i, "warmup") for i in range(3)]
    raw += [_bed(site, "bed-2", start - 3 * HOUR + i * 10 * MINUTE, 0.0, i) for i in range(24)]
    writer.write(raw)
    span = ReplaySpan("beds", site, "", start, start + HOUR)
    reads = writer.stats.reads
    writer.replay_domain(span)
    assert writer.stats.reads - reads == 4  # the span, the window, the site's beds, the older states
    rows = reader.query_points(f'SELECT * FROM "raw"."hospital_bed" WHERE "site" = \'{site}\'',
                               db=db_ready.database)
    expected = replay(span, rows)
    stored = reader.query_points(f'SELECT "beds", "occupied", "stale" FROM "agg_1h"."ward_occupancy" '
                                 f"WHERE \"site\" = '{site}'", db=db_ready.database)
    assert [(r["beds"], r["occupied"], r["stale"]) for r in stored] == [(1, 0, 2)]
    assert any(ln.startswith("ward_occupancy") and "stale=2i" in ln and rp == "agg_1h"
               for rp, ln in expected)
    # every bed with a state in the last 2 hours: no read further back
    writer.write([_bed(site, b, start - HOUR // 2, 0.0, 50) for b in ("bed-1", "bed-3")])
    reads = writer.stats.reads
    writer.replay_domain(span)
    assert writer.stats.reads - reads == 3
    stored = reader.query_points(f'SELECT "beds", "occupied", "stale" FROM "agg_1h"."ward_occupancy" '
                                 f"WHERE \"site\" = '{site}'", db=db_ready.database)
    assert [(r["beds"], r["occupied"], r["stale"]) for r in stored] == [(3, 0, 0)]


def test_a_bed_known_only_to_the_aggregates_is_not_read_further_back(
        db_ready: StackInfo, reader: InfluxHTTP, request: pytest.FixtureRequest) -> None:
    """InfluxDB 1.x's SHOW SERIES without a time condition lists the measurement's series of
    every retention policy, whatever policy FROM names: a bed removed long ago, whose
    hourly aggregates the infinite policy keeps, had every beds replay of its site read the
    raw points further back (the query without a lower time bound)."""
    now = to_epoch_ns(SystemClock().now())
    start = now - now % HOUR - 10 * HOUR
    site = f"beds-gone-{now % 10**6}-{next(_runs)}"
    writer = make_writer(_influx(db_ready))
    request.addfinalizer(writer.close)
    gone = ("agg_1h", line("hospital_bed", {"site": site, "node": "ward", "sensor": "bed-gone",
                                            "kind": "hospital.bed"},
                           {"count": 1, "occupied_mean": 1.0}, start - 400 * 24 * HOUR))
    writer.write([_bed(site, "bed-1", start - HOUR // 2, 1.0, 0),
                  _bed(site, "bed-1", start + 10 * MINUTE, 1.0, 1), gone])
    reads = writer.stats.reads
    writer.replay_domain(ReplaySpan("beds", site, "", start, start + HOUR))
    assert writer.stats.reads - reads == 3  # the span, the window, the site's beds: none further back
    stored = reader.query_points(f'SELECT "beds", "occupied" FROM "agg_1h"."ward_occupancy" '
                                 f"WHERE \"site\" = '{site}'", db=db_ready.database)
    assert [(r["beds"], r["occupied"]) for r in stored] == [(1, 1)]
