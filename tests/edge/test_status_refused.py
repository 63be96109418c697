"""`urbanpulse edge status` shows how many of a driver's samples the agent refused (no batch
can carry them: a NaN, a kind the wire contract does not know; tests/edge/test_agent_unsendable.py),
on the driver's line as its bad input is. The heartbeat carried the count
(`health.drivers.<id>.refused`), but the status printed only the driver's state, restarts,
last error and bad input: the last error says a sample was refused only until the driver's
next failure replaces it, and never how many. The real agent's emit path and state file."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from edge.agent import Agent
from edge.config import load_config
from edge.drivers.base import Sample
from urbanpulse.cli import main
from urbanpulse.clock import FakeClock

SAMPLE = Path(__file__).resolve().parents[2] / "edge/drivers/sds011/sample.toml"


def _status_line(tmp_path: Path, capsys: pytest.CaptureFixture[str], sensor: str) -> str:
    assert main(["edge", "status", "--config", str(tmp_path / "node.toml")]) == 0
    out = capsys.readouterr().out
    return next(line for line in out.splitlines() if line.startswith(f"driver {sensor}:"))


def test_edge_status_shows_the_samples_the_agent_refused(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    clock = FakeClock(datetime(2026, 5, 1, tzinfo=UTC))
    text = SAMPLE.read_text().replace('state_dir = "/var/lib/urbanpulse"', f'state_dir = "{tmp_path}"')
    (tmp_path / "node.toml").write_text(text)
    agent = Agent(load_config(tmp_path / "node.toml"), clock=clock)
    agent.outbox.open()
    try:
        emit = agent.emitter(agent.drivers["pm-1"])
        emit(Sample("pm-1", "air.pm", {"pm25": 12.0, "pm10": 20.0}, clock.now()))
        agent.flush()
        agent.write_state()
        # nothing refused: nothing said (the heartbeat leaves the count out at 0)
        assert _status_line(tmp_path, capsys, "pm-1") == (
            "driver pm-1: starting (restarts 0, last error None)")
        emit(Sample("pm-1", "air.pm", {"pm25": float("nan"), "pm10": 20.0}, clock.now()))
        emit(Sample("pm-1", "air.smoke", {"pm25": 12.0}, clock.now()))
        emit(Sample("pm-1", "air.pm", {"pm25": 13.0, "pm10": 21.0}, clock.now()))
        agent.flush()
        assert agent.health()["drivers"]["pm-1"]["refused"] == 2
        agent.write_state()
    finally:
        agent.outbox.close()
    assert _status_line(tmp_path, capsys, "pm-1") == (
        "driver pm-1: starting (restarts 0, last error sample refused: unknown_kind: kind: "
        "'air.smoke' is not in contract v1); refused: 2 samples no batch can carry "
        "(bad_value 1, unknown_kind 1) (dropped)")
