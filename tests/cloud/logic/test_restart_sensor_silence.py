"""A sensor cannot report before its agent started, nor while its node is silent as a whole
(that is the node's heartbeat alert). The ticks ride on the node's own traffic, so the
first messages after an agent restart (a reboot, an upgrade) used to raise a SILENCE for a
sensor that had not reported yet since (a driver starting later, an MH-Z19B warming up):
its silence was measured from its last reading before the restart. Now it is measured from
the agent's start (the restart's first heartbeat: its reception less the agent's uptime),
and from the node's return after a quiet as long as the rule's limit. A sensor that still
does not report in time after the start is raised; the outcome and the event do not depend
on whether the restart's heartbeat or its data reaches the node's state first (two ingests).

Fed through `NodeState` as the dataflow runs it: each message decoded from its journal
record, a tick after a message when 30 s have passed since the last one (`cloud.flow.TICK`),
at the message's reception (the node keeps up)."""

from __future__ import annotations

import pickle
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import ClassVar

from tests.cloud.logic.fed_node import FedNode
from urbanpulse.clock import to_epoch_ns
from urbanpulse.wire import Reading

SITE, NODE = "hn-hoankiem", "aq-01"
FAST, SLOW = "pm-1", "co2-1"  # a reading every 10 s and every 60 s (silent after 180 s)
T0 = datetime(2026, 5, 1, 8, 0, tzinfo=UTC)


@dataclass
class _Node(FedNode):
    """A fast and a slow air sensor and the agent's heartbeats (tests.cloud.logic.fed_node)."""

    site: ClassVar[str] = SITE
    node: ClassVar[str] = NODE
    t0: ClassVar[datetime] = T0
    seq: dict[str, int] = field(default_factory=lambda: {FAST: 0, SLOW: 0})

    def reading(self, sensor: str, at: float, skew: float = 0.0) -> None:
        n = self.seq[sensor] = self.seq[sensor] + 1
        stamp = to_epoch_ns(T0 + timedelta(seconds=at))
        r = (Reading(sensor, "air.pm", stamp, n, {"pm25": 12.0 + n % 5, "pm10": 20.0 + n % 7})
             if sensor == FAST else Reading(sensor, "air.co2", stamp, n, {"co2": 420.0 + n % 9}))
        self.send(r, at, skew)

    def run_for(self, seconds: float, slow: bool = True, fast: bool = True,
                slow_from: float | None = None) -> None:
        """`seconds` of the node running: the fast sensor every 10 s, the slow one every 60 s
        (from `slow_from` on if given; never if not `slow`), a heartbeat every 30 s."""
        end = self.t + seconds
        while self.t + 1.0 <= end:
            self.t += 1.0
            up = self.t - self.run_start
            if round(up) % 30 == 0:
                self.heartbeat(self.t)
            if fast and round(self.t) % 10 == 0:
                self.reading(FAST, self.t)
            if slow and round(self.t) % 60 == 0 and (slow_from is None or self.t >= slow_from):
                self.reading(SLOW, self.t)

    def restart(self, down_s: float, data_first: bool = False) -> None:
        """The agent stops for `down_s`, starts again and connects: its first heartbeat (sent
        before its data) and a first fast reading; `data_first`: the data's ingest stamps it
        5 ms before the heartbeat's (two ingests)."""
        self.t += down_s
        self.run += 1
        self.run_start = self.t - 2.0  # connected 2 s after it started
        if data_first:
            self.reading(FAST, self.t, skew=-0.005)
            self.heartbeat(self.t)
        else:
            self.heartbeat(self.t)
            self.reading(FAST, self.t, skew=0.005)

    def slow_silences(self) -> list[tuple[str, str, float, float]]:
        return [s for s in self.silences if s[0] == SLOW]


def _warm() -> _Node:
    node = _Node()
    node.heartbeat(0.0)
    node.run_for(1800.0)  # half an hour: the intervals learnt, every gap seen
    assert node.silences == []
    return node


def test_a_sensor_reporting_late_after_its_agent_restart_is_not_silent() -> None:
    # The slow sensor last read at 1800 s, the agent went down at 1845 s for 95 s (the fast
    # sensor's limit passes: the node as a whole was silent) and the slow sensor's driver
    # reads first 162 s after the start: 300 s after its last reading, within 180 s of the start.
    for data_first in (False, True):
        node = _warm()
        node.run_for(45.0)
        node.restart(95.0, data_first=data_first)
        start = node.run_start
        node.run_for(300.0, slow_from=start + 150.0)
        assert node.slow_silences() == [], data_first
        assert node.silences == []


