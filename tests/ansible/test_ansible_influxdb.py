"""The influxdb role's systemd drop-in: it sets Go's collector target (GOGC) to the value the
local stack uses, systemd accepts it on the Debian package's own unit, and the role reloads
systemd and restarts influxd when it changes."""

from __future__ import annotations

import shutil
import subprocess
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
