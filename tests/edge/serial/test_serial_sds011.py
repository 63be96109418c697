"""The sds011 driver against the SDS011 emulator on a real pseudo-terminal."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import pytest

import edge.drivers.sds011
from edge.config import load_config
from edge.driver_state import StagedState
from edge.drivers.base import DriverContext
from edge.drivers.sds011.driver import Sds011Params, build, parse_params
from edge.errors import DriverError
from edge.outbox import Outbox
from firmware_bridge.protocols.sds011 import ReportMode, WorkState
from firmware_bridge.protocols.sds011.emulator import Sds011Emulator
from tests.edge.serial.conftest import DriverRun, Elapsed, Noisy, one_late_answer
from urbanpulse.clock import FakeClock
from urbanpulse.errors import ConfigError

SAMPLE = Path(edge.drivers.sds011.__file__).parent / "sample.toml"


class MuteSds011(Sds011Emulator):
    """A powered sensor that stopped answering commands (a firmware hang)."""

    mute = False

    def _on_bytes(self, data: bytes, now: float) -> None:
        if not self.mute:
            super()._on_bytes(data, now)


class NoisySds011(Noisy, Sds011Emulator):
    pass


def _params(port: str, **kw: Any) -> Sds011Params:
    """Without the warm-up window unless a test asks for one (the emulators here give
    stable values at once)."""
    return parse_params({"port": port, "warmup_s": 0, **kw}, "sensors[0]")


async def _settings_done(run: DriverRun) -> None:
    """The start's setting queries are over: reports before that came during them."""
    await run.wait_for(lambda s: len(run.driver.describe()["settings"]) == 2, 5, "both settings")


def test_active_mode_emits_pm(emulated) -> None:  # type: ignore[no-untyped-def]
    emu = emulated(Sds011Emulator(lambda: (41.3, 77.9), period_s=0.05, warmup_s=0.0))

    async def scenario() -> None:
        run = DriverRun(build("pm-1", _params(emu.port), DriverContext()))
        samples = await run.count(5)
        await run.stop()
        s = samples[-1]
        assert (s.sensor, s.kind, s.flags) == ("pm-1", "air.pm", ())
        assert s.values == {"pm25": 41.3, "pm10": 77.9}
        assert s.ts.tzinfo is not None
        assert run.driver.describe()["frames"] >= 5

    asyncio.run(scenario())


QUERY = {"mode": "query", "query_interval_s": 0.1, "reply_timeout_s": 0.08, "silence_timeout_s": 1.0}


@pytest.mark.parametrize("kw", [{}, QUERY], ids=["active", "query"])
def test_readings_within_warmup_s_of_each_start_are_flagged(emulated, kw: dict[str, Any]) -> None:  # type: ignore[no-untyped-def]
    """The protocol sheet (V1.3) gives the data 30 s to be stable after the sensor starts
    working; the driver wakes it at every start, so every start opens the window, even
    when the sensor already sends plausible non-zero values."""
    emu = emulated(Sds011Emulator(lambda: (30.0, 50.0), period_s=0.05, warmup_s=0.0))
    clock = FakeClock()
    driver = build("pm-1", _params(emu.port, warmup_s=30, **kw), DriverContext(clock=clock))

    async def scenario() -> None:
        for start in range(2):  # the agent's restart: run() again
            run = DriverRun(driver)
            first = await run.count(3)
            assert all(s.flags == ("warmup",) and s.values == {"pm25": 30.0, "pm10": 50.0}
                       for s in first), (start, first)
            assert driver.describe()["warming_up"] is True
            clock.advance(29.5)
            n = len(run.samples)  # samples emitted from here on were made after the advance
            await run.count(n + 2)
            assert all(s.flags == ("warmup",) for s in run.samples[n:])
            clock.advance(0.5)
            n = len(run.samples)
            await run.count(n + 2)
            assert all(s.flags == () for s in run.samples[n:]), run.samples[n:]
            assert driver.describe()["warming_up"] is False
            await run.stop()

    asyncio.run(scenario())
    assert emu.call(lambda: emu.work_state) is WorkState.WORK


