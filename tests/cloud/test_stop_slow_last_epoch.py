"""A stop whose last epoch takes longer than the 3 s a stop used to wait for it: Bytewax
ends a drained run by snapshotting every node the process holds, so that epoch grows with
the whole state (50,000 nodes in session 18's paced benchmark, where 2 stops of 3 were
interrupted in it and Bytewax panicked, `src/operators.rs:942`: the interrupt raised inside
a node's `snapshot`). The stop now waits while the epoch moves on, up to
`flow.stop_drain_s`. Real `cloud run` (tests/cloud/slow_last_epoch.py: each node's snapshot
in the last epoch waits, as a large state's would), real InfluxDB.

That is `flow.stop = "drain"`. The default, "abort", leaves that epoch out: the journal
source raises Bytewax's AbortExecution, no node's `on_eof` is called and none is snapshotted
at the stop, which takes the same short time with 4 times the idle nodes; the restart
resumes from the last committed epoch."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from cloud.journal import Journal, journal_path, partition_names
from cloud.stack_config import cloud_config_for_stack, to_toml
from cloud.stop_grace import STALL_S
from urbanpulse.clock import SystemClock, to_epoch_ns
from urbanpulse.stack import StackInfo
from urbanpulse.testing import wait_for
from urbanpulse.wire.payload import Reading, encode_batch
from urbanpulse.wire.topics import data_topic

ROOT = Path(__file__).resolve().parents[2]
NODES = 24
DELAY_S = 0.2  # a node's snapshot in the last epoch: NODES x DELAY_S = 4.8 s > STALL_S


def _journal_nodes(state: Path, site: str, nodes: int = NODES) -> None:
    partition = partition_names(1)[0]
    now = to_epoch_ns(SystemClock().now())
    journal = Journal(journal_path(state / "journal", partition), partition).open()
    try:
        for n in range(nodes):
            node = f"aq-{n:02d}"
            reading = Reading("pm-1", "air.pm", now - 10**9, 1, {"pm25": 12.0, "pm10": 20.0})
            journal.append([(data_topic(site, node), encode_batch(site, node, [reading]))], now,
                           arrived_ns=[now])
    finally:
        journal.close()


def _start(db_ready: StackInfo, tmp_path: Path, nodes: int = NODES, log_name: str = "cloud.log",
           journal: bool = True, **flow: object) -> tuple[subprocess.Popen[bytes], Path]:
    state = tmp_path / "state"
    if journal:
        _journal_nodes(state, f"slow-{tmp_path.name[-12:]}".lower().replace("_", "-"), nodes)
    config = tmp_path / "cloud.toml"
    config.write_text(to_toml(cloud_config_for_stack(db_ready, state, detect=False, **flow)))
    log = tmp_path / log_name
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "tests.cloud.slow_last_epoch", str(DELAY_S), str(nodes),
             "run", "--no-ingest", "--config", str(config)],
            cwd=ROOT, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    return proc, log


def _stop_when_every_node_is_held(proc: subprocess.Popen[bytes], log: Path, nodes: int = NODES
                                  ) -> float:
    try:
        wait_for(lambda: f"slow-last-epoch: {nodes} nodes" in log.read_text(), 60,
                 "the node step to hold every node")
    except BaseException:
        os.killpg(proc.pid, signal.SIGKILL)
        raise
    started = time.monotonic()
    os.killpg(proc.pid, signal.SIGTERM)
    return started


def _ended(proc: subprocess.Popen[bytes], log: Path, within_s: float) -> str:
    try:
        assert proc.wait(within_s) == 0, log.read_text()
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)
    return log.read_text()


@pytest.mark.stack
def test_a_stop_waits_for_a_last_epoch_that_moves_on_past_the_stall_time_and_ends_cleanly(
        db_ready: StackInfo, tmp_path: Path) -> None:
    proc, log = _start(db_ready, tmp_path, stop="drain")
    started = _stop_when_every_node_is_held(proc, log)
    text = _ended(proc, log, 60)
    took = time.monotonic() - started
    assert took >= NODES * DELAY_S > STALL_S, text  # the last epoch did take that long
    assert text.count("slow-last-epoch: on_eof") == NODES, text  # every node, idle or not
    assert "stopped on a signal, the last epoch written and committed" in text, text
    assert "not written within" not in text, text
    assert "panicked" not in text, text


@pytest.mark.stack
def test_a_last_epoch_still_moving_at_flow_stop_drain_s_is_interrupted_and_the_stop_ends(
        db_ready: StackInfo, tmp_path: Path) -> None:
    proc, log = _start(db_ready, tmp_path, stop="drain", stop_drain_s=1.0)
    started = _stop_when_every_node_is_held(proc, log)
    text = _ended(proc, log, 30)
    took = time.monotonic() - started
    assert "the last epoch was not written within 1 s of the signal (flow.stop_drain_s)" in text, text
    assert "stopped on a signal; a restart resumes from the last committed epoch" in text, text
    assert took < NODES * DELAY_S, text  # cut short, not waited out


def _abort_stop(db_ready: StackInfo, tmp_path: Path, nodes: int) -> float:
    """A stop by abort (the default flow.stop) of a processor holding `nodes` idle nodes: its
    seconds from the SIGTERM to the exit, after checking that no node's `on_eof` ran, that
    nothing panicked, and that a restart resumes from the store."""
    proc, log = _start(db_ready, tmp_path, nodes)
    started = _stop_when_every_node_is_held(proc, log, nodes)
    text = _ended(proc, log, 30)
    took = time.monotonic() - started
    assert "stopped on a signal by an abort: the epoch under way is not committed" in text, text
    assert "slow-last-epoch: on_eof" not in text, text
    assert "panicked" not in text, text
    assert "Traceback" not in text, text
    assert "did not come back to its journal source" not in text, text  # no interrupt needed
    # The store the abort left is resumed, and the restart stops the same way.
    proc, log = _start(db_ready, tmp_path, nodes, "restart.log", journal=False)
    wait_for(lambda: "processor 0 of 1 starting" in log.read_text(), 60, "the restart")
    os.killpg(proc.pid, signal.SIGTERM)
    text = _ended(proc, log, 30)
    assert "stopped on a signal by an abort" in text, text
    assert "slow-last-epoch: on_eof" not in text, text
    assert "panicked" not in text, text
    return took


@pytest.mark.stack
def test_a_stop_by_abort_calls_no_on_eof_and_does_not_grow_with_the_idle_nodes(
        db_ready: StackInfo, tmp_path: Path) -> None:
    few = _abort_stop(db_ready, tmp_path / "few", NODES)
    many = _abort_stop(db_ready, tmp_path / "many", 4 * NODES)
    # drained, these would take NODES x DELAY_S = 4.8 s and 19.2 s (the test above)
    assert few < STALL_S, (few, many)
    assert many < STALL_S, (few, many)
