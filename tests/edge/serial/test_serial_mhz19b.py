"""The mhz19b driver against the MH-Z19B emulator on a real pseudo-terminal."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import pytest

import edge.drivers.mhz19b
from edge.config import load_config
from edge.drivers.base import DriverContext
from edge.drivers.mhz19b.driver import Mhz19bParams, build, parse_params
from edge.errors import DriverError
from firmware_bridge.protocols.mhz19b.emulator import Mhz19bEmulator
from tests.edge.serial.conftest import DriverRun
from urbanpulse.clock import FakeClock
from urbanpulse.errors import ConfigError

SAMPLE = Path(edge.drivers.mhz19b.__file__).parent / "sample.toml"


class MuteMhz19b(Mhz19bEmulator):
    """A powered module that stopped answering (a firmware hang): the port stays open."""

    mute = False

    def _on_bytes(self, data: bytes, now: float) -> None:
        if not self.mute:
            super()._on_bytes(data, now)


def _params(port: str, **kw: Any) -> Mhz19bParams:
    raw = {"port": port, "warmup_s": 0, "query_interval_s": 0.1, "reply_timeout_s": 0.08,
           "silence_timeout_s": 0.5, **kw}
    return parse_params(raw, "sensors[0]")


def test_polls_co2_and_sets_abc(emulated) -> None:  # type: ignore[no-untyped-def]
    emu = emulated(Mhz19bEmulator(lambda: 1234.0, temperature_c=31, warmup_s=0.0))
    assert emu.abc_enabled

    async def scenario() -> None:
        run = DriverRun(build("co2-1", _params(emu.port, abc=False, range_ppm=2000), DriverContext()))
        samples = await run.count(4)
        await run.stop()
        assert emu.call(lambda: emu.abc_enabled) is False
        assert emu.call(lambda: emu.range_ppm) == 2000
        s = samples[-1]
        assert (s.sensor, s.kind, s.flags) == ("co2-1", "air.co2", ())
        assert s.values == {"co2": 1234.0, "temperature_c": 31.0}
        described = run.driver.describe()
        assert described["frames"] == len(run.samples)
        # every reading answered one query: the module never talks unasked
        assert emu.call(lambda: emu.commands_heard) == described["queries"] + 2  # + ABC, range

    asyncio.run(scenario())


def test_abc_on_is_sent_too(emulated) -> None:  # type: ignore[no-untyped-def]
    emu = emulated(Mhz19bEmulator(warmup_s=0.0))
    emu.call(lambda: setattr(emu, "abc_enabled", False))

    async def scenario() -> None:
        run = DriverRun(build("co2-1", _params(emu.port, abc=True), DriverContext()))
        await run.count(1)
        await run.stop()

    asyncio.run(scenario())
    assert emu.call(lambda: emu.abc_enabled) is True


def test_readings_in_the_preheat_window_are_flagged(emulated) -> None:  # type: ignore[no-untyped-def]
    emu = emulated(Mhz19bEmulator(lambda: 700.0, warmup_s=0.0))
    clock = FakeClock()

    async def scenario() -> None:
        run = DriverRun(build("co2-1", _params(emu.port, warmup_s=180), DriverContext(clock=clock)))
        first = await run.count(3)
        assert all(s.flags == ("warmup",) and s.values["co2"] == 700.0 for s in first)
        clock.advance(180.0)
        await run.wait_for(lambda s: s[-1].flags == (), 5, "a reading after the preheat")
        await run.stop()
        assert run.samples[-1].values["co2"] == 700.0

    asyncio.run(scenario())


def test_preheat_zeros_are_flagged_without_a_window(emulated) -> None:  # type: ignore[no-untyped-def]
    emu = emulated(Mhz19bEmulator(lambda: 700.0, warmup_s=3600.0))

    async def scenario() -> None:
        run = DriverRun(build("co2-1", _params(emu.port), DriverContext()))
        samples = await run.count(3)
        await run.stop()
        assert all(s.flags == ("warmup",) and s.values["co2"] == 0.0 for s in samples)

    asyncio.run(scenario())


def test_a_bad_reply_is_counted_and_polling_goes_on(emulated) -> None:  # type: ignore[no-untyped-def]
    emu = emulated(Mhz19bEmulator(lambda: 900.0, warmup_s=0.0))

    async def scenario() -> None:
        run = DriverRun(build("co2-1", _params(emu.port, silence_timeout_s=2.0), DriverContext()))
        await run.count(2)
        emu.inject_bad_checksum()
        await run.wait_for(lambda s: run.driver.describe()["checksum_errors"] == 1 and len(s) >= 5,
                           5, "readings after a corrupt reply")
        await run.stop()
        assert run.driver.describe()["missed_replies"] >= 1
        assert all(s.values["co2"] == 900.0 for s in run.samples)

    asyncio.run(scenario())


def test_unplug_fails_the_driver(emulated) -> None:  # type: ignore[no-untyped-def]
    emu = emulated(Mhz19bEmulator(warmup_s=0.0))
    params = _params(emu.port, silence_timeout_s=1.0)

    async def scenario() -> None:
        run = DriverRun(build("co2-1", params, DriverContext()))
        await run.count(2)
        emu.unplug()
        exc = await run.failure(params.silence_timeout_s + 1.0)
        assert isinstance(exc, DriverError)
        assert "co2-1" in str(exc)

    asyncio.run(scenario())


def test_a_mute_module_fails_within_the_silence_timeout(emulated) -> None:  # type: ignore[no-untyped-def]
    emu = emulated(MuteMhz19b(warmup_s=0.0))
    params = _params(emu.port, silence_timeout_s=0.5)

    async def scenario() -> None:
        run = DriverRun(build("co2-1", params, DriverContext()))
        await run.count(2)
        emu.call(lambda: setattr(emu, "mute", True))
        muted = time.monotonic()
        exc = await run.failure(3.0)
        assert isinstance(exc, DriverError)
        assert "no reply" in str(exc)
        # the last query before failing may still be waiting out its reply timeout
        assert time.monotonic() - muted < params.silence_timeout_s + params.query_interval_s + 0.3

    asyncio.run(scenario())


@pytest.mark.parametrize(("raw", "key"), [
    ({}, "sensors[1].port"),
    ({"port": "/dev/x", "abc": "off"}, "sensors[1].abc"),
    ({"port": "/dev/x", "range_ppm": 3000}, "sensors[1].range_ppm"),
    ({"port": "/dev/x", "baudrate": 19200}, "sensors[1].baudrate"),
    ({"port": "/dev/x", "query_interval_s": 0}, "sensors[1].query_interval_s"),
    ({"port": "/dev/x", "warmup_s": "3m"}, "sensors[1].warmup_s"),
    ({"port": "/dev/x", "query_interval_s": 2, "reply_timeout_s": 2}, "sensors[1].reply_timeout_s"),
    ({"port": "/dev/x", "query_interval_s": 10, "silence_timeout_s": 10}, "sensors[1].silence_timeout_s"),
    ({"port": "/dev/x", "calibrate": True}, "sensors[1].calibrate"),
])
def test_bad_params_name_the_key(raw: dict[str, Any], key: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_params(raw, "sensors[1]")
    assert info.value.key == key


def test_sample_config_validates() -> None:
    config = load_config(SAMPLE)
    (sensor,) = config.sensors
    assert sensor.driver == "mhz19b"
    assert sensor.params == Mhz19bParams(port=sensor.params.port, abc=False, range_ppm=5000,
                                         query_interval_s=5.0, reply_timeout_s=1.0,
                                         silence_timeout_s=20.0, warmup_s=180.0)
