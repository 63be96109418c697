"""The README's demo command, run as a user would, on its own stack (home and free ports)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from contextlib import ExitStack

from urbanpulse.stack import StackConfig, down


def _free_ports(n: int) -> list[int]:
    with ExitStack() as stack:
        socks = [stack.enter_context(socket.socket()) for _ in range(n)]
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in socks]


def test_demo_runs_the_city_through_the_pipeline_and_shows_live_data(tmp_path) -> None:  # type: ignore[no-untyped-def]
    mqtt, influx, rpc = _free_ports(3)
    home = tmp_path / "home"
    env = dict(os.environ, URBANPULSE_HOME=str(home), URBANPULSE_MQTT_PORT=str(mqtt),
               URBANPULSE_INFLUX_PORT=str(influx), URBANPULSE_INFLUX_RPC_PORT=str(rpc))
    try:
        out = subprocess.run([sys.executable, "-m", "urbanpulse.cli", "demo", "--duration", "25"],
                             env=env, capture_output=True, text=True, timeout=180, check=False)
    finally:
        down(StackConfig(home=home, mqtt_port=mqtt, influx_port=influx, influx_rpc_port=rpc))
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    last = out.stdout.rsplit("urbanpulse demo", 1)[-1]
    assert "air.pm" in last, last
    assert "traffic.loop" in last, last
    assert "hn-hoankiem/aq-01" in last
    assert "missing 0" in last
    assert "The data stays in InfluxDB" in out.stdout
