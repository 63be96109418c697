"""A node's clock set back (or a forward step ending) while its agent runs: every regular
sensor's next readings are stamped before its last one, with higher sequence numbers.

The dataflow keeps such readings out of the detectors and rules (`stamped_before`), which
did nothing for regular sensors: each counted as silent and raised a false SILENCE ("no data
since") after 3 intervals, beside the node's CLOCK_JUMP from its heartbeat, and when the
stamps caught up, the step's size later, a second CLOCK_JUMP ("N readings skipped"). Now the
first such reading of a field raises the set-back at once (folded into the node's event of
the jump), and the readings are arrivals the rules do not judge (`unjudged`).

Fed through `NodeState` as the dataflow runs it: the real agent's heartbeats (its count of
wall-clock jumps, on a `FakeClock` whose wall clock is stepped), one data message per reading
received 10 ms after it was sent (the cloud's clock: true time), a tick after a message when
30 s have passed since the last one (`cloud.flow.TICK`)."""

from __future__ import annotations

import pickle
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from cloud.detect.faults import FaultEvent, FaultMonitor, FaultType
from cloud.journal import JournalRecord
from cloud.logic.node import NodeState
from cloud.logic.records import decode_record
from cloud.logic.rollup import HOUR_NS
from edge.agent import Agent
from edge.config import load_config
from tests.cloud.detect.old_fault_layout import as_old
from urbanpulse.clock import FakeClock, from_epoch_ns, to_epoch_ns
from urbanpulse.wire import Reading, data_topic, encode_batch, encode_status, status_topic

SAMPLE = Path(__file__).resolve().parents[3] / "edge/drivers/sds011/sample.toml"
SITE, NODE, SENSOR = "hn-hoankiem", "aq-01", "pm-1"
EVERY_S = 5  # a reading of the PM sensor
TICK = timedelta(seconds=30)  # cloud.flow.TICK


@dataclass(frozen=True)
class _Event:
    type: str
    sensor: str
    detail: str
    stamp_s: float  # the point's stamp, s after the run's start (true time)
    received_s: float  # when the cloud received the message that raised it, likewise


class _Node:
    def __init__(self, tmp_path: Path) -> None:
        self.clock = FakeClock(datetime(2026, 5, 1, 8, 0, tzinfo=UTC))
        self.t0 = self.clock.now()
        state_dir = tmp_path / "state"
        text = SAMPLE.read_text().replace('state_dir = "/var/lib/urbanpulse"',
                                          f'state_dir = "{state_dir}"')
        (tmp_path / "node.toml").write_text(text)
        self.agent = Agent(load_config(tmp_path / "node.toml"), clock=self.clock)
        self.agent.outbox.open()
        self.agent.check_clock()
        self.state = NodeState(HOUR_NS)
        self.seq = 0
        self.offset = 0
        self.elapsed = 0  # true seconds since t0 (the fake clock's monotonic time)
        self.next_tick: datetime | None = None
        self.events: list[_Event] = []
        self.rewrites: list[str] = []

    def _feed(self, topic: str, payload: bytes) -> None:
        self.offset += 1
        received = self.t0 + timedelta(seconds=self.elapsed + 0.01)
        data, points = decode_record(
            JournalRecord("i0", self.offset, to_epoch_ns(received), topic, payload), 1 << 16)
        assert data is not None
        points += self.state.process(data)
        now = received + timedelta(milliseconds=1)
        if self.next_tick is None or now >= self.next_tick:
            self.next_tick = now + TICK
            points += self.state.tick(now)
        for _, ln in points:
            if not ln.startswith("events,"):
                continue
            if "delay_s=" not in ln:  # a node clock event's detail written again
                self.rewrites.append(ln)
                continue
            tags = dict(kv.split("=", 1) for kv in ln.split(" ", 1)[0].split(",")[1:])
            stamp = int(ln.rsplit(" ", 1)[1])
            self.events.append(_Event(
                tags["type"], tags.get("sensor", ""), ln.split('detail="')[1].split('"')[0],
                (from_epoch_ns(stamp) - self.t0).total_seconds(), self.elapsed + 0.01))

    def run(self, seconds: int) -> None:
        """`seconds` of the agent running: a PM reading every `EVERY_S`, stamped by the
        node's (wall) clock; its heartbeat every 30 s."""
        for _ in range(seconds):
            self.clock.advance(1.0)
            self.elapsed += 1
            self.agent.check_clock()  # as the agent's loop does
            if self.elapsed % 30 == 0:
                self._feed(status_topic(SITE, NODE),
                           encode_status("online", self.clock.now(), self.agent.health()))
            if self.elapsed % EVERY_S == 0:
                self.seq += 1
                r = Reading(SENSOR, "air.pm", to_epoch_ns(self.clock.now()), self.seq,
                            {"pm25": 12.0 + self.seq % 5, "pm10": 20.0 + self.seq % 7})
                self._feed(data_topic(SITE, NODE), encode_batch(SITE, NODE, [r]))

    def of(self, kind: str) -> list[_Event]:
        return [e for e in self.events if e.type == kind]


