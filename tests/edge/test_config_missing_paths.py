"""Paths a node config names that do not exist on this machine: `check-config` warns naming
the key (the file is valid, and the agent runs without them, keeping its readings), and the
agent's run-time errors name the key (`sensors[0].port`, `mqtt.ca_file`) as they already did
for `mqtt.password_file`. Before, check-config said ok with no word, and the errors named
the sensor or the file but not what to edit. A login the broker refuses ("Not authorized")
shows in `edge status` with the user name it was tried with (the real Mosquitto), for as
long as the broker refuses and after the stop (tests/edge/test_status_refused_login.py)."""

from __future__ import annotations

import functools
import time
from pathlib import Path

import pytest

from edge.agent import STATE_FILE
from edge.config import load_config
from edge.errors import CredentialsError
from edge.mqtt_client import make_client
from tests.agent_thread import agent_in_thread
from urbanpulse.cli import main
from urbanpulse.testing import wait_for

REPO = Path(__file__).resolve().parents[2]
SAMPLE = REPO / "edge/drivers/sds011/sample.toml"


def _node(tmp_path: Path, port: str, ca_file: Path) -> Path:
    (tmp_path / "mqtt.password").write_text("x" * 24)
    text = (SAMPLE.read_text()
            .replace('state_dir = "/var/lib/urbanpulse"', f'state_dir = "{tmp_path / "state"}"')
            .replace('ca_file = "/etc/urbanpulse/ca.pem"', f'ca_file = "{ca_file}"')
            .replace('password_file = "/etc/urbanpulse/mqtt.password"',
                     f'password_file = "{tmp_path / "mqtt.password"}"')
            .replace('port = "/dev/serial/by-id/usb-1a86_USB_Serial-if00-port0"', f'port = "{port}"'))
    path = tmp_path / "node.toml"
    path.write_text(text)
    return path


def test_check_config_warns_about_a_missing_port_and_ca_file_naming_the_keys(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    port, ca = tmp_path / "ttyUSB9", tmp_path / "ca.pem"
    assert main(["edge", "check-config", str(_node(tmp_path, str(port), ca))]) == 0
    out = capsys.readouterr()
    assert out.out.endswith(": ok (node hn-hoankiem/aq-01, 1 sensor)\n")
    assert out.err.splitlines() == [
        f"warning: sensors[0].port: '{port}' does not exist on this machine (sensor 'pm-1': its "
        "driver fails and is restarted until the device appears)",
        f"warning: mqtt.ca_file: '{ca}' does not exist on this machine (the agent keeps its "
        "readings and does not connect until it can read it)",
    ]


def test_check_config_says_nothing_more_when_they_exist(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], steady_sds011) -> None:  # type: ignore[no-untyped-def]
    ca = tmp_path / "ca.pem"
    ca.write_text("not checked here")
    assert main(["edge", "check-config", str(_node(tmp_path, steady_sds011.port, ca))]) == 0
    assert capsys.readouterr().err == ""


def test_a_missing_ca_file_names_its_key(tmp_path: Path) -> None:
    ca = tmp_path / "ca.pem"
    config = load_config(_node(tmp_path, "/dev/ttyUSB0", ca))
    with pytest.raises(CredentialsError) as err:
        make_client("edge-test", config.mqtt)
    assert str(err.value) == f"mqtt.ca_file {ca}: No such file or directory"


def test_a_ca_file_that_holds_no_certificate_names_its_key(tmp_path: Path) -> None:
    ca = tmp_path / "ca.pem"
    ca.write_text("no certificate here\n")
    config = load_config(_node(tmp_path, "/dev/ttyUSB0", ca))
    with pytest.raises(CredentialsError, match=r"^mqtt\.ca_file: CA file "):
        make_client("edge-test", config.mqtt)


def _last_error(agent, sensor: str) -> str | None:  # type: ignore[no-untyped-def]
    return agent.drivers[sensor].last_error  # type: ignore[no-any-return]


def test_a_port_missing_at_run_time_is_named_by_its_key(make_node_config, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    port = tmp_path / "ttyUSB9"
    path = make_node_config("hn-paths", "aq-9", f"""
[[sensors]]
id = "pm-9"
driver = "sds011"
port = "{port}"
""")
    with agent_in_thread(path) as agent:
        error = wait_for(functools.partial(_last_error, agent, "pm-9"), 20, "the driver's failure")
    assert error.startswith(f"DriverError: sds011 pm-9 on {port}: "), error
    assert error.endswith("(sensors[0].port: no such device on this node)"), error


def test_a_refused_login_shows_the_user_it_was_tried_with(
        make_node_config, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:  # type: ignore[no-untyped-def]
    path = make_node_config("hn-paths", "aq-8", f"""
[[sensors]]
id = "pm-8"
driver = "sds011"
port = "{tmp_path / 'ttyUSB8'}"
""")
    wrong = tmp_path / "wrong.password"
    wrong.write_text("not-the-password-of-this-node\n")
    text = path.read_text()
    config = load_config(path)
    path.write_text(text.replace(f'password_file = "{config.mqtt.password_file}"',
                                 f'password_file = "{wrong}"'))

    refusal = "; last error: broker refused the connection: Not authorized"

    def mqtt_line() -> str:
        done = main(["edge", "status", "--config", str(path)])  # 3 while the outbox is made
        out = capsys.readouterr().out
        return next((x for x in out.splitlines() if x.startswith("mqtt:")), "") if done == 0 else ""

    with agent_in_thread(path) as agent:
        wait_for(lambda: mqtt_line().endswith(refusal), 20, "a refused login in edge status")
        assert agent.publisher is not None
        state = agent.publisher.state
        attempts = state.failed_connects
        counted: list[int] = []  # time.time_ns() when two more attempts had ended

        def refused_again() -> bool:
            # (the read below shows this write or a later one)
            written = (config.node.state_dir / STATE_FILE).stat().st_mtime_ns
            line = mqtt_line()
            assert line.endswith(refusal), line
            if not counted and state.failed_connects >= attempts + 2:
                counted.append(time.time_ns())
            return bool(counted) and written > counted[0]

        # read again and again while the broker refuses the attempts that follow, until a
        # state written after two more of them
        wait_for(refused_again, 30, "a state written after two more refused attempts")
    line = mqtt_line()  # and after the stop
    assert line.startswith(f"mqtt:      NOT connected to {config.mqtt.host}:{config.mqtt.port} as "
                           "user 'hn-paths.aq-8' ("), line
    assert line.endswith(refusal), line
