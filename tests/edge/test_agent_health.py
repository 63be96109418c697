"""What the agent says about itself: clock jumps, health, `urbanpulse edge status`."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from edge.agent import Agent
from edge.config import load_config
from edge.drivers.base import Sample
from edge.errors import DriverError
from urbanpulse.cli import main
from urbanpulse.clock import FakeClock

SAMPLE = Path(__file__).resolve().parents[2] / "edge/drivers/sds011/sample.toml"


def _agent(tmp_path: Path, clock: FakeClock) -> Agent:
    text = SAMPLE.read_text().replace('state_dir = "/var/lib/urbanpulse"', f'state_dir = "{tmp_path}"')
    path = tmp_path / "node.toml"
    path.write_text(text)
    return Agent(load_config(path), clock=clock)


def test_a_wall_clock_jump_is_detected_against_the_monotonic_clock(tmp_path: Path) -> None:
    clock = FakeClock(datetime(2026, 5, 1, tzinfo=UTC))
    agent = _agent(tmp_path, clock)
    agent.check_clock()
    clock.advance(30)
    agent.check_clock()
    assert agent.clock_jumps == 0, "time passing is not a jump"
    clock.jump(-3600)  # an RTC-less Pi booting, then NTP correcting by an hour
    agent.check_clock()
    assert agent.clock_jumps == 1


def test_health_and_status_come_from_local_state(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    clock = FakeClock(datetime(2026, 5, 1, tzinfo=UTC))
    agent = _agent(tmp_path, clock)
    agent.config.node.state_dir.mkdir(parents=True, exist_ok=True)
    agent.outbox.open()
    emit = agent.emitter(agent.drivers["pm-1"])
    for _ in range(3):
        emit(Sample("pm-1", "air.pm", {"pm25": 12.0, "pm10": 20.0}, clock.now()))
    assert agent.flush() == 3
    clock.advance(90)
    health = agent.health()
    assert health["outbox_depth"] == 3
    assert health["outbox_oldest_age_s"] == 90.0
    assert health["drivers"]["pm-1"]["driver"] == "sds011"
    agent.write_state()
    agent.outbox.close()

    assert main(["edge", "status", "--config", str(tmp_path / "node.toml"), "--json"]) == 0
    status = json.loads(capsys.readouterr().out)
    assert status["outbox"]["depth"] == 3
    assert status["agent"]["node"] == "aq-01"
    assert status["agent"]["drivers"]["pm-1"]["readings"] == 3


class _Reporting:
    """Stands for a supervised driver whose supervision() raises (no driver here does:
    a bug or a device fault in one must not take the heartbeat down)."""

    sensor_id = "pm-1"

    def __init__(self, error: Exception | None) -> None:
        self.error = error

    async def run(self, emit: object) -> None:
        return None

    def describe(self) -> dict[str, object]:
        return {}

    def supervision(self) -> dict[str, str | bool] | None:
        if self.error is not None:
            raise self.error
        return {"cable": "ok"}


@pytest.mark.parametrize("error", [DriverError("loopback line unreadable"),
                                   ZeroDivisionError("division by zero"),
                                   KeyError("ready")])
def test_a_driver_failing_to_report_its_supervision_is_contained_to_its_entry(
        tmp_path: Path, error: Exception) -> None:
    agent = _agent(tmp_path, FakeClock(datetime(2026, 5, 1, tzinfo=UTC)))
    agent.config.node.state_dir.mkdir(parents=True, exist_ok=True)
    agent.outbox.open()
    agent._running["pm-1"] = _Reporting(error)
    health = agent.health()  # raised before
    entry = health["drivers"]["pm-1"]
    assert entry["supervision_error"] == f"{type(error).__name__}: {error}"
    assert "supervision" not in entry
    assert entry["driver"] == "sds011"
    assert health["clock"]["jumps"] == 0
    agent._running["pm-1"] = _Reporting(None)
    assert agent.health()["drivers"]["pm-1"]["supervision"] == {"cable": "ok"}
    agent.outbox.close()


def test_each_run_of_the_agent_has_its_own_id(tmp_path: Path) -> None:
    clock = FakeClock(datetime(2026, 5, 1, tzinfo=UTC))
    first = _agent(tmp_path, clock)
    second = _agent(tmp_path, clock)
    assert first.run_id != second.run_id
    first.outbox.open()
    assert first.health()["run_id"] == first.run_id
    first.outbox.close()
    assert len(first.run_id) == 16


def test_the_agent_stops_when_its_publisher_thread_dies(tmp_path: Path) -> None:
    """A publisher thread that died would leave a node collecting forever and sending
    nothing; the agent stops instead, for its supervisor to restart it. The MQTT client
    factory failing stands in for any fault inside the publisher's thread."""
    import asyncio

    from edge.errors import PublisherError

    class Broken(RuntimeError):
        pass

    def factory() -> Any:
        raise Broken("no client")

    text = SAMPLE.read_text().replace('state_dir = "/var/lib/urbanpulse"', f'state_dir = "{tmp_path}"')
    (tmp_path / "node.toml").write_text(text)
    agent = Agent(load_config(tmp_path / "node.toml"), client_factory=factory)

    async def run() -> None:
        await asyncio.wait_for(agent.run(asyncio.Event()), timeout=10)

    with pytest.raises(PublisherError, match="Broken: no client") as err:
        asyncio.run(run())
    assert isinstance(err.value.__cause__, Broken)


def test_the_resend_line_does_not_count_down_while_the_link_is_down() -> None:
    """The publisher sets its resend times only while connected: with the link down they
    are stale, and the line says what the resends wait for instead."""
    from edge.cli import _resend_line

    mqtt = {"awaiting_cloud": 3, "refused": 0, "resend_wait_s": 240.0, "next_resend_in_s": 12.5}
    assert _resend_line({**mqtt, "connected": True}).endswith(
        "; resend wait now 240 s, next resend in 12.5 s")
    assert _resend_line({**mqtt, "connected": False}) == (
        "3 batches await the cloud's ack, 0 refused by the broker; resends wait for the link to "
        "the broker (resend wait was 240 s)")


def test_the_resend_line_says_the_stored_readings_deleted_as_unsendable() -> None:
    """Outbox rows an older agent stored that the wire contract now refuses are deleted unsent
    (`mqtt.unsendable`, tests/edge/test_agent_refuses_values.py); the status line says how many."""
    from edge.cli import _resend_line

    mqtt = {"awaiting_cloud": 0, "refused": 0, "resend_wait_s": None}
    assert _resend_line(mqtt) == (
        "0 batches await the cloud's ack, 0 refused by the broker; none waits for a resend")
    assert _resend_line({**mqtt, "unsendable": 2}) == (
        "0 batches await the cloud's ack, 0 refused by the broker, 2 stored readings "
        "unsendable (deleted); none waits for a resend")