def test_the_window_runs_from_the_wake_of_a_sensor_left_asleep(emulated) -> None:  # type: ignore[no-untyped-def]
    """A sensor asleep (another tool, an earlier run) starts its fan at the driver's
    wake: its zeros and then its first real values within warmup_s are flagged."""
    emu = emulated(Sds011Emulator(lambda: (20.0, 30.0), period_s=0.05, warmup_s=0.3))
    emu.call(lambda: setattr(emu, "work_state", WorkState.SLEEP))
    clock = FakeClock()

    async def scenario() -> None:
        run = DriverRun(build("pm-1", _params(emu.port, warmup_s=30, silence_timeout_s=2.0),
                              DriverContext(clock=clock)))
        await run.wait_for(lambda s: any(x.values["pm25"] == 20.0 for x in s), 5,
                           "real values after the sensor's own warm-up")
        assert any(x.values == {"pm25": 0.0, "pm10": 0.0} for x in run.samples)
        assert all(x.flags == ("warmup",) for x in run.samples)
        clock.advance(30.0)
        n = len(run.samples)
        await run.count(n + 2)
        assert all(x.flags == () and x.values["pm25"] == 20.0 for x in run.samples[n:])
        await run.stop()

    asyncio.run(scenario())


def test_zeros_are_flagged_without_a_window(emulated) -> None:  # type: ignore[no-untyped-def]
    """warmup_s = 0 still never shows the sensor's own warm-up zeros as clean air."""
    emu = emulated(Sds011Emulator(lambda: (20.0, 30.0), period_s=0.05, warmup_s=3600.0))

    async def scenario() -> None:
        run = DriverRun(build("pm-1", _params(emu.port), DriverContext()))
        samples = await run.count(3)
        await run.stop()
        assert all(s.flags == ("warmup",) and s.values == {"pm25": 0.0, "pm10": 0.0}
                   for s in samples)
        assert run.driver.describe()["warming_up"] is False

    asyncio.run(scenario())


def test_a_sensor_left_asleep_is_woken(emulated) -> None:  # type: ignore[no-untyped-def]
    """Sleep survives the port being closed (only a power cycle ends it): a sensor put to
    sleep by another tool, or by a previous run, must be woken or it stays silent."""
    emu = emulated(Sds011Emulator(lambda: (20.0, 30.0), period_s=0.05, warmup_s=0.0))
    emu.call(lambda: setattr(emu, "work_state", WorkState.SLEEP))

    async def scenario() -> None:
        run = DriverRun(build("pm-1", _params(emu.port, silence_timeout_s=2.0), DriverContext()))
        await run.count(3)
        await run.stop()

    asyncio.run(scenario())
    assert emu.call(lambda: emu.work_state) is WorkState.WORK


def test_a_working_period_left_set_is_made_continuous(emulated) -> None:  # type: ignore[no-untyped-def]
    """The working period is kept in the sensor's flash: one reading every n minutes
    would trip the silence timeout at every run."""
    emu = emulated(Sds011Emulator(lambda: (20.0, 30.0), period_s=0.05, warmup_s=0.0))
    emu.call(lambda: setattr(emu, "working_period_min", 5))

    async def scenario() -> None:
        run = DriverRun(build("pm-1", _params(emu.port, silence_timeout_s=2.0), DriverContext()))
        await run.count(3)
        await run.stop()

    asyncio.run(scenario())
    assert emu.call(lambda: emu.working_period_min) == 0


def test_query_mode_polls(emulated) -> None:  # type: ignore[no-untyped-def]
    emu = emulated(Sds011Emulator(lambda: (12.5, 20.0), period_s=0.05, warmup_s=0.0))
    params = _params(emu.port, mode="query", query_interval_s=0.1, reply_timeout_s=0.08,
                     silence_timeout_s=1.0)

    async def scenario() -> None:
        run = DriverRun(build("pm-q", params, DriverContext()))
        # Until the sensor takes the mode, it reports by itself (every 0.05 s), and those
        # reports are readings too: on a slow start they made the samples counted below.
        await run.wait_for(lambda s: emu.call(lambda: emu.report_mode) is ReportMode.QUERY, 5,
                           "the sensor set to query mode")
        await run.count(len(run.samples) + 5)  # now only the answers to the driver's queries
        await run.stop()
        assert run.samples[-1].values == {"pm25": 12.5, "pm10": 20.0}

    asyncio.run(scenario())


