"""A reading of an interval (traffic loop, door counter: kinds with `interval_s`) is stamped
at the end of its interval, and intervals end on clock multiples: it belongs to the windows
of its interval's last instant, ts - 1 ns. The reading for [12:00, 12:01) stamped 12:01:00
is the 12:00 minute's, a door's hour [09:00, 10:00) stamped 10:00:00 is the 09:00 hour's:
live, in the domain rollups, in the late-data requests and in the rebuilds from raw points.
Readings without an interval (bed pads, air, kiosks) keep the window of their stamp.
Values hand-checked."""

from __future__ import annotations

import re
from datetime import UTC, datetime

from cloud.logic.domain.hospital import HospitalNodeRollup
from cloud.logic.domain.hospital_site import HospitalSite
from cloud.logic.domain.late import LateMarks, late_of
from cloud.logic.domain.node import DomainNode
from cloud.logic.domain.traffic import TrafficRollup
from cloud.logic.domain_replay import ReplaySpan, late_spans, replay
from cloud.logic.node import NodeState, raw_time
from cloud.logic.recompute import RECOMPUTE, Recompute, raw_reads
from cloud.logic.records import RP_1H, RP_1M, RP_RAW, NodeData, Point
from cloud.logic.rollup import HOUR_NS, MINUTE_NS, window_ts
from tests.cloud.logic.domain_helpers import parse, select
from urbanpulse.clock import to_epoch_ns
from urbanpulse.wire import Reading

S = 10**9
DAY = to_epoch_ns(datetime(2026, 11, 28, tzinfo=UTC))


def at(hh: int, mm: int = 0, ss: int = 0) -> int:
    return DAY + hh * HOUR_NS + mm * MINUTE_NS + ss * S


def loop(ts: int, seq: int, count: float, interval_s: float = 60.0, sensor: str = "lane-1") -> Reading:
    return Reading(sensor, "traffic.loop", ts, seq, {"count": count, "interval_s": interval_s})


def door(ts: int, seq: int, count: float, interval_s: float = 3600.0, sensor: str = "gate") -> Reading:
    return Reading(sensor, "hospital.door", ts, seq, {"count": count, "interval_s": interval_s})


def points_of(points: list[Point], rp: str, measurement: str) -> dict[int, dict[str, object]]:
    out: dict[int, dict[str, object]] = {}
    for p_rp, text in points:
        if p_rp == rp:
            name, _tags, fields, ts = parse(text)
            if name == measurement:
                out[ts] = fields
    return out


def test_the_window_instant_of_an_interval_is_its_last_one() -> None:
    assert window_ts("traffic.loop", at(12, 1)) == at(12, 1) - 1
    assert window_ts("hospital.door", at(10)) == at(10) - 1
    for kind in ("hospital.bed", "air.pm", "air.co2", "hospital.queue"):
        assert window_ts(kind, at(10)) == at(10)


# -- live: per-sensor windows ---------------------------------------------------------------

def test_a_loop_reading_stamped_on_the_minute_is_the_minute_before_s() -> None:
    state = NodeState(6 * HOUR_NS, detect=False)
    readings = [loop(at(12, 1), 1, 7), loop(at(12, 1, 30), 2, 3, interval_s=30),
                loop(at(12, 2), 3, 5, interval_s=30)]
    out = state.process(NodeData("hn/x1", "hn", "x1", at(12, 3), readings))
    minutes = points_of(out, RP_1M, "traffic_loop")
    # [12:00, 12:01) stamped 12:01:00 in 12:00; [12:01, 12:01:30) and [12:01:30, 12:02) in 12:01
    assert sorted(minutes) == [at(12), at(12, 1)]
    assert (minutes[at(12)]["count"], minutes[at(12)]["count_mean"]) == (1, 7.0)
    assert (minutes[at(12, 1)]["count"], minutes[at(12, 1)]["count_mean"]) == (2, 4.0)
    assert minutes[at(12, 1)]["count_last"] == 5.0  # the later stamp is the last
    hours = points_of(out, RP_1H, "traffic_loop")
    assert sorted(hours) == [at(12)]
    assert hours[at(12)]["count"] == 3
    raw = sorted(parse(text)[3] for rp, text in out if rp == RP_RAW)
    assert raw == [raw_time(r) for r in readings]  # raw points keep their own stamps


