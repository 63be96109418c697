"""`flow.aggregate_horizon_s` changed between two starts reaches the node and site states
resumed from snapshots (`NodeState.set_horizon`, `HospitalSite.set_horizon`). They pickle
the horizon they were made with, and every part of them holding it (per-sensor windows, the
ledger, the traffic, air and hospital rollups, the site's totals) kept it at every start
after: a changed value reached only the nodes and sites new to the recovery store.

Lowered, a resumed state behaves as one made with the new horizon for the readings that
follow. Raised, it had let go of what lay beyond the old one: a reading there stays too late
(rebuilt from the raw points) rather than making a window or an hour of itself alone, which
would overwrite the whole one stored; once its newest has moved past the old floor by the
new horizon, it behaves as a state made with the new one."""

from __future__ import annotations

import pickle

from cloud.logic.domain.hospital import DoorTotals
from cloud.logic.domain.hospital_site import HospitalSite
from cloud.logic.domain.late import Late
from cloud.logic.node import NodeState
from cloud.logic.recompute import RECOMPUTE, Recompute
from cloud.logic.records import RP_1H, RP_1M, NodeData, Point
from urbanpulse.wire import Reading

MINUTE_NS = 60 * 10**9
HOUR_NS = 60 * MINUTE_NS
T0 = 1_795_000_000 * 10**9 - 1_795_000_000 * 10**9 % HOUR_NS  # an hour's start
SITE, NODE = "bv", "opd-1"


