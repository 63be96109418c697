"""A Pi without RTC boots on fake-hwclock's saved time; when its agent connects before NTP
answers, NTP's first step is counted between two heartbeats of the run. The heartbeats
carry `clock.synchronised` (the kernel's word, edge/clock_sync.py): the node's state, fed
the real agent's status messages, raises no node CLOCK_JUMP for the step that synchronised
the clock, and still raises one for a step of a synchronised clock."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from cloud.journal import JournalRecord
from cloud.logic.node import NodeState
from cloud.logic.records import decode_record
from cloud.logic.rollup import HOUR_NS
from edge.agent import Agent
from edge.clock_sync import FixedClockSync
from edge.config import load_config
from urbanpulse.clock import FakeClock, from_epoch_ns, to_epoch_ns
from urbanpulse.wire import Reading, data_topic, encode_batch, encode_status, status_topic

SAMPLE = Path(__file__).resolve().parents[3] / "edge/drivers/sds011/sample.toml"
SITE, NODE = "hn-hoankiem", "aq-01"
STEP_S = 3 * 86_400.0  # the saved time three days behind: the Pi was off that long


class _Node:
    def __init__(self, tmp_path: Path, synced: bool) -> None:
        # booted on the saved time, STEP_S behind the true time (the cloud's clock)
        self.clock = FakeClock(datetime(2026, 5, 1, 8, 0, tzinfo=UTC))
        self.mono0 = self.clock.monotonic()
        self.true0 = to_epoch_ns(self.clock.now()) + int(STEP_S * 1e9)
        text = SAMPLE.read_text().replace('state_dir = "/var/lib/urbanpulse"',
                                          f'state_dir = "{tmp_path / "state"}"')
        (tmp_path / "node.toml").write_text(text)
        self.sync = FixedClockSync(synced)
        self.agent = Agent(load_config(tmp_path / "node.toml"), clock=self.clock, clock_sync=self.sync)
        self.agent.outbox.open()
        self.agent.clock_sync.start()
        self.agent.check_clock()
        self.offset = 0

    def heartbeat(self) -> JournalRecord:
        """30 s later, the agent's loop having checked its clock and asked the kernel."""
        self.clock.advance(30.0)
        self.agent.check_clock()
        self.agent.clock_sync.refresh()
        self.offset += 1
        received = self.true0 + int((self.clock.monotonic() - self.mono0 + 0.01) * 1e9)
        return JournalRecord("i0", self.offset, received, status_topic(SITE, NODE),
                             encode_status("online", self.clock.now(), self.agent.health()))


def _node_clock_jumps(state: NodeState, records: list[JournalRecord]) -> list[str]:
    out = []
    for rec in records:
        data, points = decode_record(rec, 4096)
        assert data is not None
        assert data.status is not None  # a heartbeat the rules read
        points.extend(state.process(data))
        assert state.node_watch.monitor.taken
        out += [ln for _, ln in points if "type=clock_jump" in ln and "kind=node" in ln]
    return out


def test_the_boot_step_that_synchronised_the_clock_is_no_node_clock_jump(tmp_path: Path) -> None:
    node, state = _Node(tmp_path, synced=False), NodeState(HOUR_NS)
    assert _node_clock_jumps(state, [node.heartbeat(), node.heartbeat()]) == []
    node.clock.jump(STEP_S)  # NTP answers: the clock stepped and synchronised
    node.sync.set(True)
    first = node.heartbeat()
    assert node.agent.clock_jumps == 1
    assert b'"synchronised":true' in first.payload.replace(b" ", b"")
    assert _node_clock_jumps(state, [first, node.heartbeat()]) == []


def test_a_step_of_the_synchronised_clock_is_still_a_node_clock_jump(tmp_path: Path) -> None:
    node, state = _Node(tmp_path, synced=False), NodeState(HOUR_NS)
    _node_clock_jumps(state, [node.heartbeat()])
    node.clock.jump(STEP_S)
    node.sync.set(True)
    _node_clock_jumps(state, [node.heartbeat(), node.heartbeat()])
    node.clock.jump(600.0)  # then set forward by 10 min while synchronised
    [event] = _node_clock_jumps(state, [node.heartbeat()])
    assert "wall-clock jump" in event


def test_a_step_counted_before_the_agent_saw_the_sync_is_no_jump_either(tmp_path: Path) -> None:
    """The agent counts the step at its next loop (0.2 s) but asks the kernel at most once a
    second: a heartbeat sent between the two counts the step with the clock not yet seen
    synchronised; the next one says it is, and the step is dropped."""
    node, state = _Node(tmp_path, synced=False), NodeState(HOUR_NS)
    _node_clock_jumps(state, [node.heartbeat()])
    node.clock.advance(10.0)
    node.clock.jump(STEP_S)
    node.agent.check_clock()
    node.sync.set(True)  # the kernel says so; the agent has not asked yet
    node.offset += 1
    received = node.true0 + int((node.clock.monotonic() - node.mono0 + 0.01) * 1e9)
    between = JournalRecord("i0", node.offset, received, status_topic(SITE, NODE),
                            encode_status("online", node.clock.now(), node.agent.health()))
    assert node.agent.health()["clock"] == {"jumps": 1, "synchronised": False}
    assert _node_clock_jumps(state, [between, node.heartbeat(), node.heartbeat()]) == []


