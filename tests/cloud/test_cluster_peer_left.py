"""A process of a 2-process cluster whose peer leaves through its stop's grace path (a
SIGTERM to it alone: its journal source ends, but a cluster's dataflow ends only when every
process's does, so the drain runs out of time, Bytewax is interrupted and, 5 s later, the
process leaves with os._exit). The chaos soak (seeds 21, 23, 24) found the survivor then
never exiting: the peer's worker, interrupted, ended its part of the dataflow the way timely
ends it cleanly (a zero-length message, then its sending side shut), so the survivor's
receive thread ended without a panic, its worker waited for the peer's progress for ever (a
core spinning) and its connection to the peer sat in CLOSE-WAIT; the peer, started again,
waited for it. Now it notices the peer's connection closed, says it lost the connection to
another process of the cluster and exits with code 3 for systemd to restart it, as on a
peer's crash. Real `cloud run` processes, a real 2-process Bytewax cluster on loopback,
the real broker and InfluxDB."""

from __future__ import annotations

import os
import signal
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from cloud.flow import sink_part
from tests.conftest import CloudProcess
from tests.e2e.test_cloud_cluster import _snapshotted
from urbanpulse.stack.process import free_ports
from urbanpulse.testing import wait_for


def _cluster(cloud_factory: Callable[..., CloudProcess], tmp_path: Path, topic: str, stop: str
             ) -> tuple[list[str], list[CloudProcess]]:
    a0, a1 = free_ports(2)
    addresses = [f"127.0.0.1:{a0}", f"127.0.0.1:{a1}"]
    cluster = [cloud_factory("cluster", extra_args=("--process-id", str(pid), "--no-ingest"),
                             log_name=f"p{pid}", topic=topic, addresses=addresses,
                             process_id=0, ingest_instances=2, epoch_interval_s=0.2, stop=stop)
               for pid in (0, 1)]
    for proc in cluster:
        proc.start()
    # The cluster formed: an epoch with process 1's sink partition in it is committed.
    wait_for(lambda: _snapshotted(tmp_path / "cluster" / "recovery", "influx", sink_part(1)), 60,
             "a committed snapshot of process 1's sink partition")
    # and each process watches its connection (the watch takes only established ones: a
    # peer aborting before it looked closes its side at once, and is never watched)
    for proc in cluster:
        wait_for(lambda p=proc: "cluster formed: watching the connections with process" in p.log(),
                 30, f"{proc.log_path.name}'s watch on its peer")
    return addresses, cluster


def _exit_code(proc: subprocess.Popen[bytes], within_s: float) -> int | None:
    try:
        return proc.wait(within_s)
    except subprocess.TimeoutExpired:
        return None


@pytest.mark.stack
@pytest.mark.slow
@pytest.mark.parametrize(("leaving", "stop"), [(1, "abort"), (0, "abort"), (1, "drain")],
                         ids=["connected-peer-leaves", "accepting-peer-leaves", "drained-peer-leaves"])
def test_a_process_whose_peer_left_through_its_grace_path_exits_for_a_restart(
        cloud_factory: Callable[..., CloudProcess], tmp_path: Path, leaving: int, stop: str) -> None:
    """By an abort the peer leaves its part of the run at once, and Bytewax waits for the
    survivor, which its own input no longer reaches (a worker polls it only once the
    cluster's epochs caught up): both stand still until the peer's grace period ends."""
    addresses, cluster = _cluster(cloud_factory, tmp_path, f"urbanpulse/v1/hn-left{leaving}{stop}/+",
                                  stop)
    peer, survivor = cluster[leaving], cluster[1 - leaving]
    assert peer.proc is not None
    assert survivor.proc is not None
    os.killpg(peer.proc.pid, signal.SIGTERM)  # its unit stopped alone, the cluster idle
    assert peer.proc.wait(30) == 0, peer.log()[-3000:]
    assert "the dataflow did not stop within 5 s of the signal; exiting" in peer.log(), \
        peer.log()[-3000:]  # the path the soak found: the grace period ran out
    code = _exit_code(survivor.proc, 30)
    log = survivor.log()
    assert code == 3, log[-3000:]
    assert ("lost the connection to another process of the cluster (flow.addresses: "
            f"{addresses[0]}, {addresses[1]})") in log, log[-3000:]
    assert f"process {leaving}" in log.split("lost the connection")[1], log[-3000:]
    assert "Traceback" not in log, log[-3000:]


@pytest.mark.stack
@pytest.mark.slow
@pytest.mark.parametrize("stop", ["abort", "drain"])
def test_a_cluster_stopped_whole_is_not_taken_for_a_lost_peer(
        cloud_factory: Callable[..., CloudProcess], tmp_path: Path, stop: str) -> None:
    """The cluster's units stopped together, once the watch is on: its connections close as
    the dataflow ends, and that is no lost peer (exit 0, not 3). By an abort, the first
    process to leave holds back the others' input (Bytewax polls it only once the cluster's
    epochs caught up): they leave when their stop's wait for it runs out, interrupted."""
    _, cluster = _cluster(cloud_factory, tmp_path, f"urbanpulse/v1/hn-whole{stop}/+", stop)
    for proc in cluster:
        assert proc.proc is not None
        os.killpg(proc.proc.pid, signal.SIGTERM)
    for proc in cluster:
        assert proc.proc is not None
        assert _exit_code(proc.proc, 20) == 0, proc.log()[-3000:]
        assert "lost the connection" not in proc.log(), proc.log()[-3000:]
        assert "panicked" not in proc.log(), proc.log()[-3000:]
        if stop == "drain":
            assert "stopped on a signal, the last epoch written and committed" in proc.log()
        else:
            assert "stopped on a signal" in proc.log(), proc.log()[-3000:]
