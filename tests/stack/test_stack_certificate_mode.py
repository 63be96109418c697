"""The stack in certificate mode (docs/stack.md, "MQTT"), as `up` chooses it on the
Mosquitto versions that lose a disconnected session's queue with per-listener users
(eclipse-mosquitto/mosquitto#2618): Debian 13's real 2.0.21
(tests/ansible/trixie_mosquitto.py, run through its image's loader; skipped without root
and debootstrap) and this machine's /usr/sbin/mosquitto (Debian 12's 2.0.11) with the
mode forced. Real brokers, real TLS, 127.0.0.1 and free ports: the cloud user gets in with
its client certificate on the cloud's listener only, nodes' passwords are refused there,
the cloud's identity cannot use the nodes' listener, and the ingest's persistent session,
set up by `cloud_config_for_stack`, keeps what nodes publish while it is away."""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import stat
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from cloud.alerts import make_alert_publisher
from cloud.config import parse_cloud_config
from cloud.ingest import Ingest
from cloud.journal import Journal, journal_path
from cloud.logic.events import Alert
from cloud.stack_config import cloud_config_for_stack
from tests.ansible.mqtt_certs import connack
from tests.cloud.ingest_parts import batch_payload, cloud_mqtt, journal_rows
from urbanpulse.mqtt import close_client, connect_and_wait, make_client, tls_context
from urbanpulse.stack import (
    MqttCredentials,
    StackConfig,
    StackError,
    StackInfo,
    add_node,
    down,
    mosquitto,
    status,
    up,
)
from urbanpulse.stack.cli import main
from urbanpulse.stack.layout import Layout
from urbanpulse.stack.process import free_ports, is_alive
from urbanpulse.stack.state import CloudAuth
from urbanpulse.testing import wait_for
from urbanpulse.wire import data_topic

pytestmark = pytest.mark.stack

SITE, NODE = "hn-cert", "aq-01"
TIMEOUT_S = 15.0


def _trixie_argv() -> list[str]:
    from tests.ansible import trixie_mosquitto

    missing = trixie_mosquitto.missing_requirements()
    if missing:
        pytest.skip(f"Debian 13's Mosquitto 2.0.21 is built with debootstrap as root; missing: "
                    f"{', '.join(missing)} (.ci/run installs debootstrap)")
    return trixie_mosquitto.mosquitto_argv(
        trixie_mosquitto.cached_rootfs(trixie_mosquitto.cache_dir()))


@dataclass(frozen=True)
class CertStack:
    version: str
    argv: list[str]
    config: StackConfig
    info: StackInfo
    node: MqttCredentials

    @property
    def layout(self) -> Layout:
        return Layout(self.config.home)

    def cloud(self) -> MqttCredentials:
        return self.info.mqtt("cloud")


def _private_config(home: Path) -> StackConfig:
    mqtt_port, cloud_port, influx_port, rpc_port = free_ports(4)
    return StackConfig(home=home, mqtt_port=mqtt_port, mqtt_cloud_port=cloud_port,
                       influx_port=influx_port, influx_rpc_port=rpc_port)


@pytest.fixture(scope="module", params=["2.0.21", "system"])
def cert_stack(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
               ) -> Iterator[CertStack]:
    """A stack of its own: on Debian 13's 2.0.21 `up` chooses certificate mode by itself;
    on this machine's /usr/sbin/mosquitto (Debian 12's 2.0.11) it is forced, to run the
    same config there."""
    forced: CloudAuth | None = None
    if request.param == "2.0.21":
        argv = _trixie_argv()
    else:
        argv, forced = [mosquitto.BINARY], "certificate"
    config = _private_config(tmp_path_factory.mktemp(f"cert-{request.param}") / "home")
    try:
        info = up(config, mosquitto_argv=argv, mqtt_cloud_auth=forced)
        node = add_node(config, SITE, NODE)
        yield CertStack(request.param, argv, config, info, node)
    finally:
        down(config)


