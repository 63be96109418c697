"""Late data older than the aggregation horizon gets into the domain rollups by a replay
from the raw points (issue 6): a ward, an intersection and an air station offline for 8 h
send their fresh reading first and their backlog after it; with the default 6 h horizon
the backlog's first 2 h are too late for the live rollups. With the replays the node step
asks for (run here as the sink runs them: after each message's raw points, over every raw
point written so far), every domain point ends as in-order processing gives it.

The node step and the site step are run as the dataflow wires them (cloud.flow: NodeState
per node, HospitalSite per site fed with the node states' updates)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from cloud.logic.domain.hospital_site import HospitalSite
from cloud.logic.domain_replay import (
    DOMAIN_REPLAY,
    ReplaySpan,
    coalesce,
    reading_of,
    replay,
    replay_requests,
    site_step,
)
from cloud.logic.node import NodeState
from cloud.logic.records import RP_1H, RP_1M, RP_RAW, NodeData, Point
from tests.cloud.logic.domain_helpers import HOUR, MIN, T0, final, parse, select
from urbanpulse.wire import Reading

HORIZON = 6 * HOUR  # flow.aggregate_horizon_s's default
STEP = 10 * MIN
END = T0 + 12 * HOUR
DOWN, UP = T0 + 2 * HOUR, T0 + 10 * HOUR  # the outage of the three nodes
OFFLINE = {("bv", "ward-a"), ("hk", "tl-1"), ("hk", "aq-1")}
DOMAIN = {"ward_occupancy", "hospital_occupancy", "traffic_lane", "traffic_intersection",
          "air_quality", "queue_wait", "hospital_wait", "door_flow", "hospital_flow"}


def _readings(site: str, node: str, t: int, seq: int) -> list[Reading]:
    if node == "ward-a":  # bed-1 occupied until T0 + 3 h, bed-2 from T0 + 2 h 30
        return [Reading("bed-1", "hospital.bed", t, seq, {"occupied": float(t < T0 + 3 * HOUR)}),
                Reading("bed-2", "hospital.bed", t, seq, {"occupied": float(t >= T0 + 150 * MIN)})]
    if node == "ward-b":  # always sent in time: one of two beds occupied
        return [Reading("bed-1", "hospital.bed", t, seq, {"occupied": 1.0}),
                Reading("bed-2", "hospital.bed", t, seq, {"occupied": 0.0})]
    if node == "tl-1":
        return [Reading("lane-1", "traffic.loop", t, seq, {"count": 6.0, "interval_s": 600.0}),
                Reading("lane-2", "traffic.loop", t, seq, {"count": 3.0, "interval_s": 600.0,
                                                           "occupancy_pct": 4.0})]
    pm25 = 30.0 if DOWN <= t < DOWN + HOUR else 10.0
    return [Reading("pm-1", "air.pm", t, seq, {"pm25": pm25, "pm10": 40.0}),
            Reading("co2-1", "air.co2", t, seq, {"co2": 500.0})]


NODES = [("bv", "ward-a"), ("bv", "ward-b"), ("hk", "tl-1"), ("hk", "aq-1")]


Readings = Callable[[str, str, int, int], list[Reading]]


def _message(site: str, node: str, t: int, received: int, readings: Readings = _readings) -> NodeData:
    return NodeData(f"{site}/{node}", site, node, received, readings(site, node, t, (t - T0) // STEP))


def in_order(readings: Readings = _readings) -> Iterator[NodeData]:
    for t in range(T0, END, STEP):
        for site, node in NODES:
            yield _message(site, node, t, t, readings)


def backlog_after_fresh(readings: Readings = _readings) -> Iterator[NodeData]:
    """The outage: the offline nodes send nothing in [DOWN, UP); at UP each sends its fresh
    reading, then its backlog oldest first, then goes on live."""
    for t in range(T0, END, STEP):
        for site, node in NODES:
            if (site, node) in OFFLINE and DOWN <= t < UP:
                continue
            yield _message(site, node, t, t, readings)
            if (site, node) in OFFLINE and t == UP:
                for old in range(DOWN, UP, STEP):
                    yield _message(site, node, old, t, readings)


def _row(point: str) -> dict[str, Any]:
    _, tags, fields, ts = parse(point)
    return {**tags, **fields, "time": ts}


def run(messages: Iterator[NodeData], replays: bool) -> list[Point]:
    """The node and site steps over `messages`; with `replays`, each message's replay
    requests are run after its raw points are stored, over every raw point stored."""
    nodes: dict[str, NodeState] = {}
    sites: dict[str, HospitalSite] = {}
    raw: list[dict[str, Any]] = []
    out: list[Point] = []
    for data in messages:
        state = nodes.setdefault(data.key, NodeState(HORIZON, detect=False))
        points = state.process(data)
        requests = replay_requests(data.site, data.node, state.domain.take_late())
        updates = state.take_site_updates()
        if updates:
            points += site_step(sites.setdefault(data.site, HospitalSite(HORIZON)), data.site, updates)
        requests += [p for p in points if p[0] == DOMAIN_REPLAY]
        raw += [_row(p) for rp, p in points if rp == RP_RAW]
        out += points
        if replays:
            for span in coalesce(ReplaySpan.decode(text) for _, text in requests):
                out += replay(span, raw)
    return out


def domain_points(points: list[Point]) -> dict[Any, dict[str, object]]:
    return {k: v for k, v in final([p for p in points if p[0] in (RP_1M, RP_1H)]).items()
            if k[1] in DOMAIN}


@pytest.fixture(scope="module")
def expected() -> dict[Any, dict[str, object]]:
    return domain_points(run(in_order(), replays=False))


def test_without_replay_the_backlog_beyond_the_horizon_is_left_out_of_the_domain_rollups(
        expected: dict[Any, dict[str, object]]) -> None:
    late = domain_points(run(backlog_after_fresh(), replays=False))
    missing = {k for k in expected if k not in late}
    # what the gap was: the offline nodes' windows of [DOWN, UP - horizon) never computed,
    # and the loops' minute before DOWN: their interval ending at DOWN, stamped DOWN, is its
    assert missing
    assert all(DOWN <= k[3] < UP - HORIZON or (k[1].startswith("traffic_") and k[3] == DOWN - MIN)
               for k in missing)
    assert any(k[3] == DOWN - MIN for k in missing)
    assert {k[1] for k in missing} >= {"ward_occupancy", "traffic_lane", "traffic_intersection",
                                       "air_quality"}


def test_with_replay_every_domain_point_is_that_of_in_order_processing(
        expected: dict[Any, dict[str, object]]) -> None:
    late = domain_points(run(backlog_after_fresh(), replays=True))
    assert late == expected
    # hand-checked: the ward's hour of DOWN ends with both beds occupied, the next with one
    ward = select(list(late_points := _as_points(late)), RP_1H, "ward_occupancy", site="bv", node="ward-a")
    assert ward[DOWN] == {"beds": 2, "occupied": 2, "available": 0, "faulty": 0, "stale": 0,
                          "occupancy_pct": 100.0}
    assert ward[DOWN + HOUR]["occupancy_pct"] == 50.0
    site = select(late_points, RP_1M, "hospital_occupancy", site="bv")
    assert site[DOWN + 30 * MIN]["occupied"] == 3  # ward-a's two beds and ward-b's one
    lane = select(late_points, RP_1H, "traffic_lane", site="hk", node="tl-1", sensor="lane-1")
    assert (lane[DOWN]["vehicles"], lane[DOWN]["flow_vpm"]) == (36.0, 0.6)
    crossing = select(late_points, RP_1H, "traffic_intersection", site="hk", node="tl-1")
    assert crossing[DOWN]["vehicles"] == 54.0
    assert crossing[DOWN]["flow_vpm"] == pytest.approx(0.9)  # 0.6 + 0.3, the lanes' flows
    air = select(late_points, RP_1H, "air_quality", site="hk", node="aq-1")
    assert (air[DOWN]["pm25_mean"], air[DOWN]["pm25_n"], air[DOWN]["co2_mean"]) == (30.0, 6, 500.0)
    # NowCast of DOWN + 1 h (the data begins at T0): c1 = 10, c2 = 30, c3 = c4 = 10, w = 1/2:
    # (10 + 30/2 + 10/4 + 10/8) / (1 + 1/2 + 1/4 + 1/8) = 28.75 / 1.875
    assert air[DOWN + HOUR]["pm25_nowcast"] == pytest.approx(28.75 / 1.875)


def hourly_bed(site: str, node: str, t: int, seq: int) -> list[Reading]:
    """ward-a's bed-1 reports once an hour (at :50; a bed's heartbeat may be as long as
    3600 s on the edge) and is occupied from DOWN + 1 h 30; bed-2, free, every 10 min."""
    if node != "ward-a":
        return _readings(site, node, t, seq)
    out = [Reading("bed-2", "hospital.bed", t, seq, {"occupied": 0.0})]
    if t % HOUR == 50 * MIN:
        out.append(Reading("bed-1", "hospital.bed", t, seq, {"occupied": float(t >= DOWN + 90 * MIN)}))
    return out


def test_a_late_bed_state_carried_past_its_hour_is_replayed_where_it_lasts() -> None:
    """bed-1's reading at DOWN + 1 h 50 is too late (the horizon's floor is DOWN + 2 h) and
    its state lasts until its next reading at DOWN + 2 h 50: the ward's and the hospital's
    minute windows after the floor and before that reading hold it (occupied), not the
    state bed-1 had before the outage (free)."""
    expected = domain_points(run(in_order(hourly_bed), replays=False))
    late = domain_points(run(backlog_after_fresh(hourly_bed), replays=True))
    assert {k: late.get(k) for k in expected if late.get(k) != expected[k]} == {}
    ward = select(_as_points(late), RP_1M, "ward_occupancy", site="bv", node="ward-a")
    assert ward[DOWN + 2 * HOUR + 40 * MIN]["occupied"] == 1  # bed-1, as reported at 1 h 50
    assert ward[DOWN + 2 * HOUR + 50 * MIN]["occupied"] == 1


def _as_points(points: dict[Any, dict[str, object]]) -> list[Point]:
    """`final`'s dict back to points, for `select`."""
    out: list[Point] = []
    for (rp, name, tags, ts), fields in points.items():
        tag_text = "".join(f",{k}={v}" for k, v in tags)
        field_text = ",".join(f"{k}={v}i" if isinstance(v, int) and not isinstance(v, bool)
                              else f'{k}="{v}"' if isinstance(v, str) else f"{k}={v!r}"
                              for k, v in fields.items())
        out.append((rp, f"{name}{tag_text} {field_text} {ts}"))
    return out


