"""The pipeline benchmark, end to end with tiny parameters on its own private stack, and its
bookkeeping on known inputs. No timing is asserted: the numbers belong to the machine."""

from __future__ import annotations

import json
import sqlite3
from datetime import UTC, datetime
from pathlib import Path

import pytest

from bench.pipeline.case import CaseSpec, run_case
from bench.pipeline.observe import JournalCounter, merged_acks, reached_at
from bench.pipeline.profiling import parse
from bench.pipeline.report import cpu_per_reading_us, markdown_table
from bench.pipeline.workload import Message, generate, schedule, simulated_start
from urbanpulse.clock import to_epoch_ns
from urbanpulse.simulate import City
from urbanpulse.wire.payload import parse_ts


def _msg(node: str, n: int) -> Message:
    return Message("s", node, f"urbanpulse/v1/s/{node}/data", b"{}", n)


def test_workload_cuts_exact_batches_and_counts_distinct_points() -> None:
    w = generate(3000, batch=200, now=datetime(2026, 6, 1, 12, tzinfo=UTC))
    assert w.readings == 3000
    assert {m.readings for m in w.messages} == {200}
    assert 0 < sum(w.expected_points.values()) <= w.readings
    assert w.first_ts_ns < w.last_ts_ns
    part = w.prefix(1000)
    assert part.readings == 1000
    assert part.messages == w.messages[:5]


def test_a_live_workload_cuts_messages_as_a_nodes_outbox_does() -> None:
    """--live: a message holds the readings stamped within `live_s` of its first (at most
    `batch`), and the node's next message starts with the first reading it left out."""
    w = generate(3000, batch=5, live_s=1.0, now=datetime(2026, 6, 1, 12, tzinfo=UTC))
    assert w.readings >= 3000
    last_of: dict[str, tuple[int, int]] = {}  # node -> (first stamp, readings) of its last message
    for m in w.messages:
        stamps = [parse_ts(r["ts"]) for r in json.loads(m.payload)["readings"]]
        assert 1 <= len(stamps) == m.readings <= 5
        assert all(ts < stamps[0] + 1_000_000_000 for ts in stamps)
        before = last_of.get(m.node)
        if before is not None and before[1] < 5:  # not cut by the cap: nothing it could take
            # (a simulated clock step back stamps a node's next readings earlier)
            assert not before[0] <= stamps[0] < before[0] + 1_000_000_000
        last_of[m.node] = (stamps[0], m.readings)
    assert len(w.messages) > w.readings / 5  # the city's nodes rarely fill 5 in a second


def test_a_start_that_runs_into_the_present_is_moved_back_not_an_error() -> None:
    """The start is derived from the rate at `now`; at 19:30 UTC the evening's rate
    overstates the hours before, and the simulation used to reach the present first."""
    now = datetime(2026, 11, 29, 19, 30, tzinfo=UTC)
    first = simulated_start(City.load(), 100_000, now)
    w = generate(100_000, now=now)
    assert w.readings == 100_000
    assert w.first_ts_ns < to_epoch_ns(first)  # it had to start further back
    assert w.last_ts_ns < to_epoch_ns(now)


def test_schedule_spaces_messages_by_their_readings() -> None:
    plan = schedule([_msg("a", 100), _msg("b", 300), _msg("a", 100)], rate=1000.0)
    assert [t for t, _ in plan] == [0.0, 0.1, 0.4]


def test_journal_rows_become_readings_through_each_nodes_publish_order(tmp_path: Path) -> None:
    messages = [_msg("a", 100), _msg("b", 7), _msg("a", 50), _msg("a", 1)]
    db = sqlite3.connect(tmp_path / "journal-i0.sqlite3")
    db.execute("CREATE TABLE entries (offset INTEGER PRIMARY KEY, received_ns INTEGER, topic TEXT, "
               "payload BLOB)")
    rows = [messages[0].topic, messages[0].topic, messages[1].topic, "urbanpulse/v1/_alerts/s/x"]
    db.executemany("INSERT INTO entries (received_ns, topic, payload) VALUES (0, ?, x'')",
                   [(t,) for t in rows])
    db.commit()
    db.close()
    assert JournalCounter(tmp_path, messages).readings() == (157, 1)


