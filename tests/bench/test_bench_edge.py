"""Smoke test of the edge benchmark: a tiny run end to end (its own Mosquitto, the real
agent process, emulated SDS011s) prints every figure. It asserts what the run must show,
not how fast this machine is."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from bench.edge.agent_process import write_node_config
from urbanpulse.stack.config import MqttCredentials

pytestmark = [pytest.mark.stack, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]


def _figure(text: str, label: str) -> str:
    match = re.search(rf"^{re.escape(label)}:\s+(.*)$", text, re.MULTILINE)
    assert match, f"no {label!r} line in:\n{text}"
    return match.group(1)


def test_a_tiny_run_prints_the_figures(tmp_path: Path) -> None:
    out_json = tmp_path / "figures.json"
    done = subprocess.run(
        [sys.executable, "-m", "bench.edge.run", "--sensors", "2", "--rate", "10",
         "--warmup", "0.5", "--window", "2", "--idle-window", "1", "--json", str(out_json),
         "--agent-python", sys.executable],
        cwd=ROOT, capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stderr
    text = done.stdout

    assert _figure(text, "agent interpreter").startswith(f"{sys.executable} (Python 3.")
    rate = float(_figure(text, "readings/s delivered").split()[0])
    assert rate > 0
    assert re.match(r"\d+ ms ", _figure(text, "CPU per 1,000 readings"))
    assert re.search(r"target < 2 %: (PASS|MISS)$", _figure(text, "CPU, % of one core"))
    assert re.search(r"target < 30 MiB: (PASS|MISS)$", _figure(text, "peak RSS (VmHWM)"))
    assert re.match(r"\d+ \(after a clean stop: 0\)$", _figure(text, "outbox depth at the end"))
    committed, delivered = map(int, re.findall(r"\d+", _figure(text, "committed / delivered"))[:2])
    assert committed == delivered > 0
    assert "idle interpreter" in text
    assert "agent started, connected" in text
    assert "paho.mqtt.client" in text

    figures = json.loads(out_json.read_text())
    assert figures["agent_python"] == sys.executable
    load = figures["load"]
    assert load["exit_code"] == 0
    # The printed rate is what was counted at the subscriber in the window.
    assert load["readings_per_s"] == pytest.approx(load["delivered"] / load["window_s"])
    assert f"{load['readings_per_s']:.1f}" == f"{rate:.1f}"
    # Peak RSS is at least the idle interpreter's: the agent imports far more than nothing.
    assert load["hwm_kb"] > figures["interpreter_kb"]


OLD_AGENT = """\
import sys, tomllib
raw = tomllib.load(open(sys.argv[-1], "rb"))
if "delivery" in raw.get("mqtt", {}):
    sys.exit(print("mqtt.delivery: unknown key", file=sys.stderr) or 2)
if "clock_check" in raw.get("agent", {}):
    sys.exit(print("agent.clock_check: unknown key", file=sys.stderr) or 2)
"""


def test_an_agent_older_than_both_newer_keys_gets_a_config_without_them(tmp_path: Path) -> None:
    """A stand-in for `python -m urbanpulse.cli edge check-config` of an old agent (an old
    checkout cannot be installed here): it names one unknown key at a time, [mqtt] first."""
    python = tmp_path / "python"
    python.write_text(f"#!{sys.executable}\n{OLD_AGENT}")
    python.chmod(0o755)
    creds = MqttCredentials("127.0.0.1", 8883, tmp_path / "ca", "u", tmp_path / "p")
    path = tmp_path / "node.toml"
    write_node_config(path, creds, "s", "n", tmp_path / "state", '[[sensors]]\nid = "pm-1"\n',
                      python=str(python))
    config = tomllib.loads(path.read_text())
    assert "delivery" not in config["mqtt"]
    assert "agent" not in config
