"""Where the roles put secrets on a host: readable by the service that needs them, written
by root only (a compromised service cannot replace its own credentials), never logged nor
shown by `ansible-playbook --diff`."""

from __future__ import annotations

import json
import os
import re
import secrets
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.ansible.helpers import ROLES, load_yaml
from tests.ansible.test_ansible_playbooks import _ansible_tool


def _secret_copies(role: str) -> list[dict[str, Any]]:
    tasks: list[dict[str, Any]] = load_yaml(ROLES / role / "tasks" / "main.yml")
    found = [t for t in tasks if "ansible.builtin.copy" in t and "password" in str(t)]
    assert found, f"no task of {role} installs a password file"
    return found


@pytest.mark.parametrize(("role", "group"), [("edge", "{{ edge_user }}"),
                                             ("processor", "{{ processor_user }}"),
                                             ("site_gateway", "{{ gateway_user }}")])
def test_a_service_reads_its_password_files_but_cannot_write_them(role: str, group: str) -> None:
    for task in _secret_copies(role):
        copy = task["ansible.builtin.copy"]
        assert copy["owner"] == "root"
        assert copy["group"] == group
        assert copy["mode"] == "0640"
        assert task.get("no_log") is True


# -- no secret in Ansible's output, not even with --diff -------------------------------

# Each role's tasks that put a secret on a host: a password, a private key, hashes of
# passwords, or a file of settings holding them.
SECRET_TASKS = {
    "edge": ["Install the node's MQTT password"],
    "grafana": ["Give Grafana the InfluxDB reader's settings (used by the datasource file)"],
    "influxdb": ["Install the server certificate and key"],
    "mosquitto": ["Install the CA and server certificates", "Write the hashed password files",
                  "Record the digest"],
    "processor": ["Install the MQTT and InfluxDB writer and reader passwords",
                  "Install the processor's MQTT client certificate and key"],
    # its broker's key, hashes and digest: the mosquitto role's tasks above (include_role)
    "site_gateway": ["Install the gateway's MQTT passwords (the site broker's and the cloud's)"],
}
_SECRET_WORDS = re.compile(r"\.key\b|password|passwd|digest")
FILE_MODULES = ("ansible.builtin.copy", "ansible.builtin.template")


