"""The site broker `urbanpulse.stack.site_broker` starts (the demo's site behind a gateway,
docs/demo.md), run for real on the session stack's TLS files and node passwords: each node
writes only its own data and status and reads only its own ack, the gateway reads the
site's data and status and writes their acks, nothing else, and a user that is not the
site's is refused."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from urbanpulse.mqtt import MqttConnectError, close_client, connect_and_wait, make_client
from urbanpulse.stack import MqttCredentials, StackError, StackInfo, site_broker
from urbanpulse.stack.process import free_ports
from urbanpulse.stack.site_broker import SiteBroker
from urbanpulse.testing import wait_for
from urbanpulse.wire.topics import ROOT, ack_topic, data_topic, relay_topic, status_topic

pytestmark = pytest.mark.stack

SITE = "hn-sitebroker"


class Seen:
    """A client of the site broker and the (topic, payload) pairs it received."""

    def __init__(self, creds: MqttCredentials, subscribe: list[str]) -> None:
        self.messages: list[tuple[str, bytes]] = []
        self._lock = threading.Lock()
        self.client = make_client(creds.username, creds, clean_start=True)
        self.client.on_message = self._message
        subscribed = threading.Event()
        self.client.on_subscribe = lambda *a: subscribed.set()
        connect_and_wait(self.client)
        if subscribe:
            self.client.subscribe([(t, 1) for t in subscribe])
            assert subscribed.wait(10)

    def _message(self, client: Any, userdata: Any, msg: Any) -> None:
        with self._lock:
            self.messages.append((msg.topic, msg.payload))

    def got(self) -> list[tuple[str, bytes]]:
        with self._lock:
            return list(self.messages)

    def publish(self, topic: str, payload: bytes) -> None:
        self.client.publish(topic, payload, qos=1).wait_for_publish(10)

    def close(self) -> None:
        close_client(self.client)


@pytest.fixture
def broker(stack: StackInfo, add_stack_node: Callable[..., MqttCredentials]
           ) -> Iterator[SiteBroker]:
    for node in ("n1", "n2"):
        add_stack_node(SITE, node)
    add_stack_node("hn-other", "n1")
    (port,) = free_ports(1)
    made = SiteBroker(stack.home, SITE, "gw-1", ("n1", "n2"), port)
    proc = site_broker.start(made)
    try:
        yield made
    finally:
        site_broker.stop(proc)
        assert proc.returncode == 0, made.log.read_text()[-2000:]


def test_each_node_writes_its_own_topics_and_the_gateway_reads_and_acks_them(
        broker: SiteBroker) -> None:
    gateway = Seen(broker.creds(broker.gateway_user),
                   [f"{ROOT}/{SITE}/+/{stream}" for stream in ("data", "status", "relay", "ack")])
    n1 = Seen(broker.creds(f"{SITE}.n1"), [ack_topic(SITE, "n1"), ack_topic(SITE, "n2")])
    n2 = Seen(broker.creds(f"{SITE}.n2"), [])
    try:
        # n1 forges n2's data, writes a relay and an ack, then its own data and status (the
        # last one: what it published before has been delivered or dropped by then).
        n1.publish(data_topic(SITE, "n2"), b"forged")
        n1.publish(relay_topic(SITE, "n1"), b"relay")
        n1.publish(ack_topic(SITE, "n2"), b"forged ack")
        n1.publish(data_topic(SITE, "n1"), b"data")
        n1.publish(status_topic(SITE, "n1"), b"status")
        wait_for(lambda: (status_topic(SITE, "n1"), b"status") in gateway.got(), 10,
                 "n1's status at the gateway")
        assert gateway.got() == [(data_topic(SITE, "n1"), b"data"),
                                 (status_topic(SITE, "n1"), b"status")]
        # The gateway acks both nodes; n1 reads its own ack only, never n2's.
        gateway.publish(ack_topic(SITE, "n2"), b"for n2")
        gateway.publish(status_topic(SITE, "n1"), b"gateway's status")  # not the gateway's to write
        gateway.publish(ack_topic(SITE, "n1"), b"for n1")
        wait_for(lambda: n1.got(), 10, "n1's ack")
        assert n1.got() == [(ack_topic(SITE, "n1"), b"for n1")]
        assert (status_topic(SITE, "n1"), b"gateway's status") not in gateway.got()
    finally:
        for client in (gateway, n1, n2):
            client.close()


def test_a_user_of_another_site_is_refused(stack: StackInfo, broker: SiteBroker) -> None:
    other = broker.creds(f"{SITE}.n1")
    stranger = MqttCredentials(other.host, other.port, other.ca_file, "hn-other.n1",
                               stack.mqtt("hn-other.n1").password_file)
    client = make_client("hn-other.n1", stranger, clean_start=True)
    with pytest.raises(MqttConnectError):
        connect_and_wait(client)
    with pytest.raises(StackError, match="no user of the site broker"):
        broker.creds("hn-other.n1")


def test_a_node_without_a_stack_user_is_named(stack: StackInfo, tmp_path: Path) -> None:
    (port,) = free_ports(1)
    lonely = SiteBroker(stack.home, "hn-sitebroker-new", "gw-1", ("never-added",), port)
    with pytest.raises(StackError, match="add-node --site hn-sitebroker-new --node never-added"):
        site_broker.write_site_broker(lonely)


def _acl_blocks(text: str) -> dict[str, list[str]]:
    """An ACL file -> each user's rules, in order."""
    blocks: dict[str, list[str]] = {}
    rules: list[str] = []
    for line in text.splitlines():
        if line.startswith("user "):
            rules = blocks.setdefault(line.split(" ", 1)[1], [])
        elif line.startswith("topic "):
            rules.append(line)
    return blocks


