"""The mosquitto role: no password in clear on the broker host, passwords long enough,
and no Mosquitto that would lose the processor's queued messages."""

from __future__ import annotations

import importlib.util
import json
import os
import pwd
import re
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from tests.ansible.helpers import ROLES, inventory_hosts, load_yaml, render
from tests.ansible.test_ansible_playbooks import _ansible_tool
from urbanpulse.stack.passwords import verify_mosquitto_hash

ROLE = ROLES / "mosquitto"
CLOUD_PASSWORD = "cloud-secret-0123456789"


def filter_plugin() -> ModuleType:
    path = ROLE / "filter_plugins" / "mosquitto_hash.py"
    spec = importlib.util.spec_from_file_location("mosquitto_hash_plugin", path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _tasks() -> list[dict[str, Any]]:
    tasks: list[dict[str, Any]] = load_yaml(ROLE / "tasks" / "main.yml")
    return tasks


def _all_tasks() -> list[dict[str, Any]]:
    return [inner for t in _tasks() for inner in t.get("block", [t])]


def test_the_controllers_hash_is_mosquittos_format() -> None:
    hash_ = filter_plugin().FilterModule().filters()["mosquitto_hash"]
    first, second = hash_("pw-0123456789abcdef"), hash_("pw-0123456789abcdef")
    assert first != second  # salted
    assert first.startswith("$7$101$")
    assert verify_mosquitto_hash("pw-0123456789abcdef", first)
    assert not verify_mosquitto_hash("another-password", first)
    with pytest.raises(ValueError, match="non-empty"):
        hash_("")


def test_the_password_files_hold_hashes_of_the_inventorys_passwords_only() -> None:
    edge = inventory_hosts("edge")
    passwords = {f"{v['edge_site']}.{v['edge_node_id']}": f"node-secret-{i:02d}-0123456789"
                 for i, v in enumerate(edge.values())}
    hostvars = {h: {**v, "vault_edge_mqtt_password": passwords[f"{v['edge_site']}.{v['edge_node_id']}"]}
                for h, v in edge.items()}
    context = {**next(iter(inventory_hosts("broker").values())), "groups": {"edge": sorted(edge)},
               "hostvars": hostvars, "vault_mqtt_cloud_password": CLOUD_PASSWORD,
               "mosquitto_node_hosts": sorted(edge)}
    filters = filter_plugin().FilterModule().filters()
    nodes = render(ROLE / "templates" / "passwd-nodes.j2", "mosquitto", context, filters)
    cloud = render(ROLE / "templates" / "passwd-cloud.j2", "mosquitto", context, filters)
    for text, expected in ((nodes, passwords), (cloud, {"cloud": CLOUD_PASSWORD})):
        lines = dict(line.split(":", 1) for line in text.splitlines() if line)
        assert set(lines) == set(expected)
        for user, hashed in lines.items():
            assert verify_mosquitto_hash(expected[user], hashed), user
        for password in expected.values():
            assert password not in text
    assert "cloud" not in dict(line.split(":", 1) for line in nodes.splitlines() if line)


def test_no_task_puts_a_password_in_clear_on_the_broker() -> None:
    tasks = _all_tasks()
    text = json.dumps(_tasks())  # blocks with their vars
    # no plain list for `mosquitto_passwd -U`, no password on a command line
    assert "mosquitto_passwd -" not in text
    commands = [t["ansible.builtin.command"] for t in tasks if "ansible.builtin.command" in t]
    assert commands == ["dpkg-query -W -f=${Version} mosquitto"]
    written = [t["ansible.builtin.template"] for t in tasks if "ansible.builtin.template" in t]
    sources = {str(w["src"]) for w in written}
    assert sources == {"{{ item }}.j2", "mosquitto.conf.j2", "acl-all.j2"}
    loops: list[str] = [t["loop"] for t in tasks
                        if "ansible.builtin.template" in t and t.get("loop")]
    # a site gateway's broker (mosquitto_site) has the nodes' listener only
    assert sorted(loops) == [
        "{{ ['acl-nodes'] if mosquitto_site else ['acl-nodes', 'acl-cloud'] }}",
        "{{ ['passwd-nodes'] if mosquitto_site else ['passwd-nodes', 'passwd-cloud'] }}"]
    # users.digest.j2 (the plain list) is only looked up and hashed on the controller
    assert "lookup('ansible.builtin.template', 'users.digest.j2') | hash('sha256')" in text
    for task in tasks:
        if "passwd-cloud" in str(task.get("loop")) and "ansible.builtin.template" in task:
            assert task["ansible.builtin.template"]["mode"] == "0640"
            assert task["no_log"] is True
    # what the single-listener role left: its plain list included
    removal = next(t for t in tasks if t.get("ansible.builtin.file", {}).get("state") == "absent")
    assert "passwd.new" in removal["loop"]


def _run_checks(tmp_path: Path, **extra_vars: Any) -> subprocess.CompletedProcess[str]:
    """The role's checks (every assert task, in order) run by Ansible on localhost."""
    yaml = pytest.importorskip("yaml")
    tasks = _tasks()
    checks = [t for t in tasks if "ansible.builtin.assert" in t]
    defaults = load_yaml(ROLE / "defaults" / "main.yml")
    inventory = tmp_path / "inventory.ini"
    inventory.write_text(
        "localhost ansible_connection=local\n[edge]\n"
        "n1 edge_site=hn-a edge_node_id=aq-01 vault_edge_mqtt_password="
        f"{extra_vars.pop('node_password', 'node-secret-0123456789')}\n"
        + "".join(f"{line}\n" for line in extra_vars.pop("more_nodes", []))
        + "[gateway]\n" + "".join(f"{line}\n" for line in extra_vars.pop("gateways", [])))
    site_ca, cloud_ca = tmp_path / "ca.pem", tmp_path / "cloud-clients-ca.pem"
    site_ca.write_text("site CA\n")
    cloud_ca.write_text("cloud clients' CA\n")
    variables = {"mosquitto_node_group": "edge", "mosquitto_gateway_group": "gateway",
                 "mosquitto_site": "", "mosquitto_node_hosts": defaults["mosquitto_node_hosts"],
                 "mosquitto_password_min_length": defaults["mosquitto_password_min_length"],
                 "mosquitto_cloud_password": CLOUD_PASSWORD,
                 "mosquitto_cloud_auth": "password", "mosquitto_ca_cert_src": str(site_ca),
                 "mosquitto_cloud_client_ca_src": str(cloud_ca),
                 "mosquitto_installed": {"stdout": "2.0.11-1.2+deb12u1"}, **extra_vars}
    playbook = tmp_path / "checks.yml"
    playbook.write_text(yaml.safe_dump([{"hosts": "localhost", "gather_facts": False,
                                         "vars": variables, "tasks": checks}]))
    return subprocess.run([_ansible_tool("ansible-playbook"), "-i", str(inventory), str(playbook)],
                          capture_output=True, text=True, timeout=120, check=False)


@pytest.mark.parametrize(("extra", "message"), [
    ({}, None),
    ({"mosquitto_installed": {"stdout": "2.0.23-1"}}, None),
    ({"node_password": "short-0123"}, "n1: needs edge_site .* vault_edge_mqtt_password of at least 16"),
    ({"mosquitto_cloud_password": "short-0123"},
     r"vault_mqtt_cloud_password \(mosquitto_cloud_password\) must be at least 16"),
    ({"mosquitto_installed": {"stdout": "2.0.18-1build1"}},
     "Mosquitto 2.0.18-1build1 loses the messages queued .* set urbanpulse_mqtt_cloud_auth to "
     "'certificate'"),
    ({"mosquitto_installed": {"stdout": "2.0.22-1"}}, "Mosquitto 2.0.22-1 loses"),
    ({"mosquitto_installed": {"stdout": "2.0.12-1"}}, "Mosquitto 2.0.12-1 loses"),
    # the client-certificate listener does without per_listener_settings: any version
    ({"mosquitto_installed": {"stdout": "2.0.21-1"}, "mosquitto_cloud_auth": "certificate"}, None),
    ({"mosquitto_installed": {"stdout": "2.0.11-1.2+deb12u1"}, "mosquitto_cloud_auth": "certificate"},
     None),
    ({"more_nodes": ["n2 edge_site=hn-a edge_node_id=aq-02 vault_edge_mqtt_password=other-secret-01234567"]},
     None),
    # an inventory entry copied, its id not changed: the broker took one of the two passwords
    ({"more_nodes": ["n2 edge_site=hn-a edge_node_id=aq-01 vault_edge_mqtt_password=other-secret-01234567"]},
     r"n1 and n2 have the same edge_site \(hn-a\) and edge_node_id \(aq-01\): each node needs "
     r"its own \(its broker user is <site>.<node>\)"),
    ({"more_nodes": ["n2 edge_site=hn-b edge_node_id=aq-01 vault_edge_mqtt_password=other-secret-01234567"]},
     None),
    # a site gateway is a node user of the cloud's broker: one user per site and id there too
    ({"gateways": ["gw edge_site=hn-a edge_node_id=gw-1 vault_edge_mqtt_password=gw-secret-0123456789"]},
     None),
    ({"gateways": ["gw edge_site=hn-a edge_node_id=aq-01 vault_edge_mqtt_password=gw-secret-0123456789"]},
     r"gw and n1 have the same edge_site \(hn-a\) and edge_node_id \(aq-01\)"),
    ({"gateways": ["gw edge_site=hn-a edge_node_id=gw-1 vault_edge_mqtt_password=short"]},
     "gw: needs edge_site .* vault_edge_mqtt_password of at least 16"),
    ({"gateways": ["n1"]}, "n1: in both edge and gateway: a site gateway is a host of its own"),
    ({"mosquitto_cloud_auth": "cert"}, r"urbanpulse_mqtt_cloud_auth \(mosquitto_cloud_auth\) is "
                                       "'cert': use 'password' or 'certificate'"),
    ({"mosquitto_cloud_auth": "certificate", "mosquitto_cloud_client_ca_src": "SITE_CA"},
     "is the site's CA \\(urbanpulse_ca_cert_src\\)"),
])
def test_the_roles_checks_refuse_short_passwords_and_lossy_brokers(
        tmp_path: Path, extra: dict[str, Any], message: str | None) -> None:
    if extra.get("mosquitto_cloud_client_ca_src") == "SITE_CA":
        extra = {**extra, "mosquitto_cloud_client_ca_src": str(tmp_path / "ca.pem")}
    done = _run_checks(tmp_path, **extra)
    if message is None:
        assert done.returncode == 0, done.stdout + done.stderr
    else:
        assert done.returncode != 0
        assert re.search(message, " ".join(done.stdout.split())), done.stdout
        for secret in (CLOUD_PASSWORD, "node-secret-0123456789"):
            assert secret not in done.stdout


def test_the_checks_come_before_the_install() -> None:
    tasks = _tasks()
    install = next(i for i, t in enumerate(tasks) if "ansible.builtin.apt" in t)
    checks = [i for i, t in enumerate(tasks) if "ansible.builtin.assert" in t]
    password_checks = [i for i in checks if "password_min_length" in json.dumps(tasks[i])]
    assert len(password_checks) == 2
    # the passwords, one user per node, no gateway that is a node, how the processor logs in,
    # and its CA: all but the version
    assert len(checks) == 7
    assert max(checks[:-1]) < install < checks[-1]


def test_the_real_broker_accepts_the_controllers_hashes(tmp_path: Path) -> None:
    """The filter's output, as passwd-nodes, checked by Mosquitto itself (not only by the
    stack's verifier): the right password is accepted, a wrong one and a truncated one not."""
    from urbanpulse.stack import mosquitto, process
    from urbanpulse.stack.layout import Layout
    from urbanpulse.stack.mqtt_probe import ProbeFailed, try_connect
    from urbanpulse.stack.tls import ensure_tls
    from urbanpulse.testing import wait_for

    mosquitto.require_binary()
    layout = Layout(tmp_path)
    ensure_tls(layout)
    hash_ = filter_plugin().FilterModule().filters()["mosquitto_hash"]
    password = "node-secret-0123456789"
    passwd = tmp_path / "passwd-nodes"
    passwd.write_text(f"hn-a.aq-01:{hash_(password)}\n")
    passwd.chmod(0o600)
    port = process.free_ports(1)[0]
    conf = tmp_path / "mosquitto.conf"
    # as the stack does: Mosquitto started as root would drop to a user that cannot read it
    user = pwd.getpwuid(os.getuid()).pw_name
    conf.write_text(f"per_listener_settings true\nuser {user}\nlistener {port} 127.0.0.1\n"
                    f"cafile {layout.ca_cert}\ncertfile {layout.server_cert}\n"
                    f"keyfile {layout.server_key}\nallow_anonymous false\n"
                    f"use_username_as_clientid true\npassword_file {passwd}\n")
    conf.chmod(0o600)
    log, pidfile = tmp_path / "mosquitto.log", tmp_path / "mosquitto.pid"
    process.start_detached([mosquitto.BINARY, "-c", str(conf)], output=log, pidfile=pidfile)

    def connack(user: str, secret: str) -> int | None:
        try:
            return try_connect("127.0.0.1", port, layout.ca_cert, user, secret, timeout_s=2.0)
        except (ProbeFailed, ConnectionRefusedError):
            return None
    try:
        wait_for(lambda: connack("hn-a.aq-01", password) == 0, 15.0,
                 f"the broker to accept the hashed password; {log}")
        assert connack("hn-a.aq-01", password + "x") == 5
        assert connack("hn-a.aq-01", password[:-1]) == 5
    finally:
        process.stop(pidfile, mosquitto.BINARY, conf)


def test_a_run_that_restarts_the_broker_does_not_also_reload_it() -> None:
    """Structure only: the handlers cannot run here (no systemd as PID 1). Handlers run in
    the order the file lists them; a SIGHUP after a restart in the same run would drop the
    sessions restored from disk whose clients have not reconnected (Mosquitto 2.0.11)."""
    handlers = load_yaml(ROLE / "handlers" / "main.yml")
    names = [h["name"] for h in handlers]
    restart, remember, reload_ = (names.index(n) for n in (
        "Restart mosquitto", "Remember that mosquitto was restarted", "Reload mosquitto"))
    assert restart < remember < reload_
    assert handlers[restart]["listen"] == handlers[remember]["listen"] == "Restart mosquitto"
    assert handlers[remember]["ansible.builtin.set_fact"] == {"mosquitto_restarted": True}
    assert handlers[reload_]["when"] == "not (mosquitto_restarted | default(false))"
    assert handlers[reload_]["ansible.builtin.systemd_service"]["state"] == "reloaded"
    tasks = "\n".join(p.read_text() for p in (ROLE / "tasks").glob("*.yml"))
    assert set(re.findall(r"notify: (.+)", tasks)) == {"Restart mosquitto", "Reload mosquitto"}


def _listeners(conf: str) -> tuple[dict[str, str], list[dict[str, str]]]:
    """The settings before the first listener, and each listener's."""
    blocks: list[dict[str, str]] = [{}]
    for line in conf.splitlines():
        if line.strip() and not line.startswith("#"):
            key, _, value = line.partition(" ")
            if key == "listener":
                blocks.append({})
            blocks[-1][key] = value
    return blocks[0], blocks[1:]


def test_the_certificate_config_shares_the_nodes_users_and_takes_a_certificate_on_the_cloud_listener(
        ) -> None:
    """urbanpulse_mqtt_cloud_auth 'certificate': per_listener_settings false (one password file,
    the nodes', and one ACL); the nodes' listener forces client ids, the cloud's requires a
    certificate of the cloud clients' CA and takes its name as the user. On the real brokers:
    test_ansible_mosquitto_cert_listener.py."""
    broker = {**next(iter(inventory_hosts("broker").values())), "urbanpulse_mqtt_cloud_auth": "certificate"}
    conf = render(ROLE / "templates" / "mosquitto.conf.j2", "mosquitto", broker)
    top, (nodes, cloud) = _listeners(conf)
    d = "/etc/mosquitto/urbanpulse"
    assert top == {"per_listener_settings": "false", "pid_file": "/run/mosquitto/mosquitto.pid",
                   "allow_anonymous": "false", "password_file": f"{d}/passwd-nodes",
                   "acl_file": f"{d}/acl-all"}
    assert (nodes["listener"], cloud["listener"]) == ("8883", "8884")
    assert nodes["cafile"] == f"{d}/ca.pem"
    assert nodes["use_username_as_clientid"] == "true"
    assert cloud["cafile"] == f"{d}/cloud-clients-ca.pem"
    assert cloud["require_certificate"] == cloud["use_identity_as_username"] == "true"
    assert "use_username_as_clientid" not in cloud
    for listener in (nodes, cloud):
        assert listener["tls_version"] == "tlsv1.2"
        assert not {"password_file", "acl_file", "allow_anonymous"} & set(listener)
    # the rest (queues, persistence, logs) as with 'password'
    password = render(ROLE / "templates" / "mosquitto.conf.j2", "mosquitto",
                      {**broker, "urbanpulse_mqtt_cloud_auth": "password"})
    assert _listeners(password)[0]["per_listener_settings"] == "true"
    assert conf[conf.index("set_tcp_nodelay"):] == password[password.index("set_tcp_nodelay"):]


def render_acl_all(groups: dict[str, list[str]], hostvars: dict[str, Any]) -> str:
    """acl-all.j2, which includes the two listeners' templates, rendered as Ansible's template
    module does (trim_blocks, the role's templates folder on the search path)."""
    jinja2 = pytest.importorskip("jinja2")
    defaults = load_yaml(ROLE / "defaults" / "main.yml")
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(ROLE / "templates"),
                             undefined=jinja2.StrictUndefined, keep_trailing_newline=True,
                             trim_blocks=True)
    text: str = env.get_template("acl-all.j2").render(
        groups=groups, hostvars=hostvars, mosquitto_node_group=defaults["mosquitto_node_group"],
        mosquitto_gateway_group=defaults["mosquitto_gateway_group"], mosquitto_site="",
        mosquitto_node_hosts=sorted(hostvars), mosquitto_cloud_user=defaults["mosquitto_cloud_user"])
    return text


