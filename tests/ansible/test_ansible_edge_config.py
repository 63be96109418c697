"""The edge role's node.toml template, rendered for every example inventory host, is a
config the agent accepts, and says what the inventory says."""

from __future__ import annotations

import re
import subprocess
import tomllib
from pathlib import Path

import pytest

from edge.config import parse_config
from tests.ansible.helpers import ROLES, inventory_hosts, render, run_role_play

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


def _without_resend_keys(text: str) -> str:
    return "\n".join(line for line in text.splitlines() if not line.startswith("ack_timeout"))


def test_the_resend_timing_is_rendered_with_the_agents_defaults() -> None:
    """Said in the file by the role, and the same as the agent's own defaults: the role's
    default for the longest wait is no second opinion."""
    for host, hv in EDGE_HOSTS.items():
        text = render(TEMPLATE, "edge", hv)
        assert "ack_timeout_max_s = 960" in text.splitlines(), host
        ours = parse_config(tomllib.loads(text)).mqtt
        agents = parse_config(tomllib.loads(_without_resend_keys(text))).mqtt
        assert (ours.ack_timeout_s, ours.ack_timeout_max_s) == (
            agents.ack_timeout_s, agents.ack_timeout_max_s), host


def test_a_host_may_set_the_longest_resend_wait() -> None:
    hv = next(iter(EDGE_HOSTS.values()))
    text = render(TEMPLATE, "edge", {**hv, "edge_mqtt_ack_timeout_max_s": 300})
    mqtt = parse_config(tomllib.loads(text)).mqtt
    assert (mqtt.ack_timeout_s, mqtt.resend_wait_max_s) == (120.0, 300.0)
    text = render(TEMPLATE, "edge", {**hv, "edge_mqtt_ack_timeout_s": 30,
                                     "edge_mqtt_ack_timeout_max_s": 30.5})
    mqtt = parse_config(tomllib.loads(text)).mqtt
    assert (mqtt.ack_timeout_s, mqtt.resend_wait_max_s) == (30.0, 30.5)


@pytest.mark.parametrize(("value", "reason"), [
    ('"16m"', "must be float"), ("60", "must be >= mqtt.ack_timeout_s"), ("true", "got bool")])
def test_a_bad_longest_resend_wait_is_caught_by_the_agents_own_validation(
        value: str, reason: str) -> None:
    """What the role's `validate:` (urbanpulse edge check-config) refuses, should a value
    pass the role's own check."""
    from urbanpulse.errors import ConfigError

    hv = next(iter(EDGE_HOSTS.values()))
    text = render(TEMPLATE, "edge", hv).replace("ack_timeout_max_s = 960",
                                                f"ack_timeout_max_s = {value}")
    with pytest.raises(ConfigError, match=rf"mqtt\.ack_timeout_max_s: .*{reason}"):
        parse_config(tomllib.loads(text))


CHECKED_HOSTS: dict[str, tuple[dict[str, object], bool]] = {
    # host: (extra vars, the check fails)
    "defaults": ({}, False),
    "own-wait": ({"edge_mqtt_ack_timeout_max_s": 300}, False),
    "no-backoff": ({"edge_mqtt_ack_timeout_s": 30, "edge_mqtt_ack_timeout_max_s": 30}, False),
    "text-wait": ({"edge_mqtt_ack_timeout_max_s": "16m"}, True),
    "bool-wait": ({"edge_mqtt_ack_timeout_max_s": True}, True),
    "short-wait": ({"edge_mqtt_ack_timeout_max_s": 60}, True),
    "zero-timeout": ({"edge_mqtt_ack_timeout_s": 0}, True),
    # The unit's paths and user (files/urbanpulse-edge.service), with or without a slash.
    "state-slash": ({"edge_state_dir": "/var/lib/urbanpulse/"}, False),
    "state-on-disk": ({"edge_state_dir": "/srv/urbanpulse"}, True),
    "own-venv": ({"edge_venv": "/usr/local/urbanpulse"}, True),
    "own-config": ({"edge_config_dir": "/etc/sensors"}, True),
    "own-user": ({"edge_user": "sensors"}, True),
}


