"""A login the broker refuses stays the MQTT last error in `edge status` while the broker
keeps refusing. The close that follows each refusal ("Protocol error") did not replace it,
but the close of a later attempt did: one the agent stopped before the broker answered
left "could not connect: Normal disconnection" in the state file its stop writes, and the
operator lost why (a CI run of test_config_missing_paths's refused login, once in 3,791).
Another error (the broker gone: its port refuses the TCP connection) still replaces it.

The broker is a Mosquitto of the test's own (plain TCP on 127.0.0.1, which the node's
config allows for a broker on its own machine; a password per user) behind a
PartitionProxy (tests/netfault.py), so that an attempt can be held unanswered after its
CONNECT: the session's broker speaks TLS, whose handshake the partition would hold
inside paho's connect() instead, a different error.
"""

from __future__ import annotations

import os
import pwd
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.agent_thread import agent_in_thread
from tests.netfault import PartitionProxy
from urbanpulse.cli import main
from urbanpulse.stack.mosquitto import BINARY
from urbanpulse.stack.passwords import password_file_line
from urbanpulse.stack.process import free_ports
from urbanpulse.testing import wait_for

SITE, NODE = "hn-refused-login", "aq-1"
REFUSAL = "; last error: broker refused the connection: Not authorized"


@pytest.fixture
def password_broker(tmp_path: Path) -> Iterator[tuple[int, subprocess.Popen[bytes]]]:
    """A plain Mosquitto that knows the node's user, by a password the node is not given:
    its port and its process."""
    (port,) = free_ports(1)
    (tmp_path / "passwd").write_text(password_file_line(f"{SITE}.{NODE}", "the-right-one"))
    conf = tmp_path / "mosquitto.conf"
    conf.write_text(f"user {pwd.getpwuid(os.getuid()).pw_name}\nlistener {port} 127.0.0.1\n"
                    f"allow_anonymous false\npassword_file {tmp_path / 'passwd'}\n"
                    "persistence false\n", encoding="utf-8")
    with (tmp_path / "mosquitto.log").open("wb") as log:
        proc = subprocess.Popen([BINARY, "-c", str(conf)], stdout=log, stderr=subprocess.STDOUT)
    try:
        wait_for(lambda: b"running" in (tmp_path / "mosquitto.log").read_bytes()
                 or proc.poll() is not None, 10, "mosquitto to listen", every_s=0.02)
        assert proc.poll() is None, (tmp_path / "mosquitto.log").read_text()
        yield port, proc
    finally:
        proc.terminate()
        proc.wait(10)


def _node(tmp_path: Path, port: int) -> Path:
    (tmp_path / "wrong.password").write_text("not-the-password\n")
    path = tmp_path / "node.toml"
    path.write_text(f"""
[node]
id = "{NODE}"
site = "{SITE}"
state_dir = "{tmp_path / 'state'}"

[mqtt]
host = "127.0.0.1"
port = {port}
tls = false  # a lab broker of the test's own
password_file = "{tmp_path / 'wrong.password'}"
delivery = "broker"

[gpio]
backend = "mock"

[agent]
heartbeat_s = 2.0
clock_check = "off"

[[sensors]]
id = "pm-1"
driver = "sds011"
port = "{tmp_path / 'ttyUSB0'}"
""", encoding="utf-8")
    return path


def _mqtt_line(path: Path, capsys: pytest.CaptureFixture[str]) -> str:
    """The status's MQTT line; "" before the agent's first state file (or while it is
    making its outbox, which the status cannot read yet)."""
    done = main(["edge", "status", "--config", str(path)])
    out = capsys.readouterr().out
    return next((x for x in out.splitlines() if x.startswith("mqtt:")), "") if done == 0 else ""


def test_the_refusal_outlives_an_attempt_the_stop_closes_before_the_broker_answers(
        password_broker: tuple[int, subprocess.Popen[bytes]], tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    with PartitionProxy("127.0.0.1", password_broker[0]) as proxy:
        path = _node(tmp_path, proxy.port)
        with agent_in_thread(path):
            wait_for(lambda: _mqtt_line(path, capsys).endswith(REFUSAL), 20,
                     "the refused login in edge status")
            # the next attempt's CONNECT gets no answer; the agent stops while it waits
            proxy.partition()
            attempts = proxy.accepted
            wait_for(lambda: proxy.accepted > attempts, 30, "an attempt the broker does not answer")
        assert proxy.forwarded == attempts  # (the held one never reached the broker)
    line = _mqtt_line(path, capsys)
    assert line.startswith(f"mqtt:      NOT connected to 127.0.0.1:{proxy.port} as user "
                           f"'{SITE}.{NODE}' (0 connects)"), line
    assert line.endswith(REFUSAL), line


def test_the_broker_gone_replaces_the_refusal(
        password_broker: tuple[int, subprocess.Popen[bytes]], tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    port, broker = password_broker
    path = _node(tmp_path, port)
    with agent_in_thread(path):
        wait_for(lambda: _mqtt_line(path, capsys).endswith(REFUSAL), 20,
                 "the refused login in edge status")
        broker.terminate()
        broker.wait(10)
        gone = f"; last error: connect to 127.0.0.1:{port}: [Errno 111] Connection refused"
        wait_for(lambda: _mqtt_line(path, capsys).endswith(gone), 30, "the broker gone in edge status")
