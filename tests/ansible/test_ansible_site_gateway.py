"""The site_gateway role without a booted host: its gateway.toml is a config the gateway
accepts; its broker (the mosquitto role in site mode) has the site's users only, and the
real Mosquitto enforces that config's ACL; the role's checks refuse a bad inventory; the
edge role points the nodes of a site with a gateway at its broker (run by ansible-playbook
on this machine, nothing installed). A whole run of gateway.yml against a booted host, the
unit under systemd and the install: test_ansible_site_gateway_booted.py."""

from __future__ import annotations

import json
import os
import pwd
import re
import subprocess
import sys
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from edge.gateway.config import parse_config
from tests.ansible.helpers import ROLES, inventory_hosts, load_yaml, render
from tests.ansible.test_ansible_mosquitto import filter_plugin
from tests.ansible.test_ansible_playbooks import _ansible_tool
from urbanpulse.mqtt import close_client
from urbanpulse.stack.passwords import verify_mosquitto_hash

ROLE = ROLES / "site_gateway"
MOSQUITTO = ROLES / "mosquitto" / "templates"
GATEWAYS = inventory_hosts("gateway")
EDGE = inventory_hosts("edge")
SITE_PASSWORD = "site-secret-0123456789"


def _gateway() -> tuple[str, dict[str, Any]]:
    assert len(GATEWAYS) == 1
    return next(iter(GATEWAYS.items()))


def test_rendered_gateway_config_parses_and_matches_the_inventory() -> None:
    _, hv = _gateway()
    text = render(ROLE / "templates" / "gateway.toml.j2", "site_gateway",
                  {**hv, "gateway_relay": {"relay_max_delay_s": 2.0, "max_inflight_relays": 20}})
    config = parse_config(tomllib.loads(text))
    assert (config.site, config.id) == (hv["edge_site"], hv["edge_node_id"])
    assert (config.limits.max_delay_s, config.limits.max_inflight) == (2.0, 20)
    user = f"{hv['edge_site']}.{hv['edge_node_id']}"
    site, cloud = config.site_mqtt, config.cloud_mqtt
    assert (site.host, site.port) == (hv["gateway_site_mqtt_host"], 8883)
    assert (cloud.host, cloud.port) == (hv["urbanpulse_mqtt_host"], hv["urbanpulse_mqtt_port"])
    for link in (site, cloud):
        assert link.tls is True
        assert str(link.ca_file) == "/etc/urbanpulse/ca.pem"  # the deployment's CA, both
        assert link.username == link.client_id == user
    assert str(site.password_file) == "/etc/urbanpulse/site-mqtt.password"
    assert str(cloud.password_file) == "/etc/urbanpulse/mqtt.password"
    # the role's defaults: the gateway's own
    plain = parse_config(tomllib.loads(render(ROLE / "templates" / "gateway.toml.j2",
                                              "site_gateway", hv)))
    assert plain.limits.max_delay_s == 1.0


def _site_context(site: str) -> dict[str, Any]:
    """The mosquitto role's variables as the site_gateway role sets them, for the example
    inventory's nodes (each with a password of its own)."""
    hostvars = {h: {**v, "vault_edge_mqtt_password": f"node-secret-{h}-0123456789"}
                for h, v in EDGE.items()}
    _, gw = _gateway()
    return {"groups": {"edge": sorted(EDGE), "gateway": sorted(GATEWAYS)}, "hostvars": hostvars,
            "mosquitto_site": site, "mosquitto_site_gateway_user": f"{site}.{gw['edge_node_id']}",
            "mosquitto_site_gateway_password": SITE_PASSWORD,
            # what the role's default computes (by Ansible, in the next tests)
            "mosquitto_node_hosts": sorted(h for h, v in EDGE.items() if v["edge_site"] == site)}


def _rules(text: str) -> list[str]:
    return [line for line in text.splitlines() if line and not line.startswith("#")]


