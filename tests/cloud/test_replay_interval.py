"""Domain replays of one span run at most every flow.replay_interval_s (cloud.flow
InfluxPartition), on the session's real InfluxDB: a request made sooner is held in the
partition's snapshot (a crash loses none), runs at an epoch's end once the interval has
passed, and at close; what InfluxDB ends with is still what in-order processing gives."""

from __future__ import annotations

import contextlib
import pickle
import sqlite3
import threading
import time
from dataclasses import replace
from datetime import timedelta
from pathlib import Path

import bytewax.operators as op
import pytest
from bytewax.dataflow import Dataflow
from bytewax.outputs import FixedPartitionedSink, StatefulSinkPartition
from bytewax.recovery import RecoveryConfig
from bytewax.testing import TestingSink, TestingSource, run_main

from cloud.cli import prepare_recovery_dir
from cloud.config import MAX_PROCESSES, parse_cloud_config
from cloud.flow import InfluxPartition, InfluxSink, RetiredSinkPartition, build_flow, sink_part
from cloud.journal import Journal, journal_path, partition_names
from cloud.logic.domain.hospital_site import HospitalSite
from cloud.logic.domain_replay import ReplaySpan, replay_requests
from cloud.logic.node import NodeState
from cloud.logic.records import Point
from cloud.sink import make_writer
from cloud.stack_config import cloud_config_for_stack
from tests.cloud.logic.test_domain_replay import HORIZON, backlog_after_fresh, hourly_bed
from tests.cloud.test_domain_replay_influx import (
    _expected,
    _moved,
    _scenario,
    _stored,
    cloud_config_for_stack_influx,
)
from urbanpulse.clock import SystemClock, to_epoch_ns
from urbanpulse.errors import ConfigError
from urbanpulse.influx_http import InfluxHTTP
from urbanpulse.stack import StackInfo

HOUR = 3600 * 10**9


def _span(site: str, hour: int) -> str:
    return ReplaySpan("traffic", site, "tl", hour, hour + HOUR).encode()


def _hour() -> int:
    now = to_epoch_ns(SystemClock().now())
    return now - now % HOUR - 5 * HOUR


def test_a_span_asked_again_within_the_interval_is_held_in_the_snapshot_and_runs_later(
        db_ready: StackInfo, request: pytest.FixtureRequest) -> None:
    hour, site = _hour(), f"ri-{time.monotonic_ns()}"
    part = InfluxPartition(make_writer(cloud_config_for_stack_influx(db_ready)), replay_interval_s=3600)
    request.addfinalizer(part.writer.close)
    request.addfinalizer(part.close)
    stats = part.writer.stats
    part.write_batch([[("__domain_replay__", _span(site, hour))]])
    assert part.snapshot() == []  # the span's first replay runs at once
    assert stats.domain_replays == 1
    part.write_batch([[("__domain_replay__", _span(site, hour)),
                       ("__domain_replay__", _span(site, hour + HOUR))]])
    held = part.snapshot()
    assert held == sorted([_span(site, hour), _span(site, hour + HOUR)])
    assert stats.domain_replays == 1
    assert part.held_replays == 2
    other = f"{site}-b"  # another span is not held back by this one's interval
    part.write_batch([[("__domain_replay__", _span(other, hour))]])
    assert part.snapshot() == held
    assert stats.domain_replays == 2
    # a crash: the next process resumes the snapshot; the held requests run at its first epoch end
    resumed = InfluxPartition(make_writer(cloud_config_for_stack_influx(db_ready)), replay_interval_s=3600,
                              held_replays=held)
    request.addfinalizer(resumed.writer.close)
    request.addfinalizer(resumed.close)
    assert resumed.snapshot() == []
    assert resumed.writer.stats.domain_replays == 1  # the two requests, coalesced into one span
    part.close()  # a clean stop runs what is held
    assert stats.domain_replays == 3
    assert part.held_replays == 0


def test_a_held_span_runs_at_the_first_epoch_end_after_its_interval(
        db_ready: StackInfo, request: pytest.FixtureRequest) -> None:
    hour, site = _hour(), f"rj-{time.monotonic_ns()}"
    part = InfluxPartition(make_writer(cloud_config_for_stack_influx(db_ready)), replay_interval_s=0.5)
    request.addfinalizer(part.writer.close)
    request.addfinalizer(part.close)
    part.write_batch([[("__domain_replay__", _span(site, hour))]])
    part.snapshot()
    part.write_batch([[("__domain_replay__", _span(site, hour))]])
    assert part.snapshot() == [_span(site, hour)]
    deadline = time.monotonic() + 10
    while part.snapshot() and time.monotonic() < deadline:  # epochs end until the interval has passed
        pass
    assert part.held_replays == 0
    assert part.writer.stats.domain_replays == 2


