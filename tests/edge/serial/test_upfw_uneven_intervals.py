"""A loop card in `loop_readings = "intervals"` mode times its own intervals (`LI`), which
check-config cannot see. One whose interval does not divide an hour (2400 s) gives the
cloud's hours 40 and 80 minutes of counts, as a GPIO loop's `interval_s = 2400` would (which
check-config refuses); one over an hour is past the wire contract's bound. Before, the
driver forwarded the first kind as readings and dropped the second, counted only in
`describe()`, which no heartbeat carries: wrong hourly counts, or a silent lane, and
nothing said why. Now such an `LI` is not sent, and the driver fails naming the board, the
interval and what to set: the agent logs it and the heartbeat carries it as the driver's
last error. The readings read with it are sent first."""

from __future__ import annotations

import asyncio
import json
import logging
import threading
from typing import Any

import pytest

from edge.drivers.base import DriverContext
from edge.drivers.upfw.driver import build, parse_params
from edge.errors import DriverError
from firmware_bridge.protocols.upfw import DeviceKind, LoopInterval, LoopVehicle
from firmware_bridge.protocols.upfw.emulator import UpfwEmulator
from tests.agent_thread import agent_in_thread
from tests.edge.serial.conftest import DriverRun
from tests.edge.serial.test_serial_upfw import Script
from urbanpulse.testing import wait_for

HOURS = ("sends loop intervals of 2400 s (channel 1), which do not divide an hour (3600 s): the "
         "cloud counts each interval in the hour it ends in, so an hour would hold 40 or 80 "
         "minutes of counts; not sent. Set the board's interval to one that divides an hour "
         "(nearest: 1800, 3600 s), or sensors[0].loop_readings = \"vehicles\" (the driver "
         "sums the board's vehicles over its own interval_s)")


class Gated(Script):
    """A script the test can hold: nothing is sent until `release()`, then what was put
    at the board's next report."""

    def __init__(self) -> None:
        super().__init__()
        self._open = threading.Event()

    def release(self) -> None:
        self._open.set()

    def __call__(self) -> Any:
        return super().__call__() if self._open.is_set() else []


def test_an_interval_that_does_not_divide_the_hour_fails_the_driver_naming_the_board(  # type: ignore[no-untyped-def]
        emulated) -> None:
    script = Gated()
    # What this test checks is what the driver does with the rest of the read that brought
    # the uneven LI, so each report must be one read: the board writes it to the line at
    # once (pace=False). Paced at the UART rate, a report takes 10 ms to leave, and on a
    # loaded machine the emulator's thread, stalled halfway for longer than the driver's
    # read rests (0.1 s), split it over two reads: the driver failed at the first as it
    # should, before the rest was read.
    emu = emulated(UpfwEmulator(script, kind=DeviceKind.LOOP, device_id="lp-hn-017", channels=2,
                                period_s=0.02, pace=False))
    params = parse_params({"port": emu.port}, "sensors[0]")

    async def scenario() -> None:
        run = DriverRun(build("lanes", params, DriverContext()))
        await run.wait_for(lambda s: run.driver.describe()["board"] is not None, 5, "the board's HI")
        script.put(LoopInterval(0, 0, 1, 60, 18, 12.5), LoopInterval(0, 0, 2, 60, 3, 1.0))
        script.release()
        await run.count(2)
        script.put(LoopInterval(0, 0, 1, 2400, 720, 12.5), LoopInterval(0, 0, 2, 60, 4, 1.0),
                   LoopVehicle(0, 0, 1, 780, 1523))
        exc = await run.failure(5.0)
        assert isinstance(exc, DriverError)
        assert str(exc) == f"upfw lanes on {emu.port}: board 'lp-hn-017' " + HOURS
        assert [(s.sensor, s.values["count"], s.values["interval_s"]) for s in run.samples] == [
            ("lanes-1", 18.0, 60.0), ("lanes-2", 3.0, 60.0), ("lanes-2", 4.0, 60.0)]
        described = run.driver.describe()
        assert (described["uneven_intervals"], described["ignored"]) == (1, 1)  # the LV

    asyncio.run(scenario())


@pytest.mark.parametrize(("interval", "why"), [
    (7200, "over the wire contract's bound of 3600 s (the cloud would reject every such "
           "reading); not sent. Set the board's interval to one that divides an hour "
           "(nearest: 3600 s)"),
    (7, "which do not divide an hour (3600 s): the cloud counts each interval in the hour it "
        "ends in, so an hour would hold 59.97 or 60.08 minutes of counts; not sent. Set the "
        "board's interval to one that divides an hour (nearest: 6, 8 s)"),
])
def test_other_intervals_say_why(emulated, interval: int, why: str) -> None:  # type: ignore[no-untyped-def]
    script = Script()
    emu = emulated(UpfwEmulator(script, kind=DeviceKind.LOOP, device_id="lp-hn-018", channels=1,
                                period_s=0.02))
    params = parse_params({"port": emu.port}, "sensors[3]")

    async def scenario() -> None:
        run = DriverRun(build("lanes", params, DriverContext()))
        await run.wait_for(lambda s: run.driver.describe()["board"] is not None, 5, "the board's HI")
        script.put(LoopInterval(0, 0, 1, interval, 5, 1.0))
        exc = await run.failure(5.0)
        assert why in str(exc), exc
        assert run.samples == []

    asyncio.run(scenario())


def test_through_the_agent_the_heartbeat_and_the_log_name_the_board(  # type: ignore[no-untyped-def]
        emulated, make_node_config, collector, caplog) -> None:
    script = Script()
    emu = emulated(UpfwEmulator(script, kind=DeviceKind.LOOP, device_id="lp-hn-017", channels=1,
                                period_s=0.02))
    path = make_node_config("hn-loops", "lanes-1", f"""
[[sensors]]
id = "lanes"
driver = "upfw"
port = "{emu.port}"
""")
    seen = collector("hn-loops", "lanes-1")
    caplog.set_level(logging.WARNING, logger="urbanpulse.edge")
    with agent_in_thread(path) as agent:
        wait_for(lambda: "lanes" in agent._running
                 and agent._running["lanes"].describe()["board"] is not None, 20, "the board's HI")
        script.put(LoopInterval(0, 0, 1, 60, 18, 12.5))
        wait_for(lambda: seen.seqs("lanes-1") == [0], 20, "the 60 s interval at the broker")
        script.put(LoopInterval(0, 0, 1, 2400, 720, 12.5))
        wait_for(lambda: agent.drivers["lanes"].restarts >= 1, 20, "the driver's failure")

        said = f"DriverError: upfw lanes on {emu.port}: board 'lp-hn-017' " + HOURS

        def in_a_heartbeat() -> bool:
            return any(said == (json.loads(p).get("health") or {}).get("drivers", {}).get(
                "lanes", {}).get("last_error") for p in list(seen.statuses))

        wait_for(in_a_heartbeat, 20, "a heartbeat naming the board")
    assert [r.values["interval_s"] for r in seen.readings if r.sensor == "lanes-1"] == [60.0]
    failed = [r for r in caplog.records if r.getMessage() == "driver failed; restarting"]
    assert [(getattr(r, "sensor", None), getattr(r, "error", None)) for r in failed[:1]] == [
        ("lanes", said)]
