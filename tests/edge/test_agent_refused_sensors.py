"""Which of a board's sensors the agent refused samples of, and a count the cloud can read
from the start.

A upfw driver serves a board's channels, each a sensor of its own (`beds-3`, or its name),
but its refused samples were counted under the driver's id alone: the "Samples refused"
alert names the board, and only the agent's log (once per sensor and reason) said which
channel. The heartbeat's entry now names them (`refused_sensors`, the first
REFUSED_SENSORS_MAX, bounded so a board whose every channel is refused keeps its heartbeat
small), and `urbanpulse edge status` shows them. A driver of one sensor gets no such list.

And `refused` is in every driver's entry from the start, 0 included: the cloud reads it as a
counter's rises from heartbeat to heartbeat, and a count that appeared only at the first
refusal hid that first rise (a driver refusing once in a run never alerted).

The real agent's emit path (as a driver calls it) and state file, the upfw and SDS011
sample configurations."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

from edge.agent import REFUSED_SENSORS_MAX, Agent
from edge.config import load_config
from edge.drivers.base import Sample
from urbanpulse.cli import main
from urbanpulse.clock import FakeClock

DRIVERS = Path(__file__).resolve().parents[2] / "edge/drivers"
BED = {"occupied": 1}
NAN_BED = {"occupied": float("nan")}


def _agent(tmp_path: Path, sample: str) -> Agent:
    text = (DRIVERS / sample / "sample.toml").read_text().replace(
        'state_dir = "/var/lib/urbanpulse"', f'state_dir = "{tmp_path}"')
    (tmp_path / "node.toml").write_text(text)
    agent = Agent(load_config(tmp_path / "node.toml"), clock=FakeClock(datetime(2026, 5, 1, tzinfo=UTC)))
    agent.outbox.open()
    return agent


def _status_line(tmp_path: Path, capsys: pytest.CaptureFixture[str], sensor: str) -> str:
    assert main(["edge", "status", "--config", str(tmp_path / "node.toml")]) == 0
    out = capsys.readouterr().out
    return next(line for line in out.splitlines() if line.startswith(f"driver {sensor}:"))


def test_a_boards_refused_samples_are_counted_by_channel(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    agent = _agent(tmp_path, "upfw")
    try:
        entry = agent.health()["drivers"]["beds"]
        assert entry["refused"] == 0  # from the start
        assert "refused_reasons" not in entry
        assert "refused_sensors" not in entry
        emit = agent.emitter(agent.drivers["beds"])
        now = agent.clock.now()
        emit(Sample("bed-c301", "hospital.bed", BED, now))
        for _ in range(3):
            emit(Sample("bed-c303", "hospital.bed", NAN_BED, now))
        emit(Sample("beds-7", "hospital.bed", {"occupied": 2}, now))
        emit(Sample("beds-7", "hospital.bed", {**BED, "weight_kg": 70.0}, now))
        assert agent.flush() == 1
        entry = agent.health()["drivers"]["beds"]
        assert entry["refused"] == 5
        assert entry["refused_reasons"] == {"bad_value": 4, "unknown_field": 1}
        assert entry["refused_sensors"] == {"bed-c303": 3, "beds-7": 2}
        agent.write_state()
    finally:
        agent.outbox.close()
    assert _status_line(tmp_path, capsys, "beds") == (
        "driver beds: starting (restarts 0, last error sample refused: unknown_field: "
        "values.weight_kg: not a field of hospital.bed); refused: 5 samples no batch can carry "
        "(bad_value 4, unknown_field 1) (dropped); by sensor: bed-c303 3, beds-7 2")


def test_a_board_refused_on_every_channel_names_the_first_and_counts_the_rest(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    agent = _agent(tmp_path, "upfw")
    try:
        emit = agent.emitter(agent.drivers["beds"])
        now = agent.clock.now()
        channels = [f"beds-{c}" for c in range(1, 256)]
        for sensor in channels + channels[:2]:
            emit(Sample(sensor, "hospital.bed", NAN_BED, now))
        entry = agent.health()["drivers"]["beds"]
        assert entry["refused"] == 257
        named = {sensor: 1 for sensor in channels[:REFUSED_SENSORS_MAX]} | {"beds-1": 2, "beds-2": 2}
        assert entry["refused_sensors"] == named
        agent.write_state()
    finally:
        agent.outbox.close()
    line = _status_line(tmp_path, capsys, "beds")
    assert line.endswith(f"by sensor: beds-1 2, beds-2 2, beds-3 1, "
                         f"{', '.join(f'beds-{c} 1' for c in range(4, REFUSED_SENSORS_MAX + 1))}, "
                         f"others {257 - REFUSED_SENSORS_MAX - 2}"), line


def test_the_list_stays_small_with_the_longest_sensor_ids() -> None:
    """16 ids of 64 characters (the longest sensor id), each with a count past a billion:
    the heartbeat's entry grows by at most 1.3 KB, whatever the board refuses."""
    longest = {f"{'b' * 60}-{c:03d}": 2**31 for c in range(REFUSED_SENSORS_MAX)}
    assert all(len(sensor) == 64 for sensor in longest)
    assert len(json.dumps({"refused_sensors": longest}, separators=(",", ":"))) <= 1300


def test_a_driver_of_one_sensor_gets_no_list(tmp_path: Path) -> None:
    agent = _agent(tmp_path, "sds011")
    try:
        emit = agent.emitter(agent.drivers["pm-1"])
        emit(Sample("pm-1", "air.pm", {"pm25": float("nan"), "pm10": 20.0}, agent.clock.now()))
        entry = agent.health()["drivers"]["pm-1"]
        assert entry["refused"] == 1
        assert entry["refused_reasons"] == {"bad_value": 1}
        assert "refused_sensors" not in entry
    finally:
        agent.outbox.close()