def test_the_site_broker_knows_the_sites_nodes_and_its_gateway_only() -> None:
    from urbanpulse.stack.mosquitto import render_acl

    _, gw = _gateway()
    site = gw["edge_site"]
    context = _site_context(site)
    nodes = context["mosquitto_node_hosts"]
    assert nodes
    assert len(nodes) < len(EDGE), "the example has nodes of other sites too"
    acl = render(MOSQUITTO / "acl-nodes.j2", "mosquitto", context)
    users = [f"{EDGE[h]['edge_site']}.{EDGE[h]['edge_node_id']}" for h in nodes]
    gateway_user = f"{site}.{gw['edge_node_id']}"
    # the nodes' rules of the cloud's broker (no relay), then the gateway's
    assert _rules(acl) == [
        *_rules(render_acl(users)), f"user {gateway_user}", f"topic read urbanpulse/v1/{site}/+/data",
        f"topic read urbanpulse/v1/{site}/+/status", f"topic write urbanpulse/v1/{site}/+/ack"]
    assert not [rule for rule in _rules(acl) if "relay" in rule]

    filters = filter_plugin().FilterModule().filters()
    passwd = render(MOSQUITTO / "passwd-nodes.j2", "mosquitto", context, filters)
    lines = dict(line.split(":", 1) for line in passwd.splitlines() if line)
    expected = {u: context["hostvars"][h]["vault_edge_mqtt_password"]
                for u, h in zip(users, nodes, strict=True)}
    expected[gateway_user] = SITE_PASSWORD
    assert set(lines) == set(expected)  # no cloud user, no other site's node
    for user, hashed in lines.items():
        assert verify_mosquitto_hash(expected[user], hashed), user
    for password in expected.values():
        assert password not in passwd

    conf = render(MOSQUITTO / "mosquitto.conf.j2", "mosquitto", context)
    settings = [line.split(" ", 1) for line in _rules(conf)]
    keys = [k for k, _ in settings]
    assert keys.count("listener") == 1
    values = dict(settings)
    d = "/etc/mosquitto/urbanpulse"
    assert (values["per_listener_settings"], values["allow_anonymous"]) == ("false", "false")
    assert (values["password_file"], values["acl_file"]) == (f"{d}/passwd-nodes", f"{d}/acl-nodes")
    assert (values["listener"], values["cafile"], values["tls_version"]) == (
        "8883", f"{d}/ca.pem", "tlsv1.2")
    assert values["use_username_as_clientid"] == "true"
    # the cloud's tuning: its size limit (a relay's), queues, persistence
    cloud = render(MOSQUITTO / "mosquitto.conf.j2", "mosquitto", {**context, "mosquitto_site": ""})
    assert conf[conf.index("set_tcp_nodelay"):] == cloud[cloud.index("set_tcp_nodelay"):]
    assert values["message_size_limit"] == "1048576"


@pytest.fixture
def site_broker(tmp_path: Path) -> Iterator[tuple[Any, dict[str, str], str]]:
    """The host's Mosquitto on the role's site-mode files, for the example's gateway site:
    (a connect function, node user -> password, the gateway's user)."""
    from urbanpulse.mqtt import connect_and_wait, make_client
    from urbanpulse.stack import MqttCredentials, mosquitto, process
    from urbanpulse.stack.layout import Layout
    from urbanpulse.stack.tls import ensure_tls

    mosquitto.require_binary()
    layout = Layout(tmp_path / "tls")
    ensure_tls(layout)
    _, gw = _gateway()
    conf_dir = tmp_path / "conf"
    conf_dir.mkdir()
    port = process.free_ports(1)[0]
    context = {**_site_context(gw["edge_site"]), "mosquitto_conf_dir": str(conf_dir),
               "mosquitto_port": port, "mosquitto_bind": "127.0.0.1",
               "mosquitto_data_dir": f"{tmp_path}/", "mosquitto_log": str(tmp_path / "mosquitto.log")}
    filters = filter_plugin().FilterModule().filters()
    for name in ("passwd-nodes", "acl-nodes"):
        (conf_dir / name).write_text(render(MOSQUITTO / f"{name}.j2", "mosquitto", context, filters))
    for src, dest in ((layout.ca_cert, "ca.pem"), (layout.server_cert, "server.pem"),
                      (layout.server_key, "server.key")):
        (conf_dir / dest).write_bytes(src.read_bytes())
    conf = render(MOSQUITTO / "mosquitto.conf.j2", "mosquitto", context)
    conf, replaced = re.subn(r"(?m)^pid_file .*$", f"pid_file {conf_dir / 'mosquitto.pid'}", conf)
    assert replaced == 1
    path = conf_dir / "mosquitto.conf"
    path.write_text(f"user {pwd.getpwuid(os.getuid()).pw_name}\n{conf}")
    for written in conf_dir.iterdir():
        written.chmod(0o600)
    pidfile = tmp_path / "mosquitto.pid"
    process.start_detached([mosquitto.BINARY, "-c", str(path)], output=tmp_path / "stderr.log",
                           pidfile=pidfile)
    # Started is not listening yet: connecting at once was refused once under CI.
    listening = process.wait_until(lambda: not process.port_is_free("127.0.0.1", port), timeout_s=15.0)
    assert listening, process.tail(tmp_path / "stderr.log") + process.tail(tmp_path / "mosquitto.log")
    passwords = {f"{v['edge_site']}.{v['edge_node_id']}": context["hostvars"][h]["vault_edge_mqtt_password"]
                 for h, v in EDGE.items()}
    gateway_user = context["mosquitto_site_gateway_user"]
    passwords[gateway_user] = SITE_PASSWORD
    clients: list[Any] = []

    def connect(user: str) -> Any:
        from tests.stack.test_stack_mqtt import Collector

        secret = tmp_path / f"{user}.password"
        secret.write_text(passwords[user] + "\n")
        client = make_client(user, MqttCredentials("127.0.0.1", port, layout.ca_cert, user, secret),
                             clean_start=True)
        collector = Collector(client)
        connect_and_wait(client, timeout_s=15.0)
        clients.append(client)
        return collector

    try:
        yield connect, passwords, gateway_user
    finally:
        for client in clients:
            close_client(client)
        process.stop(pidfile, mosquitto.BINARY, path)