def test_a_sensor_still_silent_after_the_restart_is_raised_from_the_start() -> None:
    events = []
    for data_first in (False, True):
        node = _warm()
        node.run_for(45.0)
        node.restart(95.0, data_first=data_first)
        start = node.run_start
        node.run_for(400.0, slow=False)
        [(sensor, detail, stamp, delay)] = node.silences
        assert sensor == SLOW
        assert detail == "no data since 2026-05-01T08:30:00+00:00"
        # seen by the first tick 180 s after the start (not after the last reading), and
        # starting one interval after the start
        assert start + 180.0 <= stamp < start + 180.0 + 31.0
        assert abs((stamp - delay) - (start + 60.0)) < 0.05
        events.append(round(stamp - delay, 6))
    # heartbeat first or data first: the same start (the ticks' stamps are their own clock's)
    assert events[0] == events[1]


def test_a_short_restart_whose_heartbeat_comes_after_its_data() -> None:
    # The node quiet for 130 s (shorter than the slow sensor's limit), its last reading 55 s
    # before the quiet: 185 s without it when the node comes back. The restart excuses it
    # whichever message the node's state takes first.
    outcomes = []
    for data_first in (False, True):
        node = _warm()
        node.run_for(55.0, slow=False)
        node.restart(130.0, data_first=data_first)
        node.run_for(300.0, slow_from=node.run_start + 150.0)
        outcomes.append(node.slow_silences())
    assert outcomes == [[], []]


def test_a_node_silent_as_a_whole_raises_no_sensor_silence_on_its_return() -> None:
    # No restart (the same run; a network outage): 10 min without any message, then the
    # fast sensor first, the slow one 150 s later. Measured from the node's return.
    node = _warm()
    node.run_for(20.0)
    node.t += 600.0
    node.run_for(400.0, slow_from=node.t + 150.0)
    assert node.silences == []
    # ... and one that does not come back is raised 180 s after the node's return
    node = _warm()
    node.run_for(20.0)
    node.t += 600.0
    back = node.t
    node.run_for(400.0, slow=False)
    [(sensor, _, stamp, _)] = node.silences
    assert sensor == SLOW
    assert back + 180.0 <= stamp < back + 180.0 + 32.0


def test_a_sensor_silent_while_its_node_talks_is_still_raised() -> None:
    node = _warm()
    node.run_for(400.0, slow=False)
    [(sensor, _, stamp, delay)] = node.silences
    assert sensor == SLOW
    assert 1800.0 + 180.0 <= stamp < 1800.0 + 180.0 + 31.0
    assert abs((stamp - delay) - 1860.0) < 1.0


def test_the_restart_survives_a_snapshot() -> None:
    node = _warm()
    node.run_for(45.0)
    node.restart(95.0)
    node.state = pickle.loads(pickle.dumps(node.state))
    node.run_for(300.0, slow_from=node.run_start + 150.0)
    assert node.silences == []


def test_a_snapshot_from_before_the_quiets_loads() -> None:
    node = _warm()
    del node.state.heard_ns, node.state.quiets  # as a state pickled before they were kept
    node.state = pickle.loads(pickle.dumps(node.state))
    assert node.state.heard_ns is None
    assert node.state.quiets == []
    node.run_for(400.0, slow=False)
    assert [s[0] for s in node.silences] == [SLOW]


def test_a_dead_fast_sensor_on_a_node_that_only_heartbeats_is_raised() -> None:
    # The 10-s sensor's limit (30 s) is the heartbeat interval: when it dies on a node whose
    # other messages are its heartbeats, every gap between two is as long as the limit. A
    # quiet within the node's usual spacing is no absence: raised as before the quiets.
    node = _Node()
    node.heartbeat(0.0)
    node.run_for(1800.0, slow=False)
    assert node.silences == []
    node.run_for(900.0, slow=False, fast=False)  # the fast sensor dies, heartbeats go on
    assert {s[0] for s in node.silences} == {FAST}
    assert len(node.silences) == 2  # pm25 and pm10, once each
    for _, detail, stamp, delay in node.silences:
        assert detail == "no data since 2026-05-01T08:30:00+00:00"
        assert 1800.0 + 30.0 <= stamp < 1800.0 + 30.0 + 31.0
        assert abs((stamp - delay) - 1810.0) < 0.05


def test_a_dead_fast_sensor_beside_a_slow_one_is_raised() -> None:
    # The other messages 30 s apart (heartbeats, the 60-s sensor with every other one).
    node = _warm()
    node.run_for(900.0, fast=False)
    assert {s[0] for s in node.silences} == {FAST}
    assert len(node.silences) == 2
    for _, _, stamp, delay in node.silences:
        assert 1800.0 + 30.0 <= stamp < 1800.0 + 30.0 + 31.0
        assert abs((stamp - delay) - 1810.0) < 0.05


