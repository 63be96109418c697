"""Fixtures of the site gateway's tests: two real Mosquitto brokers and a stand-in cloud.

The site broker is the product's, `urbanpulse.stack.site_broker` (docs/gateway.md,
"Security"; what the demo runs and the Ansible role renders in site mode), on the session
stack's CA and its nodes' passwords: the nodes publish there as their own users, and the
gateway reads them as its own user, with the rights a site broker gives it. The cloud broker
is a Mosquitto of the test's own, started here (TLS with a CA of its own, per-user
passwords, an ACL): the gateway's user there may write its `relay` and `status` topics and
read its `ack` topic, as docs/wire-contract.md says, and relays of up to MAX_RELAY_BYTES
pass; a test may stop and start it without touching the session's stack. The test plays the
cloud (TestCloud): it decodes each relay and acknowledges it, as the cloud's ingest does
once it has journaled the relay. Where the session's stack is the cloud instead
(tests/e2e/test_gateway_e2e.py), the site broker is the same product one.
"""

from __future__ import annotations

import os
import pwd
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from urbanpulse.mqtt import close_client, connect_and_wait, make_client
from urbanpulse.stack import MqttCredentials, StackInfo, site_broker
from urbanpulse.stack.files import ensure_secret, write_file
from urbanpulse.stack.layout import Layout
from urbanpulse.stack.mosquitto import BINARY
from urbanpulse.stack.mqtt_probe import CONNACK_ACCEPTED, ProbeFailed, try_connect
from urbanpulse.stack.passwords import password_file_line
from urbanpulse.stack.process import free_ports
from urbanpulse.stack.site_broker import SiteBroker
from urbanpulse.stack.tls import ensure_tls
from urbanpulse.testing import wait_for
from urbanpulse.wire import Reading, ack_topic, decode_batch, decode_status, encode_ack
from urbanpulse.wire.relay import MAX_RELAY_BYTES, decode_relay
from urbanpulse.wire.topics import ROOT, relay_topic, status_topic

CLOUD_USER = "cloud"
GW = "gw-1"


class Broker:
    """A Mosquitto of a test's own on 127.0.0.1: TLS with a CA of its own, a password per
    user, an ACL, relays of up to MAX_RELAY_BYTES; persistent, so that it can be stopped and
    started again keeping its sessions."""

    def __init__(self, home: Path, users: list[str], acl: str, probe_user: str) -> None:
        self.home = home
        self.layout = Layout(home)
        self.probe_user = probe_user
        (self.port,) = free_ports(1)
        self.proc: subprocess.Popen[bytes] | None = None
        home.mkdir(parents=True, exist_ok=True)
        ensure_tls(self.layout)
        passwords = {u: ensure_secret(self.layout.mqtt_password(u)) for u in users}
        broker = home / "broker"
        (broker / "data").mkdir(parents=True, exist_ok=True)
        write_file(broker / "passwd", "".join(password_file_line(u, p) for u, p in passwords.items()))
        write_file(broker / "acl", acl)
        self.conf = broker / "mosquitto.conf"
        self.log = broker / "mosquitto.log"
        write_file(self.conf, f"""\
user {pwd.getpwuid(os.getuid()).pw_name}
per_listener_settings false
allow_anonymous false
password_file {broker / 'passwd'}
acl_file {broker / 'acl'}
listener {self.port} 127.0.0.1
cafile {self.layout.ca_cert}
certfile {self.layout.server_cert}
keyfile {self.layout.server_key}
tls_version tlsv1.2
message_size_limit {MAX_RELAY_BYTES}
max_queued_messages 100000
persistence true
persistence_location {broker / 'data'}/
autosave_interval 1
log_dest file {self.log}
log_type all
""")

    def creds(self, user: str) -> MqttCredentials:
        return MqttCredentials("127.0.0.1", self.port, self.layout.ca_cert, user,
                               self.layout.mqtt_password(user))

    def start(self) -> None:
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen([BINARY, "-c", str(self.conf)], stdout=out,
                                         stderr=subprocess.STDOUT)
        password = self.layout.mqtt_password(self.probe_user).read_text().strip()

        def accepts() -> bool:
            assert self.proc is not None
            assert self.proc.poll() is None, self.log.read_text()
            try:
                return try_connect("127.0.0.1", self.port, self.layout.ca_cert, self.probe_user,
                                   password, timeout_s=1.0) == CONNACK_ACCEPTED
            except ProbeFailed:
                return False

        wait_for(accepts, 15, f"the broker to accept {self.probe_user}", every_s=0.05)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(15)
        self.proc = None


