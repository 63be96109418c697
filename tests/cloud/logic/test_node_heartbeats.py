"""A node's heartbeats reach its state: the agent's own health, encoded as the publisher
sends it, journalled, decoded and processed as the dataflow does (records ->
NodeState), raises CLOCK_JUMP once, survives snapshots, and replays without a second
event."""

from __future__ import annotations

import pickle
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cloud.detect.faults import Heartbeat, Supervision
from cloud.journal import JournalRecord
from cloud.logic.events import Alert, NodeWatch
from cloud.logic.node import NodeState
from cloud.logic.records import decode_record
from cloud.logic.rollup import HOUR_NS
from edge.agent import Agent
from edge.config import load_config
from urbanpulse.clock import FakeClock, to_epoch_ns
from urbanpulse.wire import encode_status, format_ts, status_topic

SAMPLE = Path(__file__).resolve().parents[3] / "edge/drivers/sds011/sample.toml"


def _agent(tmp_path: Path, clock: FakeClock) -> Agent:
    text = SAMPLE.read_text().replace('state_dir = "/var/lib/urbanpulse"',
                                      f'state_dir = "{tmp_path}"')
    path = tmp_path / "node.toml"
    path.write_text(text)
    agent = Agent(load_config(path), clock=clock)
    agent.outbox.open()
    return agent


class _Node:
    """An agent's heartbeats as journal records (what the ingest stores of them)."""

    def __init__(self, tmp_path: Path, clock: FakeClock | None = None) -> None:
        self.clock = clock or FakeClock(datetime(2026, 5, 1, 8, 0, tzinfo=UTC))
        tmp_path.mkdir(exist_ok=True)
        self.agent = _agent(tmp_path, self.clock)
        self.agent.check_clock()
        self.offset = 0
        # The cloud's clock: true time, whatever the node's clock does.
        self.received_ns = to_epoch_ns(self.clock.now()) + 10**6

    def beat(self, seconds: float = 30.0, jump_s: float = 0.0) -> JournalRecord:
        self.clock.advance(seconds)
        if jump_s:
            self.clock.jump(jump_s)
        self.agent.check_clock()
        node = self.agent.config.node
        payload = encode_status("online", self.clock.now(), self.agent.health())
        self.offset += 1
        self.received_ns += int(seconds * 10**9)
        return JournalRecord("i0", self.offset, self.received_ns,
                             status_topic(node.site, node.id), payload)


def _process(state: NodeState, rec: JournalRecord) -> list[tuple[str, str]]:
    """What the dataflow's node step writes for a record (cloud/flow.py NodeLogic)."""
    data, points = decode_record(rec, 4096)
    if data is not None:
        points.extend(state.process(data))
    return points


def test_a_clock_jump_the_agent_counted_is_an_event_of_the_node(tmp_path: Path) -> None:
    node = _Node(tmp_path)
    state = NodeState(HOUR_NS)
    assert [p for p in _process(state, node.beat()) if "events" in p[1]] == []
    jumped = node.beat(jump_s=-3600)  # NTP set the clock an hour back
    points = _process(state, jumped)
    # (driver_status: the sds011 driver's counts, `refused` 0 included, at every heartbeat)
    assert [p[1].split(",", 1)[0] for p in points] == ["node_status", "driver_status", "events"]
    event = points[2][1]
    assert event.startswith("events,kind=node,node=aq-01,site=")
    assert "type=clock_jump" in event
    assert 'field="clock_jumps"' in event
    # stamped when the cloud received it (journalled: a replay gives the same stamp), not
    # by the clock that jumped, which is kept as a field
    stamp = jumped.received_ns
    assert event.endswith(f" {stamp}")
    assert f'node_ts="{format_ts(node.clock.now())}"' in event
    assert "delay_s=30.0" in event  # since the heartbeat before, by the agent's uptime
    [alert] = state.take_alerts()
    assert (alert.type, alert.sensor, alert.kind, alert.ts_ns) == ("clock_jump", "", "node", stamp)
    # later heartbeats of the same run, no new jump: nothing
    assert not any("events" in p[1] for p in _process(state, node.beat()))
    assert state.take_alerts() == []


