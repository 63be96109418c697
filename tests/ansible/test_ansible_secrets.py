"""Where the roles put secrets on a host: readable by the service that needs them, written
by root only (a compromised service cannot replace its own credentials), never logged."""

from __future__ import annotations

from typing import Any

import pytest

from tests.ansible.helpers import ROLES, load_yaml


def _secret_copies(role: str) -> list[dict[str, Any]]:
    tasks: list[dict[str, Any]] = load_yaml(ROLES / role / "tasks" / "main.yml")
    found = [t for t in tasks if "ansible.builtin.copy" in t and "password" in str(t)]
    assert found, f"no task of {role} installs a password file"
    return found


@pytest.mark.parametrize(("role", "group"), [("edge", "{{ edge_user }}"),
                                             ("processor", "{{ processor_user }}")])
def test_a_service_reads_its_password_files_but_cannot_write_them(role: str, group: str) -> None:
    for task in _secret_copies(role):
        copy = task["ansible.builtin.copy"]
        assert copy["owner"] == "root"
        assert copy["group"] == group
        assert copy["mode"] == "0640"
        assert task.get("no_log") is True
