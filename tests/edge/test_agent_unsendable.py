"""A sample the wire contract cannot carry (a NaN or an infinity, which JSON has no word
for; a kind the contract does not know) is refused where the driver emits it, counted and
reported: in the outbox it would make `encode_batch` fail on every batch it falls in, and
the publisher with it at every restart, holding every later reading of the node (found by
review). The samples around it go on."""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from pathlib import Path

import pytest

from edge.agent import Agent
from edge.config import load_config
from edge.drivers.base import Sample
from urbanpulse.clock import FakeClock
from urbanpulse.wire import encode_batch

SAMPLE = Path(__file__).resolve().parents[2] / "edge/drivers/sds011/sample.toml"


def test_samples_no_batch_can_carry_are_refused_counted_and_reported(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    clock = FakeClock(datetime(2026, 5, 1, tzinfo=UTC))
    text = SAMPLE.read_text().replace('state_dir = "/var/lib/urbanpulse"', f'state_dir = "{tmp_path}"')
    (tmp_path / "node.toml").write_text(text)
    agent = Agent(load_config(tmp_path / "node.toml"), clock=clock)
    agent.outbox.open()
    emit = agent.emitter(agent.drivers["pm-1"])
    with caplog.at_level(logging.ERROR, logger="urbanpulse.edge.agent"):
        emit(Sample("pm-1", "air.pm", {"pm25": 12.0, "pm10": 20.0}, clock.now()))
        emit(Sample("pm-1", "air.pm", {"pm25": float("nan"), "pm10": 20.0}, clock.now()))
        emit(Sample("pm-1", "air.pm", {"pm25": 12.0, "pm10": float("inf")}, clock.now()))
        emit(Sample("pm-1", "air.pm", {"pm25": 12.0, "pm10": 10**400}, clock.now()))  # no float
        emit(Sample("pm-1", "air.smoke", {"pm25": 12.0}, clock.now()))
        emit(Sample("pm-1", "air.pm", {"pm25": 13.0, "pm10": 21.0}, clock.now()))
    assert agent.flush() == 2
    rows = agent.outbox.fetch(10)
    assert [r.reading.values["pm25"] for r in rows] == [12.0, 13.0]
    assert [r.reading.seq for r in rows] == [0, 1]  # no number spent on a refused sample
    encode_batch("s", "n", [r.reading for r in rows])  # the batch the publisher would send
    driver = agent.health()["drivers"]["pm-1"]
    assert driver["refused"] == 4
    assert driver["refused_reasons"] == {"bad_value": 3, "unknown_kind": 1}
    assert driver["last_error"] == "sample refused: unknown_kind: kind: 'air.smoke' is not in contract v1"
    logged = [r for r in caplog.records if "the wire contract refuses" in r.getMessage()]
    assert [r.__dict__["reason"] for r in logged] == ["bad_value", "unknown_kind"]  # once per reason
    assert logged[0].__dict__["detail"] == "values.pm25: must be a finite number, got nan"
    agent.outbox.close()
