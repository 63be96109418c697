"""Domain replays of one span run at most every flow.replay_interval_s (cloud.flow
InfluxPartition), on the session's real InfluxDB: a request made sooner is held in the
partition's snapshot (a crash loses none), runs at an epoch's end once the interval has
passed, and at close; what InfluxDB ends with is still what in-order processing gives."""

from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path

import pytest

from cloud.config import parse_cloud_config
from cloud.flow import InfluxPartition, InfluxSink, RetiredSinkPartition, sink_part
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
