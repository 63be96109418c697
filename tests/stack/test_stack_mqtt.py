"""The session's real Mosquitto: TLS only, passwords checked, each node confined to its topics."""

from __future__ import annotations

import dataclasses
import os
import socket
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import paho.mqtt.client as paho
import pytest

from urbanpulse.mqtt import MqttConnectError, close_client, connect_and_wait, make_client
from urbanpulse.stack import MqttCredentials, StackInfo
from urbanpulse.stack.mqtt_probe import connect_packet, try_connect

AddNode = Callable[..., MqttCredentials]

pytestmark = pytest.mark.stack


class Collector:
    """A connected client that records what it receives and the acks it gets."""

    def __init__(self, client: paho.Client) -> None:
        self.client = client
        self.messages: list[tuple[str, bytes]] = []
        self.subacks: list[Any] = []
        self.pubacks: dict[int, Any] = {}
        self._cond = threading.Condition()
        client.on_message = self._on_message
        client.on_subscribe = self._on_subscribe
        client.on_publish = self._on_publish

    def _on_message(self, c: paho.Client, u: Any, msg: paho.MQTTMessage) -> None:
        with self._cond:
            self.messages.append((msg.topic, bytes(msg.payload)))
            self._cond.notify_all()

    def _on_subscribe(self, c: paho.Client, u: Any, mid: int, codes: Any, props: Any) -> None:
        with self._cond:
            self.subacks.append(codes)
            self._cond.notify_all()

    def _on_publish(self, c: paho.Client, u: Any, mid: int, code: Any, props: Any) -> None:
        with self._cond:
            self.pubacks[mid] = code
            self._cond.notify_all()

    def wait(self, predicate: Callable[[], bool], timeout_s: float = 5.0) -> None:
        with self._cond:
            if not self._cond.wait_for(predicate, timeout_s):
                raise AssertionError(f"condition not met within {timeout_s} s")

    def subscribe(self, topic: str) -> None:
        before = len(self.subacks)
        self.client.subscribe(topic, qos=1)
        self.wait(lambda: len(self.subacks) > before)

    def publish(self, topic: str, payload: bytes) -> Any:
        """Publish at QoS1 and return the broker's PUBACK reason code."""
        info = self.client.publish(topic, payload, qos=1)
        self.wait(lambda: info.mid in self.pubacks)
        return self.pubacks[info.mid]

    def payloads(self) -> list[bytes]:
        with self._cond:
            return [p for _, p in self.messages]


@pytest.fixture
def connect() -> Iterator[Callable[[str, MqttCredentials], Collector]]:
    clients: list[paho.Client] = []

    def make(client_id: str, creds: MqttCredentials) -> Collector:
        client = make_client(client_id, creds, clean_start=True)
        collector = Collector(client)
        connect_and_wait(client)
        clients.append(client)
        return collector

    yield make
    for client in clients:
        close_client(client)


def _sockets() -> set[str]:
    """The sockets this process holds open, by inode: descriptor numbers are reused."""
    held = set()
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except FileNotFoundError:  # the listing's own descriptor, closed since
            continue
        if target.startswith("socket:"):
            held.add(target)
    return held


def test_close_client_closes_every_socket_the_client_opened(stack: StackInfo) -> None:
    before = _sockets()
    client = make_client("t-close", stack.mqtt("cloud"), clean_start=True)
    Collector(client)  # callbacks bound to an owner: a reference cycle, as in our services
    connect_and_wait(client)
    opened = _sockets() - before
    # the TLS connection and the pair paho's loop_start makes to wake its thread, which
    # disconnect() and loop_stop() leave open (eclipse-paho/paho.mqtt.python#627)
    assert len(opened) == 3
    close_client(client)
    assert not opened & _sockets()
    close_client(client)  # a second close is harmless


def test_tls_connection_with_the_stack_ca(stack: StackInfo, connect: Any) -> None:
    cloud = connect("t-tls", stack.mqtt("cloud"))
    assert cloud.client.is_connected()


@pytest.mark.parametrize("listener", ["nodes", "cloud"])
def test_plaintext_mqtt_is_refused(stack: StackInfo, listener: str) -> None:
    password = stack.mqtt("cloud").password()
    port = stack.mqtt_port if listener == "nodes" else stack.mqtt("cloud").port
    with socket.create_connection((stack.mqtt_host, port), timeout=5) as sock:
        sock.sendall(connect_packet("t-plain", "cloud", password))
        # A TLS listener answers a plaintext CONNECT by closing (or with a TLS alert),
        # never with a CONNACK (0x20).
        try:
            reply = sock.recv(4)
        except ConnectionResetError:
            reply = b""
    assert not reply.startswith(b"\x20")


