"""The queue_kiosk driver end to end on gpiozero MockFactory pins (a Pi's GPIO chip
cannot run here), under asyncio with the real clock and the agent's real outbox for its
ticket numbers."""

import asyncio
import json
from pathlib import Path

from edge.driver_state import StagedState
from edge.drivers.base import DriverContext
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
