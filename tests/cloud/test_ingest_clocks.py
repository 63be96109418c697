"""Several ingests share the subscription, each stamping what it receives with its own
clock, and the reader merges their journals by those stamps. An ingest whose clock runs
ahead of the others' has a node's messages read out of order by the difference, and the
node state judges time by the stamps: past the fault rules' gap grace (10 s) a backlog read
raises false silences ("N readings missing"), past a sensor's silence limit less its
interval (20 s for a 10-s sensor) even live. Nothing is lost or counted twice (windows and
dedup go by the readings' own stamps and numbers), but the alerts are false, and nothing
said why. The processor now compares the journals' stamps with its clock while it reads as
they come, and logs at WARNING when the ingests' clocks disagree by more than 2 s, well
below where the false alerts begin (real SQLite journals, the dataflow's node step)."""

from __future__ import annotations

import logging
import random
from datetime import UTC, datetime
from pathlib import Path

import pytest

from cloud.flow import NodeLogic
from cloud.health import SKEW_WARN_S, ProcessorHealth
from cloud.journal import Journal, JournalRecord, MergedJournals, journal_path
from cloud.logic.node import NodeState
from urbanpulse.clock import FakeClock, to_epoch_ns
from urbanpulse.wire import Reading, data_topic, encode_batch

SECOND = 1_000_000_000
T0 = datetime(2027, 1, 15, 8, 0, tzinfo=UTC)


def _silences(tmp_path: Path, skew_s: float, live: bool, minutes: int = 10) -> int:
    """A node sends a message a second (a 1-s PM sensor, a 10-s CO2 sensor), dealt out at
    random to two ingests, the second stamping `skew_s` ahead; read as it comes (`live`)
    or all at once after (a backlog): the SILENCE alerts its node step raises."""
    writers = [Journal(journal_path(tmp_path, f"i{k}"), f"i{k}").open() for k in range(2)]
    merged = MergedJournals([Journal(journal_path(tmp_path, f"i{k}"), f"i{k}").open(create=False)
                             for k in range(2)], {}, 50)
    logic = NodeLogic(NodeState(6 * 3600 * SECOND, True), 4096)
    deal = random.Random(7)
    silences = 0

    def read() -> None:
        nonlocal silences
        while records := merged.read(50):
            out, _ = logic.on_batch(records)
            silences += sum(a.type == "silence" for _, _, alerts, _ in out for a in alerts)

    t0 = to_epoch_ns(T0)
    for s in range(minutes * 60):
        t = t0 + s * SECOND
        readings = [Reading("pm-1", "air.pm", t, s, {"pm25": 10.0 + s % 7, "pm10": 20.0 + s % 5})]
        if s % 10 == 0:
            readings.append(Reading("co2-1", "air.co2", t, s // 10, {"co2": 500.0 + s % 13}))
        k = deal.randrange(2)
        writers[k].append([(data_topic("hn-clk", "n1"), encode_batch("hn-clk", "n1", readings))],
                          t + SECOND // 20 + (round(skew_s * SECOND) if k == 1 else 0))
        if live:
            read()
    read()
    return silences


@pytest.mark.parametrize("live", [True, False], ids=["live", "backlog"])
def test_ingest_clocks_within_the_warning_raise_no_false_silence(tmp_path: Path, live: bool) -> None:
    assert _silences(tmp_path, SKEW_WARN_S, live) == 0


def test_ingest_clocks_apart_by_more_than_the_gap_grace_raise_false_silences(tmp_path: Path) -> None:
    """Why the warning exists: the node sent every reading, on time."""
    assert _silences(tmp_path, 15.0, live=False) > 50


def _record(partition: str, received: datetime | int) -> JournalRecord:
    stamp = received if isinstance(received, int) else to_epoch_ns(received)
    return JournalRecord(partition, 1, stamp, "urbanpulse/v1/s/n/data", b"")


def _feed(health: ProcessorHealth, clock: FakeClock, seconds: int, ahead_s: float,
          caught_up: bool = True, age_s: float = 0.01) -> None:
    """A caught-up read every second of a record of each journal, committed `age_s` ago
    by the reader's clock; journal i1's ingest stamps `ahead_s` ahead."""
    for _ in range(seconds):
        clock.advance(1.0)
        now = to_epoch_ns(clock.now())
        age = round(age_s * SECOND)
        health.journal_read([_record("i0", now - age), _record("i1", now - age + round(ahead_s * SECOND))],
                            caught_up, lambda: 0)


def test_ingest_clocks_that_disagree_are_logged_once_naming_the_journals(
        caplog: pytest.LogCaptureFixture) -> None:
    clock = FakeClock(T0)
    health = ProcessorHealth(0, 10.0, clock)
    caplog.set_level(logging.INFO, logger="urbanpulse.cloud.health")
    _feed(health, clock, 130, ahead_s=0.004)  # NTP: milliseconds
    _feed(health, clock, 130, ahead_s=-3.0, caught_up=False, age_s=40.0)  # a backlog says nothing
    assert not caplog.records
    assert health.ingest_clocks.spread_s is not None
    assert health.ingest_clocks.spread_s < 0.01

    _feed(health, clock, 200, ahead_s=5.0)
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1, [r.getMessage() for r in caplog.records]
    text = warnings[0].getMessage()
    assert ("the ingests' clocks disagree by about 5.0 s: journal i1's stamps run ahead of "
            "journal i0's") in text
    assert "NTP" in text

    _feed(health, clock, 130, ahead_s=0.002)
    assert [r.getMessage() for r in caplog.records[1:]] == ["the ingests' clocks agree again (within 0.00 s)"]