def test_a_node_whose_clock_stays_unsynchronised_raises_the_step(tmp_path: Path) -> None:
    node, state = _Node(tmp_path, synced=False), NodeState(HOUR_NS)
    _node_clock_jumps(state, [node.heartbeat()])
    node.clock.jump(-3600.0)  # set back by someone, the clock still not synchronised
    assert _node_clock_jumps(state, [node.heartbeat()]) == []  # held one heartbeat
    [event] = _node_clock_jumps(state, [node.heartbeat()])
    assert "wall-clock jump" in event


def test_the_heartbeat_decodes_the_clock_s_synchronised_only_as_a_bool() -> None:
    at = datetime(2026, 5, 1, 8, 0, tzinfo=UTC)
    for sent, decoded in ((True, True), (False, False), (None, None), ("yes", None), (1, None)):
        health = {"run_id": "0123456789abcdef", "uptime_s": 30.0,
                  "clock": {"jumps": 0, "synchronised": sent}}
        rec = JournalRecord("i0", 1, to_epoch_ns(at), status_topic(SITE, NODE),
                            encode_status("online", at, health))
        data, _ = decode_record(rec, 4096)
        assert data is not None
        assert data.status is not None
        assert data.status.synchronised is decoded


def _power_cut_reboot(heartbeat_first: bool) -> list[JournalRecord]:
    """A node's records as its ingests stamp them: a run of a CO2 sensor read every 60 s with
    the clock synchronised, then the power cut (a Pi without RTC: fake-hwclock's saved time,
    written hourly, is 40 min behind the last reading), the Pi back 60 s later. Its agent
    connects before NTP answers (its first heartbeat says not synchronised, no jump), NTP
    steps the clock 20 s after the boot, and the next heartbeat says synchronised and counts
    the step. The sensor's first reading after the step comes before that heartbeat or after."""
    s = 10**9
    t0 = to_epoch_ns(datetime(2026, 5, 1, 8, 0, tzinfo=UTC))
    records: list[JournalRecord] = []

    def heartbeat(run: str, ts: int, received: int, uptime: float, jumps: int, synced: bool) -> None:
        health = {"run_id": run, "uptime_s": uptime, "clock": {"jumps": jumps, "synchronised": synced}}
        records.append(JournalRecord("i1", len(records) + 1, received, status_topic(SITE, NODE),
                                     encode_status("online", from_epoch_ns(ts), health)))

    def reading(seq: int, ts: int) -> None:
        r = Reading("co2-1", "air.co2", ts, seq, {"co2": 450.0 + seq % 7})
        records.append(JournalRecord("i0", len(records) + 1, ts + s // 100, data_topic(SITE, NODE),
                                     encode_batch(SITE, NODE, [r])))

    for i in range(600):  # 5 h: heartbeats every 30 s, a reading every 60 s
        t = t0 + i * 30 * s
        heartbeat("0123456789abcdef", t, t + s // 100, 100.0 + 30 * i, 0, True)
        if i % 2:
            reading(i // 2, t + s // 2)
    boot = t0 + 600 * 30 * s + 60 * s
    behind = 41 * 60 * s  # the node's clock until NTP steps it
    heartbeat("fedcba9876543210", boot + 8 * s - behind, boot + 8 * s, 3.0, 0, False)
    synced_at = boot + (38 if heartbeat_first else 58) * s  # the next heartbeat
    heartbeat("fedcba9876543210", synced_at, synced_at + s // 100, (synced_at - boot) / s - 5, 1, True)
    for j in range(10):
        reading(300 + j, boot + 50 * s + j * 60 * s)
        beat = synced_at + (j + 1) * 30 * s
        heartbeat("fedcba9876543210", beat, beat + s // 100, (beat - boot) / s - 5, 1, True)
    return sorted(records, key=lambda rec: rec.received_ns)


def test_the_boot_step_after_a_power_cut_is_no_sensor_clock_jump_either() -> None:
    """The sensors' forward clock rule must not take the run's restart gap for a clock set
    forward: the first heartbeat dated the agent's start on the clock not yet set right
    (40 min early: before the last reading of the run before, so no start within the gap),
    and its lead (its stamp less its reception) is that clock's. The heartbeat that says the
    clock synchronised dates the start on the clock set right, whichever comes first."""
    for heartbeat_first in (True, False):
        state, events = NodeState(HOUR_NS), []
        for rec in _power_cut_reboot(heartbeat_first):
            data, points = decode_record(rec, 4096)
            assert data is not None
            points.extend(state.process(data))
            events += [ln for _, ln in points if ln.startswith("events,") and "type=anomaly" not in ln]
        assert events == [], (heartbeat_first, events)
