"""The edge role's node.toml template, rendered for every example inventory host, is a
config the agent accepts, and says what the inventory says."""

from __future__ import annotations

import tomllib

import pytest

from edge.config import parse_config
from tests.ansible.helpers import ROLES, inventory_hosts, render

TEMPLATE = ROLES / "edge" / "templates" / "node.toml.j2"
EDGE_HOSTS = inventory_hosts("edge")


def test_the_example_inventory_has_edge_nodes_on_several_sites() -> None:
    assert len(EDGE_HOSTS) >= 4
    assert len({v["edge_site"] for v in EDGE_HOSTS.values()}) >= 2


@pytest.mark.parametrize("host", sorted(EDGE_HOSTS))
def test_rendered_node_config_parses_and_matches_the_inventory(host: str) -> None:
    hv = EDGE_HOSTS[host]
    text = render(TEMPLATE, "edge", hv)
    config = parse_config(tomllib.loads(text))
    assert config.node.id == hv["edge_node_id"]
    assert config.node.site == hv["edge_site"]
    assert config.node.location == hv["edge_location"]
    assert str(config.node.state_dir) == "/var/lib/urbanpulse"
    assert config.mqtt.host == hv["urbanpulse_mqtt_host"]
    assert config.mqtt.port == hv["urbanpulse_mqtt_port"]
    assert config.mqtt.tls is True
    assert config.mqtt.username == f"{hv['edge_site']}.{hv['edge_node_id']}"
    assert str(config.mqtt.password_file) == "/etc/urbanpulse/mqtt.password"
    assert str(config.mqtt.ca_file) == "/etc/urbanpulse/ca.pem"
    assert config.gpio.backend == hv.get("edge_gpio_backend", "auto")
    # Said in the file, not left to the agent's default: a Pi has no RTC.
    assert 'clock_check = "kernel"' in text.splitlines()
    assert config.clock_check == "kernel"
    assert [(s.id, s.driver) for s in config.sensors] == [
        (s["id"], s["driver"]) for s in hv["edge_sensors"]
    ]
    if "edge_outbox" in hv:
        assert config.outbox.max_age_s == 86400 * hv["edge_outbox"]["max_age_days"]


def test_strings_with_quotes_backslashes_and_vietnamese_survive() -> None:
    hv = next(iter(EDGE_HOSTS.values()))
    location = 'Bệnh viện "Bạch Mai", tầng 3 \\ khu A'
    text = render(TEMPLATE, "edge", {**hv, "edge_location": location})
    assert parse_config(tomllib.loads(text)).node.location == location


def test_a_host_may_turn_the_clock_check_off() -> None:
    hv = next(iter(EDGE_HOSTS.values()))
    text = render(TEMPLATE, "edge", {**hv, "edge_clock_check": "off"})
    assert parse_config(tomllib.loads(text)).clock_check == "off"


def test_a_bad_sensor_parameter_is_caught_by_the_agents_own_validation() -> None:
    from urbanpulse.errors import ConfigError

    hv = EDGE_HOSTS["hoankiem-aq-01"]
    sensors = [{**hv["edge_sensors"][0], "mode": "sometimes"}]
    text = render(TEMPLATE, "edge", {**hv, "edge_sensors": sensors})
    with pytest.raises(ConfigError, match=r"sensors\[0\]\.mode"):
        parse_config(tomllib.loads(text))
