"""The playbooks and the example inventory load in Ansible itself; the processor's and the
broker's templates produce what the processor and the local stack expect."""

from __future__ import annotations

import os
import subprocess
import tomllib
from pathlib import Path

import pytest

from cloud.config import parse_cloud_config
from tests.ansible.helpers import ANSIBLE, INVENTORY, ROLES, inventory_hosts, render
from tests.ansible.helpers import ansible_tool as _ansible_tool
from urbanpulse.stack.mosquitto import render_acl, render_cloud_acl

PLAYBOOKS = ["site.yml", "edge.yml", "cloud.yml", "gateway.yml"]


@pytest.mark.parametrize("playbook", PLAYBOOKS)
def test_playbook_passes_ansibles_syntax_check(playbook: str) -> None:
    out = subprocess.run(
        [_ansible_tool("ansible-playbook"), "-i", str(INVENTORY), "--syntax-check", playbook],
        cwd=ANSIBLE, capture_output=True, text=True, timeout=120, check=False,
        env={**os.environ, "ANSIBLE_CONFIG": str(ANSIBLE / "ansible.cfg")},
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert "WARNING" not in out.stderr, out.stderr


def test_ansible_sees_the_inventorys_groups_and_hosts() -> None:
    import json

    out = subprocess.run(
        [_ansible_tool("ansible-inventory"), "-i", str(INVENTORY), "--list"],
        cwd=ANSIBLE, capture_output=True, text=True, timeout=120, check=True,
    )
    inv = json.loads(out.stdout)
    for group in ("broker", "influxdb", "processor", "grafana"):
        assert len(inv[group]["hosts"]) >= 1, group
    hostvars = inv["_meta"]["hostvars"]
    edge_hosts = inventory_hosts("edge")
    for host, ours in edge_hosts.items():
        theirs = hostvars[host]
        for key in ("edge_site", "edge_node_id", "edge_sensors", "urbanpulse_mqtt_host"):
            assert theirs[key] == ours[key], (host, key)


def test_rendered_cloud_config_parses_and_matches_the_inventory() -> None:
    for host, hv in inventory_hosts("processor").items():
        text = render(ROLES / "processor" / "templates" / "cloud.toml.j2", "processor", hv)
        cfg = parse_cloud_config(tomllib.loads(text))
        assert cfg.mqtt.host == hv["urbanpulse_mqtt_host"], host
        assert cfg.mqtt.port == hv["urbanpulse_mqtt_cloud_port"] != hv["urbanpulse_mqtt_port"]
        assert cfg.mqtt.tls is True
        assert str(cfg.mqtt.ca_file) == "/etc/urbanpulse/ca.pem"
        assert cfg.influx.url == hv["urbanpulse_influx_url"]
        assert cfg.influx.username == "writer"
        assert str(cfg.state_dir) == "/var/lib/urbanpulse-cloud"
        assert cfg.flow.epoch_interval_s == 30.0  # a city's, not the processor's 2 s
        assert (cfg.retention.raw, cfg.retention.agg_1m, cfg.retention.agg_1h) == (
            "30d", "400d", "INF")


def _acl_rules(text: str) -> list[str]:
    return [line for line in text.splitlines() if line and not line.startswith("#")]


def test_broker_acls_from_the_inventory_are_the_stacks_acls_for_the_same_nodes() -> None:
    edge, gateways = inventory_hosts("edge"), inventory_hosts("gateway")
    assert gateways, "the example inventory shows a site gateway"
    groups = {"edge": sorted(edge), "gateway": sorted(gateways)}
    hostvars = {**edge, **gateways}
    broker_vars = {**next(iter(inventory_hosts("broker").values())), "groups": groups,
                   "hostvars": hostvars, "mosquitto_node_hosts": sorted(hostvars)}
    nodes = render(ROLES / "mosquitto" / "templates" / "acl-nodes.j2", "mosquitto", broker_vars)
    cloud = render(ROLES / "mosquitto" / "templates" / "acl-cloud.j2", "mosquitto", broker_vars)
    users = [f"{v['edge_site']}.{v['edge_node_id']}" for v in hostvars.values()]
    relay_users = {f"{v['edge_site']}.{v['edge_node_id']}" for v in gateways.values()}
    assert _acl_rules(nodes) == _acl_rules(render_acl(users, relay_users))
    assert _acl_rules(cloud) == _acl_rules(render_cloud_acl())
    # the gateways' relays, and no other
    assert [r for r in _acl_rules(nodes) if r.endswith("/relay")] == sorted(
        f"topic write urbanpulse/v1/{u.replace('.', '/')}/relay" for u in relay_users)


# Settings whose value names a host path, user or address: they differ by design.
_WHERE = {"user", "listener", "cafile", "certfile", "keyfile", "password_file", "acl_file",
          "persistence_location", "log_dest", "pid_file"}


def _mosquitto_settings(text: str) -> list[tuple[str, str]]:
    pairs = []
    for line in text.splitlines():
        if line.strip() and not line.startswith("#"):
            key, _, value = line.partition(" ")
            pairs.append((key, "" if key in _WHERE else value))
    return sorted(pairs)


def test_broker_config_has_the_local_stacks_settings(tmp_path: Path) -> None:
    from urbanpulse.stack.config import StackConfig
    from urbanpulse.stack.layout import Layout
    from urbanpulse.stack.mosquitto import render_config

    broker_vars = next(iter(inventory_hosts("broker").values()))
    ours = render(ROLES / "mosquitto" / "templates" / "mosquitto.conf.j2", "mosquitto", broker_vars)
    stack = render_config(StackConfig(home=tmp_path, mqtt_cloud_port=8884), Layout(tmp_path))
    settings = [k for k, _ in _mosquitto_settings(ours)]
    assert {"listener", "password_file", "acl_file", "use_username_as_clientid"} <= set(settings)
    assert settings.count("listener") == 2
    stack_settings = _mosquitto_settings(stack)
    # The stack runs as the invoking user; the service drops to `mosquitto` and has a pidfile.
    assert [s for s in _mosquitto_settings(ours) if s[0] != "pid_file"] == [
        s for s in stack_settings if s[0] != "user"]