def test_untrusted_ca_is_refused(stack: StackInfo, tmp_path: Any) -> None:
    from urbanpulse.stack.layout import Layout
    from urbanpulse.stack.tls import ensure_tls

    other = Layout(tmp_path / "other-ca")
    ensure_tls(other)
    creds = dataclasses.replace(stack.mqtt("cloud"), ca_file=other.ca_cert)
    client = make_client("t-otherca", creds, clean_start=True)
    with pytest.raises(MqttConnectError, match="CERTIFICATE_VERIFY_FAILED"):
        connect_and_wait(client)
    with pytest.raises(OSError, match="CERTIFICATE_VERIFY_FAILED"):
        try_connect(stack.mqtt_host, creds.port, other.ca_cert, "cloud", creds.password())


def test_wrong_password_and_anonymous_are_refused(stack: StackInfo, tmp_path: Any) -> None:
    wrong = tmp_path / "wrong.password"
    wrong.write_text("not-the-password\n")
    creds = dataclasses.replace(stack.mqtt("cloud"), password_file=wrong)
    client = make_client("t-wrongpw", creds, clean_start=True)
    before = _sockets()
    with pytest.raises(MqttConnectError, match="refused"):
        connect_and_wait(client)
    assert not _sockets() - before  # a refused client keeps nothing open
    # MQTT 3.1.1 return codes from the raw probe: 5 = not authorized.
    for port in (stack.mqtt_port, creds.port):
        assert try_connect(stack.mqtt_host, port, stack.ca_file, "cloud", "nope") == 5
        assert try_connect(stack.mqtt_host, port, stack.ca_file, "", "") == 5
        assert try_connect(stack.mqtt_host, port, stack.ca_file, "nobody", "x") == 5


def test_node_can_publish_only_under_its_own_topics(
    stack: StackInfo, add_stack_node: AddNode, connect: Any
) -> None:
    # Other tests share this broker: listen only where this test publishes.
    cloud = connect("t-acl-cloud", stack.mqtt("cloud"))
    cloud.subscribe("urbanpulse/v1/hn-acl/#")
    cloud.subscribe("urbanpulse/v1/other/#")
    add_stack_node("hn-acl", "victim")
    node = connect("t-acl-node", add_stack_node("hn-acl", "intruder"))

    forbidden = node.publish("urbanpulse/v1/hn-acl/victim/data", b"forged")
    assert forbidden.is_failure
    assert forbidden.value == 135  # MQTT 5 PUBACK "Not authorized"
    assert node.publish("urbanpulse/v1/other/x/data", b"forged-2").value == 135
    assert node.publish("urbanpulse/v1/hn-acl/intruder/data", b"own").value == 0

    # One publisher's messages are routed in order: once "own" has arrived, the forged
    # ones would have arrived before it if the broker had let them through.
    cloud.wait(lambda: b"own" in cloud.payloads())
    assert cloud.payloads() == [b"own"]


def test_node_cannot_read_other_nodes(
    stack: StackInfo, add_stack_node: AddNode, connect: Any
) -> None:
    cloud = connect("t-read-cloud", stack.mqtt("cloud"))
    cloud.subscribe("urbanpulse/v1/hn-read/#")
    spy = connect("t-read-spy", add_stack_node("hn-read", "spy"))
    # Granted by Mosquitto 2.0, but filtered on delivery (retained messages of other
    # tests' nodes included).
    spy.subscribe("urbanpulse/v1/#")
    other = connect("t-read-other", add_stack_node("hn-read", "other"))

    assert other.publish("urbanpulse/v1/hn-read/other/data", b"secret").value == 0
    assert cloud.publish("urbanpulse/v1/hn-read/other/ack", b"other-ack").value == 0
    cloud.wait(lambda: b"secret" in cloud.payloads() and b"other-ack" in cloud.payloads())
    assert cloud.publish("urbanpulse/v1/hn-read/spy/ack", b"own-ack").value == 0
    spy.wait(lambda: b"own-ack" in spy.payloads())
    assert spy.payloads() == [b"own-ack"]