class CloudBroker(Broker):
    """A cloud broker that knows one gateway (`site`.`gateway`) and the cloud."""

    def __init__(self, home: Path, site: str, gateway: str) -> None:
        self.site, self.gateway = site, gateway
        self.gateway_user = f"{site}.{gateway}"
        super().__init__(home, [self.gateway_user, CLOUD_USER], f"""\
user {self.gateway_user}
topic write {relay_topic(site, gateway)}
topic write {status_topic(site, gateway)}
topic read {ack_topic(site, gateway)}

user {CLOUD_USER}
topic read {ROOT}/#
topic write {ROOT}/+/+/ack
""", CLOUD_USER)


class GatewayProcess:
    """`urbanpulse gateway run` in a child process, as systemd would start it."""

    def __init__(self, config: Path, log: Path) -> None:
        self.config, self.log = config, log
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "urbanpulse.cli", "gateway", "run", "--config",
                 str(self.config)], stdout=out, stderr=subprocess.STDOUT, start_new_session=True)

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)

    def stop(self) -> int | None:
        if self.proc is None or self.proc.poll() is not None:
            return None if self.proc is None else self.proc.returncode
        os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            return self.proc.wait(20)
        except subprocess.TimeoutExpired:
            self.kill()
            raise


@dataclass
class SeenRelay:
    batch: str
    size: int
    messages: int
    data: int  # of them, data messages (the rest: statuses)
    nodes: set[str]
    data_nodes: set[str]  # the nodes whose data messages it carries
    at: float = field(default_factory=time.monotonic)  # when it arrived


