"""A process of a 2-process cluster whose peer dies: Bytewax ends the run with a bare
`PanicException: Send thread panic: Any { .. }` (exit 1, a Python traceback), which told an
operator nothing of why. Now it says that it lost the connection to another process of the
cluster, names flow.addresses, and exits with the runtime error code (3) for systemd to
restart it. Real `cloud run` processes, a real 2-process Bytewax cluster on loopback, the
real broker and InfluxDB."""

from __future__ import annotations

import os
import signal
from collections.abc import Callable
from pathlib import Path

import pytest

from cloud.flow import sink_part
from tests.conftest import CloudProcess
from tests.e2e.test_cloud_cluster import _snapshotted
from urbanpulse.stack.process import free_ports
from urbanpulse.testing import wait_for


@pytest.mark.stack
@pytest.mark.slow
def test_a_process_whose_peer_dies_says_so_and_exits_for_a_restart(
        cloud_factory: Callable[..., CloudProcess], tmp_path: Path) -> None:
    a0, a1 = free_ports(2)
    addresses = [f"127.0.0.1:{a0}", f"127.0.0.1:{a1}"]
    cluster = [cloud_factory("cluster", extra_args=("--process-id", str(pid), "--no-ingest"),
                             log_name=f"p{pid}", topic="urbanpulse/v1/hn-peer/+", addresses=addresses,
                             process_id=0, ingest_instances=2, epoch_interval_s=0.2)
               for pid in (0, 1)]
    for proc in cluster:
        proc.start()
    # The cluster formed: an epoch with process 1's sink partition in it is committed.
    wait_for(lambda: _snapshotted(tmp_path / "cluster" / "recovery", "influx", sink_part(1)), 60,
             "a committed snapshot of process 1's sink partition")
    survivor, peer = cluster
    assert peer.proc is not None
    assert survivor.proc is not None
    os.killpg(peer.proc.pid, signal.SIGKILL)
    peer.proc.wait(10)
    code = survivor.proc.wait(30)
    log = survivor.log()
    assert code == 3, log[-3000:]
    assert ("lost the connection to another process of the cluster (flow.addresses: "
            f"{addresses[0]}, {addresses[1]})") in log, log[-3000:]
    assert "Send thread panic" in log  # Bytewax's own words kept, after ours
    assert "Traceback" not in log, log[-3000:]
