"""The systemd units the roles install: systemd itself accepts them (when
systemd-analyze is here), they carry the settings the agent's operation relies on, and
systemd rates their exposure OK."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.ansible.helpers import REPO, ROLES

UNITS = {
    "urbanpulse-edge.service": ROLES / "edge" / "files" / "urbanpulse-edge.service",
    "urbanpulse-cloud.service": ROLES / "processor" / "files" / "urbanpulse-cloud.service",
    "urbanpulse-gateway.service": ROLES / "site_gateway" / "files" / "urbanpulse-gateway.service",
}
EXEC = "/opt/urbanpulse/venv/bin/urbanpulse"
SYSTEM_UNITS = Path("/usr/lib/systemd/system")


def _parse(path: Path) -> dict[str, dict[str, list[str]]]:
    """systemd unit files repeat keys; keep every value, in order."""
    sections: dict[str, dict[str, list[str]]] = {}
    current: dict[str, list[str]] | None = None
    for raw in path.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("[") and line.endswith("]"):
            current = sections.setdefault(line[1:-1], {})
            continue
        assert current is not None, f"{path}: {raw!r} before any section"
        key, sep, value = line.partition("=")
        assert sep, f"{path}: {raw!r} is not key=value"
        current.setdefault(key.strip(), []).append(value.strip())
    return sections


def _one(unit: dict[str, dict[str, list[str]]], section: str, key: str) -> str:
    values = unit[section].get(key)
    assert values, f"[{section}] {key} missing"
    return values[-1]


@pytest.fixture
def fake_root(tmp_path: Path) -> Path:
    """A root holding the units, systemd's own units and a stand-in for our executable
    (the real one lives in the node's virtualenv, which is not on this machine)."""
    if not SYSTEM_UNITS.is_dir():
        pytest.skip(f"no {SYSTEM_UNITS} on this machine")
    (tmp_path / "usr/lib/systemd").mkdir(parents=True)
    shutil.copytree(SYSTEM_UNITS, tmp_path / "usr/lib/systemd/system", symlinks=True)
    exe = tmp_path / EXEC.lstrip("/")
    exe.parent.mkdir(parents=True)
    exe.write_text("#!/bin/sh\nexit 0\n")
    exe.chmod(0o755)
    (tmp_path / "etc/systemd/system").mkdir(parents=True)
    for name, src in UNITS.items():
        shutil.copy(src, tmp_path / "etc/systemd/system" / name)
    return tmp_path


def _analyze() -> str:
    exe = shutil.which("systemd-analyze")
    if exe is None:
        pytest.skip("systemd-analyze is not on PATH (the key checks below still run)")
    return exe


@pytest.mark.parametrize("name", sorted(UNITS))
def test_systemd_verify_accepts_the_unit_without_a_warning(name: str, fake_root: Path) -> None:
    out = subprocess.run(
        [_analyze(), "verify", f"--root={fake_root}", "--man=no", f"/etc/systemd/system/{name}"],
        capture_output=True, text=True, timeout=60, check=False,
    )
    assert (out.returncode, out.stdout + out.stderr) == (0, "")


def test_systemd_verify_does_complain_about_a_broken_unit(fake_root: Path) -> None:
    unit = fake_root / "etc/systemd/system/urbanpulse-edge.service"
    unit.write_text(unit.read_text().replace("ProtectHome=yes", "ProtectHom=yes"))
    out = subprocess.run(
        [_analyze(), "verify", f"--root={fake_root}", "--man=no", "/etc/systemd/system/"
         "urbanpulse-edge.service"], capture_output=True, text=True, timeout=60, check=False,
    )
    assert "Unknown key 'ProtectHom'" in out.stderr


@pytest.mark.parametrize("name", sorted(UNITS))
def test_systemd_rates_the_exposure_ok(name: str, fake_root: Path) -> None:
    # 2.0 is where systemd's "OK" ends and "MEDIUM" begins.
    out = subprocess.run(
        [_analyze(), "security", "--offline=yes", f"--root={fake_root}", "--threshold=20",
         "--no-pager", name], capture_output=True, text=True, timeout=60, check=False,
    )
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr


HARDENING = {
    "NoNewPrivileges": "yes", "ProtectSystem": "strict", "ProtectHome": "yes",
    "PrivateTmp": "yes", "ProtectKernelTunables": "yes", "ProtectKernelModules": "yes",
    "ProtectKernelLogs": "yes", "ProtectControlGroups": "yes",
    "RestrictAddressFamilies": "AF_INET AF_INET6 AF_UNIX", "User": "urbanpulse",
    "Restart": "always", "KillSignal": "SIGTERM",
}


@pytest.mark.parametrize("name", sorted(UNITS))
def test_unit_has_the_hardening_and_restart_policy(name: str) -> None:
    unit = _parse(UNITS[name])
    for key, value in HARDENING.items():
        assert _one(unit, "Service", key) == value, key
    for key in ("RestartSec", "TimeoutStopSec", "MemoryMax", "StateDirectory"):
        _one(unit, "Service", key)
    for key in ("StartLimitIntervalSec", "StartLimitBurst"):
        assert int(_one(unit, "Unit", key)) > 0
    assert _one(unit, "Install", "WantedBy") == "multi-user.target"


def test_edge_unit_runs_the_agent_on_the_node_config_and_reaches_its_devices() -> None:
    unit = _parse(UNITS["urbanpulse-edge.service"])
    config = "/etc/urbanpulse/node.toml"
    assert _one(unit, "Service", "Type") == "simple"
    assert _one(unit, "Service", "ExecStart") == f"{EXEC} edge run --config {config}"
    assert _one(unit, "Service", "StateDirectory") == "urbanpulse"
    assert set(_one(unit, "Service", "SupplementaryGroups").split()) == {"dialout", "gpio", "spi"}
    assert _one(unit, "Service", "DevicePolicy") == "closed"
    allowed = {v.split()[0] for v in unit["Service"]["DeviceAllow"]}
    assert {"char-ttyUSB", "char-ttyAMA", "char-gpiochip"} <= allowed


def test_gateway_unit_runs_the_gateway_on_its_config_without_devices() -> None:
    unit = _parse(UNITS["urbanpulse-gateway.service"])
    config = "/etc/urbanpulse/gateway.toml"
    assert _one(unit, "Service", "ExecStart") == f"{EXEC} gateway run --config {config}"
    assert _one(unit, "Service", "PrivateDevices") == "yes"
    assert "SupplementaryGroups" not in unit["Service"]
    assert "mosquitto.service" in _one(unit, "Unit", "After").split()


def test_cloud_unit_runs_the_processor_on_the_cloud_config() -> None:
    unit = _parse(UNITS["urbanpulse-cloud.service"])
    config = "/etc/urbanpulse/cloud.toml"
    assert _one(unit, "Service", "ExecStart") == f"{EXEC} cloud run --config {config}"


# -- the edge agent asks the kernel about the clock ----------------------------------

def _syscall_groups() -> dict[str, list[str]]:
    """systemd's own system-call groups (@name -> members, which may be groups)."""
    out = subprocess.run([_analyze(), "syscall-filter", "--no-pager"], capture_output=True,
                         text=True, timeout=60, check=True).stdout
    groups: dict[str, list[str]] = {}
    current: list[str] | None = None
    for line in out.splitlines():
        if line.startswith("@"):
            current = groups.setdefault(line.strip(), [])
        elif line.startswith("    ") and not line.strip().startswith("#") and current is not None:
            current.append(line.strip())
        elif not line.strip() or line.startswith("#"):
            current = None
    return groups


def _expand(names: list[str], groups: dict[str, list[str]]) -> set[str]:
    calls: set[str] = set()
    for name in names:
        calls |= _expand(groups[name], groups) if name.startswith("@") else {name}
    return calls


def _allowed_calls(unit: dict[str, dict[str, list[str]]]) -> set[str]:
    """What the unit's SystemCallFilter= lines allow, read as systemd reads them: the first
    line is an allow list, and each later one adds its calls (or, after ~, removes them)
    in order."""
    groups = _syscall_groups()
    lines = unit["Service"]["SystemCallFilter"]
    assert not lines[0].startswith("~"), "the filter should start with an allow list"
    allowed: set[str] = set()
    for line in lines:
        deny = line.startswith("~")
        calls = _expand(line.lstrip("~").split(), groups)
        allowed = allowed - calls if deny else allowed | calls
    return allowed


@pytest.mark.parametrize("name", sorted(UNITS))
def test_unit_does_not_restart_a_config_error(name: str) -> None:
    """`run` exits EXIT_CONFIG on a config error, and systemd leaves it stopped. Only the
    main process's exit counts for RestartPreventExitStatus= (systemd issue 11868): the
    units' former ExecStartPre=check-config failed with the same code, and on Debian 12's
    systemd 252 (a container, the real units, a stand-in executable) the unit was restarted
    20 times, then "Start request repeated too quickly" refused the restart of the playbook
    run that fixed the config. Without it: no restart, and the fixing restart runs."""
    from cloud.cli import EXIT_CONFIG as CLOUD_EXIT_CONFIG
    from edge.cli import EXIT_CONFIG as EDGE_EXIT_CONFIG

    unit = _parse(UNITS[name])
    # the gateway's CLI is the edge's (edge/gateway/cli.py imports its exit codes)
    code = CLOUD_EXIT_CONFIG if name == "urbanpulse-cloud.service" else EDGE_EXIT_CONFIG
    assert str(code) in _one(unit, "Service", "RestartPreventExitStatus").split()
    # A check before the main process may fail only if its failure is ignored ("-").
    assert [c for c in unit["Service"].get("ExecStartPre", []) if not c.startswith("-")] == []


def test_edge_unit_lets_the_agent_ask_whether_the_clock_is_synchronised() -> None:
    """The agent's clock check (clock_check = "kernel", the role's default) asks adjtimex(2)
    with modes = 0; glibc makes that clock_adjtime. Before, the unit refused both (not in
    @system-service, taken away again with @privileged, and ProtectClock=yes refuses them
    even for reading): every node stopped at start-up, restarted every 5 s for ever. Here
    the unit's own filter is installed in a child process by the kernel (seccomp), and the
    agent's probe must answer under it."""
    from tests.edge.seccomp import CLOCK_READS

    unit = _parse(UNITS["urbanpulse-edge.service"])
    assert unit["Service"].get("ProtectClock", ["no"])[-1] in ("no", "false")
    assert _one(unit, "Service", "CapabilityBoundingSet") == ""  # no CAP_SYS_TIME: read only
    allowed = _allowed_calls(unit)
    assert {"adjtimex", "clock_adjtime"} <= allowed
    assert not {"settimeofday", "clock_settime"} & allowed
    script = ("import sys\nfrom edge.clock_sync import KernelClockSync\n"
              "from tests.edge.seccomp import install_filter\n"
              f"install_filter({sorted(allowed)!r}, allow_listed=True)\n"
              "print('synchronised' if KernelClockSync().synchronised() else 'not synchronised')\n")
    done = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True,
                          text=True, timeout=60, check=False)
    assert (done.returncode, done.stdout.strip() in ("synchronised", "not synchronised")) \
        == (0, True), done.stdout + done.stderr
    # The same without the clock reads: the kernel refuses, as it did under the old unit.
    script = script.replace(f"{sorted(allowed)!r}",
                            f"{sorted(allowed - set(CLOCK_READS))!r}")
    done = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True,
                          text=True, timeout=60, check=False)
    assert done.returncode != 0, done.stdout
    assert "EPERM" in done.stderr, done.stderr
