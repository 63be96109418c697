"""The mosquitto role's config with urbanpulse_mqtt_cloud_auth 'certificate' (one user list,
per_listener_settings false; the cloud's listener takes a client certificate of a CA of its
own), run on the real Mosquitto 2.0.21 of Debian 13 (tests/ansible/trixie_mosquitto.py)
and on this machine's 2.0.11, on 127.0.0.1 and free ports: the ingest's persistent session
keeps what nodes publish while it is away; a node cannot connect on the cloud's listener,
nor take the ingest's session on its own; the ingest connects with its client certificate.
And, on 2.0.21, the 'password' config loses that queue (why the role refuses it there).

The role's templates are rendered as the role renders them; two lines of the result are
changed for a test: pid_file (the service's /run/mosquitto) and user (the broker stays the
user running the test, who owns the files)."""

from __future__ import annotations

import contextlib
import os
import pwd
import re
import shutil
import subprocess
import tempfile
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from cloud.config import CloudMqtt, parse_cloud_config
from cloud.ingest import Ingest, make_ingest_client
from cloud.journal import Journal, journal_path
from tests.ansible import trixie_mosquitto
from tests.ansible.helpers import ROLES, render
from tests.ansible.mqtt_certs import Ca, connack
from tests.ansible.test_ansible_mosquitto import filter_plugin, render_acl_all
from tests.cloud.ingest_parts import batch_payload, journal_rows
from urbanpulse.mqtt import close_client, connect_and_wait, tls_context
from urbanpulse.stack import mosquitto as host_mosquitto
from urbanpulse.stack.process import free_ports
from urbanpulse.testing import wait_for
from urbanpulse.wire import data_topic

ROLE = ROLES / "mosquitto"
SITE, NODE = "hn-a", "aq-01"
NODE_USER, NODE_PASSWORD = f"{SITE}.{NODE}", "node-secret-0123456789"
CLOUD_PASSWORD = "cloud-secret-0123456789"
INGEST_ID = "urbanpulse-ingest"
TIMEOUT_S = 15.0


def _inventory() -> dict[str, Any]:
    return {"groups": {"edge": ["n1"]},
            "hostvars": {"n1": {"edge_site": SITE, "edge_node_id": NODE,
                                "vault_edge_mqtt_password": NODE_PASSWORD}}}


def render_role_files(conf_dir: Path, data_dir: Path, auth: str, ports: tuple[int, int]) -> Path:
    """The role's mosquitto.conf, password files and ACLs for one node, into conf_dir (as
    mosquitto_conf_dir), listening on 127.0.0.1; returns the config's path."""
    host_vars = {**_inventory(), "mosquitto_node_hosts": ["n1"], "mosquitto_cloud_auth": auth,
                 "mosquitto_conf_dir": str(conf_dir),
                 "mosquitto_data_dir": f"{data_dir}/", "mosquitto_log": str(conf_dir / "mosquitto.log"),
                 "mosquitto_port": ports[0], "mosquitto_cloud_port": ports[1],
                 "mosquitto_bind": "127.0.0.1", "mosquitto_cloud_bind": "127.0.0.1",
                 "vault_mqtt_cloud_password": CLOUD_PASSWORD}
    filters = filter_plugin().FilterModule().filters()
    for name in ("passwd-nodes", "passwd-cloud", "acl-nodes", "acl-cloud"):
        (conf_dir / name).write_text(render(ROLE / "templates" / f"{name}.j2", "mosquitto",
                                            host_vars, filters))
    (conf_dir / "acl-all").write_text(render_acl_all(**_inventory()))
    conf = render(ROLE / "templates" / "mosquitto.conf.j2", "mosquitto", host_vars)
    conf, replaced = re.subn(r"(?m)^pid_file .*$", f"pid_file {conf_dir / 'mosquitto.pid'}", conf)
    assert replaced == 1
    path = conf_dir / "mosquitto.conf"
    path.write_text(f"user {pwd.getpwuid(os.getuid()).pw_name}\n{conf}")
    for written in conf_dir.iterdir():
        written.chmod(0o600)
    return path


