"""The processor starts only once the clock is synchronised. The ingests stamp the journal
with the host's clock and the journal keeps its stamps increasing: a processor started on a
clock 7 h ahead (an RTC kept in Hanoi's local time, read as UTC) left every record "ahead"
for 7 h after NTP stepped the clock back. Ordering the unit after time-sync.target is not
enough by itself on Debian 12: what orders itself before that target is checked here on this
machine's own systemd and chrony units, and the role enables the one unit that waits."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.ansible.helpers import ROLES, load_yaml
from tests.ansible.test_ansible_playbooks import _ansible_tool
from tests.ansible.test_ansible_units import UNITS, _parse

SYSTEM_UNITS = Path("/usr/lib/systemd/system")
WAIT = "systemd-time-wait-sync.service"


def _words(unit: dict[str, dict[str, list[str]]], key: str) -> set[str]:
    return {w for v in unit.get("Unit", {}).get(key, []) for w in v.split()}


def test_the_processor_is_ordered_after_and_pulls_in_time_sync() -> None:
    unit = _parse(UNITS["urbanpulse-cloud.service"])
    assert "time-sync.target" in _words(unit, "After")
    assert "time-sync.target" in _words(unit, "Wants")
    # what it needed before stays
    assert "network-online.target" in _words(unit, "After") & _words(unit, "Wants")


def test_the_edge_agent_does_not_wait_for_the_clock() -> None:
    """A node reads its sensors while the network (and so NTP) is down: its readings are
    flagged clock_unsynced until the kernel calls the clock synchronised, and the outbox's
    age eviction waits for that (docs/edge-config.md, clock_check). Waiting at boot would
    read nothing during an outage."""
    unit = _parse(UNITS["urbanpulse-edge.service"])
    assert "time-sync.target" not in _words(unit, "After") | _words(unit, "Wants")


def _before_time_sync(root: Path) -> dict[str, dict[str, dict[str, list[str]]]]:
    found = {}
    for path in sorted(root.glob("*.service")):
        if path.is_symlink():
            continue
        unit = _parse(path)
        if "time-sync.target" in _words(unit, "Before"):
            found[path.name] = unit
    return found


def test_on_debian_12_only_the_disabled_wait_holds_time_sync_target() -> None:
    """Why the unit's ordering alone waits for nothing: systemd-timesyncd (Type=notify, ready
    before it has reached a server) orders itself before time-set.target, not time-sync.target;
    only systemd-time-wait-sync.service, which Debian's preset disables, waits for the kernel's
    synchronised flag before time-sync.target."""
    if not (SYSTEM_UNITS / WAIT).is_file():
        pytest.skip(f"no {SYSTEM_UNITS / WAIT} on this machine")
    before = _before_time_sync(SYSTEM_UNITS)
    assert WAIT in before
    for name in set(before) - {WAIT, "chrony.service", "chrony-wait.service"}:
        pytest.fail(f"{name} is ordered before time-sync.target too: look at what it waits for")
    wait = before[WAIT]
    assert wait["Service"]["Type"] == ["oneshot"]
    assert wait["Install"]["WantedBy"] == ["sysinit.target"]
    timesyncd = SYSTEM_UNITS / "systemd-timesyncd.service"
    if timesyncd.is_file():
        assert "time-sync.target" not in _words(_parse(timesyncd), "Before")
    presets = "\n".join(p.read_text() for p in (SYSTEM_UNITS.parent / "system-preset").glob("*"))
    assert f"disable {WAIT}" in presets


def _tasks(name: str = "main.yml") -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for task in load_yaml(ROLES / "processor" / "tasks" / name):
        imported = task.get("ansible.builtin.import_tasks")
        out.extend(_tasks(imported) if imported else [task])
    return out


def test_the_role_enables_the_wait_before_it_installs_and_starts_the_unit() -> None:
    tasks = _tasks()
    enable = [i for i, t in enumerate(tasks)
              if t.get("ansible.builtin.systemd_service", {}).get("name") == WAIT]
    assert len(enable) == 1
    module = tasks[enable[0]]["ansible.builtin.systemd_service"]
    assert module == {"name": WAIT, "enabled": True}  # not started: a play could hang on it
    unit = next(i for i, t in enumerate(tasks)
                if t.get("ansible.builtin.copy", {}).get("src") == "urbanpulse-cloud.service")
    check = next(i for i, t in enumerate(tasks) if "ansible.builtin.assert" in t
                 and "time service" in t["name"])
    assert check < enable[0] < unit


def _run_check(tmp_path: Path, *, container: bool, installed: list[str]) -> subprocess.CompletedProcess[str]:
    """The role's tasks/time_sync.yml, run by ansible-playbook on this machine with
    systemd-detect-virt and dpkg-query answering as a host with `installed` would."""
    yaml = pytest.importorskip("yaml")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "systemd-detect-virt").write_text(
        "#!/bin/sh\n" + ("echo systemd-nspawn\nexit 0\n" if container else "echo none\nexit 1\n"))
    lines = "".join(f"echo '{p} ii '\n" for p in installed)
    (bin_dir / "dpkg-query").write_text(
        "#!/bin/sh\n" + lines + ("exit 0\n" if installed else "echo 'no packages found' >&2\nexit 1\n"))
    for stub in bin_dir.iterdir():
        stub.chmod(0o755)
    playbook = tmp_path / "time_sync.yml"
    playbook.write_text(yaml.safe_dump([{
        "hosts": "localhost", "gather_facts": False,
        "tasks": [{"ansible.builtin.include_role": {"name": "processor", "tasks_from": "time_sync"}}]}]))
    return subprocess.run(
        [_ansible_tool("ansible-playbook"), "-i", "localhost,", "-c", "local",
         "-e", f"ansible_python_interpreter={sys.executable}", str(playbook)],
        capture_output=True, text=True, timeout=120, check=False,
        env={**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}", "ANSIBLE_CONFIG": "",
             "ANSIBLE_ROLES_PATH": str(ROLES), "ANSIBLE_NOCOLOR": "1",
             "ANSIBLE_RETRY_FILES_ENABLED": "0",
             "ANSIBLE_LOCAL_TEMP": str(tmp_path / "ansible-tmp"),
             "ANSIBLE_HOME": str(tmp_path / "ansible-home")})


@pytest.mark.parametrize(("container", "installed", "refused"), [
    (False, ["systemd-timesyncd"], False),
    (False, ["chrony"], False),
    (False, [], True),
    (True, [], False),  # systemd skips the wait in a container: the host's clock
])
def test_the_role_refuses_a_host_without_a_time_service(
        tmp_path: Path, container: bool, installed: list[str], refused: bool) -> None:
    done = _run_check(tmp_path, container=container, installed=installed)
    if not refused:
        assert done.returncode == 0, done.stdout + done.stderr
        return
    assert done.returncode != 0, done.stdout
    said = " ".join(done.stdout.split())
    assert ("localhost has no time service (none of systemd-timesyncd, chrony, ntpsec, ntp is "
            "installed): the processor's unit waits at boot") in said, done.stdout