@dataclass
class TestCloud:
    """The cloud's side of a gateway: every relay decoded and, while `acking`, acknowledged
    on the gateway's ack topic; the readings and statuses it carried kept, per node."""

    broker: CloudBroker
    acking: bool = True
    relays: list[SeenRelay] = field(default_factory=list)
    readings: dict[str, list[Reading]] = field(default_factory=dict)
    statuses: dict[str, list[str]] = field(default_factory=dict)  # node -> states relayed
    gateway_statuses: list[dict[str, Any]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    client: Any = None
    __test__ = False  # not a test class for pytest

    def start(self, client_id: str) -> None:
        site, gw = self.broker.site, self.broker.gateway
        self.client = make_client(client_id, self.broker.creds(CLOUD_USER), clean_start=False)
        self.client.on_message = self._on_message
        subscribed = threading.Event()
        self.client.on_subscribe = lambda *a: subscribed.set()
        connect_and_wait(self.client)
        self.client.subscribe([(relay_topic(site, gw), 1), (status_topic(site, gw), 1)])
        assert subscribed.wait(10), "subscription not acknowledged"

    def _on_message(self, client: Any, userdata: Any, msg: Any) -> None:
        site, gw = self.broker.site, self.broker.gateway
        if msg.topic == status_topic(site, gw):
            with self.lock:
                self.gateway_statuses.append(decode_status(msg.payload))
            return
        relay = decode_relay(msg.payload, site=site, gateway=gw)
        assert relay.rejected == [], relay.rejected
        with self.lock:
            self.relays.append(SeenRelay(relay.batch, len(msg.payload), len(relay.messages),
                                         sum(m.stream == "data" for m in relay.messages),
                                         {m.node for m in relay.messages},
                                         {m.node for m in relay.messages if m.stream == "data"}))
            for m in relay.messages:
                if m.stream == "data":
                    batch = decode_batch(m.payload, site=site, node=m.node)
                    self.readings.setdefault(m.node, []).extend(batch.readings)
                else:
                    self.statuses.setdefault(m.node, []).append(decode_status(m.payload)["state"])
            acking = self.acking
        if acking:  # journaled: acknowledged, as the ingest does
            client.publish(ack_topic(site, gw), encode_ack([relay.batch]), qos=1)

    def seqs(self, node: str, sensor: str = "pm-1") -> set[int]:
        with self.lock:
            return {r.seq for r in self.readings.get(node, []) if r.sensor == sensor}

    def seen_relays(self) -> list[SeenRelay]:
        with self.lock:
            return list(self.relays)

    def states(self, node: str) -> list[str]:
        with self.lock:
            return list(self.statuses.get(node, []))

    def stop(self) -> None:
        if self.client is not None:
            close_client(self.client)


@pytest.fixture
def cloud_side(tmp_path: Path) -> Iterator[Callable[[str, str], tuple[CloudBroker, TestCloud]]]:
    """cloud_side(site, gateway) -> the cloud broker (started) and the test's cloud on it."""
    made: list[tuple[CloudBroker, TestCloud]] = []

    def make(site: str, gateway: str) -> tuple[CloudBroker, TestCloud]:
        broker = CloudBroker(tmp_path / f"cloud-{site}", site, gateway)
        broker.start()
        cloud = TestCloud(broker)
        made.append((broker, cloud))
        cloud.start(f"test-cloud-{site}")
        return broker, cloud

    yield make
    for broker, cloud in made:
        cloud.stop()
        broker.stop()


def start_site_broker(stack: StackInfo, add_stack_node: Callable[..., MqttCredentials],
                      site: str, nodes: list[str]) -> tuple[SiteBroker, subprocess.Popen[bytes]]:
    """The product's site broker of `site`'s gateway GW and those nodes (made users of the
    session stack first, for their passwords), started on a free port."""
    for node in nodes:
        add_stack_node(site, node)
    (port,) = free_ports(1)
    broker = SiteBroker(stack.home, site, GW, tuple(nodes), port)
    return broker, site_broker.start(broker)


@pytest.fixture
def site_side(stack: StackInfo, add_stack_node: Callable[..., MqttCredentials]
              ) -> Iterator[Callable[[str, list[str]], SiteBroker]]:
    """site_side(site, nodes) -> start_site_broker(...)'s broker, stopped after the test."""
    started: list[subprocess.Popen[bytes]] = []

    def make(site: str, nodes: list[str]) -> SiteBroker:
        broker, proc = start_site_broker(stack, add_stack_node, site, nodes)
        started.append(proc)
        return broker

    yield make
    for proc in started:
        site_broker.stop(proc)


def gateway_toml(site: SiteBroker, cloud_creds: MqttCredentials, **settings: Any) -> str:
    """A gateway config: `site` as the site broker, as the gateway's user there; the cloud
    broker as `cloud_creds` (the gateway's user there: a password, and on the session
    stack in certificate mode a client certificate). `settings`: more of [gateway]."""
    site_creds = site.creds(site.gateway_user)
    more = "\n".join(f"{k} = {v!r}" for k, v in settings.items())
    cert = "" if cloud_creds.cert_file is None else (
        f'cert_file = "{cloud_creds.cert_file}"\nkey_file = "{cloud_creds.key_file}"\n')
    return f"""
[gateway]
site = "{site.site}"
id = "{site.gateway}"
heartbeat_s = 1.0
{more}

[site_mqtt]
host = "{site_creds.host}"
port = {site_creds.port}
ca_file = "{site_creds.ca_file}"
password_file = "{site_creds.password_file}"
keepalive_s = 5

[cloud_mqtt]
host = "{cloud_creds.host}"
port = {cloud_creds.port}
ca_file = "{cloud_creds.ca_file}"
password_file = "{cloud_creds.password_file}"
keepalive_s = 5
{cert}"""