@pytest.fixture
def node(tmp_path: Path) -> Iterator[_Node]:
    made = _Node(tmp_path)
    yield made
    made.agent.outbox.close()


def test_a_clock_set_back_is_one_clock_jump_and_no_silence(node: _Node) -> None:
    node.run(1800)
    assert node.events == []
    node.clock.jump(-3600)  # NTP (or an operator) set the clock back an hour
    node.run(5400)  # past the moment the stamps catch up, and on
    assert node.agent.clock_jumps == 1
    assert node.of(str(FaultType.SILENCE)) == []
    [jump] = node.of(str(FaultType.CLOCK_JUMP))
    assert jump.sensor == ""  # the node's
    # raised by the first reading after the step (within 5 s), not at the next heartbeat
    assert 1800 < jump.received_s <= 1800 + EVERY_S + 0.01
    assert jump.detail.startswith(f"{SENSOR}: stamped 3595 s before"), jump.detail
    assert "clock set back" in jump.detail
    # the heartbeat's count of it and the sensor's other field folded into it
    assert node.rewrites
    assert "counted by the node" in node.rewrites[-1]
    assert node.events == [jump]


def test_a_forward_step_ending_is_one_more_clock_jump_and_no_silence(node: _Node) -> None:
    """A clock set forward and set right 20 min later: one event each way, nothing else."""
    node.run(1800)
    node.clock.jump(3600)
    node.run(1200)
    node.clock.jump(-3600)
    node.run(5400)
    assert node.of(str(FaultType.SILENCE)) == []
    forward, back = node.of(str(FaultType.CLOCK_JUMP))
    assert "clock set forward" in forward.detail
    assert "clock set back" in back.detail
    assert 3000 < back.received_s <= 3000 + EVERY_S + 0.01
    assert node.events == [forward, back]


BASE_NS = to_epoch_ns(datetime(2026, 5, 1, tzinfo=UTC))


def _at(k: float) -> int:
    """The stamp (ns) of the k-th reading of a sensor read every 10 s, on a right clock."""
    return BASE_NS + round(k * 10_000_000_000)


def _monitor() -> FaultMonitor:
    m = FaultMonitor("air.pm", "pm25", SENSOR)
    for k in range(1, 41):
        assert m.update(_at(k), 12.0 + k % 5, k, received=_at(k) + 10_000_000) == []
    return m


