"""A stop of `cloud run` by a signal to its process group (systemd's SIGTERM to the unit's
processes, Ctrl-C's SIGINT to a terminal's foreground group) reaches its ingest child
too, which stops at once, while the processor drains its last epoch. The child's
supervisor (IngestProcess._supervise) took that exit for a crash: it logged an ERROR
`ingest i0 exited with 0; restarting in 1 s` and, the drain lasting longer, started a new
ingest that subscribed after the dataflow had ended. Now the processor's signal handler
tells the supervisor that a stop has begun, and a child that exits on a signal is not
judged before the handler had time to say so. A child that really fails (SIGKILLed alone)
is still logged and restarted.

Real `cloud run`, real Mosquitto; its InfluxDB behind a PartitionProxy that goes silent
before the stop, so that the last epoch's writes hold the drain for its full DRAIN_S (the
stop of a processor whose InfluxDB is down or slow). With flow.stop = "drain": a stop by
abort (the default) leaves at once, InfluxDB silent or not, unless an epoch end is under way."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from cloud.cli import DRAIN_S
from cloud.ingest import IngestProcess
from cloud.stack_config import cloud_config_for_stack, to_toml
from tests.cloud.test_ingest_process import _alive, _children
from tests.cloud.test_run_startup import _has_open
from tests.cloud.test_write_refused import (
    _journal_batches,
    _journaled_data,
    _publish_as_node,
    cloud_behind_proxy,
    start_cloud_for_site,
)
from urbanpulse.stack import MqttCredentials, StackInfo
from urbanpulse.testing import wait_for

SUBSCRIBED = "ingest subscribed"


def _hour_ago_ns() -> int:
    return (time.time_ns() // 3_600_000_000_000 - 1) * 3_600_000_000_000


@pytest.mark.stack
@pytest.mark.slow
@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_a_signal_to_the_group_during_a_slow_drain_neither_logs_an_error_nor_restarts_the_ingest(
        signum: signal.Signals, db_ready: StackInfo,
        add_stack_node: Callable[[str, str], MqttCredentials], tmp_path: Path,
        request: pytest.FixtureRequest) -> None:
    site, node = f"hn-stop{signum.value}", f"aq-{time.monotonic_ns() % 10**9}"
    creds = add_stack_node(site, node)
    with cloud_behind_proxy(db_ready, tmp_path / "state", site, request, stop="drain") as (
            cloud, influx):
        assert cloud.proc is not None
        pid = cloud.proc.pid
        [child] = wait_for(lambda: _children(pid), 10, "the ingest child")

        influx.partition()  # the last epoch's writes wait: the drain lasts DRAIN_S
        _publish_as_node(creds, _journal_batches(site, node, 0, 5, _hour_ago_ns()))
        wait_for(lambda: _journaled_data(tmp_path / "state" / "journal") == 5, 30,
                 "the ingest to journal every message")
        # read and handed to the writer, not only journaled: a stop before the source reads
        # them ends the input at once, and the drain has nothing to wait for
        wait_for(lambda: influx.stranded()[1] > 0, 30, "the writer to send into the silent link")
        started = time.monotonic()
        os.killpg(pid, signum)  # as systemd's stop or a terminal's Ctrl-C: every process
        wait_for(lambda: not _alive(child), 10, "the ingest child to stop on the signal")
        assert cloud.proc.wait(30) == 0, cloud.log()
    took = time.monotonic() - started
    log = cloud.log()
    assert took >= DRAIN_S, log  # the drain was long enough for the supervisor to look
    assert "the last epoch was not written within" in log
    assert "exited with" not in log, log
    assert log.count(SUBSCRIBED) == 1, log  # no ingest started after the stop began


@pytest.mark.stack
@pytest.mark.slow
def test_an_ingest_child_killed_alone_is_logged_and_restarted_and_the_stop_after_is_clean(
        db_ready: StackInfo, add_stack_node: Callable[[str, str], MqttCredentials], tmp_path: Path,
        request: pytest.FixtureRequest) -> None:
    site, node = "hn-crash", f"aq-{time.monotonic_ns() % 10**9}"
    creds = add_stack_node(site, node)
    cloud = start_cloud_for_site(db_ready, tmp_path / "state", site, request, {})
    wait_for(lambda: "starting: journals" in cloud.log(), 60, "the dataflow to start")
    wait_for(lambda: SUBSCRIBED in cloud.log(), 30, "the ingest to subscribe")
    assert cloud.proc is not None
    pid = cloud.proc.pid
    [child] = wait_for(lambda: _children(pid), 10, "the ingest child")

    os.kill(child, signal.SIGKILL)  # the child alone: a crash, not a stop
    wait_for(lambda: "ingest i0 exited with -9; restarting in 1 s" in cloud.log(), 10,
             "the crash logged")
    [again] = wait_for(lambda: [c for c in _children(pid) if c != child], 10, "a new ingest child")
    wait_for(lambda: cloud.log().count(SUBSCRIBED) == 2, 30, "the new ingest to subscribe")
    _publish_as_node(creds, _journal_batches(site, node, 0, 3, _hour_ago_ns()))
    wait_for(lambda: _journaled_data(tmp_path / "state" / "journal") == 3, 30,
             "the new ingest to journal")

    os.killpg(pid, signal.SIGTERM)
    assert cloud.proc.wait(30) == 0, cloud.log()
    log = cloud.log()
    assert log.count("exited with") == 1, log  # the crash's, not the stop's
    assert log.count(SUBSCRIBED) == 2, log
    assert not _alive(again)


def _ingest_config(stack: StackInfo, tmp_path: Path) -> Path:
    config = cloud_config_for_stack(stack, tmp_path / "state")
    config["mqtt"] |= {"shared_group": f"g-{tmp_path.name[-24:]}".replace("_", "-"),
                       "client_id": f"ingest-{tmp_path.name[-24:]}"}
    path = tmp_path / "cloud.toml"
    path.write_text(to_toml(config))
    return path


def _wait_until_it_runs(pid: int, tmp_path: Path) -> None:
    """Until the child holds its instance's lock: its signal handlers are set by then."""
    lock = tmp_path / "state" / "journal" / "ingest-i0.lock"
    wait_for(lambda: _has_open(pid, lock), 30, "the ingest child to take its lock")


