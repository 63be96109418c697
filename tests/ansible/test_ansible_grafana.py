"""The grafana role: Grafana never starts with its built-in admin/admin login, and nobody
gets in without an account (no sign-up, no anonymous viewer)."""

from __future__ import annotations

from typing import Any

from tests.ansible.helpers import ROLES, inventory_hosts, load_yaml, render

ROLE = ROLES / "grafana"
SECRETS = {"vault_grafana_admin_password": "Zq3-admin-secret-0123456789",
           "vault_influx_reader_password": "reader-secret-0123456789"}


def _tasks() -> list[dict[str, Any]]:
    tasks: list[dict[str, Any]] = load_yaml(ROLE / "tasks" / "main.yml")
    return tasks


def _environment(host_vars: dict[str, Any]) -> dict[str, str]:
    text = render(ROLE / "templates" / "urbanpulse.env.j2", "grafana", {**host_vars, **SECRETS})
    pairs = (line.split("=", 1) for line in text.splitlines() if line and not line.startswith("#"))
    return dict(pairs)


def test_grafana_gets_the_vaulted_admin_password_and_no_open_door() -> None:
    hosts = inventory_hosts("grafana")
    assert hosts
    for host_vars in hosts.values():
        env = _environment(host_vars)
        assert env["GF_SECURITY_ADMIN_PASSWORD"] == SECRETS["vault_grafana_admin_password"]
        assert env["GF_USERS_ALLOW_SIGN_UP"] == "false"
        assert env["GF_AUTH_ANONYMOUS_ENABLED"] == "false"
        assert env["GF_AUTH_BASIC_ENABLED"] == "true"  # the API needs a login too


def test_the_role_refuses_a_missing_or_short_admin_password_before_installing() -> None:
    tasks = _tasks()
    check = next(i for i, t in enumerate(tasks) if "ansible.builtin.assert" in t
                 and any("grafana_admin_password" in c for c in t["ansible.builtin.assert"]["that"]))
    install = next(i for i, t in enumerate(tasks) if "ansible.builtin.apt" in t)
    assert check < install
    that = " ".join(tasks[check]["ansible.builtin.assert"]["that"])
    # 16+ characters a systemd environment file reads back as they are
    assert "is defined" in that
    assert "match('^[A-Za-z0-9_-]{16,}$')" in that
    assert tasks[check].get("no_log") is True


def test_the_environment_is_in_place_before_grafana_first_starts() -> None:
    # Grafana takes GF_SECURITY_ADMIN_PASSWORD when it creates its database, at the first
    # start; started before, it would keep admin/admin.
    tasks = _tasks()
    env = next(i for i, t in enumerate(tasks)
               if t.get("ansible.builtin.template", {}).get("src") == "urbanpulse.env.j2")
    drop_in = next(i for i, t in enumerate(tasks)
                   if "EnvironmentFile=/etc/grafana/urbanpulse.env"
                   in str(t.get("ansible.builtin.copy", {}).get("content", "")))
    start = next(i for i, t in enumerate(tasks)
                 if t.get("ansible.builtin.systemd_service", {}).get("state") == "started")
    assert env < start
    assert drop_in < start
    assert tasks[env]["ansible.builtin.template"]["mode"] == "0640"
    assert tasks[env]["ansible.builtin.template"]["group"] == "grafana"
    assert tasks[env].get("no_log") is True
