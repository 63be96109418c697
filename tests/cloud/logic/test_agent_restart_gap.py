"""An agent restarted (a reboot, an upgrade) leaves a gap between two consecutive readings
of each sensor: the time it was down. That is no clock set forward. The cloud learns the
restart from the new run's first heartbeat (sent when the agent connects, before its data),
as the real agent makes it, and the forward clock rule then lets the gap across it pass;
a forward jump within a run is still an event, and without the heartbeat the same gap
still looks like one (the rule the restart exempts)."""

from __future__ import annotations

import pickle
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
        self.true_start_ns, self.mono_start = to_epoch_ns(self.clock.now()), self.clock.monotonic()
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

    def received_ns(self, after_s: float = 0.01) -> int:
        """The cloud's clock (true time: the fake clock's monotonic time, which no wall-clock
        step moves) `after_s` after now: received just after it was sent, the node keeps up."""
        return self.true_start_ns + int((self.clock.monotonic() - self.mono_start + after_s) * 10**9)

    def _record(self, topic: str, payload: bytes) -> JournalRecord:
        self.offset += 1
        return JournalRecord("i0", self.offset, self.received_ns(), topic, payload)

    def heartbeat(self, skew_s: float = 0.0) -> JournalRecord:
        """The agent's status; `skew_s`: how much later than a data message sent at the same
        moment its ingest stamps it (two ingests, MQTT shared subscription: the heartbeat
        and the data reach different ones)."""
        self.agent.check_clock()
        record = self._record(status_topic(SITE, NODE),
                              encode_status("online", self.clock.now(), self.agent.health()))
        return record._replace(received_ns=record.received_ns + int(skew_s * 10**9))

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
        self.clock.advance(DOWN_S)
        self.clock.jump(clock_moved_s - DOWN_S)
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


# How much later the heartbeat's ingest stamps it than the other ingest stamps the data sent
# just after it (a busy ingest, a commit waiting on the disk): well within what the cloud
# allows for (FaultSettings.clock_hold_s).
SKEW_S = 0.5


def _merged(records: list[JournalRecord]) -> list[JournalRecord]:
    """The records as the processor reads two ingests' journals: merged by their received
    stamps (cloud.journal.MergedJournals), so a heartbeat stamped late by its ingest comes
    after data the node sent after it."""
    return sorted(records, key=lambda rec: rec.received_ns)


def _connecting(city: _City, skew_s: float, backlog: list[JournalRecord] | None = None,
                after: int = 60) -> list[JournalRecord]:
    """A run's first records: the `backlog` of readings taken while the agent connected (5
    by default), its first heartbeat on connecting (stamped `skew_s` late by its ingest),
    the backlog sent just after it, then `after` readings sent as they are taken."""
    if backlog is None:
        backlog = city.readings(5)
    first = city.heartbeat(skew_s=skew_s)
    sent = [rec._replace(received_ns=city.received_ns(0.02)) for rec in backlog]
    return [first, *sent, *city.readings(after)]


def test_a_restart_whose_heartbeat_reaches_the_state_after_its_data_is_no_clock_jump(
        tmp_path: Path) -> None:
    """Two ingests: the new run's first heartbeat (sent on connecting, before the data) is
    stamped by a slower ingest than the run's first data messages, so the merged journals
    give the node's state the readings across the restart first. The gap must not be judged
    a clock set forward before the heartbeat that explains it had its chance."""
    city, state = _City(tmp_path), NodeState(HOUR_NS)
    assert _clock_jumps(state, [city.heartbeat(), *city.readings(300)]) == []
    city.restart()
    records = _merged(_connecting(city, SKEW_S))
    assert records[0].topic.endswith("/data")  # the data first
    assert _clock_jumps(state, records) == []
    # and the heartbeats after it, the readings after those: nothing either
    assert _clock_jumps(state, [*city.readings(30), city.heartbeat(), *city.readings(30)]) == []


def test_a_clock_stepped_before_the_runs_first_heartbeat_is_a_jump_in_either_order(
        tmp_path: Path) -> None:
    """As test_a_clock_stepped_before_the_runs_first_heartbeat_is_still_a_jump, the heartbeat
    stamped late by its ingest: the readings across the step reach the state first, the
    heartbeat (which counted the jump, so dates no start) after them; the jump is raised."""
    city, state = _City(tmp_path), NodeState(HOUR_NS)
    _clock_jumps(state, [city.heartbeat(), *city.readings(300)])
    city.restart(clock_moved_s=0)
    before_step = city.readings(10)
    city.clock.jump(DOWN_S)
    records = _merged(_connecting(city, SKEW_S, [*before_step, *city.readings(5)]))
    assert records[0].topic.endswith("/data")
    events = _clock_jumps(state, records)
    # one event of the node for the jump (its two fields' folded: NodeClockJumps)
    assert [e.split(" ")[1].split(",")[0] for e in events] == ['field="pm25"']
    assert all("clock set forward" in e and "kind=node" in e for e in events)


