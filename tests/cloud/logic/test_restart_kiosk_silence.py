"""The kiosk rule (a busy kiosk whose issues and calls stop at once, tickets waiting) is
judged on arrival, on the ticks, which ride on the node's own traffic. A restart of the
agent or a network outage in busy hours longer than the time the hour's rates make
improbable raised a false kiosk SILENCE at the first tick after the node's return (its
heartbeat, or another sensor's data, before the kiosk's next event): the quiet was measured
from the kiosk's last event before the restart. Now it is measured from the agent's start
and from the node's return after a quiet at least that long, as for the other sensors
(`test_restart_sensor_silence.py`); a kiosk still silent that long after is raised, from the
start, whichever of the restart's heartbeat and its data the node's state takes first.

Fed through `NodeState` as the dataflow runs it: each message decoded from its journal
record, a tick after a message when 30 s have passed since the last one (`cloud.flow.TICK`),
at the message's reception (the node keeps up). Each kiosk issues a ticket every 30 s and
its counter calls one every 30 s, 5 tickets waiting: 240 events an hour, so a quiet of
ln(1e9) / 240 h = 311 s is improbable (`pair_alpha`)."""

from __future__ import annotations

import math
import pickle
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import ClassVar

from tests.cloud.logic.fed_node import FedNode
from urbanpulse.clock import to_epoch_ns
from urbanpulse.wire import Reading

SITE, NODE = "hn-bachmai", "hq-01"
KIOSK, OTHER = "kiosk-insured", "kiosk-service"  # the second one resumes at once
T0 = datetime(2026, 5, 4, 8, 0, tzinfo=UTC)  # a Monday morning: busy
LIMIT = math.log(1e9) / (240 / 3600)  # 310.8 s without an event: improbable at that rate
WAITING = 5
# A tick every 30 s, at the first message after that: seen within 30 s and a gap between
# the node's messages (15 s at most) of the time it is due.
SEEN = 45.0


@dataclass
class _Node(FedNode):
    """Two kiosks and the agent's heartbeats (tests.cloud.logic.fed_node); each kiosk's
    events as the queue_kiosk driver sends them (a reading per ticket issued, `called` 0, and
    per ticket called, `called` 1 with the counter), numbered by the outbox, which keeps its
    numbering across restarts."""

    site: ClassVar[str] = SITE
    node: ClassVar[str] = NODE
    t0: ClassVar[datetime] = T0
    seq: dict[str, int] = field(default_factory=lambda: {KIOSK: 0, OTHER: 0})
    issued: dict[str, int] = field(default_factory=lambda: {KIOSK: WAITING, OTHER: WAITING})
    called: dict[str, int] = field(default_factory=lambda: {KIOSK: 0, OTHER: 0})

    def event(self, sensor: str, at: float, call: bool, skew: float = 0.0) -> None:
        n = self.seq[sensor] = self.seq[sensor] + 1
        if call:
            ticket = self.called[sensor] = self.called[sensor] + 1
            values = {"ticket": float(ticket), "called": 1.0, "counter": 1.0}
        else:
            ticket = self.issued[sensor] = self.issued[sensor] + 1
            values = {"ticket": float(ticket), "called": 0.0}
        stamp = to_epoch_ns(T0 + timedelta(seconds=at))
        self.send(Reading(sensor, "hospital.queue", stamp, n, values), at, skew)

    def run_for(self, seconds: float, kiosk: bool = True, kiosk_from: float | None = None) -> None:
        """`seconds` of the node running: each kiosk issues a ticket every 30 s and calls one
        15 s later (OTHER 7 s after KIOSK); KIOSK from `kiosk_from` on if given, never if
        not `kiosk`; a heartbeat every 30 s of the run."""
        end = self.t + seconds
        while self.t + 1.0 <= end:
            self.t += 1.0
            second = round(self.t)
            if round(self.t - self.run_start) % 30 == 0:
                self.heartbeat(self.t)
            if kiosk and (kiosk_from is None or self.t >= kiosk_from) and second % 15 == 0:
                self.event(KIOSK, self.t, call=second % 30 == 15)
            if second % 15 == 7:
                self.event(OTHER, self.t, call=second % 30 == 22)

    def restart(self, down_s: float, data_first: bool = False) -> None:
        """The agent stops for `down_s`, starts again and connects: its first heartbeat (sent
        before its data) and OTHER's first event; `data_first`: the data's ingest stamps it
        5 ms before the heartbeat's (two ingests)."""
        self.t += down_s
        self.run += 1
        self.run_start = self.t - 2.0  # connected 2 s after it started
        if data_first:
            self.event(OTHER, self.t, call=False, skew=-0.005)
            self.heartbeat(self.t)
        else:
            self.heartbeat(self.t)
            self.event(OTHER, self.t, call=False, skew=0.005)

    def kiosk_silences(self) -> list[tuple[str, str, float, float]]:
        return [s for s in self.silences if s[0] == KIOSK]


def _busy() -> _Node:
    node = _Node()
    node.heartbeat(0.0)
    node.run_for(3600.0)  # an hour of the rates the rule needs
    assert node.silences == []
    return node