def test_a_door_s_hour_stamped_on_the_hour_is_the_hour_before_s() -> None:
    state = NodeState(6 * HOUR_NS, detect=False)
    out = state.process(NodeData("hn/opd", "hn", "opd", at(10, 0, 5), [door(at(10), 1, 42)]))
    assert sorted(points_of(out, RP_1H, "hospital_door")) == [at(9)]
    assert sorted(points_of(out, RP_1M, "hospital_door")) == [at(9, 59)]
    assert points_of(out, RP_1H, "door_flow") == {at(9): {"er_arrivals": 0.0, "visits": 42.0, "faulty": 0}}


def test_readings_without_an_interval_keep_the_window_of_their_stamp() -> None:
    state = NodeState(6 * HOUR_NS, detect=False)
    readings = [Reading("bed-1", "hospital.bed", at(10), 1, {"occupied": 1}),
                Reading("pm-1", "air.pm", at(10), 1, {"pm25": 12.0, "pm10": 20.0})]
    out = state.process(NodeData("hn/w1", "hn", "w1", at(10, 0, 5), readings))
    for measurement in ("hospital_bed", "air_pm"):
        assert sorted(points_of(out, RP_1M, measurement)) == [at(10)]
        assert sorted(points_of(out, RP_1H, measurement)) == [at(10)]
    assert sorted(points_of(out, RP_1M, "ward_occupancy")) == [at(10)]
    assert sorted(points_of(out, RP_1H, "air_quality")) == [at(10)]


# -- live: domain rollups ---------------------------------------------------------------------

def test_traffic_lanes_and_intersections_count_an_interval_in_its_own_minute() -> None:
    readings = [loop(at(12, 1), 1, 6), loop(at(12, 1), 2, 4, sensor="lane-2"),
                loop(at(12, 2), 3, 3)]
    points = TrafficRollup(HOUR_NS).process("hn", "x1", readings)
    lane = select(points, RP_1M, "traffic_lane", site="hn", node="x1", sensor="lane-1")
    assert lane == {at(12): {"vehicles": 6.0, "interval_s": 60.0, "flow_vpm": 6.0},
                    at(12, 1): {"vehicles": 3.0, "interval_s": 60.0, "flow_vpm": 3.0}}
    both = select(points, RP_1M, "traffic_intersection", site="hn", node="x1")
    assert both[at(12)] == {"vehicles": 10.0, "interval_s": 120.0, "flow_vpm": 10.0, "lanes": 2,
                            "speed_lanes": 0}
    hour = select(points, RP_1H, "traffic_intersection", site="hn", node="x1")
    # an hourly row holds 12:00-13:00: the reading stamped 13:00:00 is in it, not 13:00's
    late_in_hour = TrafficRollup(HOUR_NS).process("hn", "x1", [loop(at(13), 1, 9)])
    assert list(hour) == [at(12)]
    assert list(select(late_in_hour, RP_1H, "traffic_intersection", site="hn", node="x1")) == [at(12)]


def test_door_flow_and_hospital_flow_count_the_hour_in_the_hour() -> None:
    rollup = HospitalNodeRollup(6 * HOUR_NS)
    points, updates = rollup.process("hn", "opd", [door(at(10), 1, 42), door(at(10), 2, 5, sensor="er-1"),
                                                   door(at(11), 3, 30)])
    flow = select(points, RP_1H, "door_flow", site="hn", node="opd")
    assert flow == {at(9): {"er_arrivals": 5.0, "visits": 42.0, "faulty": 0},
                    at(10): {"er_arrivals": 0.0, "visits": 30.0, "faulty": 0}}
    site = HospitalSite(6 * HOUR_NS).process("hn", updates)
    assert select(site, RP_1H, "hospital_flow", site="hn") == flow


# -- late data --------------------------------------------------------------------------------

