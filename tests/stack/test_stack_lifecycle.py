"""up / down / status / add-node on instances of their own (the session stack is left alone)."""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import socket
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from urbanpulse.influx_http import InfluxHTTP
from urbanpulse.stack import (
    BinaryMissing,
    PortInUse,
    StackConfig,
    StackError,
    StackInfo,
    StartFailed,
    add_node,
    down,
    influxd,
    mosquitto,
    process,
    status,
    up,
)
from urbanpulse.stack.cli import main
from urbanpulse.stack.layout import Layout
from urbanpulse.stack.mqtt_probe import try_connect

pytestmark = pytest.mark.stack


@pytest.fixture
def own(own_stack_config: StackConfig) -> StackConfig:
    return own_stack_config


def pids(config: StackConfig) -> tuple[int | None, int | None]:
    layout = Layout(config.home)
    return mosquitto.running_pid(layout), influxd.running_pid(layout)


def test_up_is_idempotent_and_restarts_only_what_died(own: StackConfig) -> None:
    first = up(own)
    assert first.running == {"mosquitto": True, "influxd": True}
    mqtt_pid, influx_pid = pids(own)
    assert mqtt_pid is not None
    assert influx_pid is not None
    passwords = {p: p.read_bytes() for p in own.home.glob("credentials/*/*.password")}
    ca = Layout(own.home).ca_cert.read_bytes()

    assert up(own) == first
    assert pids(own) == (mqtt_pid, influx_pid)

    os.kill(mqtt_pid, signal.SIGKILL)
    assert process.wait_until(lambda: not process.is_alive(mqtt_pid), timeout_s=5)
    assert status(own).running == {"mosquitto": False, "influxd": True}
    again = up(own)
    assert again.running == {"mosquitto": True, "influxd": True}
    new_mqtt, same_influx = pids(own)
    assert new_mqtt not in (None, mqtt_pid)
    assert same_influx == influx_pid
    # Credentials and CA survive restarts: clients configured earlier keep working.
    assert {p: p.read_bytes() for p in own.home.glob("credentials/*/*.password")} == passwords
    assert Layout(own.home).ca_cert.read_bytes() == ca


def test_down_stops_ours_then_up_keeps_data_and_users(own: StackConfig) -> None:
    info = up(own)
    creds = info.influx("admin")
    with InfluxHTTP(creds.url, creds.username, creds.password()) as admin:
        admin.write(b"m v=42 1700000000000000000\n", db=own.database)
        node = add_node(own, "hn-life", "n1")

        down(own)
        assert status(own).running == {"mosquitto": False, "influxd": False}
        assert pids(own) == (None, None)
        assert not Layout(own.home).mosquitto_pid.exists()
        assert own.mqtt_cloud_port is not None
        for port in (own.mqtt_port, own.mqtt_cloud_port, own.influx_port, own.influx_rpc_port):
            assert process.port_is_free(own.bind, port)
        down(own)  # stopping a stopped stack is fine

        up(own)
        # The client's keep-alive connection died with the old server; the next request
        # transparently uses a new one.
        assert admin.query_points("SELECT v FROM m", db=own.database)[0]["v"] == 42
        assert admin.connections_opened == 2
    assert try_connect(node.host, node.port, node.ca_file, node.username, node.password()) == 0


def test_down_never_signals_a_process_that_is_not_ours(
    own: StackConfig, stack: StackInfo
) -> None:
    up(own)
    layout = Layout(own.home)
    down(own)
    stranger = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])  # the stranger's body
    try:
        # A stale pidfile whose pid now belongs to someone else.
        layout.influx_pid.write_text(f"{stranger.pid}\n")
        layout.mosquitto_pid.write_text(f"{stranger.pid}\n")
        assert status(own).running == {"mosquitto": False, "influxd": False}
        down(own)
        assert stranger.poll() is None
    finally:
        stranger.kill()
        stranger.wait()
    # The session's stack, another instance of the same binaries, is untouched.
    assert status_running(stack) == {"mosquitto": True, "influxd": True}


def status_running(info: StackInfo) -> dict[str, bool]:
    return status(StackConfig(home=info.home)).running


def test_up_refuses_to_move_a_running_stack(own: StackConfig) -> None:
    up(own)
    moved = dataclasses.replace(own, influx_port=process.free_ports(1)[0])
    with pytest.raises(StackError, match="influx_port"):
        up(moved)


def test_port_in_use_names_the_port(own: StackConfig) -> None:
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", own.mqtt_port))
        squatter.listen()
        with pytest.raises(PortInUse, match=f"port {own.mqtt_port} .*mosquitto"):
            up(own)
        assert status(own).running == {"mosquitto": False, "influxd": False}
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", own.influx_rpc_port))
        squatter.listen()
        with pytest.raises(PortInUse, match=f"port {own.influx_rpc_port} .*influxd"):
            up(own)