def _cert_of(creds: MqttCredentials) -> tuple[Path, Path]:
    assert creds.cert_file is not None
    assert creds.key_file is not None
    return creds.cert_file, creds.key_file


def test_up_chooses_certificate_mode_and_status_says_where_the_certificate_is(
        cert_stack: CertStack, capsys: pytest.CaptureFixture[str]) -> None:
    from cryptography import x509
    from cryptography.x509.oid import NameOID

    layout = cert_stack.layout
    assert cert_stack.info.mqtt_cloud_auth == "certificate"
    if cert_stack.version == "2.0.21":
        assert mosquitto.require_binary(cert_stack.argv) == (2, 0, 21)
    conf = layout.mosquitto_conf.read_text()
    assert "per_listener_settings false\n" in conf
    assert "require_certificate true\nuse_identity_as_username true\n" in conf
    # one password file, without the cloud user; the password mode's files are gone
    assert [line.split(":")[0] for line in layout.mosquitto_passwd.read_text().splitlines()] == [
        f"{SITE}.{NODE}"]
    assert layout.mosquitto_acl_all.is_file()
    for other in (layout.mosquitto_acl, layout.mosquitto_cloud_passwd, layout.mosquitto_cloud_acl):
        assert not other.exists(), other
    # the client certificate: CN = the cloud user, from the cloud clients' CA only
    creds = cert_stack.cloud()
    cert_file, key_file = _cert_of(creds)
    cert = x509.load_pem_x509_certificate(cert_file.read_bytes())
    assert [a.value for a in cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)] == ["cloud"]
    cert.verify_directly_issued_by(
        x509.load_pem_x509_certificate(layout.client_ca_cert.read_bytes()))
    assert cert.issuer != x509.load_pem_x509_certificate(layout.ca_cert.read_bytes()).subject
    for path in (cert_file, key_file, layout.client_ca_cert, layout.client_ca_key):
        assert path.parent == layout.tls_dir
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
    # `status --json`, as a tool finds it
    assert main(["--home", str(cert_stack.config.home), "status", "--json"]) == 0
    mqtt = json.loads(capsys.readouterr().out)["mqtt"]
    assert (mqtt["cloud_auth"], mqtt["cloud_cert_file"], mqtt["cloud_key_file"]) == (
        "certificate", str(cert_file), str(key_file))
    assert mqtt["cloud_port"] == cert_stack.config.mqtt_cloud_port
    assert main(["--home", str(cert_stack.config.home), "status"]) == 0
    assert f"cloud: client certificate {cert_file}\n" in capsys.readouterr().out
    # and the processor's config
    table = cloud_config_for_stack(status(cert_stack.config), Path("/nonexistent"))["mqtt"]
    assert (table["cert_file"], table["key_file"]) == (str(cert_file), str(key_file))


def test_the_cloud_connects_with_its_certificate_only(
        cert_stack: CertStack, tmp_path: Path) -> None:
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    from tests.ansible.mqtt_certs import Ca

    creds, layout = cert_stack.cloud(), cert_stack.layout
    port, password = creds.port, creds.password()
    assert connack(port, creds.ca_file, "cloud", password, _cert_of(creds)) == 0
    # its password alone does not get it through TLS
    refused = connack(port, creds.ca_file, "cloud", password)
    assert isinstance(refused, str), refused
    # nor does a certificate named "cloud" from the stack's other CA, the one every node
    # trusts (the server's)
    key = serialization.load_pem_private_key(layout.ca_key.read_bytes(), password=None)
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    server_ca = Ca(x509.load_pem_x509_certificate(layout.ca_cert.read_bytes()), key)
    other = server_ca.issue(tmp_path, "other-cloud", "cloud")
    refused = connack(port, creds.ca_file, "cloud", password, other)
    assert isinstance(refused, str), refused
    wait_for(lambda: "certificate verify failed" in layout.mosquitto_log.read_text(), TIMEOUT_S,
             "the broker to log the certificate of another CA")