def test_node_writes_only_its_data_and_status_and_reads_only_its_acks(
    stack: StackInfo, add_stack_node: AddNode, connect: Any
) -> None:
    cloud = connect("t-least-cloud", stack.mqtt("cloud"))
    cloud.subscribe("urbanpulse/v1/hn-least/#")
    node = connect("t-least-node", add_stack_node("hn-least", "n1"))
    node.subscribe("urbanpulse/v1/hn-least/n1/#")
    own = "urbanpulse/v1/hn-least/n1"

    # An ack forged to itself, and topics the contract does not have (which a node could
    # fill with retained messages) are refused: 135, MQTT 5 "Not authorized".
    assert node.publish(f"{own}/ack", b"self-ack").value == 135
    assert node.publish(f"{own}/data/more", b"deeper").value == 135
    assert node.publish(f"{own}/other", b"other-stream").value == 135
    assert node.publish(f"{own}/status", b"status").value == 0
    # A relay speaks for any node of its site: a plain node may write none, not even on
    # its own topic (only a site gateway may: the next test).
    assert node.publish(f"{own}/relay", b"relay").value == 135
    assert node.publish("urbanpulse/v1/hn-least/n2/relay", b"forged-relay").value == 135
    assert node.publish(f"{own}/data", b"data").value == 0
    cloud.wait(lambda: b"data" in cloud.payloads())
    assert cloud.publish(f"{own}/ack", b"ack").value == 0
    node.wait(lambda: b"ack" in node.payloads())
    cloud.wait(lambda: b"ack" in cloud.payloads())
    # The node's own publications were routed before the cloud's ack: they would have
    # reached it first had it been allowed to read them back.
    assert node.payloads() == [b"ack"]
    assert sorted(cloud.payloads()) == [b"ack", b"data", b"status"]


def test_only_a_site_gateway_writes_its_relay_and_the_role_follows_add_node(
    stack: StackInfo, add_stack_node: AddNode, connect: Any
) -> None:
    cloud = connect("t-gw-cloud", stack.mqtt("cloud"))
    cloud.subscribe("urbanpulse/v1/hn-gw/+/relay")
    plain = connect("t-gw-node", add_stack_node("hn-gw", "n1"))
    gateway = connect("t-gw-gateway", add_stack_node("hn-gw", "gw-1", gateway=True))
    own = "urbanpulse/v1/hn-gw/gw-1"
    assert plain.publish("urbanpulse/v1/hn-gw/n1/relay", b"plain-relay").value == 135
    assert gateway.publish(f"{own}/relay", b"relay-1").value == 0
    # its own relay topic only, not another node's, and its other rights are a node's
    assert gateway.publish("urbanpulse/v1/hn-gw/n1/relay", b"forged-relay").value == 135
    assert gateway.publish(f"{own}/ack", b"self-ack").value == 135
    assert not gateway.publish(f"{own}/status", b"status").is_failure  # no subscriber: 16
    cloud.wait(lambda: b"relay-1" in cloud.payloads())
    # Added again without --gateway, connected all along: the right is gone at once (the
    # broker reloaded its ACL), and the session stays.
    add_stack_node("hn-gw", "gw-1")
    assert gateway.publish(f"{own}/relay", b"relay-2").value == 135
    # ... and back; the plain node was never a gateway.
    add_stack_node("hn-gw", "gw-1", gateway=True)
    assert gateway.publish(f"{own}/relay", b"relay-3").value == 0
    assert plain.publish("urbanpulse/v1/hn-gw/n1/relay", b"plain-relay-2").value == 135
    cloud.wait(lambda: b"relay-3" in cloud.payloads())
    assert cloud.payloads() == [b"relay-1", b"relay-3"]
    assert gateway.client.is_connected()


def test_cloud_reads_data_and_writes_only_alerts(
    stack: StackInfo, add_stack_node: AddNode, connect: Any
) -> None:
    cloud = connect("t-cloud-w", stack.mqtt("cloud"))
    cloud.subscribe("urbanpulse/v1/_alerts/#")
    assert cloud.publish("urbanpulse/v1/hn-w/n1/data", b"fake-data").value == 135
    assert cloud.publish("urbanpulse/v1/_alerts/hn-w/aqi", b"alert").value == 0
    cloud.wait(lambda: b"alert" in cloud.payloads())


def test_broker_drops_payloads_larger_than_the_contract_allows(
    stack: StackInfo, add_stack_node: AddNode, connect: Any
) -> None:
    # The contract's largest message is a site gateway's relay (MAX_RELAY_BYTES, 1 MiB), on
    # one broker with the nodes' own messages: the limit is the relay's. A node's message
    # above its own bound (256 KiB) gets through and is the cloud's dead letter.
    from urbanpulse.wire.relay import MAX_RELAY_BYTES

    cloud = connect("t-size-cloud", stack.mqtt("cloud"))
    cloud.subscribe("urbanpulse/v1/hn-size/#")
    node = connect("t-size-node", add_stack_node("hn-size", "gw-1", gateway=True))
    largest = b"a" * MAX_RELAY_BYTES
    assert node.publish("urbanpulse/v1/hn-size/gw-1/relay", largest).value == 0
    # QoS 0, retained: Mosquitto drops it without a word (at QoS 1 its PUBACK 0x95 would
    # make paho drop the link). Without a limit it would be kept, up to 256 MB, for ever.
    node.client.publish("urbanpulse/v1/hn-size/gw-1/status", largest + b"a", qos=0, retain=True)
    assert node.publish("urbanpulse/v1/hn-size/gw-1/status", b"after").value == 0
    cloud.wait(lambda: b"after" in cloud.payloads())
    assert [len(p) for p in cloud.payloads()] == [MAX_RELAY_BYTES, len(b"after")]


