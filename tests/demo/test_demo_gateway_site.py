"""Which of the demo's live nodes go behind its site gateway, and the gateway config it
writes, taken by the gateway's own validation (no stack: the whole chain runs in
tests/e2e/test_demo.py)."""

from __future__ import annotations

import tomllib
from pathlib import Path

from edge.gateway.config import parse_config
from urbanpulse.demo.gateway_site import GATEWAY_ID, choose_site, describe, gateway_toml
from urbanpulse.demo.live import choose_live
from urbanpulse.simulate import City
from urbanpulse.stack import MqttCredentials


def test_the_live_hospitals_nodes_go_behind_the_gateway() -> None:
    live = choose_live(City.load())
    chosen = choose_site(live)
    assert chosen is not None
    site, nodes = chosen
    assert (site, [n.node for n in nodes]) == ("bach-mai", ["ward-resp", "er-gate"])
    assert choose_site([n for n in live if n.site != "bach-mai"]) is None


def test_its_config_passes_the_gateways_validation() -> None:
    site = MqttCredentials("127.0.0.1", 40001, Path("/h/tls/ca.pem"), f"bach-mai.{GATEWAY_ID}",
                           Path("/h/credentials/site-mqtt/bach-mai.gw-1.password"))
    cloud = MqttCredentials("127.0.0.1", 8883, Path("/h/tls/ca.pem"), f"bach-mai.{GATEWAY_ID}",
                            Path("/h/credentials/mqtt/bach-mai.gw-1.password"))
    config = parse_config(tomllib.loads(gateway_toml("bach-mai", site, cloud)))
    assert (config.site, config.id) == ("bach-mai", GATEWAY_ID)
    assert (config.site_mqtt.port, config.cloud_mqtt.port) == (40001, 8883)
    assert (config.site_mqtt.tls, config.cloud_mqtt.tls) == (True, True)
    assert config.site_mqtt.password_file == site.password_file


def test_its_status_in_one_line() -> None:
    counters = {"relays_sent": 7, "relays_acked": 6, "relays_in_flight": 1,
                "messages_relayed": 12, "node_acks": 4, "relays_expired": 0, "refused": 2}
    status = {"state": "online", "health": {
        "gateway": counters, "site_mqtt": {"subscribed": True}, "cloud_mqtt": {"subscribed": False}}}
    assert describe(status) == (
        "online (site broker subscribed, cloud broker down); relays 7 sent, 6 acknowledged by "
        "the cloud, 1 in flight; 12 node messages relayed, 4 node batches acknowledged; 2 refused")
    assert describe({"state": "offline"}) == "offline"  # a will: no health
    assert describe(None) == "no status yet"