def test_a_busy_kiosk_resuming_after_its_agent_restart_is_not_silent() -> None:
    # The kiosk's last event at 3600 s, the agent down for 400 s from 3610 s (over the
    # kiosk's limit: the node as a whole was silent), the kiosk's first event 150 s after
    # the start, with 5 tickets waiting. Heartbeat first, the restart's data first (the
    # other kiosk's event), and the kiosk's own event first.
    for data_first in (False, True):
        node = _busy()
        node.run_for(10.0, kiosk=False)
        node.restart(400.0, data_first=data_first)
        node.run_for(600.0, kiosk_from=node.run_start + 150.0)
        assert node.silences == [], data_first


def test_a_busy_kiosk_dead_after_the_restart_is_raised_from_the_start() -> None:
    # The kiosk's last event at 3600 s, the other one running on for 100 s, the agent down
    # for 250 s (under the kiosk's limit: the node's quiet does not count, its start does):
    # 350 s without the kiosk when the node comes back, and it never comes back.
    starts = []
    for data_first in (False, True):
        node = _busy()
        node.run_for(100.0, kiosk=False)
        node.restart(250.0, data_first=data_first)
        start = node.run_start + 0.01  # on the cloud's clock: the heartbeat's reception less its uptime
        node.run_for(900.0, kiosk=False)
        [(sensor, detail, stamp, delay)] = node.silences
        assert sensor == KIOSK
        assert detail.startswith(f"no issue nor call since 2026-05-04T09:00:00+00:00 with {WAITING} waiting")
        # seen by the first tick the limit after the start (not after the last event), and
        # starting at the start
        assert start + LIMIT <= stamp < start + LIMIT + SEEN, data_first
        assert abs((stamp - delay) - start) < 0.05, data_first
        starts.append(round(stamp - delay, 6))
    # heartbeat first or data first: the same start (the ticks' stamps are their own clock's)
    assert starts[0] == starts[1]


def test_a_busy_kiosk_dead_after_a_long_restart_is_raised_from_the_return() -> None:
    # Down 400 s (over the kiosk's limit: the node silent as a whole): measured from the
    # node's return, its first message (the heartbeat, or the data 5 ms before it).
    for data_first in (False, True):
        node = _busy()
        node.run_for(10.0, kiosk=False)
        node.restart(400.0, data_first=data_first)
        back = node.t + 0.01 - (0.005 if data_first else 0.0)
        node.run_for(900.0, kiosk=False)
        [(sensor, _, stamp, delay)] = node.silences
        assert sensor == KIOSK
        assert back + LIMIT <= stamp < back + LIMIT + SEEN, data_first
        assert abs((stamp - delay) - back) < 0.002, data_first


def test_a_short_restart_whose_heartbeat_comes_after_its_data() -> None:
    # The kiosk's last event at 3600 s, the other one running on for 70 s, the agent down
    # for 250 s (under the kiosk's limit): 320 s without the kiosk when the node comes back,
    # over its limit since its last event, not since the start; the kiosk back 60 s after
    # the start. The restart excuses it whichever message the node's state takes first (the
    # other kiosk's event first: the tick waits for the heartbeat).
    outcomes = []
    for data_first in (False, True):
        node = _busy()
        node.run_for(70.0, kiosk=False)
        node.restart(250.0, data_first=data_first)
        node.run_for(600.0, kiosk_from=node.run_start + 60.0)
        outcomes.append(node.kiosk_silences())
    assert outcomes == [[], []]


def test_a_network_outage_raises_no_kiosk_silence_on_the_node_return() -> None:
    # The same run (no restart): 10 min without any message (the outbox keeps the events of
    # the outage and sends them on the return, after the heartbeat), then the kiosk's first
    # new event 150 s after the return. Measured from the node's return.
    node = _busy()
    node.run_for(10.0, kiosk=False)
    node.t += 600.0
    node.heartbeat(node.t)
    node.run_for(600.0, kiosk_from=node.t + 150.0)
    assert node.silences == []
    # ... and a kiosk that does not come back is raised its limit after the node's return
    node = _busy()
    node.run_for(10.0, kiosk=False)
    node.t += 600.0
    back = node.t + 0.01
    node.heartbeat(node.t)
    node.run_for(900.0, kiosk=False)
    [(sensor, _, stamp, delay)] = node.silences
    assert sensor == KIOSK
    assert back + LIMIT <= stamp < back + LIMIT + SEEN
    assert abs((stamp - delay) - back) < 0.05


def test_a_kiosk_dead_while_its_node_talks_is_still_raised() -> None:
    node = _busy()
    node.run_for(900.0, kiosk=False)
    [(sensor, _, stamp, delay)] = node.silences
    assert sensor == KIOSK
    assert 3600.0 + LIMIT <= stamp < 3600.0 + LIMIT + SEEN
    assert abs((stamp - delay) - 3600.01) < 0.05


def test_the_kiosk_restart_survives_a_snapshot() -> None:
    node = _busy()
    node.run_for(10.0, kiosk=False)
    node.restart(400.0)
    node.state = pickle.loads(pickle.dumps(node.state))
    node.run_for(600.0, kiosk_from=node.run_start + 150.0)
    assert node.silences == []