@dataclass(frozen=True)
class Site:
    """What outlives a broker's restart: the certificates (as the controller holds them), the
    processor's password file and the broker's persistence folder."""

    root: Path
    site_ca: Path
    cloud_clients_ca: Path
    server_cert: tuple[Path, Path]
    client_cert: tuple[Path, Path]  # the processor's, signed by the cloud clients' CA
    node_held_cert: tuple[Path, Path]  # one the site's CA signed: what a node could hold
    password_file: Path
    data_dir: Path

    @classmethod
    def make(cls, root: Path) -> Site:
        site, cloud = Ca.new("urbanpulse site CA"), Ca.new("urbanpulse cloud clients CA")
        password_file = root / "cloud-mqtt.password"
        password_file.write_text(CLOUD_PASSWORD + "\n")
        (root / "data").mkdir()
        return cls(root, site.write(root / "ca.pem"), cloud.write(root / "cloud-clients-ca.pem"),
                   site.issue(root, "server", "localhost", server=True),
                   cloud.issue(root, "cloud-mqtt", "cloud"), site.issue(root, "node-held", "cloud"),
                   password_file, root / "data")


@dataclass
class Broker:
    version: str
    site: Site
    nodes_port: int
    cloud_port: int
    log: Path
    ids: list[str] = field(default_factory=list)

    def cloud_mqtt(self, client_id: str, *, certificate: bool = True) -> CloudMqtt:
        site = self.site
        mqtt: dict[str, Any] = {"host": "127.0.0.1", "port": self.cloud_port, "ca_file": str(site.site_ca),
                                "username": "cloud", "password_file": str(site.password_file),
                                "client_id": client_id, "node_filter": f"urbanpulse/v1/{SITE}/+"}
        if certificate:
            mqtt.update(cert_file=str(site.client_cert[0]), key_file=str(site.client_cert[1]))
        return parse_cloud_config({"mqtt": mqtt, "influx": {"password_file": "p"}}).mqtt

    def fresh_id(self, name: str) -> str:
        """A client id no other test of this broker used (sessions outlive tests)."""
        self.ids.append(name)
        return f"{name}{len(self.ids)}"

    def log_text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""


@contextlib.contextmanager
def running(argv: list[str], version: str, site: Site, auth: str) -> Iterator[Broker]:
    """A broker with the role's config for `auth`, on the site's files and persistence;
    stopped (its persistence saved) on leaving."""
    conf_dir = Path(tempfile.mkdtemp(prefix=f"conf-{version}-{auth}-", dir=site.root))
    for src, dest in ((site.site_ca, "ca.pem"), (site.cloud_clients_ca, "cloud-clients-ca.pem"),
                      (site.server_cert[0], "server.pem"), (site.server_cert[1], "server.key")):
        shutil.copyfile(src, conf_dir / dest)
    ports = free_ports(2)
    conf = render_role_files(conf_dir, site.data_dir, auth, (ports[0], ports[1]))
    broker = Broker(version, site, ports[0], ports[1], conf_dir / "mosquitto.log")
    with open(conf_dir / "mosquitto.out", "wb") as out:
        proc = subprocess.Popen([*argv, "-c", str(conf)], stdout=out, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL)
    try:
        wait_for(lambda: f"mosquitto version {version} running" in broker.log_text()
                 or proc.poll() is not None, TIMEOUT_S, f"Mosquitto {version} to start; {broker.log}")
        assert proc.poll() is None, (conf_dir / "mosquitto.out").read_text() + broker.log_text()
        yield broker
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


def _trixie_argv() -> list[str]:
    missing = trixie_mosquitto.missing_requirements()
    if missing:
        pytest.skip(f"Debian 13's Mosquitto 2.0.21 is built with debootstrap as root; missing: "
                    f"{', '.join(missing)} (.ci/run installs debootstrap)")
    return trixie_mosquitto.mosquitto_argv(
        trixie_mosquitto.cached_rootfs(trixie_mosquitto.cache_dir()))


def _host_argv() -> list[str]:
    host_mosquitto.require_binary()  # 2.0.11 here (Debian 12)
    return [host_mosquitto.BINARY]


@pytest.fixture(scope="module", params=["2.0.11", "2.0.21"])
def broker(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
           ) -> Iterator[Broker]:
    argv = _host_argv() if request.param == "2.0.11" else _trixie_argv()
    with running(argv, request.param, Site.make(tmp_path_factory.mktemp(f"mosq-{request.param}")),
                 "certificate") as started:
        yield started


