"""Time synchronisation on the hosts that stamp data with their own clock.

The processor starts only once the clock is synchronised. The ingests stamp the journal
with the host's clock and the journal keeps its stamps increasing: a processor started on a
clock 7 h ahead (an RTC kept in Hanoi's local time, read as UTC) left every record "ahead"
for 7 h after NTP stepped the clock back. Ordering the unit after time-sync.target is not
enough by itself on Debian 12: what orders itself before that target is checked here on this
machine's own systemd and chrony units, and the role enables the one unit that waits.

The edge nodes stamp every reading, and a Raspberry Pi has no RTC: the edge role set up no
time service (a node relied on its image, and one without a working one stamped its readings
wherever fake-hwclock left the clock). Both roles now use roles/time_sync, which installs
systemd-timesyncd (or keeps the chrony, ntpsec or ntp installed) and gives it the
inventory's NTP servers, run here by ansible-playbook on this machine with stand-ins for
dpkg-query, systemd-detect-virt, systemctl and chronyd. The agent does not wait for it:
it flags readings clock_unsynced while the kernel's STA_UNSYNC is set, which
systemd-timesyncd clears (unless the RTC keeps local time) and chrony only with rtcsync:
the role refuses the first and sees to the second."""

from __future__ import annotations

import json
import os
import re
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
    # time-set.target waits for no network (systemd-timesyncd reaches it once it has moved
    # the clock forward to the time it last saved); ordered after only, not pulled in
    assert "time-set.target" in _words(unit, "After")
    assert not {"time-set.target", WAIT, "chrony-wait.service"} & (
        _words(unit, "Wants") | _words(unit, "Requires"))


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


def _tasks(role: str, name: str = "main.yml") -> list[dict[str, Any]]:
    """The role's tasks in order, imported task files, roles and blocks expanded."""
    out: list[dict[str, Any]] = []
    for task in load_yaml(ROLES / role / "tasks" / name):
        if "ansible.builtin.import_tasks" in task:
            out.extend(_tasks(role, task["ansible.builtin.import_tasks"]))
        elif "block" in task:
            for inner in task["block"]:
                if "ansible.builtin.import_tasks" in inner:
                    out.extend(_tasks(role, inner["ansible.builtin.import_tasks"]))
                else:
                    out.append(inner)
        else:
            out.append(task)
            if "ansible.builtin.import_role" in task:
                out.extend(_tasks(task["ansible.builtin.import_role"]["name"]))
    return out


def _index(tasks: list[dict[str, Any]], module: str, **args: Any) -> list[int]:
    return [i for i, t in enumerate(tasks)
            if isinstance(t.get(module), dict) and args.items() <= t[module].items()]


def test_the_role_enables_the_wait_before_it_installs_and_starts_the_unit() -> None:
    tasks = _tasks("processor")
    enable = _index(tasks, "ansible.builtin.systemd_service", name=WAIT)
    assert len(enable) == 1
    module = tasks[enable[0]]["ansible.builtin.systemd_service"]
    assert module == {"name": WAIT, "enabled": True}  # not started: a play could hang on it
    unit = _index(tasks, "ansible.builtin.copy", src="urbanpulse-cloud.service")
    time_service = _index(tasks, "ansible.builtin.import_role", name="time_sync")
    assert len(unit) == len(time_service) == 1
    assert time_service[0] < enable[0] < unit[0]


def test_the_edge_role_sets_up_the_time_service_and_enables_no_wait() -> None:
    """The node's time service is set up before the agent is started; nothing on the node
    waits for NTP (a Pi without network at boot reads and buffers, flagged)."""
    tasks = _tasks("edge")
    time_service = _index(tasks, "ansible.builtin.import_role", name="time_sync")
    start = _index(tasks, "ansible.builtin.systemd_service", name="{{ edge_service }}",
                   state="started")
    assert len(time_service) == len(start) == 1
    assert time_service[0] < start[0]
    named = [t["ansible.builtin.systemd_service"]["name"] for t in tasks
             if "ansible.builtin.systemd_service" in t]
    assert not {WAIT, "chrony-wait.service"} & set(named)