def test_a_raw_point_flagged_out_of_the_windows_or_out_of_range_is_no_reading() -> None:
    row = {"time": T0 + 7, "site": "hk", "node": "aq-1", "sensor": "pm-1", "kind": "air.pm",
           "seq": 7, "pm25": 12, "pm10": 20.0, "pm1": None}
    assert reading_of(row) == Reading("pm-1", "air.pm", T0, 7, {"pm25": 12.0, "pm10": 20.0})
    assert reading_of(row | {"flags": "backlog,warmup"}) is None
    assert reading_of(row | {"flags": "clock_unsynced"}) is None
    assert reading_of(row | {"pm25": 5000.0}) is None  # beyond the contract's 1000 ug/m3
    assert reading_of(row | {"kind": "door.unknown"}) is None


def test_requests_cover_what_a_late_reading_reaches_and_are_coalesced() -> None:
    late = [("traffic", T0), ("traffic", T0 + HOUR), ("air", T0), ("air", T0 + HOUR),
            ("beds", T0 + 3 * HOUR), ("queue", T0), ("doors", T0)]
    spans = [ReplaySpan.decode(text) for rp, text in replay_requests("bv", "n1", late)
             if rp == DOMAIN_REPLAY]
    assert sorted(spans, key=repr) == sorted([
        ReplaySpan("traffic", "bv", "n1", T0, T0 + 2 * HOUR),
        ReplaySpan("air", "bv", "n1", T0, T0 + 13 * HOUR),  # the NowCast of the 11 hours after
        # hospital scopes: the site; a bed's state lasts up to its next reading, an hour at
        # most, and its hour's first reading may close a gap in the hour before (the ward row
        # of an hour without a bed reading: test_replay_bed_gaps.py)
        ReplaySpan("beds", "bv", "", T0 + 2 * HOUR, T0 + 5 * HOUR),
        ReplaySpan("queue", "bv", "", T0, T0 + 13 * HOUR),  # calls up to max_wait later
        ReplaySpan("doors", "bv", "", T0, T0 + HOUR)], key=repr)
    with pytest.raises(ValueError, match="whole hours"):
        ReplaySpan("traffic", "bv", "", T0 + MIN, T0 + HOUR)
    with pytest.raises(ValueError, match="site-wide"):
        ReplaySpan("beds", "bv", "n1", T0, T0 + HOUR)


