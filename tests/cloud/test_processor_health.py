"""The processor's report on itself (cloud.health) on a fake clock, values worked out by
hand; the journal's backlog on real SQLite journals; the config key."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from cloud.config import parse_cloud_config
from cloud.health import ProcessorHealth
from cloud.journal import Journal, JournalRecord, MergedJournals, journal_path
from cloud.sink import SinkStats
from urbanpulse.clock import FakeClock, to_epoch_ns
from urbanpulse.errors import ConfigError

T0 = datetime(2026, 11, 29, 8, 0, tzinfo=UTC)
NS = 1_000_000_000


def _fields(line: str) -> tuple[str, dict[str, str], int]:
    """Series head, fields as their line-protocol text, timestamp."""
    head, fields, ts = line.split(" ")
    return head, dict(f.split("=") for f in fields.split(",")), int(ts)


def _records(received: list[datetime]) -> list[JournalRecord]:
    return [JournalRecord("i0", k + 1, to_epoch_ns(t), "urbanpulse/v1/s/n/data", b"{}")
            for k, t in enumerate(received)]


class Backlog:
    """Stands in for MergedJournals.backlog: counts the looks and returns a set value."""

    def __init__(self, value: int) -> None:
        self.value = value
        self.calls = 0

    def __call__(self) -> int:
        self.calls += 1
        return self.value


def test_a_report_before_any_journal_read_holds_the_writer_counts_only() -> None:
    clock = FakeClock(T0)
    health = ProcessorHealth(3, 10.0, clock)
    assert health.seconds_to_report() == 0  # the first one at once
    clock.advance(2.5)
    rp, text = health.report(SinkStats(points=1200, requests=3, retries=2, refused_requests=1,
                                       recomputed=4, not_recomputed=5, domain_replays=6,
                                       domain_not_replayed=7, denied=8, denied_s=12.25),
                           pending_points=70)
    assert rp == "raw"
    assert text == ("processor,process=3 uptime_s=2.5,points_written=1200i,write_requests=3i,"
                    f"write_retries=2i,write_refused=1i,write_denied=8i,write_denied_s=12.25,"
                    f"windows_rebuilt=4i,windows_not_rebuilt=5i,"
                    f"domain_spans_replayed=6i,domain_spans_not_replayed=7i,"
                    f"domain_spans_refused=0i,windows_refused=0i,"
                    f"points_pending=70i {to_epoch_ns(T0) + 2_500_000_000}")
    assert health.seconds_to_report() == 10.0
    clock.advance(4)
    assert health.seconds_to_report() == 6.0
    clock.advance(7)
    assert health.seconds_to_report() == 0


def test_behind_the_lag_is_the_newest_read_records_age_and_it_grows_while_the_reader_stalls() -> None:
    clock = FakeClock(T0)
    health = ProcessorHealth(0, 10.0, clock)
    backlog = Backlog(900)
    # Two batches of records received 2 minutes ago, 1 s apart; the journal holds more.
    health.journal_read(_records([T0 - timedelta(seconds=120 - k) for k in range(50)]), caught_up=False,
                        backlog=backlog)
    clock.advance(1)
    backlog.value = 850
    health.journal_read(_records([T0 - timedelta(seconds=70 - k) for k in range(50)]), caught_up=False,
                        backlog=backlog)
    assert backlog.calls == 2  # a look per batch while behind
    _, fields, ts = _fields(health.report(SinkStats(), 0)[1])
    assert ts == to_epoch_ns(T0) + NS
    assert fields["records_read"] == "100i"
    assert fields["journal_backlog"] == "850i"
    # the newest record read was received at T0 - 21 s; it is T0 + 1 s
    assert fields["read_lag_s"] == "22.0"
    clock.advance(8)  # the reader reads nothing more (a stuck dataflow): the lag grows
    assert _fields(health.report(SinkStats(), 0)[1])[1]["read_lag_s"] == "30.0"
    backlog.value = 400
    health.journal_read(_records([T0 - timedelta(seconds=15)]), caught_up=False, backlog=backlog)
    _, fields, _ = _fields(health.report(SinkStats(), 0)[1])
    assert (fields["records_read"], fields["journal_backlog"]) == ("101i", "400i")
    assert fields["read_lag_s"] == "24.0"


def test_caught_up_the_lag_is_the_time_since_the_reader_last_left_nothing_unread() -> None:
    clock = FakeClock(T0)
    health = ProcessorHealth(0, 10.0, clock)
    backlog = Backlog(5000)
    health.journal_read(_records([T0 - timedelta(minutes=30)]), caught_up=False, backlog=backlog)
    clock.advance(3)
    health.journal_read(_records([T0 - timedelta(seconds=1)]), caught_up=True, backlog=backlog)
    _, fields, _ = _fields(health.report(SinkStats(), 0)[1])
    assert (fields["journal_backlog"], fields["read_lag_s"], fields["records_read"]) == ("0i", "0.0", "2i")
    assert backlog.calls == 1  # caught up: nothing left, no need to look
    clock.advance(0.25)  # the reader's next look has not come yet
    assert _fields(health.report(SinkStats(), 0)[1])[1]["read_lag_s"] == "0.25"
    health.journal_read([], caught_up=True, backlog=backlog)  # an idle poll finds nothing new
    assert _fields(health.report(SinkStats(), 0)[1])[1]["read_lag_s"] == "0.0"
    # Behind again with an empty batch (the merge waits for a journal's next records): the
    # lag runs from the last point the reader had reached.
    clock.advance(2)
    health.journal_read([], caught_up=False, backlog=backlog)
    _, fields, _ = _fields(health.report(SinkStats(), 0)[1])
    assert (fields["journal_backlog"], fields["read_lag_s"]) == ("5000i", "2.0")
    # A full batch that happens to be the last one: the reader does not know it has found the
    # end, but the journals' last offsets say nothing is left.
    clock.advance(1)
    backlog.value = 0
    health.journal_read(_records([T0 - timedelta(seconds=40)]), caught_up=False, backlog=backlog)
    _, fields, _ = _fields(health.report(SinkStats(), 0)[1])
    assert (fields["journal_backlog"], fields["read_lag_s"]) == ("0i", "0.0")


def test_the_interval_must_be_positive() -> None:
    with pytest.raises(ValueError, match="every_s"):
        ProcessorHealth(0, 0.0, FakeClock(T0))


def test_merged_journals_count_what_is_journaled_and_not_yet_returned(tmp_path: Path) -> None:
    a, b = (Journal(journal_path(tmp_path, p), p).open() for p in ("i0", "i1"))
    t = to_epoch_ns(T0)
    a.append([(f"a{k}", b"") for k in range(30)], t)
    b.append([(f"b{k}", b"") for k in range(12)], t + NS)
    merged = MergedJournals([Journal(journal_path(tmp_path, p), p).open(create=False) for p in ("i0", "i1")],
                            {"i0": 5}, batch=10)  # resumed after a's 5th record
    assert merged.backlog() == 25 + 12
    got = merged.read(8)  # reads 10 of each ahead, returns 8 of a
    assert [r.topic for r in got] == [f"a{k}" for k in range(5, 13)]
    assert merged.backlog() == 17 + 12  # read ahead but not returned: still behind
    b.append([("b-late", b"")], t + 2 * NS)
    assert merged.backlog() == 17 + 13
    while not merged.caught_up:
        merged.read(100)
    assert merged.backlog() == 0
    merged.close()


def _flow(**flow: object) -> dict[str, object]:
    return {"mqtt": {"password_file": "p", "ca_file": "c"}, "influx": {"password_file": "p"}, "flow": flow}


def test_health_every_s_defaults_to_10_and_is_checked() -> None:
    assert parse_cloud_config(_flow()).flow.health_every_s == 10.0
    assert parse_cloud_config(_flow(health_every_s=1)).flow.health_every_s == 1.0
    for bad in (0.5, 61.0, float("nan"), float("inf")):
        with pytest.raises(ConfigError, match=r"flow\.health_every_s"):
            parse_cloud_config(_flow(health_every_s=bad))
    with pytest.raises(ConfigError, match=r"flow\.health_every_s.*must be float"):
        parse_cloud_config(_flow(health_every_s="10s"))
