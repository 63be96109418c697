"""A real `cloud run` whose InfluxDB is gone (behind a proxy that is then closed: the
writer's connection cut, a new one refused, as when influxd stops): its last epoch cannot
be written. A burst of SIGTERMs is one stop, which waits for the drain until nothing of it
has moved for STALL_S; a second SIGTERM REPEAT_S after the first stops it at once
(cloud/stop_signals.py). Real Mosquitto and InfluxDB. With the handlers before session 19
the burst (20 signals over 0.4 s) aborted the drain: its second signal counted as a
second stop. With 1c71f92 the stop's interrupt could come inside Bytewax's unwinding
(the writer, waiting to retry, woke on the stop event and the sink raised first): the
process aborted with SIGABRT, as in tests/e2e/test_cloud_influx_outage.py. With
flow.stop = "drain", whose wait for the last epoch a burst must not cut short."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from cloud.stop_signals import REPEAT_S
from tests.cloud.test_write_refused import (
    _journal_batches,
    _journaled_data,
    _publish_as_node,
    cloud_behind_proxy,
)
from urbanpulse.stack import MqttCredentials, StackInfo
from urbanpulse.testing import wait_for

NOT_WRITTEN = "the last epoch was not written within"
PANIC = "panicked at"
GONE = "InfluxDB write failed"  # the writer retries, waiting on the stop event between tries


@pytest.mark.stack
@pytest.mark.slow
@pytest.mark.parametrize("burst", [True, False], ids=["burst", "second-signal"])
def test_a_burst_of_sigterms_drains_and_a_later_second_one_aborts(
        burst: bool, db_ready: StackInfo, add_stack_node: Callable[[str, str], MqttCredentials],
        tmp_path: Path, request: pytest.FixtureRequest) -> None:
    site, node = f"hn-burst{int(burst)}", f"aq-{time.monotonic_ns() % 10**9}"
    creds = add_stack_node(site, node)
    with cloud_behind_proxy(db_ready, tmp_path / "state", site, request, stop="drain") as (cloud, _):
        pass  # started and subscribed; the block's end closes the proxy
    # The proxy closed: InfluxDB gone, the last epoch's writes wait.
    assert cloud.proc is not None
    _publish_as_node(creds, _journal_batches(site, node, 0, 3, time.time_ns()))
    wait_for(lambda: _journaled_data(tmp_path / "state" / "journal") == 3, 30,
             "the ingest to journal every message")
    wait_for(lambda: GONE in cloud.log(), 30, "the writer to retry against the gone InfluxDB")
    sent = time.monotonic()
    for _ in range(20 if burst else 1):  # a burst as the threads of a parent end
        os.kill(cloud.proc.pid, signal.SIGTERM)
        time.sleep(0.02)  # the burst's own pace, not a synchronisation
    if not burst:
        while time.monotonic() < sent + REPEAT_S + 0.2:
            time.sleep(0.05)  # the time itself is what is tested, not a synchronisation
        os.kill(cloud.proc.pid, signal.SIGTERM)
    assert cloud.proc.wait(30) == 0, cloud.log()  # -6: aborted
    log = cloud.log()
    # Bytewax reports the interrupt with a panic; the drain's grace logs NOT_WRITTEN when
    # nothing of the last epoch moved for STALL_S, and interrupts then.
    assert PANIC in log, log
    if burst:
        assert log.index(NOT_WRITTEN) < log.index(PANIC), log  # drained: no abort at the burst
    else:
        assert NOT_WRITTEN not in log, log  # the second signal aborted the drain before that