def test_a_node_snapshot_from_before_the_replay_resumes_and_asks_for_replays() -> None:
    import pickle

    from cloud.logic.domain.node import DomainNode

    node = DomainNode(HORIZON)
    del node.__dict__["late"], node.__dict__["marks"]  # as pickled by the code before
    resumed: DomainNode = pickle.loads(pickle.dumps(node))
    fresh = Reading("lane-1", "traffic.loop", UP, 1, {"count": 1.0, "interval_s": 60.0})
    old = Reading("lane-1", "traffic.loop", DOWN, 2, {"count": 1.0, "interval_s": 60.0})
    resumed.process("hk", "tl-1", [fresh])
    resumed.process("hk", "tl-1", [old])
    # its interval ends at DOWN, on the hour: the hour before's
    assert resumed.take_late() == [("traffic", DOWN - HOUR)]


def test_a_raw_row_without_a_field_its_kind_requires_is_no_reading_and_the_replay_goes_on() -> None:
    """Rows are read from InfluxDB, which any writer with the rights may have filled (an
    import, a tool): a row the contract would refuse is left out, not a KeyError that fails
    the sink at every restart."""
    bed = {"time": DOWN + 7, "site": "bv", "node": "ward-a", "sensor": "bed-1",
           "kind": "hospital.bed", "seq": 7, "occupied": 1.0, "fault": 0.0}
    assert reading_of(bed) is not None
    assert reading_of(bed | {"occupied": None}) is None
    assert reading_of(bed | {"occupied": "yes"}) is None
    kiosk = {"time": DOWN + 8, "site": "bv", "node": "kiosk", "sensor": "k-1",
             "kind": "hospital.queue", "seq": 8, "ticket": 4.0}  # no `called`
    door = {"time": DOWN + 9, "site": "bv", "node": "door", "sensor": "er-1",
            "kind": "hospital.door", "seq": 9, "interval_s": 60.0}  # no `count`
    assert reading_of(kiosk) is None
    assert reading_of(door) is None
    odd = bed | {"time": DOWN + 10 * MIN, "occupied": None}  # its `fault` alone
    points = replay(ReplaySpan("beds", "bv", "", DOWN, DOWN + HOUR), [bed, odd])
    ward = select(points, RP_1H, "ward_occupancy", site="bv", node="ward-a")
    assert ward[DOWN]["occupied"] == 1


