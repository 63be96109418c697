"""A node cannot use any client id but its own on the session's real Mosquitto.

Mosquitto knows a session by its client id only. Before the nodes' listener forced each
node's client id to its user name, a node (its own valid password, a stolen SD card) that
connected with the ingest's id and clean_start=False was handed the ingest's session and
kicked the ingest off; the queued data it may not read was dropped (2.0.11 checks the read
ACL when it delivers), so the ingest came back to its session and found it empty.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from typing import Any

import paho.mqtt.client as paho
import pytest

from urbanpulse.mqtt import MqttConnectError, close_client, connect_and_wait, make_client
from urbanpulse.stack import MqttCredentials, StackInfo
from urbanpulse.stack.mqtt_probe import try_connect
from urbanpulse.wire.topics import ack_topic, data_topic

AddNode = Callable[[str, str], MqttCredentials]

pytestmark = pytest.mark.stack

SITE = "hn-cid"
DEADLINE_S = 5.0


class Client:
    """A connected paho client that records its messages, CONNACKs and disconnections."""

    def __init__(self, client_id: str, creds: MqttCredentials, *, clean_start: bool) -> None:
        self.client = make_client(client_id, creds, clean_start=clean_start)
        self.messages: list[bytes] = []
        self.session_present: list[bool] = []
        self.disconnects = 0
        self._cond = threading.Condition()
        self._subscribed = 0
        self.client.on_message = self._on_message
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = self._on_disconnect
        self.client.on_subscribe = self._on_subscribe

    def _on_message(self, c: paho.Client, u: Any, msg: paho.MQTTMessage) -> None:
        with self._cond:
            self.messages.append(bytes(msg.payload))
            self._cond.notify_all()

    def _on_connect(self, c: paho.Client, u: Any, flags: Any, reason: Any, props: Any) -> None:
        with self._cond:
            self.session_present.append(bool(flags.session_present))
            self._cond.notify_all()

    def _on_disconnect(self, c: paho.Client, u: Any, flags: Any, reason: Any, props: Any) -> None:
        with self._cond:
            self.disconnects += 1
            self._cond.notify_all()

    def _on_subscribe(self, c: paho.Client, u: Any, mid: int, codes: Any, props: Any) -> None:
        with self._cond:
            self._subscribed += 1
            self._cond.notify_all()

    def wait(self, predicate: Callable[[], bool], what: str) -> None:
        with self._cond:
            assert self._cond.wait_for(predicate, DEADLINE_S), f"{what} within {DEADLINE_S} s"

    def connect(self) -> Client:
        connect_and_wait(self.client)
        return self

    def subscribe(self, topic: str) -> None:
        before = self._subscribed
        self.client.subscribe(topic, qos=1)
        self.wait(lambda: self._subscribed > before, "SUBACK")

    def publish(self, topic: str, payload: bytes) -> None:
        self.client.publish(topic, payload, qos=1).wait_for_publish(DEADLINE_S)

    def close(self) -> None:
        close_client(self.client)


@pytest.fixture
def clients() -> Iterator[Callable[..., Client]]:
    made: list[Client] = []

    def make(client_id: str, creds: MqttCredentials, *, clean_start: bool = True) -> Client:
        client = Client(client_id, creds, clean_start=clean_start)
        made.append(client)
        return client

    yield make
    for client in made:
        client.close()


def test_a_node_with_the_ingests_id_neither_takes_nor_empties_its_session(
        stack: StackInfo, add_stack_node: AddNode, clients: Callable[..., Client]) -> None:
    node_a, node_b = add_stack_node(SITE, "a1"), add_stack_node(SITE, "b1")
    ingest_id = "urbanpulse-ingest-t-cid-1"
    ingest = clients(ingest_id, stack.mqtt("cloud"), clean_start=False).connect()
    ingest.subscribe(f"$share/t-cid-1/urbanpulse/v1/{SITE}/+/data")
    ingest.close()
    publisher = clients("t-cid-pub-a1", node_a).connect()
    queued = [f"queued-{i}".encode() for i in range(5)]
    for payload in queued:
        publisher.publish(data_topic(SITE, "a1"), payload)

    impostor = clients(ingest_id, node_b, clean_start=False).connect()
    during = b"while-the-impostor-is-connected"
    publisher.publish(data_topic(SITE, "a1"), during)
    impostor.close()

    back = clients(ingest_id, stack.mqtt("cloud"), clean_start=False).connect()
    back.wait(lambda: len(back.messages) >= len(queued) + 1, "every queued message delivered")
    assert back.session_present == [True]
    assert sorted(back.messages) == sorted([*queued, during])
    assert impostor.messages == []
    assert impostor.session_present == [False]  # a session of its own, not the ingest's


def test_a_node_with_the_ingests_id_does_not_kick_the_ingest(
        stack: StackInfo, add_stack_node: AddNode, clients: Callable[..., Client]) -> None:
    node_a, node_b = add_stack_node(SITE, "a2"), add_stack_node(SITE, "b2")
    ingest_id = "urbanpulse-ingest-t-cid-2"
    ingest = clients(ingest_id, stack.mqtt("cloud"), clean_start=False).connect()
    ingest.subscribe(f"urbanpulse/v1/{SITE}/a2/data")
    clients(ingest_id, node_b, clean_start=False).connect()
    # The broker kicks the older connection before it sends the newer one its CONNACK:
    # a message published now reaches the ingest only on the connection it had.
    clients("t-cid-pub-a2", node_a).connect().publish(data_topic(SITE, "a2"), b"after")
    ingest.wait(lambda: b"after" in ingest.messages or ingest.disconnects > 0, "delivery")
    assert ingest.disconnects == 0
    assert ingest.messages == [b"after"]


def test_a_node_cannot_take_another_nodes_session(
        stack: StackInfo, add_stack_node: AddNode, clients: Callable[..., Client]) -> None:
    node_a, node_b = add_stack_node(SITE, "a3"), add_stack_node(SITE, "b3")
    victim = clients(node_a.username, node_a, clean_start=False).connect()
    victim.subscribe(ack_topic(SITE, "a3"))
    clients(node_a.username, node_b, clean_start=False).connect()
    clients("t-cid-cloud-3", stack.mqtt("cloud")).connect().publish(ack_topic(SITE, "a3"), b"ack")
    victim.wait(lambda: b"ack" in victim.messages or victim.disconnects > 0, "the ack")
    assert victim.disconnects == 0
    assert victim.messages == [b"ack"]


def test_node_and_cloud_credentials_each_work_on_their_own_listener_only(
        stack: StackInfo, add_stack_node: AddNode) -> None:
    node = add_stack_node(SITE, "a4")
    cloud = stack.mqtt("cloud")
    assert node.port != cloud.port
    assert try_connect(node.host, node.port, node.ca_file, node.username, node.password()) == 0
    assert try_connect(cloud.host, cloud.port, cloud.ca_file, "cloud", cloud.password()) == 0
    # 5: not authorized (each listener has its own password file)
    assert try_connect(cloud.host, cloud.port, cloud.ca_file, node.username, node.password()) == 5
    assert try_connect(node.host, node.port, node.ca_file, "cloud", cloud.password()) == 5
    with pytest.raises(MqttConnectError, match="Not authorized"):
        connect_and_wait(make_client("t-cid-4", MqttCredentials(
            cloud.host, cloud.port, cloud.ca_file, node.username, node.password_file)))


def test_the_cloud_config_takes_no_client_id_a_node_could_have() -> None:
    from cloud.config import CLOUD_MQTT_PORT, parse_cloud_config
    from urbanpulse.errors import ConfigError

    def mqtt(**values: Any) -> Any:
        return parse_cloud_config({"mqtt": {"password_file": "p", "tls": False, **values},
                                   "influx": {"password_file": "p"}}).mqtt

    assert mqtt().client_id == "urbanpulse-ingest"
    assert mqtt().port == CLOUD_MQTT_PORT == 8884  # the cloud's listener, not the nodes'
    assert mqtt(client_id="ingest_2-b").client_id == "ingest_2-b"
    for bad in ("hn-a.aq-01", "", "a b", "x" * 65, "urbanpulse/ingest"):
        with pytest.raises(ConfigError, match=r"^mqtt\.client_id: .*no '\.'"):
            mqtt(client_id=bad)


def test_two_clients_of_one_node_cannot_both_stay_connected(
        stack: StackInfo, add_stack_node: AddNode, clients: Callable[..., Client]) -> None:
    """Whatever ids they send, both are `<site>.<node>`: the second ends the first. So one
    node is one client (the demo never runs the lightweight publisher for a live node)."""
    node = add_stack_node(SITE, "a5")
    agent = clients("edge-hn-cid.a5", node, clean_start=False).connect()
    clients("demo-city.hn-cid.a5", node).connect()
    agent.wait(lambda: agent.disconnects > 0, "the first client's disconnection")
    assert agent.disconnects >= 1