def test_a_reading_numbered_after_but_stamped_before_is_a_clock_set_back_once() -> None:
    m = _monitor()
    back = _at(41) - 3600 * 10**9
    [ev] = m.stamped_before(back, 12.0, 41, received=_at(41) + 10_000_000)
    assert ev.fault is FaultType.CLOCK_JUMP
    assert ev.seq == 41
    assert ev.detail == "stamped 3590 s before the reading before it (seq 40 -> 41): clock set back"
    # once per episode; each later one is an arrival the ticks count (no silence)
    for k in range(42, 401):
        assert m.stamped_before(_at(k) - 3600 * 10**9, 12.0 + k % 5, k,
                                received=_at(k) + 10_000_000) == []
        if k % 3 == 0:
            assert m.tick(from_epoch_ns(_at(k) + 20_000_000)) == []
    # the stamps catch up (the step's size later): judged again, no "readings skipped"
    for k in (401, 402):
        assert m.update(_at(k) - 3600 * 10**9, 12.0 + k % 5, k,
                        received=_at(k) + 10_000_000) == []
    # the next set-back is raised again
    [again] = m.stamped_before(_at(30), 12.0, 403, received=_at(403))
    assert "clock set back" in again.detail


def test_a_late_reading_stamped_before_is_no_clock_set_back() -> None:
    """A reading numbered before the newest (a swapped message, a duplicate) is no set-back."""
    m = _monitor()
    assert m.stamped_before(_at(35), 12.0, 35, received=_at(41)) == []
    assert m.stamped_before(_at(39), 12.0, 40, received=_at(41)) == []


def test_a_monitor_pickled_within_a_set_back_resumes_it_and_an_older_one_loads() -> None:
    """Within the episode a copy unpickled raises what the monitor raises (nothing more); a
    monitor pickled by the code before (no `_set_back`: the class's False) raises the set-back
    on its next reading stamped before, as a fresh episode."""
    m = _monitor()
    assert len(m.stamped_before(_at(41) - 3600 * 10**9, 12.0, 41, received=_at(41))) == 1
    copy = pickle.loads(pickle.dumps(m))
    for mon in (m, copy):
        for k in range(42, 401):
            assert mon.stamped_before(_at(k) - 3600 * 10**9, 12.0 + k % 5, k, received=_at(k)) == []
        assert mon.update(_at(401) - 3600 * 10**9, 13.0, 401, received=_at(401)) == []
    old = as_old(_monitor(), "_set_back")  # what the code before pickled
    [ev] = pickle.loads(pickle.dumps(old)).stamped_before(_at(30), 12.0, 41, received=_at(41))
    assert "clock set back" in ev.detail


def _rewrite_stamp_s(node: _Node) -> float:
    return (from_epoch_ns(int(node.rewrites[-1].rsplit(" ", 1)[1])) - node.t0).total_seconds()


def test_a_node_clock_jump_is_stamped_when_the_cloud_received_it(node: _Node) -> None:
    """Grafana's "Sensor fault" alert counts the events of the last 15 minutes by their
    stamps: a node's clock jump stamped by the reading that showed it, on the jumped clock,
    was an hour in the future for a clock set forward an hour (the alert fired an hour late)
    and an hour in the past for one set back (never). Stamped at the message's reception,
    as the heartbeat rule's events are (the journal's stamp: a replay writes the same)."""
    node.run(1800)
    node.clock.jump(3600)
    node.run(1200)
    node.clock.jump(-3600)
    node.run(600)
    forward, back = node.of(str(FaultType.CLOCK_JUMP))
    for jump in (forward, back):
        assert abs(jump.stamp_s - jump.received_s) < 1e-3, jump
    # its detail written again (the heartbeat's count folded into it) on the same point
    assert abs(_rewrite_stamp_s(node) - back.stamp_s) < 1e-6



def test_an_event_pickled_before_it_kept_its_reception_loads_without_one() -> None:
    """A held clock jump in a snapshot taken before `FaultEvent.received`: its state is the
    first 8 fields (the dataclass's own pickling); it loads with None, and the node's event
    is then stamped at the reception of the message that lets it go."""
    stamp = from_epoch_ns(_at(1))
    new = FaultEvent(SENSOR, "pm25", FaultType.CLOCK_JUMP, stamp, stamp, 1.0, "x", 7, stamp)
    old = FaultEvent.__new__(FaultEvent)
    old.__setstate__(new.__getstate__()[:8])  # as the code before pickled it
    assert old.received is None
    assert old == new  # the same event (its reception is not compared)
    assert pickle.loads(pickle.dumps(new)).received == stamp