def with_speeds(site: str, node: str, t: int, seq: int) -> list[Reading]:
    """tl-1's lane-1 from an agent that sends speed_count: every other interval counts 6
    vehicles and measures 4 of them at 20 km/h, the others count none and measure 2 crawling
    ones at 5 km/h (counted before); lane-2's agent sends none (3 vehicles at 30 km/h)."""
    if node != "tl-1":
        return _readings(site, node, t, seq)
    lane_1 = ({"count": 6.0, "speed_kmh": 20.0, "speed_count": 4.0} if seq % 2 == 0
              else {"count": 0.0, "speed_kmh": 5.0, "speed_count": 2.0})
    return [Reading("lane-1", "traffic.loop", t, seq, {**lane_1, "interval_s": 600.0}),
            Reading("lane-2", "traffic.loop", t, seq, {"count": 3.0, "interval_s": 600.0,
                                                       "speed_kmh": 30.0})]


def test_speeds_weighted_by_speed_count_are_replayed_as_in_order() -> None:
    """The replay reads speed_count back from the raw points (and its absence, lane-2's):
    every domain point ends as in-order processing gives it."""
    expected = domain_points(run(in_order(with_speeds), replays=False))
    late = domain_points(run(backlog_after_fresh(with_speeds), replays=True))
    assert late == expected
    points = list(_as_points(late))
    # the hour of DOWN holds 3 intervals of each kind: (3*20*4 + 3*5*2) / (3*4 + 3*2)
    lane = select(points, RP_1H, "traffic_lane", site="hk", node="tl-1", sensor="lane-1")
    assert lane[DOWN]["speed_kmh"] == 15.0
    crossing = select(points, RP_1H, "traffic_intersection", site="hk", node="tl-1")
    # and lane-2's 6 intervals weighted by their count: + 6*30*3, + 6*3
    assert crossing[DOWN]["speed_kmh"] == (240 + 30 + 6 * 30 * 3) / (18 + 18)
    assert (crossing[DOWN]["lanes"], crossing[DOWN]["speed_lanes"]) == (2, 2)