@pytest.mark.stack
def test_a_child_that_exits_on_a_signal_before_the_run_says_it_stops_is_not_restarted(
        db_ready: StackInfo, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """The race the run's handler can lose: the supervisor sees the child's exit before the
    handler (in the main thread) says that the run stops. Real `cloud ingest` children."""
    ingest = IngestProcess(_ingest_config(db_ready, tmp_path), "i0")
    ingest.WATCH_EVERY_S = 0.01  # sees the exit at once
    try:
        assert ingest.start()
        assert ingest.proc is not None
        first = ingest.proc
        _wait_until_it_runs(first.pid, tmp_path)
        first.send_signal(signal.SIGTERM)  # as the group's signal reaches it
        assert first.wait(15) == 0
        time.sleep(0.3)  # the run's handler comes late (not synchronisation: the race itself)
        ingest.stop_begun()
        time.sleep(ingest.STOP_NOTICE_S + ingest.restart_min_s)  # past when it would restart
        assert ingest.proc is first
        assert ingest.restarts == 0
        assert not ingest.start()  # nothing starts once the stop has begun
    finally:
        ingest.stop()
    assert "exited with" not in caplog.text


@pytest.mark.stack
def test_a_child_stopped_alone_by_a_signal_while_the_run_goes_on_is_restarted(
        db_ready: StackInfo, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    ingest = IngestProcess(_ingest_config(db_ready, tmp_path), "i0")
    try:
        assert ingest.start()
        assert ingest.proc is not None
        first = ingest.proc
        _wait_until_it_runs(first.pid, tmp_path)
        first.send_signal(signal.SIGTERM)  # an operator's `kill` of the child alone
        assert first.wait(15) == 0
        wait_for(lambda: ingest.restarts == 1, ingest.STOP_NOTICE_S + ingest.restart_min_s + 5,
                 "the child restarted")
        assert ingest.proc is not first
        assert ingest.proc is not None
        assert ingest.proc.poll() is None
    finally:
        ingest.stop()
    assert "ingest i0 exited with 0; restarting in 1 s" in caplog.text
