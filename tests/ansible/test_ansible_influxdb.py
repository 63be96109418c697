"""The influxdb role's systemd drop-in: it sets Go's collector target (GOGC) to the value the
local stack uses, systemd accepts it on the Debian package's own unit, and the role reloads
systemd and restarts influxd when it changes."""

from __future__ import annotations

import shutil
import subprocess
import tomllib
from pathlib import Path
from typing import Any

import pytest

from tests.ansible.helpers import ROLES, inventory_hosts, load_yaml, render
from urbanpulse.stack import influxd

ROLE = ROLES / "influxdb"
DROP_IN_DIR = "/etc/systemd/system/influxdb.service.d"
DROP_IN = f"{DROP_IN_DIR}/gogc.conf"
DEBIAN_UNIT = Path("/usr/lib/systemd/system/influxdb.service")


def _tasks() -> list[dict[str, Any]]:
    tasks: list[dict[str, Any]] = load_yaml(ROLE / "tasks" / "main.yml")
    return tasks


def _task_index(module: str, **args: str) -> int:
    for i, task in enumerate(_tasks()):
        body = task.get(module)
        if isinstance(body, dict) and all(body.get(k) == v for k, v in args.items()):
            return i
    raise AssertionError(f"no {module} task with {args}")


def _drop_in(host_vars: dict[str, Any]) -> str:
    return render(ROLE / "templates" / "gogc.conf.j2", "influxdb", host_vars)


def _service_lines(text: str) -> list[str]:
    lines = [ln.strip() for ln in text.splitlines() if ln.strip() and not ln.startswith("#")]
    assert lines[0] == "[Service]"
    return lines[1:]


def test_the_drop_in_sets_the_stacks_gogc_for_every_influxdb_host() -> None:
    hosts = inventory_hosts("influxdb")
    assert hosts
    for host, host_vars in hosts.items():
        assert _service_lines(_drop_in(host_vars)) == [f"Environment=GOGC={influxd.GOGC}"], host
    assert load_yaml(ROLE / "defaults" / "main.yml")["influxdb_gogc"] == influxd.GOGC == 200


def test_the_drop_in_takes_the_inventorys_value() -> None:
    host_vars = next(iter(inventory_hosts("influxdb").values()))
    assert _service_lines(_drop_in({**host_vars, "influxdb_gogc": 150})) == ["Environment=GOGC=150"]


def test_the_role_installs_the_drop_in_before_starting_and_restarts_on_a_change() -> None:
    tasks = _tasks()
    directory = _task_index("ansible.builtin.file", path=DROP_IN_DIR, state="directory")
    drop_in = _task_index("ansible.builtin.template", src="gogc.conf.j2", dest=DROP_IN)
    start = _task_index("ansible.builtin.systemd_service", name="influxdb.service", state="started")
    assert directory < drop_in < start
    assert tasks[start]["ansible.builtin.systemd_service"]["daemon_reload"] is True
    assert tasks[drop_in]["notify"] == "Restart influxdb"
    flush = next(i for i, t in enumerate(tasks) if t.get("ansible.builtin.meta") == "flush_handlers")
    assert start < flush
    handlers = {h["name"]: h for h in load_yaml(ROLE / "handlers" / "main.yml")}
    restart = handlers["Restart influxdb"]["ansible.builtin.systemd_service"]
    assert restart == {"name": "influxdb.service", "state": "restarted", "daemon_reload": True}


def test_systemd_accepts_the_drop_in_on_the_debian_unit(tmp_path: Path) -> None:
    exe = shutil.which("systemd-analyze")
    if exe is None or not DEBIAN_UNIT.is_file():
        pytest.skip("needs systemd-analyze and the influxdb package's unit")
    root = tmp_path / "root"
    shutil.copytree(DEBIAN_UNIT.parent, root / "usr/lib/systemd/system", symlinks=True)
    influxd_exe = root / "usr/bin/influxd"  # a stand-in: verify only checks it exists
    influxd_exe.parent.mkdir(parents=True)
    influxd_exe.write_text("#!/bin/sh\nexit 0\n")
    influxd_exe.chmod(0o755)
    drop_in = root / DROP_IN.lstrip("/")
    drop_in.parent.mkdir(parents=True)
    host_vars = next(iter(inventory_hosts("influxdb").values()))

    def verify(text: str) -> str:
        drop_in.write_text(text)
        out = subprocess.run(
            [exe, "verify", f"--root={root}", "--man=no", "influxdb.service"],
            capture_output=True, text=True, timeout=60, check=False,
        )
        return out.stdout + out.stderr

    assert verify(_drop_in(host_vars)) == ""
    # The same check does see a broken drop-in.
    assert "Unknown key" in verify(_drop_in(host_vars).replace("Environment=", "Enviroment="))


