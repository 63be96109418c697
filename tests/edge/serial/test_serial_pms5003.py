"""The pms5003 driver against the PMS5003/PMS5003T emulators on real pseudo-terminals."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import pytest

import edge.drivers.pms5003
from edge.config import load_config
from edge.drivers.base import DriverContext, Sample
from edge.drivers.pms5003.driver import Pms5003Params, build, parse_params
from edge.errors import DriverError
from firmware_bridge.protocols.pms5003 import Mode, Pms5003Ack
from firmware_bridge.protocols.pms5003.emulator import (
    Pms5003Emulator,
    Pms5003tEmulator,
    reading,
    reading_t,
)
from tests.edge.serial.conftest import DriverRun, Elapsed, Noisy, one_late_answer
from urbanpulse.clock import FakeClock
from urbanpulse.errors import ConfigError
from urbanpulse.testing import wait_for

SAMPLE = Path(edge.drivers.pms5003.__file__).parent / "sample.toml"


class NoisyPms5003(Noisy, Pms5003Emulator):
    pass


def _params(port: str, **kw: Any) -> Pms5003Params:
    return parse_params({"port": port, "warmup_s": 0, **kw}, "sensors[0]")


def test_active_mode_emits_atmospheric_pm(emulated) -> None:  # type: ignore[no-untyped-def]
    emu = emulated(Pms5003Emulator(lambda: reading(41, 77), period_s=0.05, warmup_s=0.0))

    async def scenario() -> None:
        run = DriverRun(build("pm-1", _params(emu.port), DriverContext()))
        samples = await run.count(5)
        await run.stop()
        s = samples[-1]
        assert s.sensor == "pm-1"
        assert s.kind == "air.pm"
        assert s.values == {"pm25": 41.0, "pm10": 77.0, "pm1": 29.0}
        assert s.flags == ()
        assert s.ts.tzinfo is not None
        assert run.driver.describe()["frames"] >= 5

    asyncio.run(scenario())


class ToldApart(Pms5003tEmulator):
    """Its reports by itself (active mode) read PM2.5 11, its answers to reads 12."""

    def __init__(self, **kw: Any) -> None:
        super().__init__(lambda: reading_t(11 if self.mode is Mode.ACTIVE else 12, 20,
                                           temperature_c=-3.4, humidity_pct=88.5), **kw)


def test_passive_mode_polls_the_t_variant(emulated) -> None:  # type: ignore[no-untyped-def]
    emu = emulated(ToldApart(period_s=0.05, warmup_s=0.0))
    params = _params(emu.port, model="pms5003t", mode="passive", query_interval_s=0.1,
                     reply_timeout_s=0.08)

    def answers(samples: list[Sample]) -> int:
        return sum(s.values["pm25"] == 12.0 for s in samples)

    async def scenario() -> None:
        run = DriverRun(build("pm-t", params, DriverContext()))
        # Until the sensor takes the mode it reports by itself every 0.05 s, and those
        # reports are readings too: counted, on a slow start they were most of the samples.
        await run.wait_for(lambda s: answers(s) >= 6, 5, "6 answers to reads")
        await run.stop()
        assert emu.call(lambda: emu.mode) is Mode.PASSIVE
        # reports made before the sensor took the mode may come after it took it, not after
        # an answer: from the first answer on, every reading answered a read
        pm25 = [s.values["pm25"] for s in run.samples]
        first = pm25.index(12.0)
        assert pm25 == [11.0] * first + [12.0] * (len(pm25) - first), pm25
        described = run.driver.describe()
        assert described["queries"] >= len(pm25) - first
        # wake, passive mode, the reads; the last read may still be on its way to the sensor
        wait_for(lambda: emu.call(lambda: emu.commands_heard) >= described["queries"] + 2, 5,
                 f"the sensor to hear every command the driver sent ({described})")
        s = run.samples[-1]
        assert s.values == {"pm25": 12.0, "pm10": 20.0, "pm1": 8.0, "temperature_c": -3.4,
                            "humidity_pct": 88.5}
        assert s.flags == ()

    asyncio.run(scenario())


def test_warmup_window_and_zeros_are_flagged(emulated) -> None:  # type: ignore[no-untyped-def]
    emu = emulated(Pms5003Emulator(lambda: reading(30, 50), period_s=0.05, warmup_s=0.0))
    clock = FakeClock()

    async def scenario() -> None:
        run = DriverRun(build("pm-1", _params(emu.port, warmup_s=30), DriverContext(clock=clock)))
        first = await run.count(3)
        assert all(s.flags == ("warmup",) and s.values["pm25"] == 30.0 for s in first)
        clock.advance(30.0)
        await run.wait_for(lambda s: s[-1].flags == (), 5, "a reading after the window")
        await run.stop()

    asyncio.run(scenario())


def test_sensor_warmup_zeros_are_flagged_without_a_window(emulated) -> None:  # type: ignore[no-untyped-def]
    emu = emulated(Pms5003Emulator(lambda: reading(30, 50), period_s=0.05, warmup_s=3600.0))

    async def scenario() -> None:
        run = DriverRun(build("pm-1", _params(emu.port), DriverContext()))
        samples = await run.count(3)
        await run.stop()
        assert all(s.flags == ("warmup",) for s in samples)
        assert all(s.values == {"pm25": 0.0, "pm10": 0.0, "pm1": 0.0} for s in samples)

    asyncio.run(scenario())


def test_corrupt_frames_are_counted_and_skipped(emulated) -> None:  # type: ignore[no-untyped-def]
    emu = emulated(Pms5003Emulator(lambda: reading(30, 50), period_s=0.05, warmup_s=0.0))

    async def scenario() -> None:
        run = DriverRun(build("pm-1", _params(emu.port), DriverContext()))
        await run.count(2)
        emu.inject_bad_checksum()
        emu.inject_garbage(200)
        emu.inject_truncated_frame()
        await run.wait_for(lambda s: run.driver.describe()["checksum_errors"] >= 1 and len(s) >= 8,
                           5, "readings after the faults")
        await run.stop()
        described = run.driver.describe()
        assert described["bytes_skipped"] > 0
        assert all(s.values["pm25"] == 30.0 for s in run.samples)

    asyncio.run(scenario())


def test_a_late_answer_does_not_shift_the_next_reads(emulated) -> None:  # type: ignore[no-untyped-def]
    """One answer that comes after its read gave up (reply_timeout_s) is emitted when it
    comes, and the next reads get their own answers. (It used to wait in the buffer and
    be taken as the next read's answer, and so on: every later reading one interval late
    and one measurement old, until a reply was missed.)"""
    made: list[float] = []  # when the sensor measured value n (pm25 = n)

    def values() -> Any:
        made.append(time.time())
        return reading(len(made), 1000)

    emu = emulated(Pms5003Emulator(values, period_s=0.05, warmup_s=0.0))
    params = _params(emu.port, mode="passive", query_interval_s=1.0, reply_timeout_s=0.3,
                     silence_timeout_s=3.0)

    async def scenario() -> None:
        await one_late_answer(DriverRun(build("pm-1", params, DriverContext())), emu, made)

    asyncio.run(scenario())


@pytest.mark.parametrize("mode", ["active", "passive"])
def test_unplug_fails_the_driver(emulated, mode: str) -> None:  # type: ignore[no-untyped-def]
    emu = emulated(Pms5003Emulator(period_s=0.05, warmup_s=0.0))
    extra = {"query_interval_s": 0.1, "reply_timeout_s": 0.08} if mode == "passive" else {}
    params = _params(emu.port, mode=mode, silence_timeout_s=1.0, **extra)

    async def scenario() -> None:
        run = DriverRun(build("pm-1", params, DriverContext()))
        await run.count(2)
        emu.unplug()
        exc = await run.failure(params.silence_timeout_s + 1.0)
        assert isinstance(exc, DriverError)
        assert "pm-1" in str(exc)

    asyncio.run(scenario())


@pytest.mark.parametrize("mode", ["active", "passive"])
def test_a_silent_sensor_fails_within_the_silence_timeout(emulated, mode: str) -> None:  # type: ignore[no-untyped-def]
    emu = emulated(Pms5003Emulator(period_s=0.05, warmup_s=0.0))
    extra = {"query_interval_s": 0.1, "reply_timeout_s": 0.08} if mode == "passive" else {}
    params = _params(emu.port, mode=mode, silence_timeout_s=0.6, **extra)

    async def scenario() -> None:
        run = DriverRun(build("pm-1", params, DriverContext()))
        await run.count(2)
        emu.call(lambda: setattr(emu, "sleeping", True))  # fan and laser off: nothing is sent
        muted = Elapsed()
        exc = await run.failure(3.0)
        assert isinstance(exc, DriverError)
        assert "0.6 s" in str(exc)
        assert muted() < params.silence_timeout_s + 0.5

    asyncio.run(scenario())


def test_missing_port_fails_with_a_driver_error(tmp_path: Path) -> None:
    async def scenario() -> None:
        run = DriverRun(build("pm-1", _params(str(tmp_path / "absent")), DriverContext()))
        assert isinstance(await run.failure(2.0), DriverError)

    asyncio.run(scenario())


@pytest.mark.parametrize(("raw", "key"), [
    ({}, "sensors[3].port"),
    ({"port": "/dev/x", "model": "pms7003"}, "sensors[3].model"),
    ({"port": "/dev/x", "mode": "query"}, "sensors[3].mode"),
    ({"port": "/dev/x", "baudrate": 115200}, "sensors[3].baudrate"),
    ({"port": "/dev/x", "silence_timeout_s": 0}, "sensors[3].silence_timeout_s"),
    ({"port": "/dev/x", "warmup_s": -1}, "sensors[3].warmup_s"),
    ({"port": "/dev/x", "pm25_scale": "1"}, "sensors[3].pm25_scale"),
    ({"port": "/dev/x", "query_interval_s": 2}, "sensors[3].query_interval_s"),
    ({"port": "/dev/x", "mode": "passive", "query_interval_s": 1, "reply_timeout_s": 1},
     "sensors[3].reply_timeout_s"),
    ({"port": "/dev/x", "mode": "passive", "query_interval_s": 5, "silence_timeout_s": 5},
     "sensors[3].silence_timeout_s"),
    ({"port": "/dev/x", "intervall": 5}, "sensors[3].intervall"),
])
def test_bad_params_name_the_key(raw: dict[str, Any], key: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_params(raw, "sensors[3]")
    assert info.value.key == key


def test_sample_config_validates() -> None:
    config = load_config(SAMPLE)
    (sensor,) = config.sensors
    assert sensor.driver == "pms5003"
    assert sensor.params == Pms5003Params(
        port=sensor.params.port, model="pms5003t", mode="passive", query_interval_s=5.0,
        reply_timeout_s=1.0, silence_timeout_s=20.0, warmup_s=30.0)


def test_garbage_only_fails_within_the_silence_timeout(emulated) -> None:  # type: ignore[no-untyped-def]
    emu = emulated(NoisyPms5003(period_s=0.05, warmup_s=0.0))
    params = _params(emu.port, silence_timeout_s=0.5)

    async def scenario() -> None:
        run = DriverRun(build("pm-1", params, DriverContext()))
        await run.count(2)
        emu.call(lambda: setattr(emu, "noisy", True))
        noisy = Elapsed()
        exc = await run.failure(3.0)
        assert isinstance(exc, DriverError)
        assert "garbage only" in str(exc)
        assert noisy() < params.silence_timeout_s + 0.5
        assert run.driver.describe()["bytes_skipped"] > 0

    asyncio.run(scenario())


def test_passive_mode_emits_every_reading_it_decoded_when_cancelled(emulated) -> None:  # type: ignore[no-untyped-def]
    """A stop (the agent cancels its drivers) at any moment of a passive read, also while
    an answer is arriving: every measurement the driver decoded was emitted."""
    emu = emulated(Pms5003Emulator(lambda: reading(41, 77), period_s=0.05, warmup_s=0.0))
    params = _params(emu.port, mode="passive", query_interval_s=0.1, reply_timeout_s=0.08)

    async def one_stop(delay_s: float) -> tuple[int, int]:
        run = DriverRun(build("pm-1", params, DriverContext()))
        decoder = run.driver.decoder
        feed, decoded = decoder.feed, []

        def watched(data: bytes) -> list[Any]:
            frames = feed(data)
            decoded.extend(f for f in frames if not isinstance(f, Pms5003Ack))
            return frames

        decoder.feed = watched  # type: ignore[method-assign]
        await run.count(2)
        asyncio.get_running_loop().call_later(delay_s, run.task.cancel)
        await asyncio.gather(run.task, return_exceptions=True)
        assert run.task.cancelled()
        return len(decoded), len(run.samples)

    async def scenario() -> None:
        # one query interval swept in 13 ms steps: the write, the wait for the answer, its
        # bytes arriving, the read's pause that gathers them, the sleep to the next query.
        # (A link that handed back bytes read while a cancellation arrived would lose the
        # answer here unless the driver emits it before honouring the cancellation.)
        for step in range(8):
            decoded, emitted = await one_stop(step * 0.013)
            assert emitted == decoded, f"cancelled {step * 13} ms after a reading"

    asyncio.run(scenario())