def test_a_forward_jump_within_a_run_gives_the_same_events_whichever_comes_first(
        tmp_path: Path) -> None:
    """A clock set forward while the agent runs, and its next heartbeat sent just after:
    the same clock_jump points whether the heartbeat or the readings reach the state first
    (the readings are stamped ahead of the cloud's clock by the jump: raised on the reading
    when they come first; after the heartbeat, whose stamp already carries the jump, held
    until the heartbeat after them, which lets them go as the node's state writes the
    heartbeat's events)."""
    city, states = _City(tmp_path), (NodeState(HOUR_NS), NodeState(HOUR_NS))
    start = [city.heartbeat(), *city.readings(300)]
    for state in states:
        _clock_jumps(state, start)
    city.clock.jump(DOWN_S)
    heartbeat = city.heartbeat()
    readings = city.readings(5)  # received within clock_hold_s
    city.clock.advance(25)
    after = city.heartbeat()
    held = _clock_jumps(states[0], [heartbeat, *readings])
    assert not [e for e in held if "sensor=" in e]  # held: only the node's, from its count
    first = held + _clock_jumps(states[0], [after])
    second = _clock_jumps(states[1], [*readings, heartbeat, after])
    # One event of the node's for the jump either way (NodeClockJumps), written again with
    # who else saw it: the first to come raises it (the heartbeat's count, or the readings).
    for points, opener in ((first, "the node counted 1 wall-clock jump"),
                           (second, "pm-1: stamps moved")):
        raised = [e for e in points if " field=" in e]
        assert len(raised) == 1
        assert opener in raised[0]
        assert "kind=node" in raised[0]
        assert not [e for e in points if "sensor=" in e]
        [again] = [e for e in points if " detail=" in e]  # the same point, its detail
        assert again.rsplit(" ", 1)[1] == raised[0].rsplit(" ", 1)[1]
    assert "(seen by pm-1)" in next(e for e in first if " detail=" in e)
    assert "(counted by the node)" in next(e for e in second if " detail=" in e)
    assert "seq=300i" in next(e for e in second if " field=" in e)


def test_a_held_jump_lives_through_a_snapshot(tmp_path: Path) -> None:
    """The readings across a restart, then a snapshot (the processor stops), then the
    heartbeat: the resumed state still drops the jump it held."""
    city, state = _City(tmp_path), NodeState(HOUR_NS)
    _clock_jumps(state, [city.heartbeat(), *city.readings(300)])
    city.restart()
    records = _merged(_connecting(city, SKEW_S, after=0))
    heartbeat = next(i for i, rec in enumerate(records) if rec.topic.endswith("/status"))
    assert heartbeat > 0
    assert _clock_jumps(state, records[:heartbeat]) == []
    resumed: NodeState = pickle.loads(pickle.dumps(state, protocol=pickle.HIGHEST_PROTOCOL))
    assert _clock_jumps(resumed, [*records[heartbeat:], *city.readings(60), city.heartbeat()]) == []


def test_a_heartbeat_its_ingest_stamped_late_before_the_restart_does_not_make_it_a_jump(
        tmp_path: Path) -> None:
    """The run's last heartbeat before the restart stamped 20 s late by its ingest (stalled
    a moment: a transit delay, not the node's clock): the node's clock is no 20 s behind the
    cloud's, so the new run's first readings are not taken for readings stamped 20 s ahead
    (a jump raised at once) while its first heartbeat is still on its way."""
    city, state = _City(tmp_path), NodeState(HOUR_NS)
    assert _clock_jumps(state, [city.heartbeat(), *city.readings(300)]) == []
    assert _clock_jumps(state, [city.heartbeat(), *city.readings(30)]) == []
    assert _clock_jumps(state, [city.heartbeat(skew_s=20.0), *city.readings(5)]) == []
    city.restart()
    records = _merged(_connecting(city, SKEW_S))
    assert records[0].topic.endswith("/data")
    assert _clock_jumps(state, records) == []
