"""The systemd units the roles install: systemd itself accepts them (when
systemd-analyze is here), they carry the settings the agent's operation relies on, and
systemd rates their exposure OK."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from tests.ansible.helpers import ROLES

UNITS = {
    "urbanpulse-edge.service": ROLES / "edge" / "files" / "urbanpulse-edge.service",
    "urbanpulse-cloud.service": ROLES / "processor" / "files" / "urbanpulse-cloud.service",
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
    assert _one(unit, "Service", "ExecStartPre") == f"{EXEC} edge check-config {config}"
    assert _one(unit, "Service", "StateDirectory") == "urbanpulse"
    assert set(_one(unit, "Service", "SupplementaryGroups").split()) == {"dialout", "gpio"}
    assert _one(unit, "Service", "DevicePolicy") == "closed"
    allowed = {v.split()[0] for v in unit["Service"]["DeviceAllow"]}
    assert {"char-ttyUSB", "char-ttyAMA", "char-gpiochip"} <= allowed


def test_cloud_unit_runs_the_processor_on_the_cloud_config() -> None:
    unit = _parse(UNITS["urbanpulse-cloud.service"])
    config = "/etc/urbanpulse/cloud.toml"
    assert _one(unit, "Service", "ExecStart") == f"{EXEC} cloud run --config {config}"
    assert _one(unit, "Service", "ExecStartPre") == f"{EXEC} cloud check-config {config}"