def test_the_quiet_that_is_an_absence_follows_the_nodes_heartbeat_interval() -> None:
    # Heartbeats every 120 s (agent.heartbeat_s), the 10-s sensor alone: when it dies the
    # node is quiet 120 s between heartbeats, more than the default 2.5 x 30 s. Learnt from
    # the heartbeats: 2.5 x 120 s, so the dead sensor is raised.
    node = _Node()
    node.heartbeat(0.0)
    for t in range(1, 2701):
        if t % 120 == 0:
            node.heartbeat(float(t))
        if t % 10 == 0 and t <= 1800:
            node.reading(FAST, float(t))
    assert node.state.node_watch.monitor.heartbeat_interval() == 120.0
    assert {s[0] for s in node.silences} == {FAST}
    for _, _, stamp, delay in node.silences:
        assert 1920.0 <= stamp < 1921.0  # the next message: the heartbeat at 1920 s
        assert abs((stamp - delay) - 1810.0) < 0.05


def test_a_quiet_of_one_lost_heartbeat_is_no_absence_but_two_are() -> None:
    # The only sensor dead since 1800 s; the node's heartbeats then lose one (a quiet of
    # 60 s): the sensor is raised at the first tick after it. Three lost (a quiet of 110 s,
    # > 2.5 x 30 s) is the node away: measured from its return.
    node = _Node()
    node.heartbeat(0.0)
    node.run_for(1800.0, slow=False)
    node.t += 30.0  # the heartbeat at 1830 s lost
    node.run_for(60.0, slow=False, fast=False)
    assert {s[0] for s in node.silences} == {FAST}
    node = _Node()
    node.heartbeat(0.0)
    node.run_for(1810.0, slow=False)
    node.t += 80.0  # the heartbeats at 1830 s, 1860 s and 1890 s lost: back at 1920 s
    node.run_for(30.0, slow=False, fast=False)
    assert node.silences == []
    node.run_for(30.0, slow=False, fast=False)
    assert {s[0] for s in node.silences} == {FAST}
    for _, _, stamp, delay in node.silences:
        assert 1950.0 <= stamp < 1951.0  # the tick at the 1950-s heartbeat, 30 s after
        assert abs((stamp - delay) - 1930.0) < 0.05


def test_a_snapshot_from_before_the_heartbeat_interval_loads() -> None:
    node = _Node()
    node.heartbeat(0.0)
    node.run_for(1800.0, slow=False)
    del node.state.node_watch.monitor._gaps  # as a monitor pickled before it was learnt
    node.state = pickle.loads(pickle.dumps(node.state))
    assert node.state.node_watch.monitor.heartbeat_interval() == 30.0  # the default
    node.run_for(120.0, slow=False, fast=False)
    assert {s[0] for s in node.silences} == {FAST}


def test_an_outage_of_a_node_with_long_heartbeats_raises_no_sensor_silence() -> None:
    node = _Node()
    node.heartbeat(0.0)
    for t in range(1, 1801):
        if t % 300 == 0:
            node.heartbeat(float(t))
        if t % 10 == 0:
            node.reading(FAST, float(t))
    assert node.state.node_watch.monitor.heartbeat_interval() == 300.0
    assert node.silences == []
    # No message from 1800 s to 2400 s, the same run (one heartbeat lost: 2 intervals, less
    # than 2.5). The tick at the return's heartbeat, read before the data sent with it, found
    # the fast sensor silent: a false SILENCE for every sensor of the node. A silence seen as
    # the node comes back from a quiet with a heartbeat lost now waits one tick.
    for t in range(2400, 2701):
        if t % 300 == 0:
            node.heartbeat(float(t))
        if t % 10 == 0:
            node.reading(FAST, float(t))
    assert node.silences == []


def test_a_sensor_dead_across_an_outage_of_a_node_with_long_heartbeats_is_raised() -> None:
    """The same outage, the fast sensor not back: raised at the tick after the return's."""
    node = _Node()
    node.heartbeat(0.0)
    for t in range(1, 1801):
        if t % 300 == 0:
            node.heartbeat(float(t))
        if t % 10 == 0:
            node.reading(FAST, float(t))
    for t in range(2400, 3001):
        if t % 300 == 0:
            node.heartbeat(float(t))
    assert {s[0] for s in node.silences} == {FAST}
    assert len(node.silences) == 2  # pm25 and pm10, once each
    for _, _, stamp, _ in node.silences:
        assert 2700.0 <= stamp < 2701.0  # the next tick: the heartbeat at 2700 s