def _flat(tasks: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Tasks in run order, blocks opened (each inner task keeps its block's `when`)."""
    out: list[dict[str, Any]] = []
    for task in tasks:
        if "block" in task:
            out += [{**t, "block_when": task.get("when")} for t in _flat(task["block"])]
        else:
            out.append(task)
    return out


def _bind(text: str) -> str:
    bind: str = tomllib.loads(text)["http"]["bind-address"]
    return bind


def test_influxd_first_starts_with_the_roles_config_and_its_api_on_the_loopback() -> None:
    """Debian's package starts influxd as it installs it: with its own config, auth off on
    every address, until the role's restart; then with auth on and no user, which takes one
    unauthenticated "create admin" from anyone who reaches it, until the role makes its own.
    The role's config, certificate and key are now in place before the package (dpkg keeps a
    config it finds: checked by hand with this package in a Debian 12 chroot, "Keeping old
    config file as default"), the API on 127.0.0.1 until the admin exists, then as configured.
    A run on a host with its admin writes the configured address at once: nothing changes."""
    jinja2 = pytest.importorskip("jinja2")
    tasks = _flat(_tasks())

    def index(test: Any) -> int:
        return next(i for i, t in enumerate(tasks) if test(t))

    users_made = index(lambda t: t.get("ansible.builtin.user", {}).get("name") == "influxdb")
    assert tasks[users_made]["block_when"] == "influxdb_dpkg.stdout != 'installed'"
    assert tasks[users_made]["ansible.builtin.user"]["group"] == "influxdb"
    dpkg = index(lambda t: t.get("register") == "influxdb_dpkg")
    assert tasks[dpkg]["check_mode"] is False
    key = index(lambda t: "server.key" in str(t.get("loop")))
    ca = index(lambda t: t.get("ansible.builtin.copy", {}).get("dest") == "{{ influxdb_ca_file }}")
    probe = index(lambda t: t.get("urbanpulse_influxdb_users", {}).get("stage") == "probe")
    confs = [i for i, t in enumerate(tasks)
             if t.get("ansible.builtin.template", {}).get("src") == "influxdb.conf.j2"]
    drop_in = index(lambda t: t.get("ansible.builtin.template", {}).get("src") == "gogc.conf.j2")
    apt = index(lambda t: "ansible.builtin.apt" in t)
    start = index(lambda t: t.get("ansible.builtin.systemd_service", {}).get("state") == "started")
    admin = index(lambda t: t.get("urbanpulse_influxdb_users", {}).get("stage") == "admin")
    flushes = [i for i, t in enumerate(tasks) if t.get("ansible.builtin.meta") == "flush_handlers"]
    users = index(lambda t: t.get("ansible.builtin.import_tasks") == "users.yml")
    assert dpkg < users_made < key < ca < probe < confs[0] < drop_in < apt < start < flushes[0]
    assert flushes[0] < admin < confs[1] < flushes[1] < users == len(tasks) - 1
    assert len(confs) == 2
    assert "dpkg_options" not in tasks[apt]["ansible.builtin.apt"]  # force-confold, its default
    assert tasks[probe]["register"] == "influxdb_probe"
    assert tasks[probe]["urbanpulse_influxdb_users"]["address"] == "{{ influxdb_setup_address }}"
    assert tasks[admin]["urbanpulse_influxdb_users"]["address"] == "127.0.0.1"
    assert tasks[admin]["block_when"] == tasks[confs[1]]["block_when"] == (
        "not influxdb_probe.admin_exists")
    assert tasks[confs[0]]["notify"] == tasks[confs[1]]["notify"] == "Restart influxdb"

    host_vars = next(iter(inventory_hosts("influxdb").values()))
    env = jinja2.Environment(undefined=jinja2.StrictUndefined)

    def conf(task: dict[str, Any], admin_exists: bool, bind: str) -> str:
        now = env.from_string(task["vars"]["influxdb_http_bind_now"]).render(
            influxdb_bind=bind, influxdb_probe={"admin_exists": admin_exists})
        return render(ROLE / "templates" / "influxdb.conf.j2", "influxdb",
                      {**host_vars, "influxdb_bind": bind, "influxdb_http_bind_now": now})

    for bind in ("", "10.0.0.5"):
        first = conf(tasks[confs[0]], False, bind)
        assert _bind(first) == "127.0.0.1:8086"
        http = tomllib.loads(first)["http"]
        assert (http["auth-enabled"], http["https-enabled"]) == (True, True)
        rebound = conf(tasks[confs[1]], False, bind)
        assert _bind(rebound) == f"{bind}:8086"
        assert conf(tasks[confs[0]], True, bind) == rebound  # the next run: no change
    # the template alone (the other tests' renderings): the configured address
    assert _bind(render(ROLE / "templates" / "influxdb.conf.j2", "influxdb", host_vars)) == ":8086"