def test_missing_binary_fails_before_starting_anything(
    own: StackConfig, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The only fake in this file: the binary path, to see the error for a machine
    # without the Debian package.
    monkeypatch.setattr(mosquitto, "BINARY", "/nonexistent/sbin/mosquitto")
    with pytest.raises(BinaryMissing, match="apt-get install mosquitto"):
        up(own)
    assert status(own).running == {"mosquitto": False, "influxd": False}


def test_a_broker_that_cannot_start_is_reported_and_nothing_is_left_up(
    own: StackConfig,
) -> None:
    up(own)
    down(own)
    # A corrupt persistence file: Mosquitto exits at start.
    (Layout(own.home).mosquitto_data / "mosquitto.db").write_bytes(b"garbage")
    with pytest.raises(StartFailed, match=r"mosquitto exited(.|\n)*Couldn't open database"):
        up(own)
    assert status(own).running == {"mosquitto": False, "influxd": False}


def test_files_are_private(own: StackConfig) -> None:
    info = up(own)
    layout = Layout(own.home)
    assert info.mqtt_cloud_auth is not None
    certificate = [layout.client_ca_cert, layout.client_ca_key, layout.cloud_client_cert,
                   layout.cloud_client_key] if info.mqtt_cloud_auth == "certificate" else []
    private = [
        layout.ca_key,
        layout.server_key,
        *mosquitto.auth_files(layout, info.mqtt_cloud_auth),
        *certificate,
        layout.mosquitto_conf,
        layout.influx_conf,
        *own.home.glob("credentials/*/*.password"),
    ]
    assert len(private) >= 9
    for path in private:
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
    for folder in (own.home, layout.credentials_dir, layout.tls_dir):
        assert stat.S_IMODE(folder.stat().st_mode) == 0o700, folder


def test_cli_up_status_add_node_down(own: StackConfig, capsys: pytest.CaptureFixture[str]) -> None:
    home = ["--home", str(own.home)]
    ports = [
        "--mqtt-port", str(own.mqtt_port),
        "--mqtt-cloud-port", str(own.mqtt_cloud_port),
        "--influx-port", str(own.influx_port),
        "--influx-rpc-port", str(own.influx_rpc_port),
    ]  # fmt: skip
    assert main([*home, "up", *ports]) == 0
    out = capsys.readouterr().out
    assert f"mqtts://127.0.0.1:{own.mqtt_port}  nodes" in out
    assert f"mqtts://127.0.0.1:{own.mqtt_cloud_port}  cloud" in out

    # Without port options, status and add-node find the running instance's ports.
    assert main([*home, "add-node", "--site", "hn-cli", "--node", "n7"]) == 0
    assert "hn-cli.n7" in capsys.readouterr().out
    assert main([*home, "add-node", "--site", "hn-cli", "--node", "gw-1", "--gateway"]) == 0
    assert "hn-cli.gw-1 (site gateway: may write its relay)" in capsys.readouterr().out
    layout = Layout(own.home)
    certificate = mosquitto.recorded_auth(layout) == "certificate"
    acl = layout.mosquitto_acl_all if certificate else layout.mosquitto_acl
    relays = [line for line in acl.read_text().splitlines() if line.endswith("/relay")]
    assert relays == ["topic write urbanpulse/v1/hn-cli/gw-1/relay"]
    assert main([*home, "status", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["running"] == {"mosquitto": True, "influxd": True}
    assert data["mqtt"]["port"] == own.mqtt_port
    assert data["mqtt"]["cloud_port"] == own.mqtt_cloud_port
    assert data["mqtt"]["tls"] is True
    # the mode of this machine's mosquitto (2.0.11 here: password, no client certificate)
    auth = mosquitto.cloud_auth_for(mosquitto.require_binary())
    assert data["mqtt"]["cloud_auth"] == auth
    assert (data["mqtt"]["cloud_cert_file"] is None) == (auth == "password")
    assert data["influx"]["url"] == f"http://127.0.0.1:{own.influx_port}"
    assert data["influx"]["database"] == "urbanpulse"
    assert set(data["mqtt"]["users"]) == {"cloud", "hn-cli.n7", "hn-cli.gw-1"}
    assert data["mqtt"]["gateways"] == ["hn-cli.gw-1"]
    assert set(data["influx"]["users"]) == {"admin", "writer", "reader"}
    for path in [*data["mqtt"]["users"].values(), *data["influx"]["users"].values()]:
        assert Path(path).is_file()
    assert Path(data["mqtt"]["ca_file"]).is_file()

    assert main([*home, "down"]) == 0
    capsys.readouterr()
    assert main([*home, "status", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["running"] == {
        "mosquitto": False,
        "influxd": False,
    }


def test_cli_reports_a_taken_port(own: StackConfig, capsys: pytest.CaptureFixture[str]) -> None:
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", own.influx_port))
        squatter.listen()
        code = main(
            [
                "--home", str(own.home), "up",
                "--mqtt-port", str(own.mqtt_port),
                "--influx-port", str(own.influx_port),
                "--influx-rpc-port", str(own.influx_rpc_port),
            ]
        )  # fmt: skip
    assert code == 1
    err = capsys.readouterr().err
    assert f"port {own.influx_port}" in err
    assert "--influx-port" in err


def test_cli_add_node_rejects_bad_ids(own: StackConfig, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--home", str(own.home), "add-node", "--site", "Bad/Site", "--node", "n1"]) == 1
    assert "site 'Bad/Site' is not a valid id" in capsys.readouterr().err
