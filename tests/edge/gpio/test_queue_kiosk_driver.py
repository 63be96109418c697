"""The queue_kiosk driver end to end on gpiozero MockFactory pins (a Pi's GPIO chip
cannot run here), under asyncio with the real clock and the agent's real outbox for its
ticket numbers."""

import asyncio
import contextlib
import json
from pathlib import Path
from typing import Any

from edge.agent import Agent
from edge.config import load_config
from edge.driver_state import StagedState
from edge.drivers.base import DriverContext, Sample
from edge.drivers.queue_kiosk import store
from edge.drivers.queue_kiosk.driver import build, parse_params
from edge.outbox import Outbox

RAW = {"issue_pin": 16, "call_pins": [20, 21], "counter_numbers": [4, 5],
       "debounce_s": 0.003}


def test_tickets_issued_and_called_and_numbering_survives_a_restart(gpio,
                                                                    tmp_path: Path) -> None:
    params = parse_params(RAW, "sensors[0]")
    outbox = Outbox(tmp_path / "outbox.sqlite3").open()

    keepers = [StagedState(outbox), StagedState(outbox)]  # the agent's, before and after a restart

    def agent_context(run: int) -> DriverContext:
        return DriverContext(pin_factory=gpio.provider, state_dir=tmp_path, state=keepers[run])

    def committed() -> dict:
        outbox.append([], 0, keepers[0].take() | keepers[1].take())  # the agent's next commit
        return json.loads(outbox.load_state(store.state_key("kiosk-opd")) or "null")

    pins = [gpio.factory.pin(n) for n in (16, 20, 21)]
    issue, call4, call5 = 0, 1, 2   # lines: the issue signal, then counters 4 and 5

    async def press(driver, line: int) -> None:
        # kiosk and buttons pull the pin low for a pulse (pull-up, active low)
        pin = pins[line]
        await gpio.in_thread(pin.drive_low)
        await gpio.wait_until(lambda: driver.describe()["signals"][line], "pulse on")
        await gpio.in_thread(pin.drive_high)
        await gpio.wait_until(lambda: not driver.describe()["signals"][line], "pulse off")

    async def first_run() -> list:
        driver = build("kiosk-opd", params, agent_context(0))
        async with gpio.running(driver) as samples:
            await press(driver, issue)
            await gpio.wait_until(lambda: len(samples) == 1, "ticket 1 issued")
            await press(driver, issue)
            await gpio.wait_until(lambda: len(samples) == 2, "ticket 2 issued")
            await press(driver, call5)
            await gpio.wait_until(lambda: len(samples) == 3, "ticket 1 called")
        return samples

    async def second_run() -> list:
        driver = build("kiosk-opd", params, agent_context(1))
        async with gpio.running(driver) as samples:
            assert driver.describe()["waiting"] == 1
            await press(driver, issue)
            await gpio.wait_until(lambda: len(samples) == 1, "ticket 3 issued")
            await press(driver, call4)
            await gpio.wait_until(lambda: len(samples) == 2, "ticket 2 called")
        return samples

    first = asyncio.run(first_run())
    assert [s.values for s in first] == [
        {"ticket": 1, "called": 0}, {"ticket": 2, "called": 0},
        {"ticket": 1, "called": 1, "counter": 5}]
    assert committed() == {"issued": 2, "called": 1}

    second = asyncio.run(second_run())
    assert [s.values for s in second] == [
        {"ticket": 3, "called": 0}, {"ticket": 2, "called": 1, "counter": 4}]
    assert committed() == {"issued": 3, "called": 2}
    assert all(s.kind == "hospital.queue" and s.sensor == "kiosk-opd" for s in first + second)
    assert first[0].ts < first[1].ts < first[2].ts < second[0].ts < second[1].ts
    gpio.assert_contract(first + second)


def test_without_a_state_dir_the_numbers_live_in_memory(gpio) -> None:
    params = parse_params(RAW, "sensors[0]")
    driver = build("kiosk-opd", params, DriverContext(pin_factory=gpio.provider))
    issue = gpio.factory.pin(16)

    async def scenario() -> None:
        async with gpio.running(driver) as samples:
            await gpio.in_thread(issue.drive_low)
            await gpio.wait_until(lambda: len(samples) == 1, "ticket issued")
        assert samples[0].values == {"ticket": 1, "called": 0}
        assert driver.describe()["persisted"] is False

    asyncio.run(scenario())


