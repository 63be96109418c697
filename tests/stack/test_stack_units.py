"""Pieces of the stack that need no running server."""

from __future__ import annotations

import os
import signal
import stat
import subprocess
from functools import partial
from pathlib import Path

import pytest

from urbanpulse.errors import ConfigError
from urbanpulse.stack import StackConfig, StackError
from urbanpulse.stack.files import ensure_secret
from urbanpulse.stack.layout import Layout
from urbanpulse.stack.mosquitto import (
    check_auth,
    cloud_auth_for,
    parse_version,
    render_acl,
    render_cloud_acl,
)
from urbanpulse.stack.passwords import mosquitto_hash, password_file_line, verify_mosquitto_hash
from urbanpulse.stack.process import is_alive, start_detached, wait_until
from urbanpulse.stack.tls import ensure_tls


def test_our_hash_matches_mosquitto_passwd(tmp_path: Path) -> None:
    passwd = tmp_path / "passwd"
    subprocess.run(
        ["mosquitto_passwd", "-b", "-c", str(passwd), "alice", "s3cret-pw"],
        check=True,
        capture_output=True,
    )
    user, encoded = passwd.read_text().strip().split(":", 1)
    assert user == "alice"
    assert encoded.startswith("$7$")
    assert verify_mosquitto_hash("s3cret-pw", encoded)
    assert not verify_mosquitto_hash("s3cret-pX", encoded)


def test_hash_format_and_salt() -> None:
    a, b = mosquitto_hash("pw"), mosquitto_hash("pw")
    assert a != b  # random salt
    assert a.split("$")[1:3] == ["7", "101"]
    assert verify_mosquitto_hash("pw", a)
    assert verify_mosquitto_hash("pw", b)
    with pytest.raises(ValueError, match="may not contain"):
        password_file_line("bad:user", "pw")


def test_acl_confines_each_node_to_its_own_filter() -> None:
    acl = render_acl(["hn-b.aq-01", "hn-a.tl-02", "hn-a.gw-1"], gateways={"hn-a.gw-1"})
    blocks = [b.strip().splitlines() for b in acl.split("\n\n")[1:]]
    cloud = [b.strip().splitlines() for b in render_cloud_acl().split("\n\n")[1:]]
    # Each listener's ACL has its own users: the cloud's is on the cloud's listener only.
    assert cloud == [
        ["user cloud", "topic read urbanpulse/v1/#", "topic write urbanpulse/v1/_alerts/#",
         "topic write urbanpulse/v1/+/+/ack"]]
    # Only the site gateway writes its relay (which speaks for any node of its site).
    assert blocks == [
        ["user hn-a.gw-1", "topic write urbanpulse/v1/hn-a/gw-1/data",
         "topic write urbanpulse/v1/hn-a/gw-1/status", "topic write urbanpulse/v1/hn-a/gw-1/relay",
         "topic read urbanpulse/v1/hn-a/gw-1/ack"],
        ["user hn-a.tl-02", "topic write urbanpulse/v1/hn-a/tl-02/data",
         "topic write urbanpulse/v1/hn-a/tl-02/status", "topic read urbanpulse/v1/hn-a/tl-02/ack"],
        ["user hn-b.aq-01", "topic write urbanpulse/v1/hn-b/aq-01/data",
         "topic write urbanpulse/v1/hn-b/aq-01/status", "topic read urbanpulse/v1/hn-b/aq-01/ack"],
    ]
    assert "relay" not in render_acl(["hn-a.gw-1"])


def test_config_validation() -> None:
    with pytest.raises(ConfigError, match="mqtt_port"):
        StackConfig(home=Path("/tmp/x"), mqtt_port=0)
    with pytest.raises(ConfigError, match="ports"):
        StackConfig(home=Path("/tmp/x"), mqtt_port=9000, influx_port=9000)
    with pytest.raises(ConfigError, match="bind"):
        StackConfig(home=Path("/tmp/x"), bind="0.0.0.0")
    with pytest.raises(ConfigError, match="database"):
        StackConfig(home=Path("/tmp/x"), database="a;b")


def test_from_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("URBANPULSE_HOME", str(tmp_path / "h"))
    monkeypatch.setenv("URBANPULSE_MQTT_PORT", "18883")
    config = StackConfig.from_env(influx_port=18086, influx_rpc_port=None)
    assert config.home == tmp_path / "h"
    assert (config.mqtt_port, config.influx_port, config.influx_rpc_port) == (18883, 18086, 8088)
    assert StackConfig().home == tmp_path / "h"
    monkeypatch.setenv("URBANPULSE_MQTT_PORT", "many")
    with pytest.raises(ConfigError, match="URBANPULSE_MQTT_PORT"):
        StackConfig.from_env()
    with pytest.raises(ConfigError, match="mqtt_prot"):
        StackConfig.from_env(mqtt_prot=1)


