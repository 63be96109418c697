"""A loop card in `loop_readings = "vehicles"` mode: each reading of a loop pair says how
many vehicles its speed is the mean of (`speed_count`), as the GPIO loop pairs' do. The
cloud weights a lane's speed by it (by `count` without it): before, a reading of 10
vehicles of which the pair measured 1 weighed that one speed as 10. A channel is a pair
once it gave a speed (the board's HI does not say); a single loop sends none, not a
constant 0. Real pseudo-terminal, the board emulated."""

from __future__ import annotations

import asyncio

from edge.drivers.base import DriverContext, Sample
from edge.drivers.upfw.driver import build, parse_params
from firmware_bridge.protocols.upfw import DeviceKind, Hello, LoopVehicle, Status, StatusCode
from firmware_bridge.protocols.upfw.emulator import UpfwEmulator
from tests.edge.serial.conftest import DriverRun
from tests.edge.serial.test_serial_upfw import Script
from urbanpulse.clock import FakeClock
from urbanpulse.wire.kinds import KINDS


def _speeds(samples: list[Sample]) -> list[tuple[str, float, float | None, float | None]]:
    return [(s.sensor, s.values["count"], s.values.get("speed_kmh"), s.values.get("speed_count"))
            for s in samples]


def _in_contract(s: Sample) -> bool:
    spec = KINDS[s.kind]
    return all(n in spec.fields and spec.fields[n].low <= v <= spec.fields[n].high
               for n, v in s.values.items())


def test_a_loop_pairs_readings_say_how_many_vehicles_their_speed_is_the_mean_of(  # type: ignore[no-untyped-def]
        emulated) -> None:
    script = Script()
    emu = emulated(UpfwEmulator(script, kind=DeviceKind.LOOP, device_id="lp-hn-017", channels=2,
                                period_s=0.02, hello_period_s=3600))
    clock = FakeClock()  # intervals close when the test moves the clock
    params = parse_params({"port": emu.port, "loop_readings": "vehicles", "interval_s": 10},
                          "sensors[0]")

    async def close(run: DriverRun, n: int) -> list[Sample]:
        clock.advance(10.0)
        script.put(Status(0, 0, StatusCode.OK, None, ""))  # any sentence wakes the driver up
        return (await run.count(n))[n - 2:]

    async def scenario() -> None:
        driver = build("lanes", params, DriverContext(clock=clock))
        run = DriverRun(driver)
        await run.wait_for(lambda s: driver.describe()["board"] is not None, 5, "the board's HI")
        # Channel 1 a loop pair that measured 2 of its 3 vehicles; channel 2 a single loop.
        script.put(LoopVehicle(0, 0, 1, 600, 1, 30.0), LoopVehicle(0, 0, 1, 900, 2),
                   LoopVehicle(0, 0, 1, 300, 3, 20.0), LoopVehicle(0, 0, 2, 500, 1))
        await run.wait_for(lambda s: driver.describe()["messages"].get("LoopVehicle") == 4, 5,
                           "the vehicles at the driver")
        first = await close(run, 2)
        assert _speeds(first) == [("lanes-1", 3.0, 25.0, 2.0), ("lanes-2", 1.0, None, None)]
        # The pair measures none of the next interval's vehicle: 0, not absent (a reading
        # with vehicles and none measured, as a standing queue gives); the single loop none.
        script.put(LoopVehicle(0, 0, 1, 4000, 4), LoopVehicle(0, 0, 2, 500, 2))
        await run.wait_for(lambda s: driver.describe()["messages"].get("LoopVehicle") == 6, 5,
                           "the vehicles at the driver")
        second = await close(run, 4)
        assert _speeds(second) == [("lanes-1", 1.0, None, 0.0), ("lanes-2", 1.0, None, None)]
        quiet = await close(run, 6)  # no vehicle: the pair's reading says none was measured
        assert _speeds(quiet) == [("lanes-1", 0.0, None, 0.0), ("lanes-2", 0.0, None, None)]
        # Another board on the port: its channel 1 may be a single loop, nothing said until
        # it gives a speed.
        script.put(Hello(0, 0, DeviceKind.LOOP, "lp-hn-018", "1.0.0", 2))
        await run.wait_for(lambda s: driver.describe()["board"]["device_id"] == "lp-hn-018", 5,
                           "the other board's HI")
        other = await close(run, 8)
        await run.stop()
        assert _speeds(other) == [("lanes-1", 0.0, None, None), ("lanes-2", 0.0, None, None)]
        assert all(_in_contract(s) for s in run.samples), [s.values for s in run.samples]

    asyncio.run(scenario())