def test_numbers_from_an_earlier_version_s_state_file_carry_on(gpio, tmp_path: Path) -> None:
    # A node set up before the numbers moved into the outbox: its file is read once.
    legacy = store.legacy_path(tmp_path, "kiosk-opd")
    legacy.parent.mkdir(parents=True)
    legacy.write_text(json.dumps({"issued": 41, "called": 39}))
    outbox = Outbox(tmp_path / "outbox.sqlite3").open()
    keeper = StagedState(outbox)
    ctx = DriverContext(pin_factory=gpio.provider, state_dir=tmp_path, state=keeper)
    driver = build("kiosk-opd", parse_params(RAW, "sensors[0]"), ctx)
    issue = gpio.factory.pin(16)

    async def scenario() -> None:
        async with gpio.running(driver) as samples:
            assert driver.describe()["waiting"] == 2
            await gpio.in_thread(issue.drive_low)
            await gpio.wait_until(lambda: len(samples) == 1, "ticket issued")
        assert samples[0].values == {"ticket": 42, "called": 0}

    asyncio.run(scenario())
    outbox.append([], 0, keeper.take())
    assert json.loads(outbox.load_state(store.state_key("kiosk-opd")) or "null") == {
        "issued": 42, "called": 39}


SUPERVISED = dict(RAW, supervision="loopback", supervision_pin=19, ready_pin=13,
                  fault_delay_s=0.05)


def test_supervision_reports_a_cut_cable_and_a_dead_kiosk_without_touching_readings(
        gpio: Any) -> None:
    driver = build("kiosk-opd", parse_params(SUPERVISED, "sensors[0]"),
                   DriverContext(pin_factory=gpio.provider))
    issue, loop, ready = (gpio.factory.pin(n) for n in (16, 19, 13))

    async def scenario() -> list[Sample]:
        assert driver.supervision() is None, "not running yet"
        async with gpio.running(driver) as samples:
            # wired and working: the loop ties its pin to GND, the kiosk's output is on
            # (low); until then the pull-ups read a cut cable and a kiosk out of service
            await gpio.wait_until(lambda: driver.supervision() == {"cable": "cut",
                                                                   "ready": False},
                                  "nothing wired yet")
            await gpio.in_thread(loop.drive_low)
            await gpio.in_thread(ready.drive_low)
            await gpio.wait_until(lambda: driver.supervision() == {"cable": "ok", "ready": True},
                                  "whole and in service")
            await gpio.in_thread(issue.drive_low)
            await gpio.wait_until(lambda: len(samples) == 1, "ticket issued")
            await gpio.in_thread(issue.drive_high)
            await gpio.in_thread(loop.drive_high)  # the pull-up wins: the cable is cut
            await gpio.wait_until(lambda: (driver.supervision() or {}).get("cable") == "cut",
                                  "cable reported cut")
            await gpio.in_thread(loop.drive_low)
            await gpio.wait_until(lambda: (driver.supervision() or {}).get("cable") == "ok",
                                  "cable whole again")
            await gpio.in_thread(ready.drive_high)  # the kiosk died
            await gpio.wait_until(lambda: driver.supervision() == {"cable": "ok", "ready": False},
                                  "kiosk out of service")
            assert driver.describe()["supervision"] == {"cable": "ok", "ready": False}
            await gpio.in_thread(issue.drive_low)
            await gpio.wait_until(lambda: len(samples) == 2, "a second ticket")
        assert driver.supervision() is None, "stopped"
        return list(samples)

    samples = asyncio.run(scenario())
    assert [s.values for s in samples] == [{"ticket": 1, "called": 0}, {"ticket": 2, "called": 0}]
    gpio.assert_contract(samples)


def test_the_agent_puts_a_running_kiosk_s_supervision_in_its_heartbeat(gpio: Any,
                                                                      tmp_path: Path) -> None:
    sample = Path(__file__).resolve().parents[3] / "edge/drivers/queue_kiosk/sample.toml"
    text = sample.read_text().replace('state_dir = "/var/lib/urbanpulse"',
                                      f'state_dir = "{tmp_path}"')
    text = text.replace("fault_delay_s = 1.0 ", "fault_delay_s = 0.05")
    (tmp_path / "node.toml").write_text(text)
    agent = Agent(load_config(tmp_path / "node.toml"), pin_factory=gpio.provider)
    agent.outbox.open()
    loop = gpio.factory.pin(19)
    sensor = agent.config.sensors[0]  # kiosk-opd, supervised around the clock

    async def scenario() -> None:
        assert "supervision" not in agent.health()["drivers"]["kiosk-opd"]
        # The agent's own driver supervision (run() would also need a broker).
        task = asyncio.create_task(agent._supervise(
            sensor, DriverContext(clock=agent.clock, pin_factory=gpio.provider)))
        try:
            await gpio.wait_until(lambda: "supervision" in agent.health()["drivers"]["kiosk-opd"],
                                  "the driver's pins open")
            await gpio.in_thread(loop.drive_low)  # the cable whole; the kiosk's output off
            await gpio.wait_until(
                lambda: agent.health()["drivers"]["kiosk-opd"].get("supervision")
                == {"cable": "ok", "ready": False}, "the heartbeat's supervision")
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        assert "supervision" not in agent.health()["drivers"]["kiosk-opd"]

    asyncio.run(scenario())
    agent.outbox.close()