STUBS = {
    # a stand-in for each command the role runs; CALLS collects their arguments
    "dpkg-query": "#!/bin/sh\necho \"$0 $*\" >> \"$CALLS\"\ncat \"$STUB_DIR/dpkg\"\n",
    "systemd-detect-virt": "#!/bin/sh\nif [ -f \"$STUB_DIR/container\" ]; then echo systemd-nspawn; "
                           "exit 0; fi\necho none\nexit 1\n",
    "chronyd": "#!/bin/sh\necho \"chronyd $*\" >> \"$CALLS\"\ncat \"$STUB_DIR/chronyd-p\"\n",
    # systemd_service asks `show`, then `is-enabled`: units start disabled and inactive
    "systemctl": ("#!/bin/sh\necho \"systemctl $*\" >> \"$CALLS\"\ncase \"$1\" in\n"
                  "show) state=inactive; [ -f \"$STUB_DIR/active-$2\" ] && state=active\n"
                  "  printf 'LoadState=loaded\\nActiveState=%s\\n' $state ;;\n"
                  "is-enabled) [ -f \"$STUB_DIR/enabled-$2\" ] && { echo enabled; exit 0; }\n"
                  "  echo disabled; exit 1 ;;\n"
                  "enable) touch \"$STUB_DIR/enabled-$2\" ;;\n"
                  "start|restart) touch \"$STUB_DIR/active-$2\" ;;\nesac\nexit 0\n"),
}
# `chronyd -p` on Debian 12's own chrony.conf (confdir expanded, sources.d not)
DEBIAN_CHRONY_PARSED = """pool 2.debian.pool.ntp.org iburst
sourcedir /run/chrony-dhcp
sourcedir {etc}/chrony/sources.d
keyfile /etc/chrony/chrony.keys
driftfile /var/lib/chrony/chrony.drift
rtcsync
makestep 1 3
"""
DEBIAN_CHRONY_CONF = """confdir {etc}/chrony/conf.d
pool 2.debian.pool.ntp.org iburst
sourcedir /run/chrony-dhcp
sourcedir {etc}/chrony/sources.d
rtcsync
makestep 1 3
"""


class Host:
    """A machine for the role: its installed packages, files under `etc`, stand-ins."""

    def __init__(self, tmp_path: Path, installed: list[str], *, container: bool = False) -> None:
        self.tmp = tmp_path
        self.etc = tmp_path / "etc"
        self.etc.mkdir()
        self.stubs = tmp_path / "bin"
        self.stubs.mkdir()
        for name, text in STUBS.items():
            (self.stubs / name).write_text(text)
            (self.stubs / name).chmod(0o755)
        (self.stubs / "dpkg").write_text("".join(f"{p} ii \n" for p in installed))
        if container:
            (self.stubs / "container").touch()
        self.calls = tmp_path / "calls"
        self.calls.touch()
        self.vars: dict[str, Any] = {
            "time_sync_timesyncd_dropin": f"{self.etc}/systemd/timesyncd.conf.d/urbanpulse.conf",
            "time_sync_chrony_config": f"{self.etc}/chrony/chrony.conf",
            "time_sync_chrony_sources": f"{self.etc}/chrony/sources.d/urbanpulse.sources",
            "time_sync_chrony_dropin": f"{self.etc}/chrony/conf.d/urbanpulse.conf",
            "time_sync_adjtime": f"{self.etc}/adjtime",
        }

    def chrony(self, parsed: str = DEBIAN_CHRONY_PARSED, conf: str = DEBIAN_CHRONY_CONF) -> None:
        (self.stubs / "chronyd-p").write_text(parsed.format(etc=self.etc))
        (self.etc / "chrony").mkdir(exist_ok=True)
        (self.etc / "chrony" / "chrony.conf").write_text(conf.format(etc=self.etc))

    def play(self, tasks_from: str = "main", **host_vars: Any) -> subprocess.CompletedProcess[str]:
        inventory = {"all": {"hosts": {"node-1": {
            "ansible_connection": "local", "ansible_python_interpreter": sys.executable,
            **self.vars, **host_vars}}}}
        (self.tmp / "inventory.json").write_text(json.dumps(inventory))
        (self.tmp / "play.yml").write_text(json.dumps([{
            "hosts": "all", "gather_facts": False,
            "tasks": [
                {"ansible.builtin.include_role": {"name": "time_sync", "tasks_from": tasks_from}},
                {"ansible.builtin.debug": {"msg": "chosen={{ time_sync_chosen }} "
                                                  "unit={{ time_sync_unit }}."}}]}]))
        return subprocess.run(
            [_ansible_tool("ansible-playbook"), "-i", str(self.tmp / "inventory.json"),
             str(self.tmp / "play.yml")],
            cwd=self.tmp, capture_output=True, text=True, timeout=120, check=False,
            env={**os.environ, "PATH": f"{self.stubs}:{os.environ['PATH']}",
                 "STUB_DIR": str(self.stubs), "CALLS": str(self.calls), "ANSIBLE_CONFIG": "",
                 "ANSIBLE_ROLES_PATH": str(ROLES), "ANSIBLE_NOCOLOR": "1",
                 "ANSIBLE_RETRY_FILES_ENABLED": "0",
                 "ANSIBLE_LOCAL_TEMP": str(self.tmp / "ansible-tmp"),
                 "ANSIBLE_HOME": str(self.tmp / "ansible-home")})

    def systemctl(self) -> list[str]:
        return [line.removeprefix("systemctl ") for line in self.calls.read_text().splitlines()
                if line.startswith("systemctl ") and not line.startswith("systemctl show")
                and " is-enabled " not in f" {line} "]