def test_a_late_answer_does_not_shift_the_next_queries(emulated) -> None:  # type: ignore[no-untyped-def]
    """One answer that comes after its query gave up (reply_timeout_s) is emitted when it
    comes, and the next queries get their own answers. (It used to wait in the buffer and
    be taken as the next query's answer, and so on: every later reading one interval late
    and one measurement old, until a reply was missed.)"""
    made: list[float] = []  # when the sensor measured value n (pm25 = n)

    def values() -> tuple[float, float]:
        made.append(time.time())
        return float(len(made)), 1000.0

    emu = emulated(Sds011Emulator(values, period_s=0.05, warmup_s=0.0))
    params = _params(emu.port, mode="query", query_interval_s=1.0, reply_timeout_s=0.3,
                     silence_timeout_s=3.0)

    async def scenario() -> None:
        await one_late_answer(DriverRun(build("pm-q", params, DriverContext())), emu, made)

    asyncio.run(scenario())


def test_garbage_only_fails_within_the_silence_timeout(emulated) -> None:  # type: ignore[no-untyped-def]
    emu = emulated(NoisySds011(period_s=0.05, warmup_s=0.0))
    params = _params(emu.port, silence_timeout_s=0.5)

    async def scenario() -> None:
        run = DriverRun(build("pm-1", params, DriverContext()))
        await _settings_done(run)
        await run.count(len(run.samples) + 2)
        emu.call(lambda: setattr(emu, "noisy", True))
        noisy = Elapsed()
        exc = await run.failure(3.0)
        assert isinstance(exc, DriverError)
        assert "pm-1" in str(exc)
        assert noisy() < params.silence_timeout_s + 0.5
        assert run.driver.describe()["bytes_skipped"] > 0

    asyncio.run(scenario())


def test_a_mute_sensor_in_query_mode_fails_within_the_silence_timeout(emulated) -> None:  # type: ignore[no-untyped-def]
    emu = emulated(MuteSds011(period_s=0.05, warmup_s=0.0))
    params = _params(emu.port, mode="query", query_interval_s=0.1, reply_timeout_s=0.08,
                     silence_timeout_s=0.5)

    async def scenario() -> None:
        run = DriverRun(build("pm-q", params, DriverContext()))
        await _settings_done(run)
        await run.count(len(run.samples) + 2)
        emu.call(lambda: setattr(emu, "mute", True))
        muted = Elapsed()
        exc = await run.failure(5.0)
        assert isinstance(exc, DriverError)
        assert "no reply" in str(exc)
        # the last query before failing may still be waiting out its reply timeout
        assert muted() < params.silence_timeout_s + params.query_interval_s + 0.3
        assert run.driver.describe()["missed_replies"] >= 1

    asyncio.run(scenario())


def test_unplug_fails_the_driver(emulated) -> None:  # type: ignore[no-untyped-def]
    emu = emulated(Sds011Emulator(period_s=0.05, warmup_s=0.0))
    params = _params(emu.port, silence_timeout_s=1.0)

    async def scenario() -> None:
        run = DriverRun(build("pm-1", params, DriverContext()))
        await run.count(2)
        emu.unplug()
        exc = await run.failure(params.silence_timeout_s + 1.0)
        assert isinstance(exc, DriverError)

    asyncio.run(scenario())


async def _restart(emu: Sds011Emulator, ctx: DriverContext, **kw: Any) -> dict[str, Any]:
    """One run of a freshly built driver (as the agent builds one at each restart) until
    its first reading after the settings; returns its describe()."""
    run = DriverRun(build("pm-1", _params(emu.port, silence_timeout_s=3.0, **kw), ctx))
    await _settings_done(run)
    await run.count(len(run.samples) + 1)
    await run.stop()
    return run.driver.describe()


@pytest.mark.parametrize(("mode", "first_writes"), [("active", 1), ("query", 2)])
def test_restarts_write_the_flash_only_when_a_setting_differs(  # type: ignore[no-untyped-def]
        emulated, tmp_path: Path, mode: str, first_writes: int) -> None:
    """Reporting mode and working period live in the sensor's flash (10^4-10^5 write
    cycles): a driver restarting in a loop must read them and write only what differs.
    Here another tool left a 5-minute working period (and active reporting)."""
    emu = emulated(Sds011Emulator(lambda: (20.0, 30.0), period_s=0.05, warmup_s=0.0))
    emu.call(lambda: setattr(emu, "working_period_min", 5))
    keeper = StagedState(Outbox(tmp_path / "outbox.sqlite3").open())
    kw = {"mode": mode, "query_interval_s": 0.1, "reply_timeout_s": 0.08} if mode == "query" else {}

    async def restarts() -> list[int]:
        writes = []
        for i in range(5):
            if i == 3:  # a power cycle keeps the flash
                emu.unplug()
                emu.replug()
            described = await _restart(emu, DriverContext(state=keeper), **kw)
            writes.append(emu.call(lambda: emu.flash_writes))
            assert writes == [first_writes] * len(writes)
            assert described["flash_writes"] == (first_writes if i == 0 else 0)
        return writes

    asyncio.run(restarts())
    assert emu.call(lambda: emu.working_period_min) == 0
    assert emu.call(lambda: emu.report_mode) is ReportMode(int(mode == "query"))