def test_make_client_connects_as_the_cloud_with_the_stacks_credentials(cert_stack: CertStack) -> None:
    """What tools and tests do with `StackInfo.mqtt("cloud")`: make_client sends the
    certificate the credentials carry."""
    client = make_client("t-cert-tool", cert_stack.cloud(), clean_start=True)
    try:
        connect_and_wait(client)
    finally:
        close_client(client)


def test_a_nodes_password_is_refused_on_the_cloud_listener(cert_stack: CertStack) -> None:
    node, cloud_port = cert_stack.node, cert_stack.cloud().port
    refused = connack(cloud_port, node.ca_file, node.username, node.password())
    assert isinstance(refused, str), refused
    wait_for(lambda: "peer did not return a certificate" in cert_stack.layout.mosquitto_log
             .read_text(), TIMEOUT_S, "the broker to log the missing client certificate")
    assert connack(node.port, node.ca_file, node.username, node.password()) == 0


def test_the_clouds_identity_cannot_connect_on_the_nodes_listener(cert_stack: CertStack) -> None:
    creds, nodes_port = cert_stack.cloud(), cert_stack.config.mqtt_port
    assert connack(nodes_port, creds.ca_file, "cloud", creds.password()) == 5
    assert connack(nodes_port, creds.ca_file, "cloud", creds.password(), _cert_of(creds)) == 5
    assert connack(nodes_port, creds.ca_file, "cloud", "", _cert_of(creds)) == 5


@contextlib.contextmanager
def _journal(folder: Path) -> Iterator[Journal]:
    journal = Journal(journal_path(folder, "i0"), "i0").open()
    try:
        yield journal
    finally:
        journal.close()


def _publish(node: MqttCredentials, client_id: str, *ks: int) -> None:
    client = make_client(client_id, node, clean_start=True)
    connect_and_wait(client)
    try:
        for k in ks:  # each acknowledged by the broker: queued for the ingest by then
            client.publish(data_topic(SITE, NODE), batch_payload(SITE, NODE, k),
                           qos=1).wait_for_publish(TIMEOUT_S)
    finally:
        close_client(client)


def test_the_ingests_session_keeps_what_nodes_publish_while_it_is_away(
        cert_stack: CertStack, tmp_path: Path) -> None:
    """#2618 on 2.0.21 with per-listener users: batches 0-2 would never come."""
    cfg = cloud_mqtt(cert_stack.info, tmp_path, SITE)  # through cloud_config_for_stack
    assert cfg.cert_file is not None
    with _journal(tmp_path / "journal") as journal:
        ingest = Ingest(cfg, journal, instance="i0")
        ingest.start()
        try:
            assert ingest.wait_subscribed(TIMEOUT_S), ingest.stats.last_error
        finally:
            ingest.stop()
        _publish(cert_stack.node, "t-cert-away", 0, 1, 2)
        ingest = Ingest(cfg, journal, instance="i0")
        ingest.start()
        try:
            assert ingest.wait_subscribed(TIMEOUT_S), ingest.stats.last_error
            _publish(cert_stack.node, "t-cert-back", 3)
            last = batch_payload(SITE, NODE, 3)

            def through_last() -> list[bytes] | None:
                rows = journal_rows(journal.path)
                return rows if rows and rows[-1] == last else None
            rows = wait_for(through_last, TIMEOUT_S, "batch 3 in the journal")
        finally:
            ingest.stop()
    assert rows == [batch_payload(SITE, NODE, k) for k in range(4)]