def test_shared_subscription_spreads_one_topic_over_cloud_consumers(
    stack: StackInfo, add_stack_node: AddNode, connect: Any
) -> None:
    group = "$share/ingest-test/urbanpulse/v1/hn-share/+/data"
    consumers = [connect(f"t-share-{i}", stack.mqtt("cloud")) for i in range(2)]
    for consumer in consumers:
        consumer.subscribe(group)
        assert consumer.subacks[-1][0].value == 1  # granted QoS 1
    node = connect("t-share-node", add_stack_node("hn-share", "n1"))
    sent = [f"m{i}".encode() for i in range(20)]
    for payload in sent:
        assert node.publish("urbanpulse/v1/hn-share/n1/data", payload).value == 0

    def total() -> int:
        return sum(len(c.payloads()) for c in consumers)

    consumers[0].wait(lambda: total() >= len(sent))
    received = [p for c in consumers for p in c.payloads()]
    assert sorted(received) == sorted(sent)  # each message exactly once across the group
    assert all(c.payloads() for c in consumers)  # and both members got a share


def test_add_node_is_idempotent(stack: StackInfo, add_stack_node: AddNode, connect: Any) -> None:
    first = add_stack_node("hn-idem", "n1")
    password = first.password()
    second = add_stack_node("hn-idem", "n1")
    assert second == first
    assert second.password() == password
    connect("t-idem", second)


def test_persistent_session_keeps_qos1_messages_while_offline(
    stack: StackInfo, add_stack_node: AddNode
) -> None:
    creds = stack.mqtt("cloud")
    client = make_client("t-persist", creds)  # clean_start False, session expiry 7 d
    consumer = Collector(client)
    connect_and_wait(client)
    consumer.subscribe("urbanpulse/v1/hn-persist/+/data")
    close_client(client)

    node_client = make_client("t-persist-node", add_stack_node("hn-persist", "n1"), clean_start=True)
    node = Collector(node_client)
    connect_and_wait(node_client)
    assert node.publish("urbanpulse/v1/hn-persist/n1/data", b"while-offline").value == 0
    close_client(node_client)

    again = make_client("t-persist", creds)
    consumer2 = Collector(again)
    connect_and_wait(again)
    try:
        consumer2.wait(lambda: b"while-offline" in consumer2.payloads())
    finally:
        close_client(again)


def test_connect_to_closed_port_fails_fast(stack: StackInfo) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        closed_port = sock.getsockname()[1]
    creds = dataclasses.replace(stack.mqtt("cloud"), port=closed_port)
    started = time.monotonic()
    with pytest.raises(MqttConnectError, match="cannot connect"):
        connect_and_wait(make_client("t-closed", creds))
    assert time.monotonic() - started < 5


def test_mqtt_311_client(stack: StackInfo, add_stack_node: AddNode, connect: Any) -> None:
    cloud = connect("t-v311-cloud", stack.mqtt("cloud"))
    cloud.subscribe("urbanpulse/v1/hn-v311/n1/status")
    client = make_client("t-v311", add_stack_node("hn-v311", "n1"), protocol=4, clean_start=True)
    node = Collector(client)
    connect_and_wait(client)
    try:
        node.subscribe("urbanpulse/v1/hn-v311/n1/ack")
        assert node.publish("urbanpulse/v1/hn-v311/n1/status", b"online").value == 0
        cloud.wait(lambda: cloud.payloads() == [b"online"])
        assert cloud.publish("urbanpulse/v1/hn-v311/n1/ack", b"ack").value == 0
        node.wait(lambda: node.payloads() == [b"ack"])
    finally:
        close_client(client)


def test_make_client_checks_arguments(stack: StackInfo) -> None:
    from urbanpulse.mqtt import MqttError

    with pytest.raises(MqttError, match="protocol"):
        make_client("x", stack.mqtt("cloud"), protocol=3)
    with pytest.raises(MqttError, match="client id"):
        make_client("", stack.mqtt("cloud"))