def test_the_roles_checks_refuse_a_bad_resend_timing_naming_the_variables(
        tmp_path: Path) -> None:
    """The role's check tasks, run by ansible-playbook itself on this machine (connection
    local, nothing installed) for hosts that differ only in the resend timing."""
    import json

    sensors = [{"id": "pm-1", "driver": "sds011", "port": "/dev/ttyUSB0"}]
    inventory: dict[str, object] = {"all": {"hosts": {
        host: {"ansible_connection": "local", "edge_site": "hn-check", "edge_node_id": host,
               "edge_sensors": sensors, "vault_edge_mqtt_password": "x" * 24, **extra}
        for host, (extra, _) in CHECKED_HOSTS.items()}}}
    (tmp_path / "inventory.json").write_text(json.dumps(inventory))
    # include_role, so that the role's defaults stay below the inventory's values
    (tmp_path / "check.yml").write_text(json.dumps([{
        "name": "The edge role's checks", "hosts": "all", "gather_facts": False,
        "tasks": [{"ansible.builtin.include_role": {"name": "edge", "tasks_from": "check_vars"}}],
    }]))
    out = run_role_play(tmp_path, tmp_path / "check.yml")
    recap = out.stdout[out.stdout.index("PLAY RECAP"):]
    failed = set(re.findall(r"(?m)^(\S+)\s+: ok=\d+ .*failed=[1-9]", recap))
    assert failed == {host for host, (_, fails) in CHECKED_HOSTS.items() if fails}, out.stdout
    assert "edge_mqtt_ack_timeout_max_s one >= it" in out.stdout
    assert ("state-on-disk: the unit urbanpulse-edge.service runs `/opt/urbanpulse/venv/bin/"
            "urbanpulse edge run --config /etc/urbanpulse/node.toml` as urbanpulse and lets it "
            "write /var/lib/urbanpulse only, but edge_state_dir is /srv/urbanpulse") \
        in " ".join(out.stdout.split())


def test_the_roles_checks_refuse_a_node_with_another_nodes_ids(tmp_path: Path) -> None:
    """`edge.yml --limit <host>` runs no broker play: an inventory entry copied and its
    edge_node_id left unchanged gave two nodes one broker user, and the real broker took one
    of the two passwords only (the other node refused for ever, its outbox growing)."""
    import json

    sensors = [{"id": "pm-1", "driver": "sds011", "port": "/dev/ttyUSB0"}]
    ids = {"ward-a": ("hn-x", "ward-a"), "ward-a-copy": ("hn-x", "ward-a"),
           "ward-b": ("hn-x", "ward-b"), "other-site": ("hn-y", "ward-a")}
    inventory = {"all": {"children": {"edge": {"hosts": {
        host: {"ansible_connection": "local", "edge_site": site, "edge_node_id": node,
               "edge_sensors": sensors, "vault_edge_mqtt_password": "x" * 24}
        for host, (site, node) in ids.items()}}}}}
    (tmp_path / "inventory.json").write_text(json.dumps(inventory))
    (tmp_path / "check.yml").write_text(json.dumps([{
        "name": "The edge role's checks", "hosts": "edge", "gather_facts": False,
        "tasks": [{"ansible.builtin.include_role": {"name": "edge", "tasks_from": "check_vars"}}],
    }]))

    def run(limit: str) -> subprocess.CompletedProcess[str]:
        return run_role_play(tmp_path, tmp_path / "check.yml", "--limit", limit)

    for host in ("ward-b", "other-site"):
        done = run(host)
        assert done.returncode == 0, done.stdout + done.stderr
    done = run("ward-a-copy")
    assert done.returncode != 0, done.stdout
    assert ("ward-a-copy and ward-a have the same edge_site (hn-x) and edge_node_id (ward-a): "
            "each node needs its own (its broker user is <site>.<node>)"
            ) in " ".join(done.stdout.split()), done.stdout