def test_the_alert_publisher_of_the_stacks_cloud_config_publishes(
        cert_stack: CertStack, tmp_path: Path) -> None:
    from paho.mqtt.client import Client
    from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion

    creds = cert_stack.cloud()
    cert_file, key_file = _cert_of(creds)
    watcher = Client(CallbackAPIVersion.VERSION2, client_id="t-cert-watcher",
                     protocol=MQTTProtocolVersion.MQTTv5)
    watcher.tls_set_context(tls_context(creds.ca_file, cert_file, key_file))
    got: list[dict[str, Any]] = []
    received = threading.Condition()
    subscribed = threading.Event()

    def on_message(client: Any, userdata: Any, msg: Any) -> None:
        with received:
            got.append(json.loads(msg.payload))
            received.notify_all()
    watcher.on_message = on_message
    watcher.on_subscribe = lambda *a: subscribed.set()
    watcher.connect_async(creds.host, creds.port)
    connect_and_wait(watcher)
    try:
        watcher.subscribe("urbanpulse/v1/_alerts/#", qos=1)
        assert subscribed.wait(TIMEOUT_S)
        cfg = parse_cloud_config(cloud_config_for_stack(cert_stack.info, tmp_path)).mqtt
        publisher = make_alert_publisher(cfg, "t-cert-alerts")
        try:
            stamp = int(datetime(2026, 1, 1, tzinfo=UTC).timestamp()) * 10**9
            publisher.publish([Alert(SITE, NODE, "pm-1", "air.pm", "spike", "pm25", 300.0, stamp,
                                     "300 against 40")])
            assert (publisher.published, publisher.undelivered) == (1, 0)
        finally:
            publisher.stop()
        with received:
            assert received.wait_for(lambda: len(got) == 1, TIMEOUT_S)
        assert (got[0]["site"], got[0]["node"], got[0]["type"]) == (SITE, NODE, "spike")
    finally:
        close_client(watcher)


def test_the_processor_of_the_stacks_cloud_config_stores_what_a_node_sends(
        cert_stack: CertStack, tmp_path: Path) -> None:
    """`urbanpulse cloud run` as the demo starts it, on `cloud_config_for_stack`: its ingest
    and alert publisher connect with the client certificate, and a node's readings reach
    InfluxDB."""
    from cloud.initdb import init_db
    from cloud.stack_config import to_toml
    from urbanpulse.clock import to_epoch_ns
    from urbanpulse.influx_http import InfluxHTTP
    from urbanpulse.wire import Reading, encode_batch

    info = cert_stack.info
    admin = info.influx("admin")
    with InfluxHTTP(admin.url, admin.username, admin.password()) as admin_db:
        init_db(admin_db, info.database, parse_cloud_config(
            {"mqtt": {"password_file": "x", "ca_file": "x"}, "influx": {"password_file": "x"}}
        ).retention)
    config = cloud_config_for_stack(info, tmp_path / "state")
    config["mqtt"].update(node_filter=f"urbanpulse/v1/{SITE}/+", client_id="t-cert-processor",
                          shared_group="t-cert-processor")
    path = tmp_path / "cloud.toml"
    path.write_text(to_toml(config))
    log = tmp_path / "cloud.log"
    start = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=5)
    readings = [Reading("pm-1", "air.pm", to_epoch_ns(start + timedelta(seconds=5 * i)), i,
                        {"pm25": 10.0 + i, "pm10": 20.0 + i}) for i in range(20)]
    with log.open("ab") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "urbanpulse.cli", "cloud", "run", "--config", str(path)],
            stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        wait_for(lambda: "ingest subscribed" in log.read_text() or proc.poll() is not None, 60,
                 "the processor's ingest to subscribe")
        assert proc.poll() is None, log.read_text()
        client = make_client("t-cert-node", cert_stack.node, clean_start=True)
        connect_and_wait(client)
        try:
            client.publish(data_topic(SITE, NODE), encode_batch(SITE, NODE, readings),
                           qos=1).wait_for_publish(TIMEOUT_S)
        finally:
            close_client(client)
        reader = info.influx("reader")
        with InfluxHTTP(reader.url, reader.username, reader.password()) as db:
            def stored() -> set[int]:
                rows = db.query_points(f"SELECT seq FROM raw.air_pm WHERE node = '{NODE}'",
                                       db=info.database)
                return {int(r["seq"]) for r in rows}
            wait_for(lambda: stored() == set(range(20)), 60, "the node's readings in InfluxDB")
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(10)
    # the broker saw the processor's ingest and alert publisher as the certificate's user
    text = cert_stack.layout.mosquitto_log.read_text()
    assert "as t-cert-processor-i0 (p5, c0, k30, u'cloud')" in text, text[-2000:]
    assert re.search(r"as t-cert-processor-alerts-\S+ \(p5, c1, k30, u'cloud'\)", text), text[-2000:]


