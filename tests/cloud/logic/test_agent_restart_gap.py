"""An agent restarted (a reboot, an upgrade) leaves a gap between two consecutive readings
of each sensor: the time it was down. That is no clock set forward. The cloud learns the
restart from the new run's first heartbeat (sent when the agent connects, before its data),
as the real agent makes it, and the forward clock rule then lets the gap across it pass;
a forward jump within a run is still an event, and without the heartbeat the same gap
still looks like one (the rule the restart exempts)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from cloud.journal import JournalRecord
from cloud.logic.node import NodeState
from cloud.logic.records import decode_record
from cloud.logic.rollup import HOUR_NS
from edge.agent import Agent
from edge.config import load_config
from urbanpulse.clock import FakeClock, to_epoch_ns
from urbanpulse.wire import Reading, data_topic, encode_batch, encode_status, status_topic

SAMPLE = Path(__file__).resolve().parents[3] / "edge/drivers/sds011/sample.toml"
SITE, NODE, SENSOR = "hn-hoankiem", "aq-01", "pm-1"
DOWN_S = 56  # an agent restart: stopped, the Pi rebooted, started again


class _City:
    """One node's journal records: its agent's heartbeats and one SDS011's readings, one a
    second, sequence numbers continuing across the agent's restarts (the outbox keeps them)."""

    def __init__(self, tmp_path: Path) -> None:
        self.tmp_path = tmp_path
        self.clock = FakeClock(datetime(2026, 5, 1, 8, 0, tzinfo=UTC))
        self.offset = 0
        self.seq = 0
        self.runs = 0
        self.agent = self._start_agent()

    def _start_agent(self) -> Agent:
        self.runs += 1
        state_dir = self.tmp_path / "state"
        text = SAMPLE.read_text().replace('state_dir = "/var/lib/urbanpulse"', f'state_dir = "{state_dir}"')
        path = self.tmp_path / "node.toml"
        path.write_text(text)
        agent = Agent(load_config(path), clock=self.clock)
        agent.outbox.open()
        return agent

    def _record(self, topic: str, payload: bytes) -> JournalRecord:
        self.offset += 1
        # received just after it was sent: the node keeps up
        return JournalRecord("i0", self.offset, to_epoch_ns(self.clock.now()) + 10**7, topic, payload)

    def heartbeat(self) -> JournalRecord:
        self.agent.check_clock()
        return self._record(status_topic(SITE, NODE),
                            encode_status("online", self.clock.now(), self.agent.health()))

    def readings(self, n: int) -> list[JournalRecord]:
        out = []
        for _ in range(n):
            self.clock.advance(1.0)
            r = Reading(SENSOR, "air.pm", to_epoch_ns(self.clock.now()), self.seq,
                        {"pm25": 12.0 + self.seq % 5, "pm10": 20.0 + self.seq % 7})
            self.seq += 1
            out.append(self._record(data_topic(SITE, NODE), encode_batch(SITE, NODE, [r])))
        return out

    def restart(self, clock_moved_s: float = DOWN_S) -> None:
        """The agent stops, the Pi is down for DOWN_S and the agent starts again; its clock
        moved `clock_moved_s` meanwhile (0: a Pi without RTC, back at fake-hwclock's saved
        time). The agent checks its clock from its start on, as its loop does."""
        self.agent.outbox.close()
        self.clock.advance(clock_moved_s)
        self.agent = self._start_agent()
        self.agent.check_clock()


def _clock_jumps(state: NodeState, records: list[JournalRecord]) -> list[str]:
    out = []
    for rec in records:
        data, points = decode_record(rec, 4096)
        if data is not None:
            points.extend(state.process(data))
        out += [ln for _, ln in points if ln.startswith("events,") and "type=clock_jump" in ln]
    return out


def test_a_restart_announced_by_its_heartbeat_is_no_clock_jump(tmp_path: Path) -> None:
    city, state = _City(tmp_path), NodeState(HOUR_NS)
    assert _clock_jumps(state, [city.heartbeat(), *city.readings(300)]) == []
    city.restart()
    assert city.runs == 2
    assert _clock_jumps(state, [city.heartbeat(), *city.readings(60)]) == []
    # and again: each run's start is told apart
    city.restart()
    assert _clock_jumps(state, [city.heartbeat(), *city.readings(60)]) == []


def test_the_same_gap_without_the_restarts_heartbeat_is_a_clock_jump(tmp_path: Path) -> None:
    city, state = _City(tmp_path), NodeState(HOUR_NS)
    _clock_jumps(state, [city.heartbeat(), *city.readings(300)])
    city.restart()
    [event] = [e for e in _clock_jumps(state, city.readings(60)) if "pm25" in e]
    assert "clock set forward" in event


def test_a_forward_jump_within_a_run_is_still_an_event(tmp_path: Path) -> None:
    city, state = _City(tmp_path), NodeState(HOUR_NS)
    _clock_jumps(state, [city.heartbeat(), *city.readings(300)])
    city.restart()
    _clock_jumps(state, [city.heartbeat(), *city.readings(60)])
    city.clock.jump(DOWN_S)  # NTP set the clock forward while the agent ran
    events = _clock_jumps(state, [*city.readings(5), city.heartbeat()])
    assert any("pm25" in e and "clock set forward" in e for e in events)


def test_a_clock_stepped_before_the_runs_first_heartbeat_is_still_a_jump(tmp_path: Path) -> None:
    """A Pi without RTC boots at fake-hwclock's saved time, the agent reads for a while, and
    NTP steps the clock forward by the time the Pi was down before the agent connects (its
    network late, the MQTT backoff): the first heartbeat is stamped after the step, so its
    stamp less its uptime falls within the step's gap, which is a clock set forward all the
    same (the readings before it are stamped DOWN_S early). The heartbeat says so: the
    agent counted the jump."""
    city, state = _City(tmp_path), NodeState(HOUR_NS)
    _clock_jumps(state, [city.heartbeat(), *city.readings(300)])
    city.restart(clock_moved_s=0)
    before_step = city.readings(10)
    city.clock.jump(DOWN_S)
    heartbeat = city.heartbeat()
    assert city.agent.clock_jumps == 1
    # sent on connecting, then the readings in order (all within the agent's live window)
    events = _clock_jumps(state, [heartbeat, *before_step, *city.readings(60)])
    assert any("pm25" in e and "clock set forward" in e for e in events), events
