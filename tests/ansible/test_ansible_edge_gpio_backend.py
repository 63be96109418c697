"""The edge role refuses a node whose GPIO backend cannot run there (its Python module not
installed in the node's virtualenv), with the agent's own words naming `gpio.backend`,
instead of starting an agent that stops at every start (exit code 2). Run by
ansible-playbook itself on this machine (connection local), with this checkout's
`urbanpulse` as the node's: lgpio is not installed here, gpiozero's mock pins are."""

from __future__ import annotations

import json
import os
import re
import sys
from pathlib import Path

import pytest

from edge.gpio.factory import ENV_BACKEND, module_available
from tests.ansible.helpers import run_role_play

REPO = Path(__file__).resolve().parents[2]
BED_PAD = REPO / "edge/drivers/bed_pad/sample.toml"
SDS011 = REPO / "edge/drivers/sds011/sample.toml"


@pytest.mark.skipif(module_available("lgpio"), reason="lgpio is installed here")
def test_the_role_refuses_a_node_without_its_gpio_backend(tmp_path: Path) -> None:
    configs = {
        "gpio-lgpio": BED_PAD.read_text(),
        "gpio-mock": BED_PAD.read_text().replace('backend = "lgpio"', 'backend = "mock"'),
        "serial-lgpio": SDS011.read_text().replace("[[sensors]]", '[gpio]\nbackend = "lgpio"\n\n'
                                                   "[[sensors]]", 1),
    }
    hosts = {}
    for host, text in configs.items():
        (tmp_path / f"{host}.toml").write_text(text)
        hosts[host] = {"ansible_connection": "local", "ansible_python_interpreter": sys.executable,
                       "edge_bin": str(Path(sys.executable).parent / "urbanpulse"),
                       "edge_config_path": str(tmp_path / f"{host}.toml")}
    (tmp_path / "inventory.json").write_text(json.dumps({"all": {"hosts": hosts}}))
    (tmp_path / "check.yml").write_text(json.dumps([{
        "name": "The edge role's GPIO backend check", "hosts": "all", "gather_facts": False,
        "tasks": [{"ansible.builtin.include_role": {"name": "edge", "tasks_from": "check_gpio"}}],
    }]))
    env = {k: v for k, v in os.environ.items() if k != ENV_BACKEND}
    out = run_role_play(tmp_path, tmp_path / "check.yml", env=env)
    recap = out.stdout[out.stdout.index("PLAY RECAP"):]
    failed = set(re.findall(r"(?m)^(\S+)\s+: ok=\d+ .*failed=[1-9]", recap))
    assert failed == {"gpio-lgpio"}, out.stdout
    assert ("gpio-lgpio: gpio.backend: 'lgpio' cannot run here: GPIO backend 'lgpio' needs the "
            "Python module 'lgpio', which is not installed; needed by sensors[0].pin (sensor "
            "'bed-01')") in " ".join(out.stdout.split()), out.stdout
