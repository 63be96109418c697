"""Shared by the Ansible tests: where the files are, and the example inventory's hosts
with their variables merged the way Ansible merges them (role defaults, then group vars
from `all` down to the host's own group, then host vars)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]
ANSIBLE = REPO / "ansible"
INVENTORY = ANSIBLE / "inventory.example.yml"
ROLES = ANSIBLE / "roles"
MISSING_DEV_DEP = "needs ansible-core (jinja2, PyYAML) in the dev extra of pyproject.toml"


def ansible_tool(name: str) -> str:
    found = shutil.which(name) or shutil.which(name, path=str(Path(sys.executable).parent))
    if found is None:
        pytest.skip(f"{name} is not installed: add ansible-core to the dev extra of pyproject.toml")
    return found


def run_role_play(work: Path, playbook: Path, *args: str,
                  env: Mapping[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """`ansible-playbook` on `playbook` against `work`/inventory.json on this machine: the
    repository's roles, no ansible.cfg, Ansible's own files under `work`; `args` before the
    playbook (`--limit`), `env` instead of os.environ."""
    return subprocess.run(
        [ansible_tool("ansible-playbook"), "-i", str(work / "inventory.json"), *args,
         str(playbook)], cwd=work, capture_output=True, text=True, timeout=120, check=False,
        env={**(os.environ if env is None else env), "ANSIBLE_CONFIG": "",
             "ANSIBLE_ROLES_PATH": str(ROLES), "ANSIBLE_NOCOLOR": "1",
             "ANSIBLE_LOCAL_TEMP": str(work / "ansible-tmp"),
             "ANSIBLE_HOME": str(work / "ansible-home"), "ANSIBLE_RETRY_FILES_ENABLED": "0"})


def load_yaml(path: Path) -> Any:
    yaml = pytest.importorskip("yaml", reason=MISSING_DEV_DEP)
    return yaml.safe_load(path.read_text(encoding="utf-8"))


def _walk(name: str, group: Mapping[str, Any], chain: list[tuple[str, Mapping[str, Any]]]
          ) -> Iterator[tuple[str, list[str], list[Mapping[str, Any]]]]:
    chain = [*chain, (name, group.get("vars") or {})]
    for host, hvars in (group.get("hosts") or {}).items():
        yield host, [n for n, _ in chain], [v for _, v in chain] + [hvars or {}]
    for child, sub in (group.get("children") or {}).items():
        yield from _walk(child, sub or {}, chain)


def inventory_hosts(group: str) -> dict[str, dict[str, Any]]:
    """Hosts of `group` in the example inventory -> their merged (untemplated) variables."""
    hosts: dict[str, dict[str, Any]] = {}
    for host, groups, layers in _walk("all", load_yaml(INVENTORY)["all"], []):
        if group in groups:
            merged: dict[str, Any] = {}
            for layer in layers:
                merged.update(layer)
            merged.update(inventory_hostname=host, inventory_dir=str(ANSIBLE))
            hosts[host] = merged
    return hosts


def render(template: Path, role: str, host_vars: Mapping[str, Any],
           filters: Mapping[str, Any] | None = None) -> str:
    """Role defaults under the host's vars, resolved like Ansible's lazy templating;
    `filters`: a role's filter plugins the template uses."""
    jinja2 = pytest.importorskip("jinja2", reason=MISSING_DEV_DEP)
    env = jinja2.Environment(undefined=jinja2.StrictUndefined, keep_trailing_newline=True,
                             trim_blocks=True)
    env.filters.update(filters or {})
    context: dict[str, Any] = dict(load_yaml(ROLES / role / "defaults" / "main.yml") or {})
    context.update(host_vars)
    lenient = jinja2.Environment()
    for _ in range(10):
        changed = False
        for key, value in list(context.items()):
            if isinstance(value, str) and "{{" in value:
                try:
                    new = lenient.from_string(value).render(context)
                except jinja2.TemplateError:
                    # Ansible-only (filters such as extract, the inventory's groups): a
                    # template that uses it needs the test to give it (StrictUndefined says so)
                    del context[key]
                    changed = True
                    continue
                changed |= new != value
                context[key] = new
        if not changed:
            break
    text: str = env.from_string(template.read_text(encoding="utf-8")).render(context)
    return text
