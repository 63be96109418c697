"""What the gateway subscribes on each broker and which node messages it relays, on its
callbacks with a recording stand-in for paho's client (the brokers themselves are in
test_gateway_relay.py)."""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

from paho.mqtt.subscribeoptions import SubscribeOptions

from edge.gateway.config import parse_config
from edge.gateway.service import Gateway

SAMPLE = Path(__file__).parents[3] / "edge" / "gateway" / "sample.toml"


class Recorder:
    def __init__(self) -> None:
        self.subscribed: list[Any] = []

    def subscribe(self, topic: Any, qos: int = 0) -> None:
        self.subscribed.append((topic, qos))


class Accepted:
    is_failure = False


def gateway() -> Gateway:
    config = parse_config(tomllib.loads(SAMPLE.read_text(encoding="utf-8")))
    return Gateway(config, Recorder, Recorder)  # type: ignore[arg-type]


def test_it_subscribes_its_sites_node_data_and_status_only_and_its_own_ack() -> None:
    g = gateway()
    site, cloud = Recorder(), Recorder()
    g._site_connected(site, None, None, Accepted(), None)  # type: ignore[arg-type]
    g._cloud_connected(cloud, None, None, Accepted(), None)  # type: ignore[arg-type]
    ((filters, _),) = site.subscribed
    assert [f for f, _ in filters] == ["urbanpulse/v1/hn-bachmai/+/data",
                                       "urbanpulse/v1/hn-bachmai/+/status"]
    for _, options in filters:
        # QoS 1; no retained status, ever: only what the nodes publish live
        assert options.QoS == 1
        assert options.retainHandling == SubscribeOptions.RETAIN_DO_NOT_SEND
    # on the cloud broker: its own acks, nothing of the nodes' (nor its own relay topic)
    assert cloud.subscribed == [("urbanpulse/v1/hn-bachmai/gw-1/ack", 1)]


def test_only_the_sites_node_data_and_status_are_relayed() -> None:
    g = gateway()
    for topic in ("urbanpulse/v1/hn-bachmai/gw-1/status",  # its own id: not a node's
                  "urbanpulse/v1/hn-other/ward-a/data",  # another site
                  "urbanpulse/v1/hn-bachmai/ward-a/ack",
                  "urbanpulse/v1/hn-bachmai/Ward A/data"):  # no topic of the contract
        g._node_message(topic, b"{}")
    assert g.ignored == 4
    assert g.relayer.waiting_messages == 0
    g._node_message("urbanpulse/v1/hn-bachmai/ward-a/data", b'{"batch":"ab.1"}')
    g._node_message("urbanpulse/v1/hn-bachmai/ward-a/status", b'{"state":"offline"}')
    assert g.relayer.waiting_messages == 2
    assert g.ignored == 4
