"""A port of the stack taken (by Debian's own influxd, say) stops the demo before it starts
anything, with a way out the demo takes: `urbanpulse demo` has no port options, so the
message names the URBANPULSE_*_PORT variable beside `urbanpulse stack up`'s option."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from urbanpulse.demo.cli import main
from urbanpulse.stack import StackConfig, status


@pytest.mark.parametrize(("key", "option", "variable"), [
    ("influx_port", "--influx-port", "URBANPULSE_INFLUX_PORT"),
    ("mqtt_port", "--mqtt-port", "URBANPULSE_MQTT_PORT"),
])
def test_a_taken_port_names_a_setting_the_demo_reads(
        own_stack_config: StackConfig, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str], key: str, option: str, variable: str) -> None:
    own = own_stack_config
    monkeypatch.setenv("URBANPULSE_HOME", str(own.home))
    for name, value in (("URBANPULSE_MQTT_PORT", own.mqtt_port),
                        ("URBANPULSE_MQTT_CLOUD_PORT", own.mqtt_cloud_port),
                        ("URBANPULSE_INFLUX_PORT", own.influx_port),
                        ("URBANPULSE_INFLUX_RPC_PORT", own.influx_rpc_port)):
        monkeypatch.setenv(name, str(value))
    port = getattr(own, key)
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", port))
        squatter.listen()
        assert main(["--duration", "1"]) == 3
    err = capsys.readouterr().err
    assert f"port {port} " in err
    assert f"{variable}=" in err
    assert f"urbanpulse stack up {option}" in err
    assert status(own).running == {"mosquitto": False, "influxd": False}
    assert not (Path(own.home) / "demo").exists()