def test_acks_of_several_publishers_merge_into_one_curve() -> None:
    curve = merged_acks([[(1.0, 0, 10), (3.0, 0, 30)], [(2.0, 0, 5), (4.0, 0, 25)]])
    assert curve == [(1.0, 10), (2.0, 15), (3.0, 35), (4.0, 55)]
    assert reached_at(curve, 35) == 3.0
    assert reached_at(curve, 36) == 4.0
    assert reached_at(curve, 56) is None


def test_profile_stages_take_the_innermost_known_frame(tmp_path: Path) -> None:
    path = tmp_path / "raw.txt"
    path.write_text(
        "run (cloud/cli.py:1);NodeState.process (cloud/logic/node.py:2);"
        "SensorWatch.check (cloud/logic/events.py:3);f (x.py:4) 3\n"
        "run (cloud/cli.py:1);NodeState.process (cloud/logic/node.py:2);line (cloud/logic/lines.py:9) 1\n"
        "Thread.run (threading.py:1);Event.wait (threading.py:2) 4\n")
    profile = parse(path)
    assert profile.samples == 8
    assert profile.stages["detect (events.SensorWatch.check)"] == 3
    assert profile.stages["node state, rest (ledger, seqs, raw lines)"] == 1
    assert profile.self_time["f (x.py)"] == 3


@pytest.mark.stack
@pytest.mark.slow
def test_a_small_run_delivers_every_reading_exactly_once(tmp_path: Path) -> None:
    workload = generate(4000, batch=200)
    spec = CaseSpec(rate=2000.0, duration_s=2.0, detect=False, publishers=2, window=5, drain_s=60.0)
    result = run_case(spec, workload, tmp_path / "case")
    assert result.error is None, result.error
    assert result.complete
    assert result.journaled == workload.readings
    assert result.points_written == result.points_expected == sum(workload.expected_points.values())
    assert result.missing_by_measurement == {}
    assert result.broker_rate > 0
    assert result.written_rate > 0
    assert set(result.cpu_cores) == {"mosquitto", "influxd", "processor", "ingest", "publishers"}
    assert result.cpu_cores["ingest"] > 0  # `cloud run` starts its ingest as a child process
    assert "| 2,000 | off | 4,000 |" in markdown_table([result])
    assert cpu_per_reading_us(result) is not None


@pytest.mark.stack
@pytest.mark.slow
def test_a_small_run_on_a_two_process_cluster_delivers_every_reading_once(tmp_path: Path) -> None:
    workload = generate(4000, batch=200)
    spec = CaseSpec(rate=2000.0, duration_s=2.0, detect=False, publishers=2, window=5, drain_s=60.0,
                    processes=2)
    result = run_case(spec, workload, tmp_path / "case")
    assert result.error is None, result.error
    assert result.complete
    assert result.points_written == result.points_expected
    journals = sorted(p.name for p in (tmp_path / "case" / "state" / "journal").glob("journal-*.sqlite3"))
    assert journals == ["journal-i0.sqlite3", "journal-i1.sqlite3"]
    assert len((tmp_path / "case" / "cloud-p1.log").read_text()) > 0


def test_the_flow_only_bench_runs_the_real_dataflow_over_every_reading() -> None:
    """bench.pipeline.flowonly: build_flow under Bytewax with the journal replaced; every
    reading comes out as its raw point, whatever the source's poll size."""
    from bench.pipeline.flowonly import measure
    from bench.pipeline.stages import _records

    w = generate(600, batch=500, live_s=1.0, now=datetime(2026, 6, 1, 12, tzinfo=UTC))
    records = _records(w)
    for poll in (1, 7):
        out, points = measure(records, w.readings, detect=False, batch=poll)
        raw = [text for batch in points for rp, text in batch if rp == "raw"]
        assert len(raw) == w.readings
        assert out["points per reading"] > 1
