"""The bed_pad driver end to end on gpiozero MockFactory pins (a Pi's GPIO chip cannot
run here), under asyncio with the real clock."""

import asyncio
import itertools

from edge.drivers.base import DriverContext
from edge.drivers.bed_pad.driver import build, parse_params


def states(samples: list) -> list[tuple[float, ...]]:
    """The reported states in order, heartbeats (repeats) collapsed."""
    seq = [(s.values["occupied"], s.values.get("fault", -1)) for s in samples]
    return [k for k, _ in itertools.groupby(seq)]


def test_exit_fault_and_heartbeat_with_loopback_supervision(gpio) -> None:
    params = parse_params({"pin": 22, "supervision": "loopback", "supervision_pin": 23,
                           "exit_tolerance_s": 0.5, "debounce_s": 0.005,
                           "fault_delay_s": 0.05, "heartbeat_s": 0.25}, "sensors[1]")
    driver = build("bed-01", params, DriverContext(pin_factory=gpio.provider))
    pad, loop = gpio.factory.pin(22), gpio.factory.pin(23)

    def contacts() -> list[bool]:
        return driver.describe()["contacts"]

    async def scenario() -> None:
        async with gpio.running(driver) as samples:
            # pull-ups, nothing connected yet: both contacts read open -> fault at start
            assert states(samples) == [(0, 1)]
            await gpio.in_thread(loop.drive_low)          # cable plugged in
            await gpio.in_thread(pad.drive_low)           # patient lies down
            await gpio.wait_until(lambda: states(samples)[-1] == (1, 0), "occupied")
            await gpio.in_thread(pad.drive_high)          # patient leaves
            await gpio.wait_until(lambda: contacts() == [False, True], "pad open")
            assert states(samples)[-1] == (1, 0)           # still within the tolerance
            await gpio.wait_until(lambda: states(samples)[-1] == (0, 0), "exit")
            await gpio.in_thread(loop.drive_high)         # cable cut
            await gpio.wait_until(lambda: states(samples)[-1] == (0, 1), "fault")
            n = len(samples)
            await gpio.wait_until(lambda: len(samples) >= n + 2, "two heartbeats")
        assert states(samples) == [(0, 1), (0, 0), (1, 0), (0, 0), (0, 1)]
        assert samples[-1].values == samples[-2].values == {"occupied": 0, "fault": 1}
        assert all(s.kind == "hospital.bed" and s.sensor == "bed-01" for s in samples)
        assert [s.ts for s in samples] == sorted(s.ts for s in samples)
        gpio.assert_contract(samples)
        assert driver.describe()["exits"] == 1

    asyncio.run(scenario())


def test_active_high_contact_on_a_pull_up_is_inverted_correctly(gpio) -> None:
    # a pad whose contact drives the pin high when closed, with the pull-up enabled
    params = parse_params({"pin": 5, "pull": "up", "active_state": "high",
                           "exit_tolerance_s": 0.05, "debounce_s": 0.005}, "sensors[0]")
    driver = build("bed-02", params, DriverContext(pin_factory=gpio.provider))
    pin = gpio.factory.pin(5)

    async def scenario() -> None:
        async with gpio.running(driver) as samples:
            assert samples[0].values == {"occupied": 1}   # the pull-up reads high: closed
            await gpio.in_thread(pin.drive_low)
            await gpio.wait_until(lambda: samples[-1].values == {"occupied": 0}, "exit")
            await gpio.in_thread(pin.drive_high)
            await gpio.wait_until(lambda: samples[-1].values == {"occupied": 1}, "back")

    asyncio.run(scenario())


def test_loads_too_short_for_a_patient_go_out_as_glitches_in_the_next_reading(gpio) -> None:
    params = parse_params({"pin": 22, "debounce_s": 0.002, "min_pulse_s": 0.5,
                           "heartbeat_s": 0.1}, "sensors[0]")
    driver = build("bed-02", params, DriverContext(pin_factory=gpio.provider))
    pad = gpio.factory.pin(22)

    async def scenario() -> None:
        async with gpio.running(driver) as samples:
            for i in range(1, 3):
                await gpio.in_thread(lambda: (pad.drive_low(), pad.drive_high()))
                await gpio.wait_until(lambda n=i: driver.describe()["glitches"] == n,
                                      f"glitch {i} seen")
            await gpio.wait_until(lambda: sum(s.values.get("glitches", 0) for s in samples) == 2,
                                  "two glitches sent")
        assert all(s.values["occupied"] == 0 for s in samples)
        gpio.assert_contract(samples)

    asyncio.run(scenario())


def test_a_return_held_back_by_the_minimum_pulse_when_the_tolerance_ends_is_no_exit(gpio) -> None:
    # Back in bed 0.5 s after leaving, under the 1 s tolerance; the load is held back for
    # min_pulse_s (0.8 s) and confirmed only after the tolerance ran out: this was
    # reported as an exit and an entry 0.3 s later.
    params = parse_params({"pin": 22, "exit_tolerance_s": 1.0, "debounce_s": 0.005,
                           "min_pulse_s": 0.8, "heartbeat_s": 60}, "sensors[0]")
    driver = build("bed-03", params, DriverContext(pin_factory=gpio.provider))
    pad = gpio.factory.pin(22)

    async def scenario() -> None:
        async with gpio.running(driver) as samples:
            await gpio.in_thread(pad.drive_low)           # lies down
            await gpio.wait_until(lambda: states(samples) == [(0, -1), (1, -1)], "occupied")
            loop = asyncio.get_running_loop()
            left = loop.time()
            await gpio.in_thread(pad.drive_high)          # leaves
            await asyncio.sleep(0.5)                      # the scenario's time away
            await gpio.in_thread(pad.drive_low)           # back
            back = loop.time() - left
            assert 0.2 < back < 1.0, back                 # within the window this test is about
            await gpio.wait_until(lambda: driver.describe()["contacts"] == [True], "back in bed")
        assert states(samples) == [(0, -1), (1, -1)]
        assert driver.describe()["exits"] == 0

    asyncio.run(scenario())