def test_a_later_up_keeps_the_running_broker_and_down_stops_it(cert_stack: CertStack) -> None:
    """`up` from the CLI's default (this machine's /usr/sbin/mosquitto) finds the broker
    another binary runs, by the command recorded in stack.json, and leaves it as it is; `down`
    stops it; `up` with the same binary starts it again in certificate mode."""
    layout = cert_stack.layout
    pid = mosquitto.running_pid(layout)
    assert pid is not None
    again = up(cert_stack.config)
    assert again.mqtt_cloud_auth == "certificate"
    assert mosquitto.running_pid(layout) == pid
    assert mosquitto.recorded_argv(layout) == cert_stack.argv
    down(cert_stack.config)
    assert not is_alive(pid)
    assert status(cert_stack.config).running == {"mosquitto": False, "influxd": False}
    forced: CloudAuth | None = None if cert_stack.version == "2.0.21" else "certificate"
    info = up(cert_stack.config, mosquitto_argv=cert_stack.argv, mqtt_cloud_auth=forced)
    assert info.mqtt_cloud_auth == "certificate"
    assert info.running == {"mosquitto": True, "influxd": True}
    creds = info.mqtt("cloud")
    assert connack(creds.port, creds.ca_file, "cloud", "", _cert_of(creds)) == 0


def test_password_mode_is_refused_on_2_0_21_before_anything_starts(
        own_stack_config: StackConfig) -> None:
    with pytest.raises(StackError, match="mqtt_cloud_auth must be one of"):
        up(own_stack_config, mqtt_cloud_auth="certificates")  # type: ignore[arg-type]
    argv = _trixie_argv()
    with pytest.raises(StackError, match=r"mosquitto 2\.0\.21 loses the messages queued"):
        up(own_stack_config, mosquitto_argv=argv, mqtt_cloud_auth="password")
    assert status(own_stack_config).running == {"mosquitto": False, "influxd": False}


def test_the_system_broker_keeps_the_listeners_own_users(stack: StackInfo) -> None:
    """On a version outside LOSSY_VERSIONS (this machine's 2.0.11) the session stack runs
    as before: per-listener users, the cloud's password, no client certificate."""
    version = mosquitto.require_binary()
    assert stack.mqtt_cloud_auth == mosquitto.cloud_auth_for(version)
    if mosquitto.is_lossy(version):
        pytest.skip(f"this machine's mosquitto {version} runs the stack in certificate mode")
    creds = stack.mqtt("cloud")
    assert (creds.cert_file, creds.key_file) == (None, None)
    assert "cert_file" not in cloud_config_for_stack(stack, Path("/nonexistent"))["mqtt"]
    assert "per_listener_settings true\n" in Layout(stack.home).mosquitto_conf.read_text()


def test_the_client_certificate_is_kept_and_reissued_near_expiry(tmp_path: Path) -> None:
    from urbanpulse.stack.tls import CLIENT_VALIDITY, RENEW_BEFORE, ensure_client_tls

    layout = Layout(tmp_path)
    assert ensure_client_tls(layout, "cloud") is True
    first, ca = layout.cloud_client_cert.read_bytes(), layout.client_ca_cert.read_bytes()
    assert ensure_client_tls(layout, "cloud") is False
    assert layout.cloud_client_cert.read_bytes() == first
    later = datetime.now(UTC) + CLIENT_VALIDITY - RENEW_BEFORE + timedelta(days=1)
    assert ensure_client_tls(layout, "cloud", now=later) is True
    assert layout.cloud_client_cert.read_bytes() != first
    assert layout.client_ca_cert.read_bytes() == ca
    assert ensure_client_tls(layout, "other") is True  # another name: another certificate
    # a key that does not belong to the certificate (an `up` killed between the two)
    layout.cloud_client_key.write_bytes(layout.client_ca_key.read_bytes())
    assert ensure_client_tls(layout, "other") is True
    layout.client_ca_cert.write_text("garbage")
    with pytest.raises(StackError, match=r"cloud clients' CA .* while mosquitto runs"):
        ensure_client_tls(layout, "other", may_replace_ca=False)
    assert ensure_client_tls(layout, "other") is True
    assert layout.client_ca_cert.read_bytes() != ca