class NodeClient:
    """A node on the nodes' listener, with its user name and password."""

    def __init__(self, broker: Broker, client_id: str) -> None:
        from paho.mqtt.client import Client
        from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion

        self.client = Client(CallbackAPIVersion.VERSION2, client_id=client_id,
                             protocol=MQTTProtocolVersion.MQTTv5)
        self.client.username_pw_set(NODE_USER, NODE_PASSWORD)
        self.client.tls_set_context(tls_context(broker.site.site_ca))
        self.client.connect_async("127.0.0.1", broker.nodes_port)
        connect_and_wait(self.client)

    def publish(self, *ks: int) -> None:
        for k in ks:
            self.client.publish(data_topic(SITE, NODE), batch_payload(SITE, NODE, k),
                                qos=1).wait_for_publish(TIMEOUT_S)

    def close(self) -> None:
        close_client(self.client)


def _publish(broker: Broker, *ks: int) -> None:
    node = NodeClient(broker, broker.fresh_id("node"))
    try:
        node.publish(*ks)  # each acknowledged by the broker: queued for the ingest by then
    finally:
        node.close()


def _subscribe_and_leave(cfg: CloudMqtt, journal: Journal) -> None:
    """The real ingest subscribes and stops: its persistent session stays in the broker."""
    ingest = Ingest(cfg, journal, instance="i0")
    ingest.start()
    try:
        assert ingest.wait_subscribed(TIMEOUT_S), ingest.stats.last_error
    finally:
        ingest.stop()


def _come_back(cfg: CloudMqtt, journal: Journal, broker: Broker, last: int) -> list[bytes]:
    """The ingest starts again and a node publishes batch `last`: what the journal holds once
    that batch is in it (batches arrive in the order published, the queued ones first)."""
    ingest = Ingest(cfg, journal, instance="i0")
    ingest.start()
    try:
        assert ingest.wait_subscribed(TIMEOUT_S), ingest.stats.last_error
        _publish(broker, last)
        payload = batch_payload(SITE, NODE, last)

        def through_last() -> list[bytes] | None:
            rows = journal_rows(journal.path)
            return rows if rows and rows[-1] == payload else None
        return wait_for(through_last, TIMEOUT_S, f"batch {last} in the journal")
    finally:
        ingest.stop()


@contextlib.contextmanager
def _journal(folder: Path) -> Iterator[Journal]:
    journal = Journal(journal_path(folder, "i0"), "i0").open()
    try:
        yield journal
    finally:
        journal.close()


def _queued_while_away(broker: Broker, tmp_path: Path, *, certificate: bool = True) -> list[bytes]:
    """Batches 0-2 published while the ingest is away, 3 once it is back: the journal."""
    cfg = broker.cloud_mqtt(broker.fresh_id(INGEST_ID), certificate=certificate)
    with _journal(tmp_path / "journal") as journal:
        _subscribe_and_leave(cfg, journal)
        _publish(broker, 0, 1, 2)
        return _come_back(cfg, journal, broker, 3)


def test_the_ingests_session_keeps_what_nodes_publish_while_it_is_away(
        broker: Broker, tmp_path: Path) -> None:
    assert _queued_while_away(broker, tmp_path) == [batch_payload(SITE, NODE, k) for k in range(4)]


def test_a_node_cannot_connect_on_the_cloud_listener(broker: Broker) -> None:
    # without a certificate: a node's password is never even read there
    refused = connack(broker.cloud_port, broker.site.site_ca, NODE_USER, NODE_PASSWORD)
    assert isinstance(refused, str), refused
    wait_for(lambda: "peer did not return a certificate" in broker.log_text(), TIMEOUT_S,
             "the broker to log the missing client certificate")
    # nor with one the site's CA signed (a node could hold such a certificate)
    refused = connack(broker.cloud_port, broker.site.site_ca, NODE_USER, NODE_PASSWORD,
                       broker.site.node_held_cert)
    assert isinstance(refused, str), refused
    wait_for(lambda: "certificate verify failed" in broker.log_text(), TIMEOUT_S,
             "the broker to log the certificate of another CA")
    # the same node on its own listener, and the processor's certificate on the cloud's
    assert connack(broker.nodes_port, broker.site.site_ca, NODE_USER, NODE_PASSWORD) == 0
    assert connack(broker.cloud_port, broker.site.site_ca, "", "", broker.site.client_cert) == 0


def test_the_clouds_password_is_taken_nowhere(broker: Broker) -> None:
    """One user list serves both listeners: it holds no cloud user, so the cloud's password
    (which the processor still sends) opens neither listener."""
    assert connack(broker.nodes_port, broker.site.site_ca, "cloud", CLOUD_PASSWORD) == 5
    refused = connack(broker.cloud_port, broker.site.site_ca, "cloud", CLOUD_PASSWORD)
    assert isinstance(refused, str), refused


