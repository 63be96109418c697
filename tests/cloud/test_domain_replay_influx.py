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
from cloud.logic.domain_replay import DOMAIN_REPLAY, replay_requests, site_step
from cloud.logic.node import NodeState
from cloud.logic.records import RP_1H, RP_1M, RP_RAW, NodeData, Point
from cloud.sink import make_writer
from cloud.stack_config import cloud_config_for_stack, to_toml
from tests.cloud.logic.domain_helpers import MIN, T0
from tests.cloud.logic.test_domain_replay import (
    DOMAIN,
    DOWN,
    HORIZON,
    STEP,
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
from urbanpulse.testing import wait_for
from urbanpulse.wire import Reading

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
    them at the end of the epoch, when every point of the epoch is handed over. (Here the
    node step asks again with each later reading of a replayed hour, so replays run at
    each hand-over end the same: the next test is the case that tells them apart.)

    Each hand-over is written before the next, so the writer's spacing of its requests
    (WRITE_MIN_SPACING_S, which gathers what Bytewax hands over meanwhile) gathers nothing
    here and only waited: about 0.1 s at each of the ~600 hand-overs, 40 s a run."""
    monkeypatch.setattr(flow, "WRITE_MIN_SPACING_S", 0.0)
    shift, suffix = _scenario()
    part = _partition(db_ready, request)
    nodes: dict[str, NodeState] = {}
    sites: dict[str, HospitalSite] = {}
    late_site: list[Point] = []

    for i, data in enumerate(_moved(backlog_after_fresh(hourly_bed), shift, suffix)):
        state = nodes.setdefault(data.key, NodeState(HORIZON, detect=False))
        points: list[Point] = state.process(data)
        points += replay_requests(data.site, data.node, state.domain.take_late())
        updates = state.take_site_updates()
        _hand_over(part, points)
        _hand_over(part, late_site)  # the previous message's site points
        late_site = (sites.setdefault(data.site, HospitalSite(HORIZON)).process(data.site, updates)
                     if updates else [])
        if i % 20 == 19:  # an epoch ends: everything of it has been handed over
            _hand_over(part, late_site)
            late_site = []
            part.snapshot()
    _hand_over(part, late_site)
    part.snapshot()
    assert part.writer.stats.domain_replays > 0
    stored = _stored(reader, db_ready.database, [f"bv-{suffix}", f"hk-{suffix}"])
    expected = _expected(shift, suffix, hourly_bed)
    assert {k: stored.get(k) for k in expected if stored.get(k) != expected[k]} == {}


# A site whose second ward lags: its reading at 2 h 40 comes once the first ward is at 8 h 30.
LAG_A_END = T0 + 8 * HOUR + 30 * MIN  # ward-a's newest: its floor and the site's, 2 h 30
LAG_B_END = T0 + 2 * HOUR + 30 * MIN  # ward-b's newest before the epoch
LAG_LATE = T0 + HOUR + 50 * MIN  # ward-a's bed-1 reading sent too late: occupied until 2 h 50
LAG_W = T0 + 2 * HOUR + 40 * MIN  # ward-b's reading in the epoch


def _ward_a(t: int, bed1: bool = True, bed2: bool = True, received: int | None = None) -> NodeData:
    """bed-2 free every 10 min; bed-1 hourly at :50, occupied from 1 h 30."""
    seq = (t - T0) // STEP
    readings = [Reading("bed-2", "hospital.bed", t, seq, {"occupied": 0.0})] if bed2 else []
    if bed1 and t % HOUR == 50 * MIN:
        readings.append(Reading("bed-1", "hospital.bed", t, seq, {"occupied": float(t >= T0 + 90 * MIN)}))
    return NodeData("bv/ward-a", "bv", "ward-a", t if received is None else received, readings)


def _ward_b(t: int, received: int | None = None) -> NodeData:
    """One bed of two occupied."""
    seq = (t - T0) // STEP
    return NodeData("bv/ward-b", "bv", "ward-b", t if received is None else received,
                    [Reading("bed-1", "hospital.bed", t, seq, {"occupied": 1.0}),
                     Reading("bed-2", "hospital.bed", t, seq, {"occupied": 0.0})])


def _lagging_ward_in_order() -> Iterator[NodeData]:
    for t in range(T0, LAG_A_END + STEP, STEP):
        yield _ward_a(t)
        if t <= LAG_W:
            yield _ward_b(t)


def test_a_site_total_handed_over_after_the_replay_of_its_window_in_the_epoch_is_replaced(
        db_ready: StackInfo, reader: InfluxHTTP, request: pytest.FixtureRequest,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The case where running the replays at the epoch's end (not with the hand-over that
    asks for them) decides what InfluxDB ends with. In one epoch: ward-b, lagging, sends
    its 2 h 40 (within the site's horizon: the site writes hospital totals from it, with
    ward-a's live state, which lacks bed-1's reading at 1 h 50), then ward-a sends that
    reading, too late (below its floor, 2 h 30): the replay of the site's beds it asks for
    covers 2 h 40. Bytewax hands the site step's points over one message late, so ward-b's
    site total comes after the request; the site step learns of the replay only with
    ward-a's update, after it wrote that total, so it asks nothing again. Run at the
    request's hand-over, the replay was overwritten by that total: the 2 h 40 minute read
    1 occupied instead of 2. (The backlog test above no longer tells: the node step asks
    again with every later reading that touches a replayed hour.)"""
    monkeypatch.setattr(flow, "WRITE_MIN_SPACING_S", 0.0)  # each hand-over a write of its own
    shift, suffix = _scenario()
    part = _partition(db_ready, request)
    nodes: dict[str, NodeState] = {}
    sites: dict[str, HospitalSite] = {}

    def steps(data: NodeData) -> tuple[list[Point], list[Point]]:
        """The node step's points and requests, and the site step's (cloud.flow)."""
        state = nodes.setdefault(data.key, NodeState(HORIZON, detect=False))
        points: list[Point] = state.process(data)
        points += replay_requests(data.site, data.node, state.domain.take_late())
        updates = state.take_site_updates()
        return points, (site_step(sites.setdefault(data.site, HospitalSite(HORIZON)), data.site,
                                  updates) if updates else [])

    before = [_ward_a(t, bed1=t != LAG_LATE) for t in range(T0, LAG_A_END + STEP, STEP)]
    before += [_ward_b(t) for t in range(T0, LAG_B_END + STEP, STEP)]
    earlier: list[Point] = []
    for data in _moved(sorted(before, key=lambda m: m.received_ns), shift, suffix):
        node_points, site_points = steps(data)
        earlier += node_points + site_points
    assert all(rp != DOMAIN_REPLAY for rp, _ in earlier)  # nothing late yet
    part.write_batch([earlier])
    part.snapshot()  # an epoch of its own

    [lagging, too_late] = _moved([_ward_b(LAG_W, received=LAG_A_END),
                                  _ward_a(LAG_LATE, bed2=False, received=LAG_A_END)], shift, suffix)
    node_b, site_b = steps(lagging)
    node_a, site_a = steps(too_late)
    assert [rp for rp, _ in node_a].count(DOMAIN_REPLAY) == 1
    assert all(rp != DOMAIN_REPLAY for rp, _ in node_b + site_b + site_a)
    for points in (node_b, node_a, site_b, site_a):  # the site step's points one message late
        _hand_over(part, points)
    part.snapshot()

    stored = _stored(reader, db_ready.database, [f"bv-{suffix}"])
    expected = {k: _numbers(v) for k, v in domain_points(
        run(_moved(_lagging_ward_in_order(), shift, suffix), replays=False)).items()}
    assert {k: stored.get(k) for k in expected if stored.get(k) != expected[k]} == {}
    total = stored[(RP_1M, "hospital_occupancy", (("site", f"bv-{suffix}"),), LAG_W + shift)]
    assert (total["beds"], total["occupied"]) == (4.0, 2.0)  # one bed of each ward


def _partition(info: StackInfo, request: pytest.FixtureRequest) -> InfluxPartition:
    part = InfluxPartition(make_writer(cloud_config_for_stack_influx(info)))
    request.addfinalizer(part.writer.close)  # after part.close: finalizers run last first
    request.addfinalizer(part.close)
    return part


def _hand_over(part: InfluxPartition, points: list[Point]) -> None:
    """One write_batch, written before the next (the writer thread says when it is done)."""
    part.write_batch([points])
    wait_for(lambda: part.pending_points == 0, 30, "the writer to write the hand-over",
             every_s=0.005)


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