def _said(done: subprocess.CompletedProcess[str]) -> str:
    return " ".join(done.stdout.split())


def _changed(done: subprocess.CompletedProcess[str]) -> int:
    found = re.search(r"(?m)^node-1\s+: ok=\d+\s+changed=(\d+)", done.stdout)
    assert found, done.stdout
    return int(found.group(1))


@pytest.mark.parametrize(("installed", "service", "container", "chosen", "unit"), [
    ([], "auto", False, "systemd-timesyncd", "systemd-timesyncd.service"),  # installed by the role
    (["systemd-timesyncd"], "auto", False, "systemd-timesyncd", "systemd-timesyncd.service"),
    (["chrony"], "auto", False, "chrony", "chrony.service"),
    (["ntpsec"], "auto", False, "ntpsec", ""),  # left as it is
    (["systemd-timesyncd"], "chrony", False, "chrony", "chrony.service"),  # replaced
    (["chrony"], "systemd-timesyncd", False, "systemd-timesyncd", "systemd-timesyncd.service"),
    ([], "auto", True, "systemd-timesyncd", ""),  # a container: the clock is the host's
])
def test_the_role_chooses_the_time_service(
        tmp_path: Path, installed: list[str], service: str, container: bool, chosen: str,
        unit: str) -> None:
    host = Host(tmp_path, installed, container=container)
    host.chrony()
    done = host.play("facts", urbanpulse_time_service=service)
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"chosen={chosen} unit={unit}." in done.stdout


def test_timesyncd_asks_the_citys_servers_then_the_pool(tmp_path: Path) -> None:
    host = Host(tmp_path, ["systemd-timesyncd"])
    done = host.play(urbanpulse_ntp_servers=["ntp1.hanoi.example.vn", "10.20.0.2"])
    assert done.returncode == 0, done.stdout + done.stderr
    dropin = Path(host.vars["time_sync_timesyncd_dropin"]).read_text()
    lines = [line for line in dropin.splitlines() if line and not line.startswith("#")]
    assert lines == ["[Time]",
                     "NTP=ntp1.hanoi.example.vn 10.20.0.2 vn.pool.ntp.org pool.ntp.org",
                     "FallbackNTP=vn.pool.ntp.org pool.ntp.org"]
    assert host.systemctl() == [
        "enable systemd-timesyncd.service",
        "start systemd-timesyncd.service", "restart systemd-timesyncd.service"]
    # the same again changes nothing and restarts nothing
    host.calls.write_text("")
    again = host.play(urbanpulse_ntp_servers=["ntp1.hanoi.example.vn", "10.20.0.2"])
    assert again.returncode == 0, again.stdout
    assert host.systemctl() == []
    assert _changed(again) == 0


def test_without_the_citys_servers_the_pool_alone(tmp_path: Path) -> None:
    host = Host(tmp_path, ["systemd-timesyncd"])
    done = host.play()
    assert done.returncode == 0, done.stdout + done.stderr
    dropin = Path(host.vars["time_sync_timesyncd_dropin"]).read_text()
    assert "\nNTP=vn.pool.ntp.org pool.ntp.org\n" in dropin