def test_a_home_upgraded_to_2_0_21_keeps_the_ingests_queue(
        own_stack_config: StackConfig, tmp_path: Path) -> None:
    """A machine going from Debian 12 to 13 between a `down` and an `up`: the home's broker
    switches from password to certificate mode on the same persistence file, and what was
    queued for the ingest before reaches it (its user is `cloud` in both modes, its client
    id the same). Batch 0 is queued before the restart: what is published after a restart
    and before the ingest is back is not queued for its shared subscription
    (tests/ansible/test_ansible_mosquitto_cert_listener.py)."""
    trixie, config = _trixie_argv(), own_stack_config
    if mosquitto.is_lossy(mosquitto.require_binary()):
        pytest.skip("this machine's mosquitto is one of the versions certificate mode is for")
    with _journal(tmp_path / "journal") as journal:
        info = up(config)
        assert info.mqtt_cloud_auth == "password"
        cfg = cloud_mqtt(info, tmp_path, SITE)
        ingest = Ingest(cfg, journal, instance="i0")
        ingest.start()
        try:
            assert ingest.wait_subscribed(TIMEOUT_S), ingest.stats.last_error
        finally:
            ingest.stop()
        _publish(add_node(config, SITE, NODE), "t-upgrade-0", 0)
        down(config)
        info = up(config, mosquitto_argv=trixie)
        assert info.mqtt_cloud_auth == "certificate"
        assert not Layout(config.home).mosquitto_cloud_passwd.exists()
        cfg = cloud_mqtt(info, tmp_path, SITE)
        assert cfg.cert_file is not None
        ingest = Ingest(cfg, journal, instance="i0")
        ingest.start()
        try:
            assert ingest.wait_subscribed(TIMEOUT_S), ingest.stats.last_error
            _publish(add_node(config, SITE, NODE), "t-upgrade-1", 1)
            last = batch_payload(SITE, NODE, 1)
            rows = wait_for(lambda: (r := journal_rows(journal.path)) and r[-1] == last and r,
                            TIMEOUT_S, "batch 1 in the journal")
        finally:
            ingest.stop()
    assert rows == [batch_payload(SITE, NODE, k) for k in range(2)]


def test_the_certificate_config_has_the_ansible_roles_settings(tmp_path: Path) -> None:
    """The same settings as the broker role's urbanpulse_mqtt_cloud_auth 'certificate' config
    (paths aside; the stack runs as the invoking user, the service has a pidfile), as the
    password configs are compared in tests/ansible/test_ansible_playbooks.py."""
    from tests.ansible.helpers import ROLES, inventory_hosts, render
    from tests.ansible.test_ansible_playbooks import _mosquitto_settings
    from urbanpulse.stack.mosquitto import render_config

    broker = {**next(iter(inventory_hosts("broker").values())),
              "urbanpulse_mqtt_cloud_auth": "certificate"}
    role = render(ROLES / "mosquitto" / "templates" / "mosquitto.conf.j2", "mosquitto", broker)
    ours = render_config(StackConfig(home=tmp_path, mqtt_cloud_port=8884), Layout(tmp_path),
                         "certificate")
    assert [s for s in _mosquitto_settings(role) if s[0] != "pid_file"] == [
        s for s in _mosquitto_settings(ours) if s[0] != "user"]
    assert ("require_certificate", "true") in _mosquitto_settings(ours)