def test_late_readings_name_the_hour_of_their_interval() -> None:
    late = [loop(at(13), 1, 4), door(at(10), 2, 42)]
    assert late_of(late, "traffic", at(20)) == {("traffic", at(12))}
    assert late_of(late, "hospital", at(20)) == {("doors", at(9))}
    assert late_spans("hn", "x1", [("traffic", at(12))]) == [
        ReplaySpan("traffic", "hn", "x1", at(12), at(13))]


def test_a_replayed_hour_is_touched_by_a_loop_reading_stamped_on_its_end() -> None:
    marks = LateMarks()
    marks.add([("traffic", at(12))])  # its windows end at 13:00
    assert marks.touched([loop(at(13), 1, 4)]) == [("traffic", at(12))]  # [12:59, 13:00)
    assert marks.touched([loop(at(13, 0, 1), 2, 4)]) == []


class Store:
    """What InfluxDB holds (the last line per series and time) and answers: a query's rows
    are the raw points of its measurement, node and sensors within its time condition."""

    def __init__(self) -> None:
        self.lines: dict[tuple[str, str], str] = {}
        self.raw: list[dict[str, object]] = []

    def write(self, points: list[Point]) -> list[Recompute]:
        asks = []
        for rp, text in points:
            if rp == RECOMPUTE:
                asks.append(Recompute.decode(text))
                continue
            head, _fields, ts = text.rsplit(" ", 2)
            self.lines[(rp, f"{head} {ts}")] = text
            if rp == RP_RAW:
                name, tags, fields, time = parse(text)
                self.raw.append({"measurement": name, **tags, **fields, "time": time})
        return asks

    def select(self, query: str) -> list[dict[str, object]]:
        measurement = re.search(r'FROM "raw"\."(\w+)"', query)
        low = re.search(r"time (>=?) (\d+)", query)
        high = re.search(r"time < (\d+)", query)
        assert measurement is not None, query
        assert low is not None, query
        assert high is not None, query
        sensors = set(re.findall(r'"sensor" = \'([^\']+)\'', query))
        lo, hi = int(low[2]), int(high[1])
        return [r for r in self.raw if r["measurement"] == measurement[1]
                and (not sensors or r["sensor"] in sensors)
                and (int(str(r["time"])) > lo if low[1] == ">" else int(str(r["time"])) >= lo)
                and int(str(r["time"])) < hi]

    def rebuild(self, asks: list[Recompute]) -> None:
        for read in raw_reads(sorted(set(asks), key=lambda a: a.encode())):
            self.write(read.rebuild(self.select(read.query())))

    def aggregate(self, rp: str, measurement: str) -> dict[int, dict[str, object]]:
        out = {}
        for (policy, _), text in self.lines.items():
            name, _tags, fields, ts = parse(text)
            if policy == rp and name == measurement:
                out[ts] = fields
        return out


def test_a_late_loop_reading_is_rebuilt_into_the_window_of_its_interval() -> None:
    """Through the node state: fresh readings at 14:00 with a 1 h horizon, then the backlog
    of 12:00-12:02; the windows it asks to rebuild are those of its intervals, read back
    with the reading stamped on their end and without the one stamped on their start."""
    store = Store()
    state = NodeState(HOUR_NS, detect=False)
    store.write(state.process(NodeData("hn/x1", "hn", "x1", at(14), [loop(at(14), 10, 1)])))
    backlog = [loop(at(12), 1, 2), loop(at(12, 0, 30), 2, 3, interval_s=30),
               loop(at(12, 1), 3, 4, interval_s=30), loop(at(12, 2), 4, 5)]
    out = state.process(NodeData("hn/x1", "hn", "x1", at(14, 1), backlog))
    asks = store.write(out)
    assert sorted({(a.rp, a.start_ns) for a in asks}) == [
        (RP_1H, at(11)), (RP_1H, at(12)), (RP_1M, at(11, 59)), (RP_1M, at(12)), (RP_1M, at(12, 1))]
    assert state.domain.take_late() == [("traffic", at(11)), ("traffic", at(12))]
    store.rebuild(asks)
    minutes = store.aggregate(RP_1M, "traffic_loop")
    assert (minutes[at(11, 59)]["count"], minutes[at(11, 59)]["count_mean"]) == (1, 2.0)
    # 12:00:30 and 12:01:00 (a half minute each), not 12:00:00
    assert (minutes[at(12)]["count"], minutes[at(12)]["count_mean"]) == (2, 3.5)
    assert (minutes[at(12, 1)]["count"], minutes[at(12, 1)]["count_mean"]) == (1, 5.0)
    hours = store.aggregate(RP_1H, "traffic_loop")
    assert (hours[at(11)]["count"], hours[at(12)]["count"]) == (1, 3)
    # and as in order, a fresh state that took them all
    in_order = Store()
    in_order.write(NodeState(HOUR_NS, detect=False).process(
        NodeData("hn/x1", "hn", "x1", at(14, 1), [*backlog, loop(at(14), 10, 1)])))
    assert in_order.aggregate(RP_1M, "traffic_loop") == minutes
    assert in_order.aggregate(RP_1H, "traffic_loop") == hours