def test_with_replays_held_influxdb_still_ends_as_in_order(
        db_ready: StackInfo, reader: InfluxHTTP, request: pytest.FixtureRequest) -> None:
    """The backlog scenario of test_domain_replay_influx, an epoch every 5 messages, spans
    replayed at most once an hour: the first replay of each span runs at once, the rest at
    close; every domain point ends as in-order processing gives it."""
    shift, suffix = _scenario()
    part = InfluxPartition(make_writer(cloud_config_for_stack_influx(db_ready)), replay_interval_s=3600)
    request.addfinalizer(part.writer.close)
    nodes: dict[str, NodeState] = {}
    sites: dict[str, HospitalSite] = {}
    asked = 0
    for i, data in enumerate(_moved(backlog_after_fresh(hourly_bed), shift, suffix)):
        state = nodes.setdefault(data.key, NodeState(HORIZON, detect=False))
        points: list[Point] = state.process(data)
        asks = replay_requests(data.site, data.node, state.domain.take_late())
        asked += len(asks)
        updates = state.take_site_updates()
        if updates:
            points += sites.setdefault(data.site, HospitalSite(HORIZON)).process(data.site, updates)
        part.write_batch([points + asks])
        if i % 5 == 4:
            part.snapshot()
    part.snapshot()
    assert part.held_replays > 0
    replays_before_close = part.writer.stats.domain_replays
    part.close()
    assert part.writer.stats.domain_replays > replays_before_close
    assert replays_before_close < asked
    stored = _stored(reader, db_ready.database, [f"bv-{suffix}", f"hk-{suffix}"])
    expected = _expected(shift, suffix, hourly_bed)
    assert {k: stored.get(k) for k in expected if stored.get(k) != expected[k]} == {}


def test_replay_interval_is_a_finite_number_of_seconds_not_below_zero() -> None:
    base = {"mqtt": {"password_file": "x", "ca_file": "x"}, "influx": {"password_file": "x"}}
    assert parse_cloud_config(base).flow.replay_interval_s == 30.0
    assert parse_cloud_config({**base, "flow": {"replay_interval_s": 0.0}}).flow.replay_interval_s == 0.0
    for bad in (-1.0, float("inf"), float("nan")):
        with pytest.raises(ConfigError, match=r"flow\.replay_interval_s"):
            parse_cloud_config({**base, "flow": {"replay_interval_s": bad}})


def test_a_processes_own_partition_and_a_retired_one_run_the_requests_their_snapshots_held(
        db_ready: StackInfo, request: pytest.FixtureRequest) -> None:
    """Built from a recovery store: the process's own partition takes the requests its
    snapshot held and runs them at its first epoch end; so does the partition of a process
    the cluster no longer has (a scale-down), which nothing else is routed to; one with
    nothing held is an empty stand-in."""
    cfg = parse_cloud_config(cloud_config_for_stack(db_ready, Path("/nonexistent-state")))
    sink = InfluxSink(cfg, process_id=0)
    for name in (sink_part(0), sink_part(1)):
        held = [_span(f"rk-{time.monotonic_ns()}", _hour())]
        part = sink.build_part("influx", name, held)
        assert isinstance(part, InfluxPartition)
        request.addfinalizer(part.writer.close)
        request.addfinalizer(part.close)
        assert part.replay_interval_s == cfg.flow.replay_interval_s == 30.0
        assert part.held_replays == 1
        assert part.snapshot() == []
        assert part.writer.stats.domain_replays == 1
    assert isinstance(sink.build_part("influx", sink_part(1), None), RetiredSinkPartition)
    assert isinstance(sink.build_part("influx", sink_part(1), []), RetiredSinkPartition)


def test_in_a_cluster_a_request_runs_at_the_end_of_the_epoch_after_its_own(
        db_ready: StackInfo, request: pytest.FixtureRequest) -> None:
    """Another process may still be writing the raw points a request reads when this one's
    epoch ends: in a cluster the sink's partitions run a request one epoch end later. A
    request for the span made meanwhile waits for its own next epoch end; one from a
    snapshot (its epoch committed) runs at once."""
    cfg = parse_cloud_config(cloud_config_for_stack(db_ready, Path("/nonexistent-state")))
    two = replace(cfg, flow=replace(cfg.flow, addresses=("127.0.0.1:1", "127.0.0.1:2")))
    cluster = InfluxSink(two, process_id=0)
    part = cluster.build_part("influx", sink_part(0), None)
    assert isinstance(part, InfluxPartition)
    request.addfinalizer(part.writer.close)
    request.addfinalizer(part.close)
    assert part.replay_after_epochs == 1
    part.replay_interval_s = 0.0
    hour, site = _hour(), f"rc-{time.monotonic_ns()}"
    stats = part.writer.stats
    part.write_batch([[("__domain_replay__", _span(site, hour))]])
    assert part.snapshot() == [_span(site, hour)]  # the epoch it came in: held
    assert stats.domain_replays == 0
    part.write_batch([[("__domain_replay__", _span(site, hour + HOUR))]])
    assert part.snapshot() == [_span(site, hour + HOUR)]  # the first ran, the second waits
    assert stats.domain_replays == 1
    assert part.snapshot() == []
    assert stats.domain_replays == 2
    # asked for again in the epoch it becomes ripe: it runs, and once more an epoch later
    part.write_batch([[("__domain_replay__", _span(site, hour))]])
    assert part.snapshot() == [_span(site, hour)]
    part.write_batch([[("__domain_replay__", _span(site, hour))]])
    assert part.snapshot() == [_span(site, hour)]
    assert stats.domain_replays == 3
    assert part.snapshot() == []
    assert stats.domain_replays == 4
    resumed = cluster.build_part("influx", sink_part(0), [_span(site, hour)])
    assert isinstance(resumed, InfluxPartition)
    request.addfinalizer(resumed.writer.close)
    request.addfinalizer(resumed.close)
    assert resumed.snapshot() == []
    assert resumed.writer.stats.domain_replays == 1
    single = InfluxSink(cfg, process_id=0).build_part("influx", sink_part(0), None)
    assert isinstance(single, InfluxPartition)
    single.close()
    single.writer.close()
    assert single.replay_after_epochs == 0