def test_the_real_broker_enforces_the_site_brokers_acl(site_broker: tuple[Any, dict[str, str], str]
                                                       ) -> None:
    """Mosquitto on the rendered site-mode files: a node writes its data and status, no relay
    and no ack; the gateway reads every node's data and status and acks each node, which
    reads its own acks only; a node of another site is not a user there."""
    from urbanpulse.mqtt import MqttConnectError

    connect, passwords, gateway_user = site_broker
    site = gateway_user.split(".")[0]
    users = sorted(u for u in passwords if u.startswith(f"{site}.") and u != gateway_user)
    first, second = users[0], users[1]
    gateway = connect(gateway_user)
    gateway.subscribe(f"urbanpulse/v1/{site}/+/data")
    gateway.subscribe(f"urbanpulse/v1/{site}/+/status")
    node, other = connect(first), connect(second)
    node.subscribe("urbanpulse/v1/#")
    own, others = (f"urbanpulse/v1/{u.replace('.', '/')}" for u in (first, second))
    assert node.publish(f"{own}/data", b"data").value == 0
    assert node.publish(f"{own}/status", b"status").value == 0
    assert node.publish(f"{own}/relay", b"relay").value == 135
    assert node.publish(f"{own}/ack", b"self-ack").value == 135
    assert node.publish(f"{others}/data", b"forged").value == 135
    assert other.publish(f"{others}/data", b"other-data").value == 0
    gateway.wait(lambda: len(gateway.payloads()) == 3)
    assert sorted(gateway.payloads()) == [b"data", b"other-data", b"status"]
    # the gateway writes acks, and nothing of its own
    assert gateway.publish(f"{others}/ack", b"ack-other").value == 0
    assert gateway.publish(f"{own}/ack", b"ack-own").value == 0
    assert gateway.publish(f"urbanpulse/v1/{gateway_user.replace('.', '/')}/data", b"x").value == 135
    node.wait(lambda: b"ack-own" in node.payloads())
    # what the node read: its own ack only (not its data back, not the other node's)
    assert node.payloads() == [b"ack-own"]
    elsewhere = next(u for u in passwords if not u.startswith(f"{site}."))
    with pytest.raises(MqttConnectError):
        connect(elsewhere)


def _playbook(tmp_path: Path, inventory: dict[str, Any], tasks: list[dict[str, Any]],
              hosts: str, limit: str | None = None) -> subprocess.CompletedProcess[str]:
    (tmp_path / "inventory.json").write_text(json.dumps(inventory))
    (tmp_path / "play.yml").write_text(json.dumps([{"name": "checks", "hosts": hosts,
                                                    "gather_facts": False, "tasks": tasks}]))
    return subprocess.run(
        [_ansible_tool("ansible-playbook"), "-i", str(tmp_path / "inventory.json"),
         *(["--limit", limit] if limit else []), str(tmp_path / "play.yml")],
        cwd=tmp_path, capture_output=True, text=True, timeout=120, check=False,
        env={**os.environ, "ANSIBLE_CONFIG": "", "ANSIBLE_ROLES_PATH": str(ROLES),
             "ANSIBLE_NOCOLOR": "1", "ANSIBLE_LOCAL_TEMP": str(tmp_path / "ansible-tmp"),
             "ANSIBLE_HOME": str(tmp_path / "ansible-home"), "ANSIBLE_RETRY_FILES_ENABLED": "0"})


def _inventory(gateways: dict[str, dict[str, Any]], nodes: dict[str, tuple[str, str]]
               ) -> dict[str, Any]:
    sensors = [{"id": "pm-1", "driver": "sds011", "port": "/dev/ttyUSB0"}]
    local = {"ansible_connection": "local", "ansible_python_interpreter": sys.executable}
    return {"all": {
        "vars": {"urbanpulse_mqtt_host": "mqtt.cloud.example.org", "urbanpulse_mqtt_port": 8883},
        "children": {
            "edge": {"hosts": {h: {**local, "edge_site": s, "edge_node_id": n, "edge_sensors": sensors,
                                   "vault_edge_mqtt_password": "n" * 20} for h, (s, n) in nodes.items()}},
            "gateway": {"hosts": {h: {**local, "edge_site": "hn-a", "edge_node_id": "gw-1",
                                      "gateway_site_mqtt_host": f"{h}.example.org",
                                      "vault_edge_mqtt_password": "c" * 20,
                                      "vault_gateway_site_mqtt_password": "s" * 20, **v}
                                  for h, v in gateways.items()}}}}}