def test_the_one_acl_holds_both_listeners_rules() -> None:
    from urbanpulse.stack.mosquitto import render_acl, render_cloud_acl

    edge = inventory_hosts("edge")
    text = render_acl_all({"edge": sorted(edge)}, edge)
    users = sorted(f"{v['edge_site']}.{v['edge_node_id']}" for v in edge.values())

    def rules(acl: str) -> list[str]:
        return [line for line in acl.splitlines() if line and not line.startswith("#")]
    assert rules(text) == rules(render_acl(users)) + rules(render_cloud_acl())


def test_the_certificate_configs_files_are_installed_in_that_mode_only() -> None:
    tasks = _all_tasks()
    only_then = {t["name"]: t for t in tasks
                 if t.get("when") == "mosquitto_cloud_auth == 'certificate' and not mosquitto_site"}
    ca = only_then["Install the CA of the cloud's client certificates"]["ansible.builtin.copy"]
    assert ca["src"] == "{{ mosquitto_cloud_client_ca_src }}"
    assert ca["dest"] == "{{ mosquitto_conf_dir }}/cloud-clients-ca.pem"
    acl = only_then["Write the ACL of both listeners"]["ansible.builtin.template"]
    assert (acl["src"], acl["dest"]) == ("acl-all.j2", "{{ mosquitto_conf_dir }}/acl-all")
    assert "Check that the cloud's clients have a CA of their own" in only_then
    assert only_then["Install the CA of the cloud's client certificates"]["notify"] == "Restart mosquitto"
    assert only_then["Write the ACL of both listeners"]["notify"] == "Reload mosquitto"