def test_a_window_rebuilt_takes_the_reading_on_its_end_and_not_the_one_on_its_start() -> None:
    rows = [{"measurement": "hospital_door", "site": "hn", "node": "opd", "sensor": "gate",
             "kind": "hospital.door", "count": float(c), "interval_s": 3600.0, "seq": seq,
             "time": t - t % 1000 + seq % 1000}
            for seq, (t, c) in enumerate([(at(9), 10), (at(9, 30), 20), (at(10), 30)], start=998)]
    ask = Recompute(RP_1H, "hospital_door", "hn", "opd", "gate", "hospital.door", HOUR_NS, at(9))
    assert f"time > {at(9)} AND time < {at(10) + 1000}" in ask.query()
    line = ask.rebuild(rows)
    assert line is not None
    _name, _tags, fields, ts = parse(line)
    assert (ts, fields["count"], fields["count_mean"]) == (at(9), 2, 25.0)
    (read,) = raw_reads([ask])
    assert f"time > {at(9)} AND time < {at(10) + 1000}" in read.query()
    ((rp, text),) = read.rebuild(rows)
    assert (rp, text) == (RP_1H, line)


def test_a_replay_reads_the_doors_stamped_on_its_end() -> None:
    """A door's hour [09:00, 10:00) arriving after 6 h: its door_flow and hospital_flow
    replayed for 09:00 from the raw point stamped 10:00:00 (read back by the span's query),
    not from the one of 09:00:00 (the hour before's)."""
    node = DomainNode(HOUR_NS)
    node.process("hn", "opd", [door(at(16), 9, 1)])
    points, _ = node.process("hn", "opd", [door(at(9), 1, 7), door(at(10), 2, 42)])
    assert not points  # too late for the live rollups
    late = node.take_late()
    assert late == [("doors", at(8)), ("doors", at(9))]
    (span,) = late_spans("hn", "opd", [("doors", at(9))])
    assert span == ReplaySpan("doors", "hn", "", at(9), at(10))
    store = Store()
    store.write([(RP_RAW, f"hospital_door,site=hn,node=opd,sensor=gate,kind=hospital.door "
                          f"count={c},interval_s=3600.0,seq={seq}i {t - t % 1000 + seq % 1000}")
                 for seq, t, c in ((1, at(9), 7.0), (2, at(10), 42.0), (9, at(16), 1.0))])
    (query,) = span.queries()
    rows = [{**r, "kind": "hospital.door"} for r in store.select(query)]
    assert sorted(int(str(r["time"])) for r in rows) == [at(9) + 1, at(10) + 2]
    out = replay(span, rows)
    assert select(out, RP_1H, "door_flow", site="hn", node="opd") == {
        at(9): {"er_arrivals": 0.0, "visits": 42.0, "faulty": 0}}
    assert select(out, RP_1H, "hospital_flow", site="hn") == {
        at(9): {"er_arrivals": 0.0, "visits": 42.0, "faulty": 0}}
