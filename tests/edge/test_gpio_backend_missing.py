"""A node whose configured GPIO backend's Python module is not installed (the README's
`pip install 'urbanpulse[edge]'` brought neither lgpio nor RPi.GPIO): `edge run` stops at
start with exit code 2 naming `gpio.backend` (systemd does not restart it), and
`check-config` says so in a warning (the file may be checked on a laptop for a node).
Before, check-config said ok, and every GPIO driver failed on `GpioBackendUnavailable` and
was restarted for ever, reading nothing. And the `edge` extra brings lgpio where its wheel
exists (a Pi, Python 3.11-3.12)."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from edge.agent import OUTBOX_FILE, Agent
from edge.cli import EXIT_CONFIG
from edge.config import check_gpio_backend, load_config
from edge.gpio.factory import ENV_BACKEND, module_available
from urbanpulse.cli import main
from urbanpulse.errors import ConfigError

REPO = Path(__file__).resolve().parents[2]
BED_PAD = REPO / "edge/drivers/bed_pad/sample.toml"
SDS011 = REPO / "edge/drivers/sds011/sample.toml"

pytestmark = pytest.mark.skipif(module_available("lgpio"),
                                reason="lgpio is installed here: its absence cannot be shown")


def _node(tmp_path: Path, sample: Path = BED_PAD, backend: str = "lgpio") -> Path:
    text = sample.read_text().replace('state_dir = "/var/lib/urbanpulse"', f'state_dir = "{tmp_path}"')
    if "[gpio]" in text:
        text = text.replace('backend = "lgpio"', f'backend = "{backend}"')
    else:
        text = text.replace("[[sensors]]", f'[gpio]\nbackend = "{backend}"\n\n[[sensors]]', 1)
    path = tmp_path / "node.toml"
    path.write_text(text + '\n[agent]\nclock_check = "off"\n')
    return path


def _env_without_override() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k != ENV_BACKEND}


def test_edge_run_stops_at_start_with_exit_2_naming_gpio_backend(tmp_path: Path) -> None:
    config = _node(tmp_path)
    done = subprocess.run([sys.executable, "-m", "urbanpulse.cli", "edge", "run", "--config", str(config)],
                          cwd=REPO, capture_output=True, text=True, timeout=60, check=False,
                          env=_env_without_override())
    assert done.returncode == EXIT_CONFIG, done.stderr
    assert done.stderr.startswith("config error: gpio.backend: 'lgpio' cannot run here: GPIO backend "
                                  "'lgpio' needs the Python module 'lgpio', which is not installed; "
                                  "needed by sensors[0].pin (sensor 'bed-01'): "), done.stderr
    assert "pip install 'urbanpulse[edge]'" in done.stderr
    assert "Traceback" not in done.stderr
    assert not (tmp_path / OUTBOX_FILE).exists()  # it stopped before opening anything


def test_the_agent_checks_before_it_opens_anything(tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(ENV_BACKEND, raising=False)
    agent = Agent(load_config(_node(tmp_path, backend="auto")))

    async def run() -> None:
        await asyncio.wait_for(agent.run(asyncio.Event()), timeout=10)

    with pytest.raises(ConfigError, match="no GPIO backend found") as err:
        asyncio.run(run())
    assert err.value.key == "gpio.backend"
    assert agent.publisher is None
    assert not (tmp_path / OUTBOX_FILE).exists()


def test_check_config_warns_naming_the_key_and_says_ok(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(ENV_BACKEND, raising=False)
    assert main(["edge", "check-config", str(_node(tmp_path))]) == 0
    out = capsys.readouterr()
    assert "ok (node hn-bachmai/" in out.out
    warnings = [line for line in out.err.splitlines() if line.startswith("warning: gpio.backend: ")]
    assert len(warnings) == 1, out.err
    assert "'lgpio' needs the Python module 'lgpio', which is not installed" in warnings[0]
    assert warnings[0].endswith("(on this machine `edge run` stops at start, exit code 2)")


def test_mock_pins_or_no_gpio_sensor_need_no_backend(tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(ENV_BACKEND, raising=False)
    check_gpio_backend(load_config(_node(tmp_path, backend="mock")))
    # a serial-only node never makes a pin factory: its backend is not asked for
    check_gpio_backend(load_config(_node(tmp_path, SDS011, backend="lgpio")))
    monkeypatch.setenv(ENV_BACKEND, "mock")  # a production config on mock pins
    check_gpio_backend(load_config(_node(tmp_path, backend="lgpio")))


def test_rpigpio_on_a_pi5_is_refused_naming_the_key(tmp_path: Path) -> None:
    config = load_config(_node(tmp_path, backend="rpigpio"))
    with pytest.raises(ConfigError, match="RP1") as err:
        check_gpio_backend(config, env={}, board_model="Raspberry Pi 5 Model B Rev 1.0",
                           available=lambda module: True)
    assert err.value.key == "gpio.backend"


def _edge_extra() -> list[str]:
    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text())
    extra: list[str] = pyproject["project"]["optional-dependencies"]["edge"]
    return extra


@pytest.mark.parametrize(("machine", "python", "wanted"), [
    ("aarch64", "3.11", True),    # Raspberry Pi OS / Debian 12, 64-bit
    ("armv7l", "3.11", True),     # Raspberry Pi OS 32-bit
    ("aarch64", "3.12", True),
    ("aarch64", "3.13", False),   # no wheel: pip would build it (swig, liblgpio): see the docs
    ("x86_64", "3.11", False),    # a laptop or CI: mock pins
])
def test_the_edge_extra_brings_lgpio_on_a_pi(machine: str, python: str, wanted: bool) -> None:
    from packaging.requirements import Requirement

    env = {"sys_platform": "linux", "platform_machine": machine, "python_version": python,
           "python_full_version": f"{python}.2"}
    reqs = [Requirement(r) for r in _edge_extra()]
    lgpio = [r for r in reqs if r.name == "lgpio"]
    assert len(lgpio) == 1
    assert (lgpio[0].marker is not None and lgpio[0].marker.evaluate(env)) is wanted
    # lgpio 0.0.0.2, an empty module, is what pip takes when no real wheel fits
    assert not lgpio[0].specifier.contains("0.0.0.2")
    assert lgpio[0].specifier.contains("0.2.2.0")
