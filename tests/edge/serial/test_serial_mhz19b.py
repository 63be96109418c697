"""The mhz19b driver against the MH-Z19B emulator on a real pseudo-terminal."""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import edge.drivers.mhz19b
from edge.config import load_config
from edge.driver_state import StagedState
from edge.drivers.base import DriverContext, Sample
from edge.drivers.mhz19b.driver import Mhz19bParams, build, parse_params
from edge.errors import DriverError
from edge.outbox import Outbox
from firmware_bridge.protocols.mhz19b import wire as mhz_wire
from firmware_bridge.protocols.mhz19b.emulator import Mhz19bEmulator
from tests.edge.serial.conftest import DriverRun, Elapsed
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


# For a test that counts on the module's answers being heard in their windows ('get ABC
# status', or which query each reading answered). An 80 ms window is below the link's 0.1 s
# read rest (COALESCE_S): an answer whose first byte comes in a window ends after it, and is
# heard only through the next attempt's read; one the emulator's thread sends ~80 ms late
# (waiting for a CPU on a loaded machine) misses both attempts, and the driver takes the
# setting for unanswered. A reading is taken in two reads, two rests, after its query: a
# window of 0.2 s leaves ~0.1 s for the module's answer to start, and a query every 0.3 s as
# little before the next query, which then leaves at once when the reading comes late. The
# answer ends the wait.
HEARD = {"query_interval_s": 1.0, "reply_timeout_s": 0.5, "silence_timeout_s": 3.0}


def test_polls_co2_and_sets_abc(emulated) -> None:  # type: ignore[no-untyped-def]
    emu = emulated(Mhz19bEmulator(lambda: 1234.0, temperature_c=31, warmup_s=0.0))
    assert emu.abc_enabled

    async def scenario() -> None:
        # A reply timeout above the link's 0.1 s read coalescing, so every reply is on time.
        params = _params(emu.port, abc=False, range_ppm=2000, query_interval_s=0.3,
                         reply_timeout_s=0.2, silence_timeout_s=1.0)
        run = DriverRun(build("co2-1", params, DriverContext()))
        samples = await run.count(4)
        await run.stop()
        assert emu.call(lambda: emu.abc_enabled) is False
        assert emu.call(lambda: emu.range_ppm) == 2000
        s = samples[-1]
        assert (s.sensor, s.kind, s.flags) == ("co2-1", "air.co2", ())
        assert s.values == {"co2": 1234.0, "temperature_c": 31.0}
        described = run.driver.describe()
        assert described["frames"] == len(run.samples) + 2  # + the ABC status, before and after
        # every reading answered one query: the module never talks unasked
        # + 'get ABC status', the ABC that differed, 'get ABC status' again (did the write
        # hold?), the range (no state keeper: always)
        assert emu.call(lambda: emu.commands_heard) == described["queries"] + 4

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
        muted = Elapsed()
        exc = await run.failure(3.0)
        assert isinstance(exc, DriverError)
        assert "no reply" in str(exc)
        # the last query before failing may still be waiting out its reply timeout
        assert muted() < params.silence_timeout_s + params.query_interval_s + 0.3

    asyncio.run(scenario())


def _counting() -> Callable[[], float]:
    """A CO2 value that goes up by 1 ppm at each read, so each answer can be told apart."""
    numbers = itertools.count(500)
    return lambda: float(next(numbers))


def _unbroken(samples: list[Sample]) -> list[float]:
    """The CO2 values emitted; fails if an answer the module sent is missing or repeated."""
    co2 = [s.values["co2"] for s in samples]
    assert co2 == [float(v) for v in range(500, 500 + len(co2))], co2
    return co2


def test_two_answers_in_one_read_both_become_readings(emulated) -> None:  # type: ignore[no-untyped-def]
    """The answer to one query held back (a module or adapter late) reaches the driver
    with the next query's, in one read: both are readings, in the order sent."""
    emu = emulated(Mhz19bEmulator(_counting(), warmup_s=0.0))

    async def scenario() -> None:
        # Every answer but the held one is heard in its own window, and the run stops well
        # before the next query, whose answer would be sent and not read (HEARD). With a
        # 0.3 s interval and a 0.2 s window, a module or event loop waiting ~0.1 s for a
        # CPU made an answer late (missed and late one more), or the sixth reading came at
        # the next query's time: the driver asked at once and the module answered that query
        # as the run stopped (readings_sent one more than the readings).
        run = DriverRun(build("co2-1", _params(emu.port, **HEARD), DriverContext()))
        await run.count(2)
        emu.hold_replies(1)
        await run.wait_for(lambda s: len(s) >= 6, 8, "readings after a late answer")  # ~4 s
        await run.stop()
        _unbroken(run.samples)
        assert emu.call(lambda: emu.readings_sent) == len(run.samples)
        described = run.driver.describe()
        assert described["missed_replies"] == 1  # the held one, not in its own window
        assert described["late_replies"] == 1  # ...but in the next one's, before its answer
        assert described["frames"] == len(run.samples) + 1  # + the ABC status

    asyncio.run(scenario())


