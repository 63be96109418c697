"""The processor role with urbanpulse_mqtt_cloud_auth 'certificate' (the broker's cloud
listener takes a client certificate, tests/ansible/test_ansible_mosquitto_cert_listener.py):
the certificate and key installed from the controller, named in cloud.toml."""

from __future__ import annotations

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


@pytest.mark.parametrize(("auth", "message"), [
    ("password", None),
    ("certificate", None),
    ("certs", r"urbanpulse_mqtt_cloud_auth \(processor_mqtt_auth\) is 'certs': use 'password' "
              "or 'certificate'"),
])
def test_the_role_refuses_an_unknown_way_to_log_in(tmp_path: Path, auth: str, message: str | None
                                                   ) -> None:
    yaml = pytest.importorskip("yaml")
    checks = [t for t in _tasks() if "ansible.builtin.assert" in t]
    assert checks == _tasks()[:1]  # checked before anything is installed
    playbook = tmp_path / "checks.yml"
    playbook.write_text(yaml.safe_dump([{"hosts": "localhost", "gather_facts": False,
                                         "vars": {"processor_mqtt_auth": auth}, "tasks": checks}]))
    done = subprocess.run([_ansible_tool("ansible-playbook"), "-i", "localhost,", "-c", "local",
                           str(playbook)], capture_output=True, text=True, timeout=120, check=False)
    if message is None:
        assert done.returncode == 0, done.stdout + done.stderr
    else:
        assert done.returncode != 0
        assert re.search(message, " ".join(done.stdout.split())), done.stdout