def test_a_clone_that_ignores_queries_is_written_once_a_day(emulated, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """Some clones do not answer the query form: the driver writes the settings anyway
    (a sensor left on a working period would stay silent), then, while the driver state
    says it wrote the same values, no more than once a day."""
    emu = emulated(Sds011Emulator(lambda: (20.0, 30.0), period_s=0.05, warmup_s=0.0,
                                  answers_setting_queries=False))
    emu.call(lambda: setattr(emu, "working_period_min", 5))
    clock = FakeClock()
    outbox = Outbox(tmp_path / "outbox.sqlite3").open()
    keeper = StagedState(outbox)

    async def restarts() -> None:
        first = await _restart(emu, DriverContext(clock=clock, state=keeper), reply_timeout_s=0.1)
        assert first["flash_writes"] == 2
        assert first["settings"] == {"working_period": "written_unconfirmed",
                                     "report_mode": "written_unconfirmed"}
        assert first["unanswered_setting_queries"] == 2
        outbox.append([], 0, keeper.take())  # the agent's commit
        again = DriverContext(clock=clock, state=StagedState(outbox))  # the agent restarted too
        for _ in range(3):
            clock.advance(3600.0)
            later = await _restart(emu, again, reply_timeout_s=0.1)
            assert later["flash_writes"] == 0
            assert later["settings"] == {"working_period": "unconfirmed", "report_mode": "unconfirmed"}
        assert emu.call(lambda: emu.flash_writes) == 2
        clock.advance(86400.0)
        assert (await _restart(emu, again, reply_timeout_s=0.1))["flash_writes"] == 2

    asyncio.run(restarts())
    assert emu.call(lambda: emu.flash_writes) == 4
    assert emu.call(lambda: emu.working_period_min) == 0


@pytest.mark.parametrize(("raw", "key"), [
    ({}, "sensors[1].port"),
    ({"port": "/dev/x", "mode": "passive"}, "sensors[1].mode"),
    ({"port": "/dev/x", "baudrate": 115200}, "sensors[1].baudrate"),
    ({"port": "/dev/x", "silence_timeout_s": 0}, "sensors[1].silence_timeout_s"),
    ({"port": "/dev/x", "mode": "query", "query_interval_s": 2, "reply_timeout_s": 2},
     "sensors[1].reply_timeout_s"),
    ({"port": "/dev/x", "mode": "query", "query_interval_s": 10, "silence_timeout_s": 10},
     "sensors[1].silence_timeout_s"),
    ({"port": "/dev/x", "period": 1}, "sensors[1].period"),
    ({"port": "/dev/x", "warmup_s": -1}, "sensors[1].warmup_s"),
    ({"port": "/dev/x", "warmup_s": "30s"}, "sensors[1].warmup_s"),
    ({"port": "/dev/x", "warmup_s": True}, "sensors[1].warmup_s"),
    ({"port": "/dev/x", "warmup_s": float("nan")}, "sensors[1].warmup_s"),
    ({"port": "/dev/x", "warmup_s": float("inf")}, "sensors[1].warmup_s"),
])
def test_bad_params_name_the_key(raw: dict[str, Any], key: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_params(raw, "sensors[1]")
    assert info.value.key == key


def test_sample_config_validates() -> None:
    config = load_config(SAMPLE)
    (sensor,) = config.sensors
    assert sensor.driver == "sds011"
    assert sensor.params == Sds011Params(port=sensor.params.port, warmup_s=30.0)


def test_warmup_s_defaults_to_the_datasheet_30_s() -> None:
    assert parse_params({"port": "/dev/x"}, "sensors[0]").warmup_s == 30.0
    assert parse_params({"port": "/dev/x", "warmup_s": 0}, "sensors[0]").warmup_s == 0.0