def test_answers_always_after_the_window_are_readings_all_the_same(  # type: ignore[no-untyped-def]
        emulated) -> None:
    """A module (or adapter) that answers every query after reply_timeout_s: each answer
    is still a reading, taken when it comes between queries; the driver does not call the module silent
    although no answer ever came in its own window."""
    emu = emulated(Mhz19bEmulator(_counting(), warmup_s=0.0, reply_delay_s=0.15))

    async def scenario() -> None:
        # answers leave 0.15 s after their query: past the window, well before the next
        params = _params(emu.port, query_interval_s=0.4, reply_timeout_s=0.1, silence_timeout_s=0.5)
        run = DriverRun(build("co2-1", params, DriverContext()))
        await run.count(5)  # 2 s: four times the silence timeout
        await run.stop()
        _unbroken(run.samples)
        described = run.driver.describe()
        # each answer came after its window and was taken between queries: late, and never
        # more late ones than queries that got nothing in their window
        assert 0 < described["late_replies"] <= described["missed_replies"], described

    asyncio.run(scenario())


def test_a_late_answer_is_stamped_when_it_comes(emulated) -> None:  # type: ignore[no-untyped-def]
    """An answer that comes after its query gave up (reply_timeout_s) but before the next
    query is emitted when it comes, and the next queries get their own answers. (The driver
    used to sleep between queries: such an answer waited in the buffer until the next
    query's window and was stamped there, up to query_interval_s late.)"""
    made: list[float] = []  # when the module measured value n (co2 = 500 + n)

    def values() -> float:
        made.append(time.time())
        return float(499 + len(made))

    emu = emulated(Mhz19bEmulator(values, warmup_s=0.0))
    params = _params(emu.port, query_interval_s=1.0, reply_timeout_s=0.3, silence_timeout_s=3.0)

    async def scenario() -> None:
        run = DriverRun(build("co2-1", params, DriverContext()))
        await run.wait_for(lambda s: run.driver.describe()["queries"] >= 3, 8, "3 queries")
        n, before = len(run.samples), run.driver.describe()
        emu.delay_next_frame(0.5)  # past the reply timeout, before the next query
        await run.count(n + 4, timeout_s=8.0)
        await run.stop()
        _unbroken(run.samples)
        # how long after the module measured it each reading was stamped: the reads' 0.1 s
        # pauses that gather bytes (two when an answer comes in two reads), and 0.5 s more
        # for the late answer (a query interval more, 1 s, when taken at the next query)
        lags = sorted(s.ts.timestamp() - made[int(s.values["co2"]) - 500] for s in run.samples[n:])
        assert lags[-1] < 0.5 + 0.45, lags
        assert all(-0.05 < lag < 0.45 for lag in lags[:-1]), lags
        after = run.driver.describe()
        assert [after[k] - before[k] for k in ("missed_replies", "late_replies")] == [1, 1]

    asyncio.run(scenario())


async def _restart(emu: Mhz19bEmulator, ctx: DriverContext, **kw: Any) -> dict[str, Any]:
    """One run of a freshly built driver (the agent builds one at each restart) until a
    reading; returns its describe()."""
    run = DriverRun(build("co2-1", _params(emu.port, **kw), ctx))
    await run.count(1)
    await run.stop()
    return run.driver.describe()


@pytest.mark.parametrize("answers_abc_status", [True, False])
def test_restarts_write_the_flash_only_when_a_setting_changes(  # type: ignore[no-untyped-def]
        emulated, tmp_path: Path, answers_abc_status: bool) -> None:
    """ABC and range live in the module's flash: a driver restarting in a loop writes them
    once. ABC is read back where the firmware answers 0x7D; otherwise, like the range
    (which nothing reads back), the driver state remembers what was written."""
    emu = emulated(Mhz19bEmulator(warmup_s=0.0, answers_abc_status=answers_abc_status))
    outbox = Outbox(tmp_path / "outbox.sqlite3").open()
    keeper = StagedState(outbox)
    # A firmware that answers is heard within the reply window on a loaded machine too (the
    # emulator's thread waits for a CPU as well; 80 ms was missed twice): HEARD. One that
    # never answers waits the window out at every start: kept short.
    timing = HEARD if answers_abc_status else {}

    async def restarts() -> None:
        for i in range(5):
            if i == 2:  # a power cycle keeps the flash
                emu.unplug()
                emu.replug()
            if i == 3:  # the agent restarted: only what it committed is remembered
                outbox.append([], 0, keeper.take())
            ctx = DriverContext(state=keeper if i < 3 else StagedState(outbox))
            described = await _restart(emu, ctx, abc=False, range_ppm=2000, **timing)
            assert emu.call(lambda: emu.flash_writes) == 2  # ABC off, range 2000: once
            assert described["flash_writes"] == (2 if i == 0 else 0)
            assert described["unanswered_setting_queries"] == (0 if answers_abc_status else 1)
        assert emu.call(lambda: (emu.abc_enabled, emu.range_ppm)) == (False, 2000)
        # The configuration changes: written at once, the unchanged range is not.
        assert (await _restart(emu, DriverContext(state=keeper), abc=True, range_ppm=2000, **timing))[
            "flash_writes"] == 1
        assert emu.call(lambda: (emu.abc_enabled, emu.flash_writes)) == (True, 3)

    asyncio.run(restarts())