def test_a_node_choosing_the_ingests_client_id_does_not_take_its_session(broker: Broker) -> None:
    from paho.mqtt.packettypes import PacketTypes
    from paho.mqtt.properties import Properties

    ingest_id = broker.fresh_id(INGEST_ID) + "-i0"
    cfg = broker.cloud_mqtt(ingest_id)
    got: list[bytes] = []
    received = threading.Condition()
    events: list[str] = []
    subscribed = threading.Event()

    def on_message(client: Any, userdata: Any, msg: Any) -> None:
        with received:
            got.append(bytes(msg.payload))
            received.notify_all()

    def on_subscribe(client: Any, userdata: Any, mid: int, reasons: Any, props: Any) -> None:
        subscribed.set()

    def on_disconnect(client: Any, userdata: Any, flags: Any, reason: Any, props: Any) -> None:
        events.append(f"disconnected: {reason}")

    def ingest_connects() -> Any:
        client = make_ingest_client(cfg, ingest_id)  # with its client certificate
        client.on_message = on_message
        client.on_disconnect = on_disconnect
        client.on_subscribe = on_subscribe
        props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
        props.SessionExpiryInterval = 3600
        client.connect_async("127.0.0.1", broker.cloud_port, clean_start=False, properties=props)
        connect_and_wait(client)
        return client

    ingest = ingest_connects()
    ingest.subscribe(data_topic(SITE, NODE), qos=1)
    assert subscribed.wait(TIMEOUT_S)
    node = NodeClient(broker, ingest_id)
    try:
        node.publish(10)
        with received:
            assert received.wait_for(lambda: batch_payload(SITE, NODE, 10) in got, TIMEOUT_S)
        assert events == []  # the node's connection did not end the ingest's
        # the broker gave the node its user name as its id: one connection had the ingest's
        assert len(re.findall(rf" as {re.escape(ingest_id)} \(", broker.log_text())) == 1
        # the session is the ingest's still: what is published while it is away waits for it
        close_client(ingest)
        node.publish(11)
        ingest = ingest_connects()
        with received:
            assert received.wait_for(lambda: batch_payload(SITE, NODE, 11) in got, TIMEOUT_S)
    finally:
        node.close()
        close_client(ingest)


@pytest.fixture(scope="module")
def lossy_password_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Broker]:
    with running(_trixie_argv(), "2.0.21", Site.make(tmp_path_factory.mktemp("mosq-password")),
                 "password") as started:
        yield started


def test_the_password_config_loses_the_queue_on_2_0_21(
        lossy_password_broker: Broker, tmp_path: Path) -> None:
    """Why the role refuses 'password' on 2.0.12-2.0.22 (eclipse-mosquitto/mosquitto#2618):
    the same run as above with per_listener_settings true, and batches 0-2 never come."""
    rows = _queued_while_away(lossy_password_broker, tmp_path, certificate=False)
    assert rows == [batch_payload(SITE, NODE, 3)]


def test_a_sites_queue_outlives_the_switch_to_certificate_and_the_upgrade_to_debian_13(
        tmp_path: Path) -> None:
    """The upgrade of an existing site (ansible/README.md) on one persistence folder: what is
    queued for the ingest on Debian 12's broker with 'password' reaches it after the switch
    to 'certificate' (its certificate's name is the same user, its client id the same), and
    what is queued then reaches it from Debian 13's 2.0.21.

    Each batch is queued before a restart: what is published after a restart and before the
    ingest is back is not queued for its shared subscription ($share/<group>/...) on 2.0.11
    or 2.0.21, in either mode (seen here; a plain subscription keeps it with 'certificate');
    the nodes send such batches again (docs/delivery.md)."""
    host, trixie = _host_argv(), _trixie_argv()
    (tmp_path / "site").mkdir()
    site = Site.make(tmp_path / "site")
    with _journal(tmp_path / "journal") as journal:
        with running(host, "2.0.11", site, "password") as broker:
            _subscribe_and_leave(broker.cloud_mqtt(INGEST_ID, certificate=False), journal)
            _publish(broker, 0)
        with running(host, "2.0.11", site, "certificate") as broker:
            _come_back(broker.cloud_mqtt(INGEST_ID), journal, broker, 1)
            _publish(broker, 2)
        with running(trixie, "2.0.21", site, "certificate") as broker:
            rows = _come_back(broker.cloud_mqtt(INGEST_ID), journal, broker, 3)
    assert rows == [batch_payload(SITE, NODE, k) for k in range(4)]
