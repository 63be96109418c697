"""The edge and processor roles start their service once on a first run: every task that
notifies the restart handler (the virtualenv, the CA, the passwords, the config, the unit)
comes before a flush_handlers, and that comes before the task that starts the service.
Without the flush the service was started with the new files, then restarted by the
handler at the end of the play seconds later (the edge role did that on a fresh node).
Read from the roles' task files, imports followed, in the order Ansible runs them; the
booted test of the processor counts its starts on a real host (test_ansible_cloud_booted.py)."""

from __future__ import annotations

from typing import Any

import pytest

from tests.ansible.helpers import ROLES, load_yaml

SERVICES = {"edge": "{{ edge_service }}", "processor": "{{ processor_service }}",
            "site_gateway": "{{ gateway_service }}"}


def _flat_tasks(role: str, name: str = "main.yml") -> list[dict[str, Any]]:
    """The role's tasks in run order, its import_tasks replaced by the imported files' tasks."""
    out: list[dict[str, Any]] = []
    for task in load_yaml(ROLES / role / "tasks" / name):
        imported = task.get("ansible.builtin.import_tasks")
        out.extend(_flat_tasks(role, imported) if imported else [task])  # ../../edge/... too
    return out


@pytest.mark.parametrize("role", sorted(SERVICES))
def test_every_restart_is_flushed_before_the_service_is_started(role: str) -> None:
    tasks = _flat_tasks(role)
    start = next(i for i, t in enumerate(tasks)
                 if t.get("ansible.builtin.systemd_service", {}).get("state") == "started")
    assert tasks[start]["ansible.builtin.systemd_service"]["name"] == SERVICES[role]
    flushes = [i for i, t in enumerate(tasks) if t.get("ansible.builtin.meta") == "flush_handlers"]
    notifying = [i for i, t in enumerate(tasks) if "notify" in t]
    assert notifying, role
    assert flushes, f"{role}: no flush_handlers: a first run starts the service, then restarts it"
    assert max(notifying) < flushes[-1] < start, (role, notifying, flushes, start)
    handlers = load_yaml(ROLES / role / "handlers" / "main.yml")
    # by name, or by a topic they listen to (the install's, which the gateway role imports)
    names = {h["name"] for h in handlers} | {h["listen"] for h in handlers if "listen" in h}
    assert {tasks[i]["notify"] for i in notifying} <= names