def test_chrony_gets_the_servers_and_rtcsync(tmp_path: Path) -> None:
    """chrony clears the kernel's STA_UNSYNC, which the agent's clock check reads, only with
    rtcsync (chrony's sys_timex.c): without it every reading was flagged clock_unsynced for
    ever although `timedatectl` (which reads maxerror) said synchronised."""
    host = Host(tmp_path, ["chrony"])
    host.chrony()
    done = host.play(urbanpulse_ntp_servers=["ntp1.hanoi.example.vn"])
    assert done.returncode == 0, done.stdout + done.stderr
    sources = Path(host.vars["time_sync_chrony_sources"]).read_text()
    assert [line for line in sources.splitlines() if not line.startswith("#")] == [
        "server ntp1.hanoi.example.vn iburst prefer", "pool vn.pool.ntp.org iburst",
        "pool pool.ntp.org iburst"]
    conf = Path(host.vars["time_sync_chrony_dropin"]).read_text()
    assert [line for line in conf.splitlines() if not line.startswith("#")] == [
        "rtcsync", "makestep 1 3"]
    assert host.systemctl() == ["enable chrony.service", "start chrony.service",
                                "restart chrony.service"]
    assert not Path(host.vars["time_sync_timesyncd_dropin"]).exists()


@pytest.mark.parametrize(("parsed", "conf"), [
    # rtcfile: chrony refuses to start with rtcsync too
    (DEBIAN_CHRONY_PARSED.replace("rtcsync", "rtcfile /var/lib/chrony/rtc"),
     DEBIAN_CHRONY_CONF.replace("rtcsync", "rtcfile /var/lib/chrony/rtc")),
    # a chrony.conf of one's own that reads neither of the role's files
    ("server ntp.example.org iburst\nrtcsync\n", "server ntp.example.org iburst\nrtcsync\n"),
])
def test_the_role_refuses_a_chrony_config_that_would_not_work(
        tmp_path: Path, parsed: str, conf: str) -> None:
    host = Host(tmp_path, ["chrony"])
    host.chrony(parsed, conf)
    done = host.play()
    assert done.returncode != 0, done.stdout
    assert "node-1: chrony's configuration" in _said(done)
    assert "only with `rtcsync`, and refuses to start with both" in _said(done)
    assert not Path(host.vars["time_sync_chrony_dropin"]).exists()
    assert host.systemctl() == []


def test_the_role_refuses_an_rtc_in_local_time_with_timesyncd(tmp_path: Path) -> None:
    """systemd-timesyncd keeps STA_UNSYNC set when /etc/adjtime says LOCAL
    (timesyncd-manager.c, rtc_local_time): every reading would be flagged for ever."""
    host = Host(tmp_path, ["systemd-timesyncd"])
    (host.etc / "adjtime").write_text("0.0 0 0.0\n0\nLOCAL\n")
    done = host.play()
    assert done.returncode != 0, done.stdout
    assert ("node-1: " + host.vars["time_sync_adjtime"] + " says the RTC keeps local time: "
            "systemd-timesyncd then leaves the kernel's clock") in _said(done)
    assert host.systemctl() == []
    (host.etc / "adjtime").write_text("0.0 0 0.0\n0\nUTC\n")
    assert host.play().returncode == 0


@pytest.mark.parametrize("bad", [
    {"urbanpulse_ntp_servers": "ntp1.hanoi.example.vn"},  # a string, not a list
    {"urbanpulse_ntp_servers": ["ntp1.hanoi.example.vn iburst"]},
    {"urbanpulse_ntp_servers": [], "urbanpulse_ntp_pools": []},
    {"urbanpulse_time_service": "ntpd"},
])
def test_the_role_refuses_bad_variables_naming_them(tmp_path: Path, bad: dict[str, Any]) -> None:
    host = Host(tmp_path, ["systemd-timesyncd"])
    done = host.play("facts", **bad)
    assert done.returncode != 0, done.stdout
    said = _said(done)
    assert "node-1: time_sync_service (urbanpulse_time_service) must be auto" in said
    assert "time_sync_servers (urbanpulse_ntp_servers)" in said
