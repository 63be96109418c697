"""The processor role with urbanpulse_mqtt_cloud_auth 'certificate' (the broker's cloud
listener takes a client certificate, tests/ansible/test_ansible_mosquitto_cert_listener.py):
the certificate and key installed from the controller, named in cloud.toml."""

from __future__ import annotations

import os
import re
import subprocess
import tomllib
from pathlib import Path
from typing import Any

import pytest

from cloud.config import parse_cloud_config
from tests.ansible.helpers import ROLES, inventory_hosts, load_yaml, render
from tests.ansible.test_ansible_playbooks import _ansible_tool

ROLE = ROLES / "processor"


def _processor(**extra: Any) -> dict[str, Any]:
    return {**next(iter(inventory_hosts("processor").values())), **extra}


def _tasks() -> list[dict[str, Any]]:
    tasks: list[dict[str, Any]] = load_yaml(ROLE / "tasks" / "main.yml")
    return tasks


def test_cloud_toml_names_the_client_certificate_with_certificate_only() -> None:
    template = ROLE / "templates" / "cloud.toml.j2"
    cfg = parse_cloud_config(tomllib.loads(render(
        template, "processor", _processor(urbanpulse_mqtt_cloud_auth="certificate"))))
    assert cfg.mqtt.cert_file == Path("/etc/urbanpulse/cloud-mqtt.pem")
    assert cfg.mqtt.key_file == Path("/etc/urbanpulse/cloud-mqtt.key")
    assert cfg.mqtt.port == 8884
    for hv in (_processor(), _processor(urbanpulse_mqtt_cloud_auth="password")):
        cfg = parse_cloud_config(tomllib.loads(render(template, "processor", hv)))
        assert (cfg.mqtt.cert_file, cfg.mqtt.key_file) == (None, None)


def test_the_certificate_and_key_are_installed_before_the_config_that_names_them() -> None:
    tasks = _tasks()
    names = [t["name"] for t in tasks]
    install = tasks[names.index("Install the processor's MQTT client certificate and key")]
    assert install["when"] == "processor_mqtt_auth == 'certificate'"
    assert install["notify"] == "Restart the processor"
    copy = install["ansible.builtin.copy"]
    assert copy["dest"] == "{{ processor_config_dir }}/{{ item.dest }}"
    assert copy["group"] == "{{ processor_user }}"  # the key: root and the processor only
    assert {i["dest"]: (i["src"], i["mode"]) for i in install["loop"]} == {
        "cloud-mqtt.pem": ("{{ processor_mqtt_client_cert_src }}", "0644"),
        "cloud-mqtt.key": ("{{ processor_mqtt_client_key_src }}", "0640")}
    assert names.index(install["name"]) < names.index("Write the processor config")
    defaults = load_yaml(ROLE / "defaults" / "main.yml")
    assert defaults["processor_mqtt_auth"] == "{{ urbanpulse_mqtt_cloud_auth | default('password') }}"


def _run_checks(tmp_path: Path, **host_vars: Any) -> subprocess.CompletedProcess[str]:
    """The role's tasks/check_vars.yml (include_role: the role's defaults below these vars),
    run by ansible-playbook on this machine; nothing is installed."""
    yaml = pytest.importorskip("yaml")
    # checked before anything is installed
    assert _tasks()[0] == {"name": "Check the processor's variables",
                           "ansible.builtin.import_tasks": "check_vars.yml"}
    playbook = tmp_path / "checks.yml"
    playbook.write_text(yaml.safe_dump([{
        "hosts": "localhost", "gather_facts": False, "vars": host_vars,
        "tasks": [{"ansible.builtin.include_role": {"name": "processor", "tasks_from": "check_vars"}}]}]))
    return subprocess.run([_ansible_tool("ansible-playbook"), "-i", "localhost,", "-c", "local",
                           str(playbook)], capture_output=True, text=True, timeout=120, check=False,
                          env={**os.environ, "ANSIBLE_CONFIG": "", "ANSIBLE_ROLES_PATH": str(ROLES),
                               "ANSIBLE_NOCOLOR": "1", "ANSIBLE_RETRY_FILES_ENABLED": "0",
                               "ANSIBLE_LOCAL_TEMP": str(tmp_path / "ansible-tmp"),
                               "ANSIBLE_HOME": str(tmp_path / "ansible-home")})


@pytest.mark.parametrize(("auth", "message"), [
    ("password", None),
    ("certificate", None),
    ("certs", r"urbanpulse_mqtt_cloud_auth \(processor_mqtt_auth\) is 'certs': use 'password' "
              "or 'certificate'"),
])
def test_the_role_refuses_an_unknown_way_to_log_in(tmp_path: Path, auth: str, message: str | None
                                                   ) -> None:
    done = _run_checks(tmp_path, processor_mqtt_auth=auth)
    if message is None:
        assert done.returncode == 0, done.stdout + done.stderr
    else:
        assert done.returncode != 0
        assert re.search(message, " ".join(done.stdout.split())), done.stdout


@pytest.mark.parametrize(("variables", "refused"), [
    ({}, False),
    ({"cloud_state_dir": "/var/lib/urbanpulse-cloud/"}, False),
    ({"cloud_state_dir": "/data/urbanpulse-cloud"}, True),
    ({"processor_venv": "/usr/local/urbanpulse"}, True),
    ({"processor_config_dir": "/etc/urbanpulse-cloud"}, True),
    ({"processor_user": "processor"}, True),
])
def test_the_role_refuses_paths_or_a_user_its_unit_does_not_run_with(
        tmp_path: Path, variables: dict[str, str], refused: bool) -> None:
    """The unit lets the processor write its StateDirectory= only (ProtectSystem=strict): a
    cloud_state_dir on another disk passed check-config, and the processor could not create
    its journals there (exit 3, restarted until systemd gave up)."""
    done = _run_checks(tmp_path, **variables)
    if not refused:
        assert done.returncode == 0, done.stdout + done.stderr
        return
    assert done.returncode != 0, done.stdout
    said = " ".join(done.stdout.split())
    assert ("the unit urbanpulse-cloud.service runs `/opt/urbanpulse/venv/bin/urbanpulse cloud "
            "run --config /etc/urbanpulse/cloud.toml` as urbanpulse and lets it write "
            "/var/lib/urbanpulse-cloud only") in said, done.stdout
    name, value = next(iter(variables.items()))
    if name == "cloud_state_dir":
        assert f"cloud_state_dir is {value}" in said