def test_ansible_renders_the_one_acl_as_the_tests_do(tmp_path: Path) -> None:
    """acl-all.j2 includes the two listeners' templates: Ansible's template module finds them
    beside it and renders what render_acl_all (the tests' rendering) does."""
    yaml = pytest.importorskip("yaml")
    inventory = tmp_path / "inventory.ini"
    inventory.write_text("localhost ansible_connection=local\n[edge]\n"
                         "n1 edge_site=hn-a edge_node_id=aq-01\nn2 edge_site=hn-b edge_node_id=loop-01\n"
                         "[gateway]\ng1 edge_site=hn-a edge_node_id=gw-1\n")
    out = tmp_path / "acl-all"
    playbook = tmp_path / "acl.yml"
    playbook.write_text(yaml.safe_dump([{
        "hosts": "localhost", "gather_facts": False,
        "vars": {"mosquitto_node_group": "edge", "mosquitto_cloud_user": "cloud",
                 "mosquitto_gateway_group": "gateway", "mosquitto_site": "",
                 "mosquitto_node_hosts": load_yaml(ROLE / "defaults" / "main.yml")["mosquitto_node_hosts"],
                 "ansible_python_interpreter": sys.executable},
        "tasks": [{"ansible.builtin.template": {"src": str(ROLE / "templates" / "acl-all.j2"),
                                                "dest": str(out)}}]}]))
    done = subprocess.run([_ansible_tool("ansible-playbook"), "-i", str(inventory), str(playbook)],
                          capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    hostvars = {"n1": {"edge_site": "hn-a", "edge_node_id": "aq-01"},
                "n2": {"edge_site": "hn-b", "edge_node_id": "loop-01"},
                "g1": {"edge_site": "hn-a", "edge_node_id": "gw-1"}}
    ours = render_acl_all({"edge": ["n1", "n2"], "gateway": ["g1"]}, hostvars)
    assert "topic write urbanpulse/v1/hn-a/gw-1/relay" in ours
    assert ours.count("/relay") == 1
    managed = "# Managed by Ansible (ansible/roles/mosquitto)"  # ansible_managed, undefined in tests
    assert out.read_text().replace("# Ansible managed", managed) == ours