def _readings(minute: int) -> list[Reading]:
    """A node of every family, a reading of each sensor every 5 minutes (a bed pad every 10,
    a ticket issued on the tens and called 5 minutes after), numbered by the minute."""
    ts, seq = T0 + minute * MINUTE_NS, minute // 5
    out = [Reading("pm-1", "air.pm", ts, seq, {"pm25": 10.0 + minute % 7, "pm10": 20.0 + minute % 5}),
           Reading("loop-1", "traffic.loop", ts, seq, {"count": float(minute % 9), "interval_s": 300.0}),
           Reading("door-er", "hospital.door", ts, seq, {"count": float(minute % 3), "interval_s": 300.0}),
           Reading("kiosk-1", "hospital.queue", ts, seq,
                   {"ticket": float(minute // 10), "called": float(minute // 5 % 2)})]
    if minute % 10 == 0:
        out.append(Reading("bed-1", "hospital.bed", ts, minute // 10, {"occupied": float(minute // 10 % 2)}))
    return out


Sent = tuple[list[Point], list[Point], list[Late], list[Late]]


class _Run:
    """A node's state and its site's, fed as the dataflow feeds them."""

    def __init__(self, horizon_ns: int) -> None:
        self.node = NodeState(horizon_ns, detect=False)
        self.site = HospitalSite(horizon_ns)

    def send(self, minutes: list[int]) -> Sent:
        """Node points, site points, the node's and the site's hours to replay."""
        newest = max(minutes)
        data = NodeData(f"{SITE}/{NODE}", SITE, NODE, T0 + newest * MINUTE_NS + 10**9,
                        [r for m in minutes for r in _readings(m)])
        points = self.node.process(data)
        site_points = self.site.process(SITE, self.node.take_site_updates())
        return points, site_points, self.node.domain.take_late(), self.site.take_late()

    def feed(self, minutes: range, skip: frozenset[int] = frozenset()) -> None:
        for m in minutes:
            if m not in skip:
                self.send([m])

    def resumed(self, horizon_ns: int) -> _Run:
        """This run's states through a snapshot, given `horizon_ns` at the start."""
        run = _Run.__new__(_Run)
        run.node = pickle.loads(pickle.dumps(self.node, protocol=pickle.HIGHEST_PROTOCOL))
        run.site = pickle.loads(pickle.dumps(self.site, protocol=pickle.HIGHEST_PROTOCOL))
        run.node.set_horizon(horizon_ns)
        run.site.set_horizon(horizon_ns)
        return run


SKIPPED = frozenset({300, 305, 460})  # sent late, after the restart


def _windows_of(points: list[Point], sensor: str, start: int) -> list[str]:
    return [text for rp, text in points
            if rp in (RP_1M, RP_1H) and f"sensor={sensor}," in text and text.endswith(f" {start}")]


def test_a_lowered_horizon_reaches_a_resumed_state() -> None:
    """Made with 6 h, resumed with 1 h: the readings that follow (fresh, within both, and
    older than 1 h but within 6 h) give what a state made with 1 h gives."""
    old, new = _Run(6 * HOUR_NS), _Run(HOUR_NS)
    for run in (old, new):
        run.feed(range(0, 8 * 60, 5), SKIPPED)
    resumed = old.resumed(HOUR_NS)
    assert resumed.node.horizon_ns == HOUR_NS
    # first what lies between the two, then fresh, late within both, and again
    for minutes in ([300], [480], [460], [305], [485], [490]):
        assert resumed.send(minutes) == new.send(minutes), minutes


def test_a_lowered_horizon_is_too_late_for_what_it_let_go() -> None:
    old = _Run(6 * HOUR_NS)
    old.feed(range(0, 8 * 60, 5), SKIPPED)
    without = pickle.loads(pickle.dumps(old.node))  # (as before: keeps its 6 h)
    resumed = old.resumed(HOUR_NS)
    points, _, late, _ = resumed.send([300])
    asked = {Recompute.decode(text).start_ns for rp, text in points if rp == RECOMPUTE}
    assert T0 + 5 * HOUR_NS in asked
    assert ("traffic", T0 + 4 * HOUR_NS) in late  # (a loop's 05:00 reading: the 04:00 hour's)
    assert ("air", T0 + 5 * HOUR_NS) in late
    kept = without.process(NodeData(f"{SITE}/{NODE}", SITE, NODE, T0 + 8 * HOUR_NS, _readings(300)))
    assert not [p for p in kept if p[0] == RECOMPUTE]  # the old horizon held its windows


def test_a_raised_horizon_keeps_what_was_let_go_too_late() -> None:
    """Made with 1 h, resumed with 6 h: minute 300 (3 h back) lies beyond the old horizon,
    whose windows and hours were let go; taken now, its hour would be written as holding it
    alone. It stays too late: rebuilt, replayed, its hour not written from the live state."""
    old = _Run(HOUR_NS)
    old.feed(range(0, 8 * 60, 5), SKIPPED)
    resumed = old.resumed(6 * HOUR_NS)
    assert resumed.node.horizon_ns == 6 * HOUR_NS
    points, site_points, late, _ = resumed.send([300])
    for sensor in ("pm-1", "kiosk-1"):
        assert not _windows_of(points, sensor, T0 + 5 * HOUR_NS), sensor
    asked = {(Recompute.decode(text).sensor, Recompute.decode(text).start_ns)
             for rp, text in points if rp == RECOMPUTE}
    assert {("pm-1", T0 + 5 * HOUR_NS), ("kiosk-1", T0 + 5 * HOUR_NS),
            ("pm-1", T0 + 5 * HOUR_NS)} <= asked
    assert {("traffic", T0 + 4 * HOUR_NS), ("air", T0 + 5 * HOUR_NS),
            ("doors", T0 + 4 * HOUR_NS), ("queue", T0 + 5 * HOUR_NS)} <= set(late)
    assert not [text for _, text in points if text.startswith(("air_quality,", "traffic_lane,",
                                                               "door_flow,", "queue_wait,"))]
    assert not site_points
    # a reading within the old horizon is taken as ever (the hours it asks to replay again
    # are those of minute 300 its windows reach: an air hour's NowCast, a ticket's wait)
    points, _, late, _ = resumed.send([460])
    assert not [p for p in points if p[0] == RECOMPUTE]
    assert {hour for _, hour in late} == {T0 + 5 * HOUR_NS}
    assert _windows_of(points, "pm-1", T0 + 7 * HOUR_NS)


def test_a_raised_horizon_is_the_new_one_once_the_newest_has_moved_past() -> None:
    """Past the old floor by the new horizon, a resumed state takes what a state made with
    the new horizon takes: a reading 3 h back goes into its windows."""
    old, new = _Run(HOUR_NS), _Run(6 * HOUR_NS)
    late = frozenset({13 * 60, 13 * 60 + 5})
    for run in (old, new):
        run.feed(range(0, 8 * 60, 5))
    resumed = old.resumed(6 * HOUR_NS)
    for run in (resumed, new):
        run.feed(range(8 * 60, 16 * 60, 5), late)
    for minutes in ([16 * 60], [13 * 60], [13 * 60 + 5]):
        sent = resumed.send(minutes)
        assert sent == new.send(minutes), minutes
        assert not [p for p in sent[0] if p[0] == RECOMPUTE]
        assert not sent[2]


def test_a_raised_horizon_keeps_a_site_from_writing_an_hour_it_let_go() -> None:
    """A site's door totals of an hour beyond the old horizon (another node's backlog):
    the site let go of the hour's other nodes, so a total written now would be that node's
    alone; it is replayed site-wide instead."""
    site = HospitalSite(HOUR_NS)
    for hour in range(8):
        for node in ("door-a", "door-b"):
            site.process(SITE, [DoorTotals(SITE, node, T0 + hour * HOUR_NS, 1.0, 2.0)])
    resumed: HospitalSite = pickle.loads(pickle.dumps(site))
    resumed.set_horizon(6 * HOUR_NS)
    assert resumed.process(SITE, [DoorTotals(SITE, "door-c", T0 + 3 * HOUR_NS, 5.0, 5.0)]) == []
    assert resumed.take_late() == [("doors", T0 + 3 * HOUR_NS)]
    # within the old horizon, and (once past the old floor) within the new one: written
    assert resumed.process(SITE, [DoorTotals(SITE, "door-c", T0 + 6 * HOUR_NS, 5.0, 5.0)])
    for hour in range(8, 16):
        resumed.process(SITE, [DoorTotals(SITE, "door-a", T0 + hour * HOUR_NS, 1.0, 2.0)])
    written = resumed.process(SITE, [DoorTotals(SITE, "door-c", T0 + 11 * HOUR_NS, 5.0, 5.0)])
    assert written[0][0] == RP_1H
    assert "er_arrivals=6" in written[0][1]
    assert resumed.take_late() == []