def test_the_config_and_acl_are_the_ansible_roles_site_mode(tmp_path: Path) -> None:
    """The same settings and rules as the mosquitto role in site mode (what the site_gateway
    role installs), for the example inventory's gateway site: paths aside, the local broker
    runs as the invoking user and the service has a pidfile. As the stack's own config is
    compared in tests/ansible/test_ansible_playbooks.py."""
    from tests.ansible.helpers import ROLES, render
    from tests.ansible.test_ansible_playbooks import _mosquitto_settings
    from tests.ansible.test_ansible_site_gateway import EDGE, _gateway, _site_context

    _, gw = _gateway()
    site = gw["edge_site"]
    context = _site_context(site)
    nodes = tuple(EDGE[h]["edge_node_id"] for h in context["mosquitto_node_hosts"])
    ours = SiteBroker(tmp_path, site, gw["edge_node_id"], nodes, 8883)
    templates = ROLES / "mosquitto" / "templates"
    role = render(templates / "mosquitto.conf.j2", "mosquitto", context)
    assert [s for s in _mosquitto_settings(role) if s[0] != "pid_file"] == [
        s for s in _mosquitto_settings(site_broker.render_site_config(ours)) if s[0] != "user"]
    role_acl = render(templates / "acl-nodes.j2", "mosquitto", context)
    assert _acl_blocks(site_broker.render_site_acl(site, nodes, ours.gateway_user)) == \
        _acl_blocks(role_acl)
    assert len(_acl_blocks(role_acl)) == len(nodes) + 1


def test_a_bind_other_than_the_loopback_is_refused(tmp_path: Path) -> None:
    """The stack's server certificate names 127.0.0.1 and localhost only: on another
    address no node could verify it (and the broker's own readiness check fails after its
    timeout), so it is refused at once, naming the setting."""
    for bind in ("0.0.0.0", "192.0.2.1", "localhost"):
        with pytest.raises(StackError, match=f"bind: .*127.0.0.1 only.*{bind}"):
            SiteBroker(tmp_path, SITE, "gw-1", ("n1",), 8883, bind=bind)


def test_its_secrets_are_the_owners_alone(broker: SiteBroker) -> None:
    """The password file (the nodes' and the gateway's hashes), the gateway's password, the
    ACL and config, and the persistence directory (queued messages): 0600 files in 0700
    directories, whatever the umask."""
    for path in (broker.passwd, broker.acl, broker.conf, broker.gateway_password_file):
        assert path.stat().st_mode & 0o777 == 0o600, path
    for path in (broker.dir, broker.dir.parent, broker.data, broker.gateway_password_file.parent):
        assert path.stat().st_mode & 0o777 == 0o700, path
