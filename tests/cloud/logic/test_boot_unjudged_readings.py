"""Readings the rules keep out take sequence numbers all the same: a Pi without RTC flags
`clock_unsynced` every reading made after a boot until NTP answers, and an air module's
driver flags `warmup` the readings of its preheat. The node's state, fed the readings as the
real agent numbers, flags and sends them (and ticking as the dataflow does), raises no
SILENCE for those numbers: they came. Numbers never received after them are still missing.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from cloud.journal import JournalRecord
from cloud.logic.node import NodeState
from cloud.logic.records import decode_record
from cloud.logic.rollup import HOUR_NS
from edge.agent import Agent
from edge.clock_sync import FixedClockSync
from edge.config import load_config
from edge.drivers.base import Sample
from urbanpulse.clock import FakeClock, from_epoch_ns, to_epoch_ns
from urbanpulse.wire import data_topic, encode_batch, encode_status, status_topic

SAMPLE = Path(__file__).resolve().parents[3] / "edge/drivers/sds011/sample.toml"
SITE, NODE, SENSOR = "hn-hoankiem", "aq-01", "pm-1"
STEP_S = 20.0  # a reading every 20 s: silent after 60 s without one
TICK = timedelta(seconds=30)  # cloud.flow.TICK: the ticks ride on the node's traffic


class _Node:
    """One node as its agent sends: each reading numbered by the outbox and flagged by the
    agent's clock check, sent in its own message and received 10 ms later (the cloud's
    clock: true time, which the fake clock's monotonic time keeps when the wall clock is
    stepped); a heartbeat every 30 s."""

    def __init__(self, tmp_path: Path) -> None:
        self.tmp_path = tmp_path
        self.clock = FakeClock(datetime(2026, 5, 1, 8, 0, tzinfo=UTC))
        self.true0, self.mono0 = to_epoch_ns(self.clock.now()), self.clock.monotonic()
        self.sync = FixedClockSync(True)
        self.offset = 0
        self.agent = self._start()
        self.next_beat = 0.0

    def _start(self) -> Agent:
        text = SAMPLE.read_text().replace('state_dir = "/var/lib/urbanpulse"',
                                          f'state_dir = "{self.tmp_path / "state"}"')
        self.tmp_path.mkdir(parents=True, exist_ok=True)
        (self.tmp_path / "node.toml").write_text(text)
        agent = Agent(load_config(self.tmp_path / "node.toml"), clock=self.clock, clock_sync=self.sync)
        agent.outbox.open()
        agent.clock_sync.start()
        agent.check_clock()
        return agent

    def received(self) -> int:
        return self.true0 + int((self.clock.monotonic() - self.mono0 + 0.01) * 1e9)

    def _heartbeat(self) -> JournalRecord:
        self.agent.check_clock()
        self.agent.clock_sync.refresh()
        self.offset += 1
        return JournalRecord("i1", self.offset, self.received(), status_topic(SITE, NODE),
                             encode_status("online", self.clock.now(), self.agent.health()))

    def run(self, seconds: float, flags: tuple[str, ...] = (), value: float | None = None,
            lose: int = 0) -> list[JournalRecord]:
        """`seconds` of the node: a reading every STEP_S (its driver's `flags`, a fixed
        `value` if given; the first `lose` of them never reach the cloud: a batch its
        outbox evicted), the heartbeats between."""
        out: list[JournalRecord] = []
        emit = self.agent.emitter(self.agent.drivers[SENSOR])
        for _ in range(round(seconds / STEP_S)):
            self.clock.advance(STEP_S)
            up = self.clock.monotonic() - self.mono0
            while self.next_beat <= up:
                out.append(self._heartbeat())
                self.next_beat += 30.0
            n = self.agent.outbox.next_seq(SENSOR)
            pm = 12.0 + n % 5 if value is None else value
            emit(Sample(SENSOR, "air.pm", {"pm25": pm, "pm10": pm + 8.0}, self.clock.now(), flags))
            self.agent.flush()
            [row] = self.agent.outbox.fetch(1, after_id=0)
            self.agent.outbox.ack([row.id])
            if lose > 0:
                lose -= 1
                continue
            self.offset += 1
            out.append(JournalRecord("i0", self.offset, self.received(), data_topic(SITE, NODE),
                                     encode_batch(SITE, NODE, [row.reading],
                                                  numbering=self.agent.outbox.numbering())))
        return out

    def power_cut(self, down_s: float, behind_s: float) -> None:
        """The Pi off for `down_s`, back on fake-hwclock's saved time, `behind_s` behind the
        true time, its clock not synchronised: the agent starts again on it."""
        self.agent.outbox.close()
        self.clock.advance(down_s)
        self.clock.jump(-behind_s)
        self.sync.set(False)
        self.agent = self._start()
        # the agent connects and sends its first heartbeat 8 s after its start
        self.next_beat = self.clock.monotonic() - self.mono0 + 8.0

    def ntp_answers(self, behind_s: float) -> None:
        self.clock.jump(behind_s)
        self.sync.set(True)


def _faults(state: NodeState, records: list[JournalRecord], ticks: bool) -> list[str]:
    """The fault events of the node's records processed in order, ticking as the dataflow's
    NodeLogic does (`ticks`): after a batch, when TICK has passed (the processor keeping up:
    its clock is the reception's)."""
    out: list[str] = []
    next_tick: datetime | None = None
    for rec in sorted(records, key=lambda rec: rec.received_ns):
        data, points = decode_record(rec, 4096)
        assert data is not None
        points.extend(state.process(data))
        now = from_epoch_ns(rec.received_ns)
        if ticks and (next_tick is None or now >= next_tick):
            next_tick = now + TICK
            points.extend(state.tick(now))
        out += [ln for _, ln in points if ln.startswith("events,") and "type=anomaly" not in ln]
    return out


def test_a_boot_with_unsynchronised_readings_raises_no_silence(tmp_path: Path) -> None:
    """A power blip: the Pi back 15 s after it went off, 40 min behind (fake-hwclock), NTP
    answering 80 s after the agent started: four readings flagged clock_unsynced, numbered
    on from the outbox, then readings on the clock set right. Before, the rules never heard
    of the four: "4 readings missing" when the next reading came (or "no data since" from
    the ticks a minute after the last reading taken)."""
    for ticks in (False, True):
        node, state = _Node(tmp_path / str(ticks)), NodeState(HOUR_NS)
        assert _faults(state, node.run(3600.0), ticks) == []
        node.power_cut(15.0, 2400.0)
        boot = node.run(80.0)
        flagged = [r for rec in boot if rec.topic.endswith("/data")
                   for r in decode_record(rec, 4096)[0].readings]  # type: ignore[union-attr]
        assert [r.flags for r in flagged] == [("clock_unsynced",)] * 4
        node.ntp_answers(2400.0)
        events = _faults(state, [*boot, *node.run(600.0)], ticks)
        assert events == [], (ticks, events)


def test_a_preheat_flagged_warmup_raises_no_silence(tmp_path: Path) -> None:
    """The driver restarted mid-run (its port reopened): 3 min of preheat flagged `warmup`
    (the module answers a fixed value), then readings again. Nothing is silent."""
    for ticks in (False, True):
        node, state = _Node(tmp_path / str(ticks)), NodeState(HOUR_NS)
        assert _faults(state, node.run(3600.0), ticks) == []
        records = [*node.run(180.0, ("warmup",), value=0.0), *node.run(600.0)]
        assert _faults(state, records, ticks) == []


def test_numbers_never_received_after_unsynchronised_ones_are_still_missing(tmp_path: Path) -> None:
    """After the boot's flagged readings, four readings the cloud never gets (their batch
    evicted from the outbox): a silence of four readings on the reading after them, placed
    where the first of them was due. (Not ticked: the ticks see 80 s without data first, a
    silence of their own, after which the gap is not raised again.)"""
    node, state = _Node(tmp_path), NodeState(HOUR_NS)
    _faults(state, node.run(3600.0), False)
    node.power_cut(15.0, 2400.0)
    boot = node.run(80.0)
    node.ntp_answers(2400.0)
    after = node.run(200.0, lose=4)
    [event] = [e for e in _faults(state, [*boot, *after], False) if 'field="pm25"' in e]
    assert "type=silence" in event
    assert "4 readings missing (seq 183 -> 188)" in event
    assert "delay_s=80" in event  # due 4 x 20 s before the reading after them


def test_the_boot_s_flagged_readings_swapped_with_the_next_raise_no_silence(tmp_path: Path) -> None:
    """Two ingests: the agent sends the boot's flagged readings in one message just before
    the first reading on the clock set right (a backlog drained at once), and the merge of
    the ingests' journals gives the state the message after it first (3 ms apart): the gap
    it shows is held, and the flagged readings fill it. (Not ticked: the sensor's data
    arrives only 95 s after its last reading, which the ticks call a silence, rightly.)"""
    node, state = _Node(tmp_path), NodeState(HOUR_NS)
    assert _faults(state, node.run(3600.0), False) == []
    node.power_cut(15.0, 2400.0)
    boot = node.run(80.0)
    node.ntp_answers(2400.0)
    after = node.run(600.0)
    flagged = [rec for rec in boot if rec.topic.endswith("/data")]
    readings = [r for rec in flagged for r in decode_record(rec, 4096)[0].readings]  # type: ignore[union-attr]
    first = after[0] if after[0].topic.endswith("/data") else after[1]
    one = JournalRecord("i0", 10**6, first.received_ns + 3_000_000, data_topic(SITE, NODE),
                        encode_batch(SITE, NODE, readings, numbering=node.agent.outbox.numbering()))
    records = [rec for rec in boot if rec not in flagged] + [one, *after]
    assert _faults(state, records, False) == []
