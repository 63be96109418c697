"""The agent's side of the drivers' bad-input counts (edge/drivers/base.py `Counting`): a
driver failing to count is contained to its entry, as a failing supervision is, and the
heartbeat goes on. (The counts themselves, through the real agent and broker:
tests/edge/serial/test_bad_input_heartbeat.py, tests/edge/gpio/test_bad_input_heartbeat.py.)"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from edge.agent import Agent, InputCounts
from edge.cli import _bad_input_part
from edge.config import load_config
from edge.drivers.base import Counting
from edge.errors import DriverError
from urbanpulse.clock import FakeClock

SAMPLE = Path(__file__).resolve().parents[2] / "edge/drivers/sds011/sample.toml"


class _Counting:
    """Stands for a driver whose bad_input() raises (none in the tree does)."""

    sensor_id = "pm-1"

    def __init__(self, error: Exception | None) -> None:
        self.error = error

    async def run(self, emit: object) -> None:
        return None

    def describe(self) -> dict[str, object]:
        return {}

    def bad_input(self) -> dict[str, int]:
        if self.error is not None:
            raise self.error
        return {"checksum_errors": 2, "bytes_skipped": 0}


@pytest.mark.parametrize("error", [DriverError("decoder gone"), ZeroDivisionError("division by zero")])
def test_a_driver_failing_to_count_is_contained_to_its_entry(tmp_path: Path, error: Exception) -> None:
    text = SAMPLE.read_text().replace('state_dir = "/var/lib/urbanpulse"', f'state_dir = "{tmp_path}"')
    (tmp_path / "node.toml").write_text(text)
    agent = Agent(load_config(tmp_path / "node.toml"), clock=FakeClock(datetime(2026, 5, 1, tzinfo=UTC)))
    agent.outbox.open()
    try:
        driver = _Counting(error)
        assert isinstance(driver, Counting)
        agent._input_counts["pm-1"] = InputCounts({"checksum_errors": 1, "bytes_skipped": 9}, driver)
        entry = agent.health()["drivers"]["pm-1"]  # raised before
        assert entry["bad_input_error"] == f"{type(error).__name__}: {error}"
        assert "bad_input" not in entry
        assert _bad_input_part(entry) == f"; bad input: not counted ({type(error).__name__}: {error})"
        driver.error = None
        entry = agent.health()["drivers"]["pm-1"]
        assert entry["bad_input"] == {"checksum_errors": 3, "bytes_skipped": 9}
        assert _bad_input_part(entry) == "; bad input: checksum_errors 3, bytes_skipped 9"
        agent._input_ended("pm-1")  # the run ended: its counts join the earlier runs'
        assert agent._input_counts["pm-1"] == InputCounts({"checksum_errors": 3, "bytes_skipped": 9})
    finally:
        agent.outbox.close()