def test_abc_changed_behind_the_drivers_back_is_read_back_and_corrected(  # type: ignore[no-untyped-def]
        emulated, tmp_path: Path) -> None:
    emu = emulated(Mhz19bEmulator(warmup_s=0.0))
    keeper = StagedState(Outbox(tmp_path / "outbox.sqlite3").open())

    async def restarts() -> None:
        first = await _restart(emu, DriverContext(state=keeper), abc=False, **HEARD)
        assert first["settings"] == {"abc": "written"}
        emu.call(lambda: setattr(emu, "abc_enabled", True))  # a maintenance tool
        second = await _restart(emu, DriverContext(state=keeper), abc=False, **HEARD)
        assert second["settings"] == {"abc": "written"}
        third = await _restart(emu, DriverContext(state=keeper), abc=False, **HEARD)
        assert third["settings"] == {"abc": "kept"}

    asyncio.run(restarts())
    assert emu.call(lambda: (emu.abc_enabled, emu.flash_writes)) == (False, 2)


def test_an_abc_write_that_does_not_hold_is_not_repeated_at_every_start(  # type: ignore[no-untyped-def]
        emulated, tmp_path: Path) -> None:
    """Firmware whose 'get ABC status' does not follow the setting (it answers 'on' after
    'ABC off' was stored): the read-back differs at every start. The driver reads ABC back
    after writing it, sees that the write did not hold, and a driver restarting in a loop
    does not write it again for a day."""
    emu = emulated(Mhz19bEmulator(warmup_s=0.0, abc_status_follows=False))
    outbox = Outbox(tmp_path / "outbox.sqlite3").open()
    keeper = StagedState(outbox)

    async def restarts() -> None:
        # Every answer to 'get ABC status' must be heard (HEARD): one the driver missed would
        # be a setting it could not read, not one that did not hold. The read-back after
        # the write waits out both its windows (the answers never read 'off'): 1 s, once.
        runs = [await _restart(emu, DriverContext(state=keeper), abc=False, **HEARD)]
        outbox.append([], 0, keeper.take())  # ... and the agent restarts too
        runs += [await _restart(emu, DriverContext(state=StagedState(outbox)), abc=False, **HEARD)
                 for _ in range(3)]
        assert [r["flash_writes"] for r in runs] == [1, 0, 0, 0]
        assert [r["settings"]["abc"] for r in runs] == ["written_not_held"] + ["not_held"] * 3
        # a changed configuration is another value: it goes out at once
        on = await _restart(emu, DriverContext(state=keeper), abc=True, **HEARD)
        assert on["settings"] == {"abc": "kept"}  # the firmware says 'on' already

    asyncio.run(restarts())
    assert emu.call(lambda: emu.flash_writes) == 1


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


class CutMhz19b(Mhz19bEmulator):
    """Cuts the answer carrying `cut_ppm` after `cut_len` bytes (bytes lost on the line)."""

    cut_ppm = -1
    cut_len = 4

    def _send_frame(self, frame: bytes) -> None:
        if frame[1] == mhz_wire.CMD_READ and frame[2] << 8 | frame[3] == self.cut_ppm:
            frame = frame[: self.cut_len]
        super()._send_frame(frame)


def test_a_cut_answer_neither_invents_a_reading_nor_loses_the_next(emulated) -> None:  # type: ignore[no-untyped-def]
    """The answer to a query cut after 4 bytes, the next answer whole: once in 256 cuts
    (here chosen so) the two pass the 8-bit checksum as one answer. That emitted a reading
    from the wrong bytes (here the cut answer's CO2 with a module temperature of 215 °C)
    and lost the whole answer after it."""
    cut, whole = next(
        (c, w) for c, w in itertools.product(range(600, 700), range(700, 900))
        if (false := _false_packet(c, w))[8] == mhz_wire.checksum(false))
    values = iter([500.0, 501.0, float(cut), float(whole), *(float(v) for v in range(1000, 1100))])
    emu = emulated(CutMhz19b(lambda: next(values), warmup_s=0.0))
    emu.call(lambda: setattr(emu, "cut_ppm", cut))

    async def scenario() -> None:
        params = _params(emu.port, query_interval_s=0.3, reply_timeout_s=0.2, silence_timeout_s=2.0)
        run = DriverRun(build("co2-1", params, DriverContext()))
        await run.wait_for(lambda s: len(s) >= 5, 5, "readings after the cut answer")
        await run.stop()
        co2 = [s.values["co2"] for s in run.samples]
        assert co2[:4] == [500.0, 501.0, float(whole), 1000.0], co2
        assert run.driver.describe()["checksum_errors"] == 1

    asyncio.run(scenario())


