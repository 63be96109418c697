"""Domain rollups rebuilt from the raw points on the real InfluxDB (issue 6).

The scenario of tests/cloud/logic/test_domain_replay.py (a ward, an intersection and an
air station offline 8 h, their backlog sent after their fresh reading), moved to the last
day (the raw retention policy refuses older points) and to sites of each test's own:
- the sink: every message's points handed to the real InfluxWriter as the flow hands them
  (raw, live aggregates, replay requests); what InfluxDB ends with equals in-order
  processing, for every domain point;
- the operator's command: a store holding the raw points but no domain point for the
  outage's hours; `urbanpulse cloud recompute` writes exactly the in-order points there.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Iterable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from cloud import flow
from cloud.cli import main as cloud_main
from cloud.config import CloudInflux, load_cloud_config, parse_cloud_config
from cloud.flow import InfluxPartition
from cloud.logic.domain.hospital_site import HospitalSite
from cloud.logic.domain_replay import replay_requests
from cloud.logic.node import NodeState
from cloud.logic.records import RP_1H, RP_1M, RP_RAW, NodeData, Point
from cloud.sink import make_writer
from cloud.stack_config import cloud_config_for_stack, to_toml
from tests.cloud.logic.domain_helpers import T0
from tests.cloud.logic.test_domain_replay import (
    DOMAIN,
    DOWN,
    HORIZON,
    UP,
    Readings,
    backlog_after_fresh,
    domain_points,
    hourly_bed,
    in_order,
    run,
)
from urbanpulse.clock import SystemClock, from_epoch_ns, to_epoch_ns
from urbanpulse.influx_http import InfluxHTTP
from urbanpulse.stack import StackInfo

HOUR = 3600 * 10**9
TAGS = ("node", "sensor", "site")
_runs = itertools.count()


def _moved(messages: Iterable[NodeData], shift: int, suffix: str) -> Iterator[NodeData]:
    for m in messages:
        site = f"{m.site}-{suffix}"
        yield NodeData(f"{site}/{m.node}", site, m.node, m.received_ns + shift,
                       [replace(r, ts_ns=r.ts_ns + shift) for r in m.readings])


def _scenario() -> tuple[int, str]:
    """A shift that puts the scenario's 12 hours in the last day, and a site suffix."""
    now = to_epoch_ns(SystemClock().now())
    start = now - now % HOUR - 20 * HOUR
    return start - T0, f"r{now % 10**6}-{next(_runs)}"


def _stored(reader: InfluxHTTP, db: str, sites: list[str]) -> dict[Any, dict[str, object]]:
    """The domain points InfluxDB holds for `sites`, keyed as `domain_points` keys them."""
    where = " OR ".join(f"\"site\" = '{s}'" for s in sites)
    out: dict[Any, dict[str, object]] = {}
    for rp in (RP_1M, RP_1H):
        for name in sorted(DOMAIN):
            rows = reader.query_points(f'SELECT * FROM "{rp}"."{name}" WHERE {where}', db=db)
            for row in rows:
                tags = tuple(sorted((k, row[k]) for k in TAGS if row.get(k)))
                fields = {k: v for k, v in row.items() if k not in TAGS and k != "time" and v is not None}
                out[(rp, name, tags, int(row["time"]))] = _numbers(fields)
    return out


def _numbers(fields: dict[str, object]) -> dict[str, object]:
    """InfluxDB's JSON writes 100.0 as 100: numbers compared as floats."""
    return {k: float(v) if isinstance(v, int | float) and not isinstance(v, bool) else v
            for k, v in fields.items()}


def _expected(shift: int, suffix: str, readings: Readings | None = None) -> dict[Any, dict[str, object]]:
    messages = in_order() if readings is None else in_order(readings)
    return {k: _numbers(v) for k, v in
            domain_points(run(_moved(messages, shift, suffix), replays=False)).items()}


def test_the_sink_replays_what_the_node_step_asks_and_influxdb_ends_as_in_order(
        db_ready: StackInfo, reader: InfluxHTTP, request: pytest.FixtureRequest) -> None:
    shift, suffix = _scenario()
    writer = make_writer(cloud_config_for_stack_influx(db_ready))
    request.addfinalizer(writer.close)
    nodes: dict[str, NodeState] = {}
    sites: dict[str, HospitalSite] = {}
    requests = 0
    for data in _moved(backlog_after_fresh(), shift, suffix):  # the flow's steps, then the sink
        state = nodes.setdefault(data.key, NodeState(HORIZON, detect=False))
        points: list[Point] = state.process(data)
        updates = state.take_site_updates()
        if updates:
            points += sites.setdefault(data.site, HospitalSite(HORIZON)).process(data.site, updates)
        asks = replay_requests(data.site, data.node, state.domain.take_late())
        requests += len(asks)
        writer.write(points + asks)
    assert requests
    assert writer.stats.domain_replays > 0
    assert writer.stats.refused_requests == 0
    stored = _stored(reader, db_ready.database, [f"bv-{suffix}", f"hk-{suffix}"])
    expected = _expected(shift, suffix)
    assert stored == expected
    # the outage's first hours, which the live rollups left out, are there
    down = DOWN + shift
    ward = stored[(RP_1H, "ward_occupancy", (("node", "ward-a"), ("site", f"bv-{suffix}")), down)]
    assert ward == {"beds": 2.0, "occupied": 2.0, "available": 0.0, "faulty": 0.0, "stale": 0.0,
                    "occupancy_pct": 100.0}