class _HeldBy(FixedPartitionedSink[list[Point], list[str] | None]):
    """The sink step of a run by a bigger cluster, as far as the store goes: one item for
    `part`, whose snapshot holds `held` (what its process's partition held when it stopped)."""

    def __init__(self, part: str, held: list[str]) -> None:
        self.part, self.held = part, held

    def list_parts(self) -> list[str]:
        return [sink_part(k) for k in range(MAX_PROCESSES)]

    def part_fn(self, item_key: str) -> int:
        return int(item_key.rsplit("-", 1)[1])

    def build_part(self, step_id: str, for_part: str, resume_state: list[str] | None) -> _Holds:
        return _Holds(self.held if for_part == self.part else None)


class _Holds(StatefulSinkPartition[list[Point], list[str] | None]):
    def __init__(self, held: list[str] | None) -> None:
        self.held = held

    def write_batch(self, values: list[list[Point]]) -> None:
        pass

    def snapshot(self) -> list[str] | None:
        return self.held


def _stored_snapshot(rdir: Path, step: str, key: str) -> tuple[bool, object]:
    """The newest snapshot of (step, key) in Bytewax's store (read here only to know what a
    resume would start from)."""
    best: tuple[int, object] | None = None
    for part in rdir.glob("part-*.sqlite3"):
        with contextlib.closing(sqlite3.connect(part)) as db:
            for epoch, blob in db.execute("SELECT snap_epoch, ser_change FROM snaps WHERE step_id = ? "
                                          "AND state_key = ?", (step, key)):
                if best is None or epoch > best[0]:
                    best = (epoch, None if blob is None else pickle.loads(blob))
    return (False, None) if best is None else (True, best[1])


def test_after_a_scale_down_a_retired_partitions_held_requests_run_at_an_epoch_end_and_leave_its_snapshot(
        db_ready: StackInfo, tmp_path: Path) -> None:
    """A real Bytewax run resumes a store in which the sink partition of process 1 (of a
    cluster that had two) holds a replay request. Bytewax snapshots only the sink partitions
    that were handed something in the epoch: nothing is routed to a retired one, so it ran
    its requests only at close and its snapshot in the store kept them for ever (run again
    at every start). It is woken at the first epoch: they run, and its snapshot no longer
    holds them."""
    cfg = parse_cloud_config(cloud_config_for_stack(db_ready, tmp_path / "state"))
    assert len(cfg.flow.addresses) <= 1
    rdir = tmp_path / "recovery"
    prepare_recovery_dir(rdir, 1)
    recovery = RecoveryConfig(str(rdir))
    step = "urbanpulse.influx"
    held = [_span(f"rr-{time.monotonic_ns()}", _hour())]
    before = Dataflow("urbanpulse")
    op.output("influx", op.input("seed", before, TestingSource([(sink_part(1), [])])),
              _HeldBy(sink_part(1), held))
    run_main(before, epoch_interval=timedelta(seconds=1), recovery_config=recovery)
    assert _stored_snapshot(rdir, step, sink_part(1)) == (True, held)

    partitions = partition_names(cfg.flow.ingest_instances)
    cfg.journal_dir.mkdir(parents=True)
    Journal(journal_path(cfg.journal_dir, partitions[0]), partitions[0]).open().close()
    drain = threading.Event()
    drain.set()  # the journal source ends at once: one epoch, the process start's
    run_main(build_flow(cfg, partitions, alert_sink=TestingSink([]), drain=drain),
             epoch_interval=timedelta(seconds=1), recovery_config=recovery)
    found, state = _stored_snapshot(rdir, step, sink_part(1))
    assert found
    assert not state, state  # it held the span before the fix
    # the store, with the snapshots of the woken partitions, resumes again
    run_main(build_flow(cfg, partitions, alert_sink=TestingSink([]), drain=drain),
             epoch_interval=timedelta(seconds=1), recovery_config=recovery)
    assert not _stored_snapshot(rdir, step, sink_part(1))[1]