def _false_packet(cut_ppm: int, whole_ppm: int) -> bytes:
    return mhz_wire.encode_reading(cut_ppm, 28)[:4] + mhz_wire.encode_reading(whole_ppm, 28)[:5]


class SplitLateAnswer(Mhz19bEmulator):
    """`arm()`: the next answer to 'read CO2' leaves in two parts (a USB adapter's two
    packets): all but its checksum byte 0.3 s before the next query is due (0.2 s after
    the armed query's window), the checksum byte 50 ms after that time, so that the driver
    holds a frame under way when it would ask again. The answer to that next query is lost.

    The driver asks every `interval_s` from its first query on, and the module hears each
    query some time after it was sent: the next query's time is taken from the query of
    the last four that reached the module soonest, not before the driver's own time for
    it (unless the driver fell a query behind and started its cadence over). A thread
    waiting for a CPU only makes a part later: the first has 0.3 s to reach the driver
    before it asks, the last byte ~0.2 s within the 0.25 s the driver waits past that time
    for a frame under way (FINISH_FRAME_S). One byte, one read: a rest of several bytes
    that leaves at the line's pace is taken in two reads, two 0.1 s rests (COALESCE_S),
    and had to start within 0.15 s. (The first bytes used to come within the 0.1 s the
    driver's read rests before that time, to be held across it: 98 ms for the module's send
    and the driver's wake-up, and the module's thread waiting ~0.1 s for a CPU sent them
    after the next query, taken for its answer.)"""

    def __init__(self, *args: Any, interval_s: float, **kw: Any) -> None:
        super().__init__(*args, **kw)
        self.interval_s = interval_s
        self._plan: list[str] = []
        self._heard: list[float] = []  # when each 'read CO2' came

    def arm(self) -> None:
        self.call(lambda: self._plan.extend(["split", "drop"]))

    def _answer(self, frame: bytes, now: float) -> None:
        if frame[1] == mhz_wire.CMD_READ:
            self._heard.append(now)
        if frame[1] != mhz_wire.CMD_READ or not self._plan:
            super()._answer(frame, now)
        elif self._plan.pop(0) == "split":
            n = len(self._heard)  # the next query's number
            due = min(self._heard[j] + (n - j) * self.interval_s for j in range(max(n - 4, 0), n))
            self._due += [(due - 0.3, frame[:-1]), (due + 0.05, frame[-1:])]

    def _put_on_line(self, frame: bytes) -> None:
        if len(frame) == 1:  # the split answer's checksum byte (its start was counted sent)
            self._send_frame(frame)
        else:
            super()._put_on_line(frame)


def test_a_late_answer_split_across_the_next_query_is_late_not_that_querys(  # type: ignore[no-untyped-def]
        emulated) -> None:
    """An answer whose first bytes came before the next query and the rest after it was
    taken for the next query's answer: that query counted answered (it got nothing), the
    late answer not counted late. The driver now finishes a frame under way before it asks
    again: two missed replies (the late one's query, and the next one's), one late."""
    # Every other answer is heard in its own window (HEARD): with a 0.3 s window, one the
    # module's thread sent ~0.2 s late under load was missed and late too ([3, 2]).
    emu = emulated(SplitLateAnswer(_counting(), warmup_s=0.0, interval_s=HEARD["query_interval_s"]))
    params = _params(emu.port, **HEARD)

    async def scenario() -> None:
        run = DriverRun(build("co2-1", params, DriverContext()))
        await run.wait_for(lambda s: len(s) >= 2, 8, "2 readings")
        queries = run.driver.describe()["queries"]
        await run.wait_for(lambda s: run.driver.describe()["queries"] > queries, 3, "a query")
        before = run.driver.describe()
        emu.arm()  # the answer to the next query
        await run.wait_for(lambda s: run.driver.describe()["queries"] >= before["queries"] + 4,
                           8, "4 more queries")
        await run.stop()
        co2 = [s.values["co2"] for s in run.samples]
        assert co2 == sorted(set(co2)), co2  # each answer once, in order (one was lost)
        after = run.driver.describe()
        assert [after[k] - before[k] for k in ("missed_replies", "late_replies")] == [2, 1]

    asyncio.run(scenario())