def _all_tasks(tasks: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    for task in tasks:
        if "block" in task:
            yield from _all_tasks(task["block"])
        else:
            yield task


def _role_tasks(role: str) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    for path in sorted((ROLES / role / "tasks").glob("*.yml")):
        found += _all_tasks(load_yaml(path) or [])
    return found


def test_every_task_that_installs_a_secret_is_checked_below() -> None:
    for role in sorted(p.name for p in ROLES.iterdir()):
        writing = {t["name"] for t in _role_tasks(role) if any(m in t for m in FILE_MODULES)
                   and (_SECRET_WORDS.search(str({k: v for k, v in t.items() if k != "name"}))
                        or str(next(t[m] for m in FILE_MODULES if m in t)["dest"]).endswith(".env"))}
        assert writing == set(SECRET_TASKS.get(role, [])), role


def _secrets(tag: str) -> dict[str, str]:
    """Unique values, so that any of them found in Ansible's output is a leak."""
    return {name: f"{name.upper()}-{tag}-{secrets.token_hex(8)}" for name in (
        "edge", "mqtt_cloud", "influx_writer", "influx_reader", "grafana_admin", "node",
        "digest", "mqtt_key", "influx_key", "cloud_client_key", "gateway_site", "gateway_cloud")}


def _vaulted(path: Path, text: str, vault_pass: Path) -> str:
    plain = path.with_suffix(".plain")
    plain.write_text(text)
    subprocess.run([_ansible_tool("ansible-vault"), "encrypt", "--vault-password-file",
                    str(vault_pass), "--output", str(path), str(plain)], check=True,
                   capture_output=True, timeout=60)
    plain.unlink()
    return str(path)


def _run_secret_tasks(work: Path, out: Path, s: dict[str, str]) -> str:
    """Every task of SECRET_TASKS, as the roles have it but for owner and group (this
    machine's user) and without `when` or `notify`, run by ansible-playbook on this machine
    with --diff and -v; returns what it printed."""
    import grp
    import pwd

    user, group = pwd.getpwuid(os.getuid()).pw_name, grp.getgrgid(os.getgid()).gr_name
    vault_pass = work / "vault-pass"
    vault_pass.write_text("vault-pass-for-the-test\n")
    files = work / "files"
    files.mkdir(exist_ok=True)
    cert = files / "cert.pem"
    cert.write_text("-----BEGIN CERTIFICATE-----\nnot a secret\n-----END CERTIFICATE-----\n")

    keys = {name: _vaulted(files / f"{name}.key", f"-----BEGIN PRIVATE KEY-----\n{s[name]}\n"
                                                   "-----END PRIVATE KEY-----\n", vault_pass)
            for name in ("mqtt_key", "influx_key", "cloud_client_key")}

    def variables(out: Path) -> dict[str, str]:  # each role its own folder
        return {
            "edge_mqtt_password": s["edge"], "edge_mqtt_password_path": str(out / "mqtt.password"),
            "edge_user": group,
            "grafana_influx_url": "https://influx.example.org:8086", "grafana_influx_database": "urbanpulse",
            "grafana_influx_reader_user": "reader", "grafana_influx_reader_password": s["influx_reader"],
            "grafana_admin_password": s["grafana_admin"],
            "influxdb_tls_dir": str(out), "influxdb_server_cert_src": str(cert),
            "influxdb_server_key_src": keys["influx_key"],
            "mosquitto_conf_dir": str(out), "mosquitto_ca_cert_src": str(cert),
            "mosquitto_server_cert_src": str(cert), "mosquitto_server_key_src": keys["mqtt_key"],
            "mosquitto_node_group": "nodes", "mosquitto_cloud_user": "cloud",
            "mosquitto_gateway_group": "gateways", "mosquitto_site": "",
            "mosquitto_node_hosts": "{{ groups['nodes'] }}",
            "mosquitto_cloud_password": s["mqtt_cloud"], "mosquitto_passwd_digest": s["digest"],
            "processor_config_dir": str(out), "processor_user": group,
            "cloud_mqtt_password": s["mqtt_cloud"], "cloud_influx_password": s["influx_writer"],
            "cloud_influx_reader_password": s["influx_reader"],
            "processor_mqtt_client_cert_src": str(cert),
            "processor_mqtt_client_key_src": keys["cloud_client_key"],
            "gateway_site_mqtt_password": s["gateway_site"],
            "gateway_cloud_mqtt_password": s["gateway_cloud"],
            "gateway_site_mqtt_password_path": str(out / "site-mqtt.password"),
            "gateway_cloud_mqtt_password_path": str(out / "mqtt.password"), "gateway_user": group,
        }

    plays = []
    for role, names in SECRET_TASKS.items():
        tasks = []
        for task in _role_tasks(role):
            if task["name"] in names:
                task = {k: v for k, v in task.items() if k not in ("when", "notify")}
                module = next(m for m in FILE_MODULES if m in task)
                task[module] = {**task[module], "owner": user, "group": group}
                if not task[module]["dest"].startswith("{{"):  # a fixed path: moved to `out`
                    task[module]["dest"] = str(out / role / Path(task[module]["dest"]).name)
                tasks.append(task)
        assert [t["name"] for t in tasks] == names, role
        # The role's own templates and filters, around these tasks only.
        copy = work / "roles" / role
        (copy / "tasks").mkdir(parents=True, exist_ok=True)
        (copy / "tasks" / "main.yml").write_text(json.dumps(tasks))
        for part in ("templates", "filter_plugins"):
            if (ROLES / role / part).is_dir() and not (copy / part).exists():
                (copy / part).symlink_to(ROLES / role / part)
        (out / role).mkdir(exist_ok=True)
        plays.append({"name": role, "hosts": "localhost", "gather_facts": False,
                      "vars": variables(out / role), "roles": [role]})
    (work / "secrets.yml").write_text(json.dumps(plays))
    (work / "inventory.json").write_text(json.dumps({"all": {
        "hosts": {"localhost": {"ansible_connection": "local",
                                "ansible_python_interpreter": sys.executable}},
        "children": {"nodes": {"hosts": {"node-1": {
            "edge_site": "site-a", "edge_node_id": "node-1",
            "vault_edge_mqtt_password": s["node"]}}}}}}))
    done = subprocess.run(
        [_ansible_tool("ansible-playbook"), "-i", str(work / "inventory.json"), "--diff", "-v",
         "--vault-password-file", str(vault_pass), str(work / "secrets.yml")],
        cwd=work, capture_output=True, text=True, timeout=300, check=False,
        env={**os.environ, "ANSIBLE_CONFIG": "", "ANSIBLE_ROLES_PATH": str(work / "roles"),
             "ANSIBLE_NOCOLOR": "1", "ANSIBLE_LOCAL_TEMP": str(work / "ansible-tmp"),
             "ANSIBLE_HOME": str(work / "ansible-home"), "ANSIBLE_RETRY_FILES_ENABLED": "0"})
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout + done.stderr


def test_no_secret_reaches_ansibles_output_even_with_diff(tmp_path: Path) -> None:
    """`ansible-playbook --diff` (often with --check, to review a change) prints the old and
    new content of every file a task changes: the decrypted private keys too, unless the task
    says no_log or diff: false. Installed, then every secret changed."""
    out = tmp_path / "out"
    out.mkdir()
    for tag in ("first", "changed"):
        s = _secrets(tag)
        printed = _run_secret_tasks(tmp_path, out, s)
        leaked = sorted(name for name, value in s.items() if value in printed)
        assert leaked == [], f"{tag}: {leaked} in ansible-playbook's output"
        assert "$7$" not in printed  # nor the broker's password hashes
        # The tasks did run: the files hold this round's secrets.
        assert (out / "edge" / "mqtt.password").read_text() == s["edge"] + "\n"
        assert s["mqtt_key"] in (out / "mosquitto" / "server.key").read_text()
        assert s["influx_key"] in (out / "influxdb" / "server.key").read_text()
        assert s["cloud_client_key"] in (out / "processor" / "cloud-mqtt.key").read_text()
        assert s["influx_reader"] in (out / "processor" / "influx-reader.password").read_text()
        assert s["grafana_admin"] in (out / "grafana" / "urbanpulse.env").read_text()
        assert (out / "site_gateway" / "site-mqtt.password").read_text() == s["gateway_site"] + "\n"
        assert (out / "site_gateway" / "mqtt.password").read_text() == s["gateway_cloud"] + "\n"