def test_replays_from_a_snapshot_write_the_same_event_and_a_repeat_none(tmp_path: Path) -> None:
    node = _Node(tmp_path)
    state = NodeState(HOUR_NS)
    _process(state, node.beat())
    snapshot = pickle.dumps(state, protocol=pickle.HIGHEST_PROTOCOL)
    records = [node.beat(jump_s=600), node.beat(), node.beat(jump_s=-600)]
    first = [p for r in records for p in _process(state, r)]
    events = [p for p in first if p[1].startswith("events")]
    assert len(events) == 2  # two jumps the node counted: two events (NodeClockJumps)
    # a crash after the snapshot: the same records again give the same points, which
    # overwrite themselves in InfluxDB (same series, same stamps)
    resumed = pickle.loads(snapshot)
    assert [p for r in records for p in _process(resumed, r)] == first
    # the same heartbeats again without a crash (MQTT redelivery, a retained status):
    # no event twice
    assert [p for r in records for p in _process(state, r) if p[1].startswith("events")] == []


def test_a_restart_starts_counting_again(tmp_path: Path) -> None:
    node = _Node(tmp_path)
    state = NodeState(HOUR_NS)
    _process(state, node.beat(jump_s=120))  # jumps counted before the cloud heard it
    _process(state, node.beat())
    node.agent.outbox.close()
    restarted = _Node(tmp_path / "again", node.clock)  # a new run: uptime and count from 0
    assert not any(p[1].startswith("events") for p in _process(state, restarted.beat()))
    assert any(p[1].startswith("events") for p in _process(state, restarted.beat(jump_s=90)))


def test_without_detection_a_heartbeat_is_its_status_point_only(tmp_path: Path) -> None:
    node = _Node(tmp_path)
    state = NodeState(HOUR_NS, detect=False)
    _process(state, node.beat())
    points = _process(state, node.beat(jump_s=600))
    assert [p[1].split(",", 1)[0] for p in points] == ["node_status", "driver_status"]  # no event


def test_a_door_beam_s_failed_self_test_is_a_stuck_event_of_the_sensor() -> None:
    watch = NodeWatch()
    t0 = datetime(2026, 5, 1, 8, 0, tzinfo=UTC)
    kinds = {"door-er": "hospital.door"}

    def beat(s: int, report: dict[str, object]) -> Heartbeat:
        return Heartbeat(t0 + timedelta(seconds=s), 600.0 + s, 0,
                         {"door-er": Supervision.from_report(report)})

    alerts: list[Alert] = []
    assert watch.check("hn", "er-gate", beat(0, {"blocked": False, "self_test": "ok"}), kinds,
                       alerts) == []
    [(_, point)] = watch.check("hn", "er-gate", beat(30, {"blocked": False,
                                                         "self_test": "failed"}), kinds, alerts)
    assert point.startswith("events,kind=hospital.door,node=er-gate,sensor=door-er,site=hn,"
                            "type=stuck ")
    assert 'field="self_test"' in point
    assert point.endswith(f" {to_epoch_ns(t0 + timedelta(seconds=30))}")
    assert [(a.type, a.sensor, a.kind, a.field) for a in alerts] == [
        ("stuck", "door-er", "hospital.door", "self_test")]
    assert watch.check("hn", "er-gate", beat(60, {"blocked": False, "self_test": "failed"}),
                       kinds) == []


def test_an_old_heartbeat_redelivered_through_the_ingest_raises_nothing(tmp_path: Path) -> None:
    """The agent's run id puts heartbeats in order: an old one delivered again (with a
    new reception time) neither resets the count nor ends a cut."""
    node = _Node(tmp_path)
    state = NodeState(HOUR_NS)
    assert "run_id" in node.agent.health()
    a = node.beat()
    b = node.beat(jump_s=600)
    c = node.beat()
    again = a._replace(offset=99, received_ns=c.received_ns + 10**9)
    d = node.beat()
    events = [[p for p in _process(state, r) if p[1].startswith("events")]
              for r in (a, b, c, again, d)]
    assert [len(e) for e in events] == [0, 1, 0, 0, 0]


def test_a_malformed_run_id_is_left_out() -> None:
    t0 = datetime(2026, 5, 1, 8, 0, tzinfo=UTC)
    for run_id, kept in (("0123abcd", "0123abcd"), ("a,b=c", None), ("", None), (7, None),
                         ("x" * 65, None)):
        rec = JournalRecord("i0", 1, to_epoch_ns(t0), status_topic("hn", "n1"),
                            encode_status("online", t0, {"uptime_s": 5, "run_id": run_id}))
        data, _ = decode_record(rec, 4096)
        assert data is not None
        assert data.status is not None
        assert (data.status.run, data.status.received) == (kept, t0)