NODES = {"a1": ("hn-a", "aq-01"), "b1": ("hn-b", "aq-01")}


@pytest.mark.parametrize(("gateways", "nodes", "message"), [
    ({"gw": {}}, NODES, None),
    ({"gw": {"vault_gateway_site_mqtt_password": "short"}}, NODES,
     "gw: a site gateway needs edge_site and edge_node_id"),
    ({"gw": {"vault_gateway_site_mqtt_password": "c" * 20}}, NODES, "two different passwords"),
    ({"gw": {"gateway_site_mqtt_host": ""}}, NODES, "gateway_site_mqtt_host"),
    ({"gw": {}, "gw2": {}}, NODES, "gw: site hn-a has another gateway: gw2; one gateway per site"),
    ({"gw": {}}, {**NODES, "a2": ("hn-a", "gw-1")},
     r"gw: is in edge too, or a node of its site has its id \(a2\)"),
], ids=["ok", "short-password", "same-passwords", "no-host", "two-gateways", "id-taken"])
def test_the_roles_checks_refuse_a_bad_gateway_inventory(
        tmp_path: Path, gateways: dict[str, Any], nodes: dict[str, tuple[str, str]],
        message: str | None) -> None:
    done = _playbook(tmp_path, _inventory(gateways, nodes),
                     [{"ansible.builtin.include_role": {"name": "site_gateway",
                                                        "tasks_from": "check_vars"}}],
                     "gateway", limit="gw")
    if message is None:
        assert done.returncode == 0, done.stdout + done.stderr
    else:
        assert done.returncode != 0
        assert re.search(message, " ".join(done.stdout.split())), done.stdout
        assert "s" * 20 not in done.stdout
        assert "c" * 20 not in done.stdout


def test_the_nodes_of_a_site_with_a_gateway_publish_to_its_broker(tmp_path: Path) -> None:
    """The edge role's checks find the site's gateway (edge.yml --limit <node> runs no
    gateway play): edge_mqtt_host and edge_mqtt_port are its broker's for its site's nodes,
    the cloud's for the others, and an inventory's own edge_mqtt_host still wins."""
    inventory = _inventory({"gw": {"gateway_site_mqtt_port": 18883}},
                           {**NODES, "a2": ("hn-a", "door-01")})
    inventory["all"]["children"]["edge"]["hosts"]["a2"]["edge_mqtt_host"] = "own.example.org"
    out = tmp_path / "out"
    out.mkdir()
    done = _playbook(tmp_path, inventory, [
        {"ansible.builtin.include_role": {"name": "edge", "tasks_from": "check_vars", "public": True}},
        {"ansible.builtin.copy": {"content": "{{ edge_mqtt_host }}:{{ edge_mqtt_port }}",
                                  "dest": f"{out}/{{{{ inventory_hostname }}}}"}}], "edge")
    assert done.returncode == 0, done.stdout + done.stderr
    seen = {p.name: p.read_text() for p in out.iterdir()}
    assert seen == {"a1": "gw.example.org:18883", "a2": "own.example.org:18883",
                    "b1": "mqtt.cloud.example.org:8883"}


def test_the_roles_defaults_resolve_the_site_brokers_nodes_in_ansible(tmp_path: Path) -> None:
    """mosquitto_node_hosts (the mosquitto role's default, Ansible filters) as the site_gateway
    role sets mosquitto_site: that site's nodes; for the cloud's broker: every node and
    gateway."""
    defaults = load_yaml(ROLES / "mosquitto" / "defaults" / "main.yml")
    out = tmp_path / "out"
    out.mkdir()
    tasks = [{"ansible.builtin.copy": {"content": "{{ mosquitto_node_hosts | to_json }}",
                                       "dest": f"{out}/{{{{ item }}}}"},
              "vars": {"mosquitto_node_hosts": defaults["mosquitto_node_hosts"],
                       "mosquitto_node_group": "edge", "mosquitto_gateway_group": "gateway",
                       "mosquitto_site": "{{ '' if item == 'cloud' else 'hn-a' }}"},
              "loop": ["cloud", "site"]}]
    done = _playbook(tmp_path, _inventory({"gw": {}}, {**NODES, "a2": ("hn-a", "door-01")}),
                     tasks, "gw")
    assert done.returncode == 0, done.stdout + done.stderr
    assert json.loads((out / "site").read_text()) == ["a1", "a2"]
    assert sorted(json.loads((out / "cloud").read_text())) == ["a1", "a2", "b1", "gw"]
