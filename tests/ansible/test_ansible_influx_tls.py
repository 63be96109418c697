"""InfluxDB over TLS in the roles: influxd serves HTTPS only with the inventory's certificate
(the key readable by influxdb only), the processor's cloud.toml uses https and the CA, and
Grafana's datasource trusts that CA."""

from __future__ import annotations

import tomllib
from typing import Any

import pytest

from cloud.config import parse_cloud_config
from tests.ansible.helpers import MISSING_DEV_DEP, ROLES, inventory_hosts, load_yaml, render
from urbanpulse.dashboards.generate import generated_files
from urbanpulse.dashboards.provisioning import CA_FILE


def _http_section(text: str) -> dict[str, Any]:
    http: dict[str, Any] = tomllib.loads(text)["http"]
    return http


def test_influxdb_serves_https_with_the_inventorys_certificate() -> None:
    hosts = inventory_hosts("influxdb")
    assert hosts
    for host, host_vars in hosts.items():
        http = _http_section(render(ROLES / "influxdb" / "templates" / "influxdb.conf.j2",
                                    "influxdb", host_vars))
        assert http["https-enabled"] is True, host
        assert http["auth-enabled"] is True
        assert http["https-certificate"] == "/etc/influxdb/tls/server.pem"
        assert http["https-private-key"] == "/etc/influxdb/tls/server.key"


def test_the_certificate_comes_from_the_inventory_and_the_key_is_influxdbs_only() -> None:
    tasks: list[dict[str, Any]] = load_yaml(ROLES / "influxdb" / "tasks" / "main.yml")
    copy = next(t for t in tasks if "ansible.builtin.copy" in t and "server.key" in str(t))
    modes = {item["dest"]: item["mode"] for item in copy["loop"]}
    assert modes == {"server.pem": "0644", "server.key": "0640"}
    assert copy["ansible.builtin.copy"]["owner"] == "root"
    assert copy["ansible.builtin.copy"]["group"] == "influxdb"
    assert copy["no_log"] is True
    folder = next(t["ansible.builtin.file"] for t in tasks if "ansible.builtin.file" in t
                  and t["ansible.builtin.file"]["path"] == "{{ influxdb_tls_dir }}")
    assert (folder["owner"], folder["group"], folder["mode"]) == ("root", "influxdb", "0750")
    defaults = load_yaml(ROLES / "influxdb" / "defaults" / "main.yml")
    assert defaults["influxdb_server_cert_src"] == "{{ inventory_dir }}/files/influx-server.pem"
    assert defaults["influxdb_server_key_src"] == "{{ inventory_dir }}/files/influx-server.key"
    conf = next(i for i, t in enumerate(tasks) if "ansible.builtin.template" in t
                and t["ansible.builtin.template"]["src"] == "influxdb.conf.j2")
    assert tasks.index(copy) < conf


def test_the_roles_own_requests_check_the_certificate_with_the_inventorys_ca() -> None:
    """They go to the loopback, the certificate checked for the name of urbanpulse_influx_url
    (tests/ansible/test_ansible_influx_users.py runs them against a real influxd)."""
    role = ROLES / "influxdb"
    tasks: list[dict[str, Any]] = load_yaml(role / "tasks" / "main.yml")
    users: list[dict[str, Any]] = load_yaml(role / "tasks" / "users.yml")
    assert "validate_certs" not in str(tasks) + str(users)
    assert not [t for t in tasks + users if "ansible.builtin.uri" in t]
    ca = next(i for i, t in enumerate(tasks)
              if t.get("ansible.builtin.copy", {}).get("dest") == "{{ influxdb_ca_file }}")
    flush = next(i for i, t in enumerate(tasks) if t.get("ansible.builtin.meta") == "flush_handlers")
    assert ca < flush < len(tasks) - 1
    assert tasks[-1]["ansible.builtin.import_tasks"] == "users.yml"
    setup = users[0]["urbanpulse_influxdb_users"]
    assert setup["ca_file"] == "{{ influxdb_ca_file }}"
    assert "urbanpulse_influx_url | urlsplit('hostname')" in setup["server_name"]
    defaults = load_yaml(role / "defaults" / "main.yml")
    assert defaults["influxdb_setup_address"] == "127.0.0.1"
    assert defaults["influxdb_ca_cert_src"] == "{{ urbanpulse_ca_cert_src }}"
    assert defaults["influxdb_ca_file"] == "{{ influxdb_tls_dir }}/ca.pem"


def test_the_processor_reaches_influxdb_over_https_trusting_the_ca() -> None:
    for host, host_vars in inventory_hosts("processor").items():
        text = render(ROLES / "processor" / "templates" / "cloud.toml.j2", "processor", host_vars)
        cfg = parse_cloud_config(tomllib.loads(text))
        assert cfg.influx.url == "https://influx.urbanpulse.example.org:8086", host
        assert str(cfg.influx.ca_file) == "/etc/urbanpulse/ca.pem"


def test_a_processor_on_the_influxdb_host_may_use_loopback_http_without_a_ca() -> None:
    host_vars = next(iter(inventory_hosts("processor").values()))
    text = render(ROLES / "processor" / "templates" / "cloud.toml.j2", "processor",
                  {**host_vars, "cloud_influx_url": "http://127.0.0.1:8086"})
    cfg = parse_cloud_config(tomllib.loads(text))
    assert (cfg.influx.url, cfg.influx.ca_file) == ("http://127.0.0.1:8086", None)


def test_grafanas_datasource_trusts_the_ca_the_role_installs() -> None:
    datasource = generated_files()["provisioning/datasources/urbanpulse.yaml"]
    yaml = pytest.importorskip("yaml", reason=MISSING_DEV_DEP)
    source = yaml.safe_load(datasource)["datasources"][0]
    assert source["jsonData"]["tlsAuthWithCACert"] is True
    assert source["secureJsonData"]["tlsCACert"] == f"$__file{{{CA_FILE}}}"
    assert "tlsSkipVerify" not in source["jsonData"]
    defaults = load_yaml(ROLES / "grafana" / "defaults" / "main.yml")
    assert defaults["grafana_influx_ca_file"] == CA_FILE
    assert defaults["grafana_influx_url"] == "{{ urbanpulse_influx_url }}"
    tasks: list[dict[str, Any]] = load_yaml(ROLES / "grafana" / "tasks" / "main.yml")
    install = next(i for i, t in enumerate(tasks)
                   if t.get("ansible.builtin.copy", {}).get("dest") == "{{ grafana_influx_ca_file }}")
    provisioning = next(i for i, t in enumerate(tasks) if "provisioning" in str(
        t.get("ansible.builtin.copy", {}).get("dest", "")))
    start = next(i for i, t in enumerate(tasks)
                 if t.get("ansible.builtin.systemd_service", {}).get("state") == "started")
    assert install < provisioning < start
    for host_vars in inventory_hosts("grafana").values():
        env = render(ROLES / "grafana" / "templates" / "urbanpulse.env.j2", "grafana",
                     {**host_vars, "vault_influx_reader_password": "r" * 16,
                      "vault_grafana_admin_password": "a" * 16})
        assert "URBANPULSE_INFLUX_URL=https://influx.urbanpulse.example.org:8086" in env.splitlines()