def test_replays_run_after_every_point_of_their_epoch_whatever_order_the_steps_deliver(
        db_ready: StackInfo, reader: InfluxHTTP, request: pytest.FixtureRequest,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Bytewax hands the sink the node step's points (with its replay requests) and the site
    step's points in batches of its own choosing: with several workers a message's site
    points may come after the next message's node points (seen on a 2-worker run). Here
    each message's site points come one message late, each hand-over written before the
    next. The ward's bed-1 reports hourly, so the live hospital totals after the horizon's
    floor lack its late state until it reports again (tests/cloud/logic/test_domain_replay.py
    hourly_bed); the replays that correct them must be the last written: the partition runs
    them at the end of the epoch, when every point of the epoch is handed over.

    Each hand-over is written before the next, so the writer's spacing of its requests
    (WRITE_MIN_SPACING_S, which gathers what Bytewax hands over meanwhile) gathers nothing
    here and only waited: about 0.1 s at each of the ~600 hand-overs, 40 s a run."""
    monkeypatch.setattr(flow, "WRITE_MIN_SPACING_S", 0.0)
    shift, suffix = _scenario()
    part = InfluxPartition(make_writer(cloud_config_for_stack_influx(db_ready)))
    request.addfinalizer(part.writer.close)  # after part.close: finalizers run last first
    request.addfinalizer(part.close)
    nodes: dict[str, NodeState] = {}
    sites: dict[str, HospitalSite] = {}
    late_site: list[Point] = []

    def hand_over(points: list[Point]) -> None:
        part.write_batch([points])
        deadline = time.monotonic() + 30
        while part.pending_points and time.monotonic() < deadline:
            time.sleep(0.005)  # polls: the writer thread, not a time, says when it is done
        assert part.pending_points == 0

    for i, data in enumerate(_moved(backlog_after_fresh(hourly_bed), shift, suffix)):
        state = nodes.setdefault(data.key, NodeState(HORIZON, detect=False))
        points: list[Point] = state.process(data)
        points += replay_requests(data.site, data.node, state.domain.take_late())
        updates = state.take_site_updates()
        hand_over(points)
        hand_over(late_site)  # the previous message's site points
        late_site = (sites.setdefault(data.site, HospitalSite(HORIZON)).process(data.site, updates)
                     if updates else [])
        if i % 20 == 19:  # an epoch ends: everything of it has been handed over
            hand_over(late_site)
            late_site = []
            part.snapshot()
    hand_over(late_site)
    part.snapshot()
    assert part.writer.stats.domain_replays > 0
    stored = _stored(reader, db_ready.database, [f"bv-{suffix}", f"hk-{suffix}"])
    expected = _expected(shift, suffix, hourly_bed)
    assert {k: stored.get(k) for k in expected if stored.get(k) != expected[k]} == {}


def cloud_config_for_stack_influx(info: StackInfo) -> CloudInflux:
    return parse_cloud_config(cloud_config_for_stack(info, Path("/nonexistent-state"))).influx


def test_recompute_command_writes_the_outage_hours_from_the_raw_points(
        db_ready: StackInfo, reader: InfluxHTTP, tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    shift, suffix = _scenario()
    site = f"bv-{suffix}"
    config_path = tmp_path / "cloud.toml"
    config_path.write_text(to_toml(cloud_config_for_stack(db_ready, tmp_path / "state")))
    writer = make_writer(load_cloud_config(config_path).influx)
    raw = [p for p in run(_moved(in_order(), shift, suffix), replays=False) if p[0] == RP_RAW]
    writer.write(raw)  # the raw points only: no domain point is stored yet
    writer.close()
    assert _stored(reader, db_ready.database, [site]) == {}
    lo, hi = DOWN + shift, UP - HORIZON + shift  # the hours the live rollups left out
    rc = cloud_main(["recompute", "--config", str(config_path), "--site", site,
                     "--from", _iso(lo + HOUR // 2), "--to", _iso(hi - HOUR // 2)])  # widened
    assert rc == 0
    out = capsys.readouterr().out
    assert f"{site} beds [" in out
    expected = {k: v for k, v in _expected(shift, suffix).items()
                if dict(k[2])["site"] == site and lo <= k[3] < hi}
    assert {k[1] for k in expected} == {"ward_occupancy", "hospital_occupancy"}
    assert _stored(reader, db_ready.database, [site]) == expected
    # run again: the same points, overwritten
    assert cloud_main(["recompute", "--config", str(config_path), "--site", site,
                       "--from", _iso(lo), "--to", _iso(hi)]) == 0
    assert _stored(reader, db_ready.database, [site]) == expected


def _iso(ns: int) -> str:
    return from_epoch_ns(ns).isoformat()


def test_recompute_command_refuses_bad_arguments_with_clear_errors(
        db_ready: StackInfo, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = cloud_config_for_stack(db_ready, tmp_path / "state")
    path = tmp_path / "cloud.toml"
    path.write_text(to_toml(config))
    base = ["recompute", "--config", str(path), "--site"]
    assert cloud_main([*base, "bv", "--from", "2026-01-02T00:00:00Z", "--to", "2026-01-01T00:00:00Z"]) == 2
    assert "--from: must come before --to" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exc:
        cloud_main([*base, "bv", "--from", "2026-01-01T00:00:00"])  # no zone
    assert exc.value.code == 2
    assert "has no zone" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        cloud_main([*base, "Bad Site"])
    assert "not a valid id" in capsys.readouterr().err
    del config["influx"]["reader_password_file"]
    path.write_text(to_toml(config))
    assert cloud_main([*base, "bv"]) == 2
    assert "influx.reader_password_file" in capsys.readouterr().err