def test_default_home_is_dot_urbanpulse(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("URBANPULSE_HOME", raising=False)
    assert StackConfig().home == Path.cwd() / ".urbanpulse"


def test_secrets_are_private_and_stable(tmp_path: Path) -> None:
    path = tmp_path / "credentials" / "x.password"
    first = ensure_secret(path)
    assert len(first) >= 24
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert ensure_secret(path) == first


def test_tls_generated_once_and_keys_private(tmp_path: Path) -> None:
    from cryptography import x509

    layout = Layout(tmp_path)
    assert ensure_tls(layout) is True
    ca_before = layout.ca_cert.read_bytes()
    assert ensure_tls(layout) is False  # second call: nothing reissued
    assert layout.ca_cert.read_bytes() == ca_before
    for key in (layout.ca_key, layout.server_key):
        assert stat.S_IMODE(key.stat().st_mode) == 0o600
    cert = x509.load_pem_x509_certificate(layout.server_cert.read_bytes())
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert "localhost" in san.get_values_for_type(x509.DNSName)
    assert [str(ip) for ip in san.get_values_for_type(x509.IPAddress)] == ["127.0.0.1"]
    ca = x509.load_pem_x509_certificate(ca_before)
    cert.verify_directly_issued_by(ca)


def test_resolve_config_precedence(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from urbanpulse.stack import resolve_config

    monkeypatch.delenv("URBANPULSE_MQTT_PORT", raising=False)
    monkeypatch.delenv("URBANPULSE_INFLUX_RPC_PORT", raising=False)
    monkeypatch.setenv("URBANPULSE_INFLUX_PORT", "28086")
    monkeypatch.setenv("URBANPULSE_HOME", str(tmp_path))
    assert resolve_config().mqtt_port == 8883  # nothing recorded yet: the default
    Layout(tmp_path).state.write_text(
        '{"mqtt_port": 18883, "influx_port": 18086, "influx_rpc_port": 18088}'
    )
    config = resolve_config()
    # recorded < environment < explicit
    assert (config.mqtt_port, config.influx_port, config.influx_rpc_port) == (18883, 28086, 18088)
    assert resolve_config(mqtt_port=38883).mqtt_port == 38883
    assert resolve_config(tmp_path / "elsewhere").mqtt_port == 8883


def test_tls_reissues_an_unreadable_server_cert_and_reports_a_broken_ca(tmp_path: Path) -> None:
    from urbanpulse.stack import StackError

    layout = Layout(tmp_path)
    ensure_tls(layout)
    layout.server_cert.write_text("garbage")
    assert ensure_tls(layout) is True
    assert layout.server_cert.read_text().startswith("-----BEGIN CERTIFICATE-----")
    layout.ca_cert.write_text("garbage")
    with pytest.raises(StackError, match=r"local CA .* unreadable"):
        ensure_tls(layout)


def _runs(pid: int, command: str | None) -> bool:
    """`pid` runs `command` (None: it has ended)."""
    if command is None:
        return not is_alive(pid)
    return Path(f"/proc/{pid}/comm").read_text().strip() == command


def _environ(pid: int) -> dict[str, str]:
    raw = Path(f"/proc/{pid}/environ").read_bytes().decode()
    return dict(entry.split("=", 1) for entry in raw.split("\0") if entry)


def test_a_detached_server_gets_the_extra_environment_on_top_of_ours(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("URBANPULSE_TEST_INHERITED", "kept")
    monkeypatch.setenv("URBANPULSE_TEST_OVERRIDDEN", "ours")
    pids = []
    try:
        for env in ({"URBANPULSE_TEST_OVERRIDDEN": "theirs", "GOGC": "200"}, None):
            pid = start_detached(["/bin/sleep", "60"], output=tmp_path / "out.log",
                                 pidfile=tmp_path / "sleep.pid", env=env)
            pids.append(pid)
            # The launcher's shell has forked it; it is sleep once exec'd.
            assert wait_until(partial(_runs, pid, "sleep"), timeout_s=5)
            assert (tmp_path / "sleep.pid").read_text() == f"{pid}\n"
        given, plain = (_environ(pid) for pid in pids)
    finally:
        for pid in pids:
            os.kill(pid, signal.SIGKILL)
    assert given["URBANPULSE_TEST_OVERRIDDEN"] == "theirs"
    assert given["GOGC"] == "200"
    assert given["URBANPULSE_TEST_INHERITED"] == plain["URBANPULSE_TEST_INHERITED"] == "kept"
    assert plain["URBANPULSE_TEST_OVERRIDDEN"] == "ours"
    assert given.get("PATH") == plain.get("PATH") == os.environ.get("PATH")
    for pid in pids:
        assert wait_until(partial(_runs, pid, None), timeout_s=5)


def test_the_broker_versions_that_lose_queued_messages_run_in_certificate_mode() -> None:
    """Debian 12's 2.0.11 (this machine's) and 2.0.23+ keep the listeners' own users; the
    versions of #2618 (Ubuntu 24.04's 2.0.18, Debian 13's 2.0.21) get certificate mode, and
    password mode is refused on them."""
    assert parse_version("mosquitto version 2.0.11\n\nmosquitto is an MQTT broker") == (2, 0, 11)
    with pytest.raises(StackError, match="cannot tell the version"):
        parse_version("something else")
    for fine in ((2, 0, 11), (2, 0, 10), (2, 0, 23), (2, 1, 0)):
        assert cloud_auth_for(fine) == "password"
        check_auth(fine, "password")
        check_auth(fine, "certificate")
    for lossy in ((2, 0, 12), (2, 0, 18), (2, 0, 21), (2, 0, 22)):
        assert cloud_auth_for(lossy) == "certificate"
        check_auth(lossy, "certificate")
        with pytest.raises(StackError, match=r"mosquitto 2\.0\.\d+ loses the messages queued"):
            check_auth(lossy, "password")
