"""The upfw driver against the board emulator on a real pseudo-terminal, and its mapping
from board messages to contract readings."""

from __future__ import annotations

import asyncio
import queue
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

import edge.drivers.upfw
from edge.config import load_config
from edge.driver_state import StagedState
from edge.drivers.base import DriverContext, Sample
from edge.drivers.upfw import totals
from edge.drivers.upfw.driver import UpfwParams, build, parse_params
from edge.drivers.upfw.mapping import DoorTotals, Out, UpfwMapper
from edge.errors import DriverError
from edge.outbox import Outbox
from firmware_bridge.protocols.upfw import (
    BedWeight,
    BoardMessage,
    DeviceKind,
    DoorCount,
    Hello,
    LoopInterval,
    LoopVehicle,
    Status,
    StatusCode,
    TicketIssued,
    TicketServed,
)
from firmware_bridge.protocols.upfw.emulator import UpfwEmulator
from tests.edge.serial.conftest import DriverRun, Elapsed
from urbanpulse.clock import FakeClock
from urbanpulse.errors import ConfigError
from urbanpulse.wire.kinds import KINDS

SAMPLE = Path(edge.drivers.upfw.__file__).parent / "sample.toml"


class Script:
    """Messages the test hands to the board; it sends them at its next report, those of
    one `put` at the same report (the board's thread may report between two puts)."""

    def __init__(self) -> None:
        self._q: queue.SimpleQueue[tuple[BoardMessage, ...]] = queue.SimpleQueue()

    def put(self, *messages: BoardMessage) -> None:
        self._q.put(messages)

    def __call__(self) -> Sequence[BoardMessage]:
        out: list[BoardMessage] = []
        while not self._q.empty():
            out.extend(self._q.get())
        return out


class MuteBoard(UpfwEmulator):
    """A board whose firmware hung: powered, port open, nothing sent, commands unheard."""

    mute = False

    def _on_bytes(self, data: bytes, now: float) -> None:
        if not self.mute:
            super()._on_bytes(data, now)

    def _tick(self, now: float) -> float:
        return now + 0.05 if self.mute else super()._tick(now)


def _params(port: str, **kw: Any) -> UpfwParams:
    return parse_params({"port": port, **kw}, "sensors[0]")


def _of(samples: list[Sample], kind: str) -> list[Sample]:
    return [s for s in samples if s.kind == kind]


def _in_contract(s: Sample) -> bool:
    spec = KINDS[s.kind]
    return set(s.values) <= set(spec.fields) and all(
        n in s.values for n, f in spec.fields.items() if f.required)


def test_kiosk_tickets_become_queue_readings(emulated) -> None:  # type: ignore[no-untyped-def]
    script = Script()
    emu = emulated(UpfwEmulator(script, kind=DeviceKind.KIOSK, device_id="kiosk-opd", channels=2,
                                period_s=0.02))
    params = _params(emu.port, names={"B": "opd-cardio"})

    async def scenario() -> None:
        run = DriverRun(build("kiosk", params, DriverContext()))
        await run.wait_for(lambda s: run.driver.describe()["board"] is not None, 5, "the board's HI")
        script.put(TicketIssued(0, 0, "A", 1042, 17), TicketServed(0, 0, "A", 1025, 4, 1380),
                   TicketIssued(0, 0, "B", 7, 0))
        samples = await run.count(3)
        await run.stop()
        assert [(s.sensor, s.kind, dict(s.values)) for s in samples] == [
            ("kiosk-a", "hospital.queue", {"ticket": 1042.0, "called": 0.0}),
            ("kiosk-a", "hospital.queue", {"ticket": 1025.0, "called": 1.0, "counter": 4.0}),
            ("opd-cardio", "hospital.queue", {"ticket": 7.0, "called": 0.0}),
        ]
        board = run.driver.describe()["board"]
        assert (board["kind"], board["device_id"], board["channels"]) == ("kiosk", "kiosk-opd", 2)

    asyncio.run(scenario())


def test_a_kiosk_queue_with_another_sensors_id_fails_the_driver_naming_both(  # type: ignore[no-untyped-def]
        emulated) -> None:
    """The board sends queue A, whose `kiosk-a` is another sensor's id (the config check
    cannot know the codes): the tickets before it are readings, and the driver fails on
    it naming both keys, instead of mixing both devices' readings under `kiosk-a`."""
    from edge.config import parse_config

    script = Script()
    emu = emulated(UpfwEmulator(script, kind=DeviceKind.KIOSK, device_id="kiosk-opd", channels=2,
                                period_s=0.02))
    config = parse_config({
        "node": {"id": "n1", "site": "s1"},
        "mqtt": {"password_file": "/p", "host": "127.0.0.1", "tls": False},
        "sensors": [{"id": "kiosk", "driver": "upfw", "port": emu.port},
                    {"id": "kiosk-a", "driver": "bed_pad", "pin": 17}]})

    async def scenario() -> None:
        run = DriverRun(build("kiosk", config.sensors[0].params, DriverContext()))
        await run.wait_for(lambda s: run.driver.describe()["board"] is not None, 5, "the board's HI")
        script.put(TicketIssued(0, 0, "B", 7, 0), TicketIssued(0, 0, "A", 1042, 17))
        exc = await run.failure(5.0)
        assert [(s.sensor, s.values["ticket"]) for s in run.samples] == [("kiosk-b", 7.0)]
        assert isinstance(exc, DriverError)
        assert str(exc).startswith("sensors[0].id: kiosk queue 'A' publishes as 'kiosk-a' "
                                   "(<id>-<queue code>), which is already used by sensors[1].id "
                                   "(sensor 'kiosk-a')"), exc

    asyncio.run(scenario())


def test_beds_send_state_and_load_cell_faults(emulated) -> None:  # type: ignore[no-untyped-def]
    script = Script()
    emu = emulated(UpfwEmulator(script, kind=DeviceKind.BED, device_id="bed-c3", channels=2,
                                period_s=0.02))

    async def scenario() -> None:
        run = DriverRun(build("beds", _params(emu.port), DriverContext()))
        await run.wait_for(lambda s: run.driver.describe()["board"] is not None, 5, "the board's HI")
        script.put(BedWeight(0, 0, 1, 68.25, True, True), BedWeight(0, 0, 2, -0.12, True, False))
        await run.count(2)
        script.put(BedWeight(0, 0, 1, 68.3, True, True))  # no change: no reading
        script.put(Status(0, 0, StatusCode.LOAD_CELL, 2, "hx711"))
        await run.count(3)
        script.put(Status(0, 0, StatusCode.OK, 2), BedWeight(0, 0, 2, 70.0, False, True))
        samples = await run.count(4)
        await run.stop()
        assert [(s.sensor, dict(s.values)) for s in samples] == [
            ("beds-1", {"occupied": 1.0, "fault": 0.0}),
            ("beds-2", {"occupied": 0.0, "fault": 0.0}),
            ("beds-2", {"occupied": 0.0, "fault": 1.0}),
            ("beds-2", {"occupied": 1.0, "fault": 0.0}),
        ]
        assert all(s.kind == "hospital.bed" and _in_contract(s) for s in samples)
        assert run.driver.describe()["faults"] == {}

    asyncio.run(scenario())


def test_a_channel_named_with_a_leading_zero_gets_its_name(emulated) -> None:  # type: ignore[no-untyped-def]
    """`01 = "bed-a"` (a TOML bare key is text) names channel 1: it was kept as "01",
    which channel 1 ("1") never matched, and bed 1's readings went silently under
    `beds-1`. Both spellings of one channel are refused, naming the key."""
    script = Script()
    emu = emulated(UpfwEmulator(script, kind=DeviceKind.BED, device_id="bed-c3", channels=2,
                                period_s=0.02))
    params = _params(emu.port, names={"01": "bed-a", "002": "bed-b"})

    async def scenario() -> None:
        run = DriverRun(build("beds", params, DriverContext()))
        await run.wait_for(lambda s: run.driver.describe()["board"] is not None, 5, "the board's HI")
        script.put(BedWeight(0, 0, 1, 68.25, True, True), BedWeight(0, 0, 2, 70.0, True, True))
        samples = await run.count(2)
        await run.stop()
        assert [s.sensor for s in samples] == ["bed-a", "bed-b"]

    asyncio.run(scenario())
    assert dict(params.names) == {"1": "bed-a", "2": "bed-b"}  # as the config check reads them
    with pytest.raises(ConfigError) as info:
        parse_params({"port": "/dev/x", "names": {"1": "bed-a", "01": "bed-b"}}, "sensors[2]")
    assert info.value.key == "sensors[2].names.01"
    assert "channel 1" in str(info.value)


def test_a_queue_code_of_digits_is_named_by_its_number() -> None:
    """A kiosk's queue code may be digits (firmware_bridge/PROTOCOL.md, QT): `01 = ...` still
    names queue "01" (digits compare by number, as letters ignore case); unnamed, the
    queue keeps its own spelling."""
    params = parse_params({"port": "/dev/x", "names": {"01": "opd-01"}}, "sensors[0]")
    m = UpfwMapper("kiosk", params.names)
    assert m.on_message(TicketIssued(0, 0, "01", 7, 0), 0.0)[0].sensor == "opd-01"
    assert m.on_message(TicketIssued(1, 0, "02", 8, 0), 0.0)[0].sensor == "kiosk-02"
    assert m.on_message(TicketIssued(2, 0, "0A", 9, 0), 0.0)[0].sensor == "kiosk-0a"


def test_door_totals_become_counts_over_board_time(emulated) -> None:  # type: ignore[no-untyped-def]
    script = Script()
    emu = emulated(UpfwEmulator(script, kind=DeviceKind.DOOR, device_id="door-er", channels=1,
                                period_s=0.02))

    async def scenario() -> None:
        driver = build("er-door", _params(emu.port), DriverContext())
        run = DriverRun(driver)
        await run.wait_for(lambda s: run.driver.describe()["board"] is not None, 5, "the board's HI")
        script.put(DoorCount(0, 0, 1, 150, 140))  # baseline
        await run.wait_for(lambda s: bool(driver.mapper.doors), 5, "the baseline")
        script.put(DoorCount(0, 0, 1, 152, 149))
        await run.count(1)
        script.put(DoorCount(0, 0, 1, 159, 150))
        samples = await run.count(2)
        await run.stop()
        assert [s.sensor for s in samples] == ["er-door-1", "er-door-1"]
        assert [s.values["count"] for s in samples] == [2.0, 7.0]
        # board uptime differences: at least one report period, never more than the test took
        assert all(0.015 <= s.values["interval_s"] <= 5 for s in samples)
        assert all(_in_contract(s) for s in samples)

    asyncio.run(scenario())


def test_loop_intervals_are_forwarded(emulated) -> None:  # type: ignore[no-untyped-def]
    script = Script()
    emu = emulated(UpfwEmulator(script, kind=DeviceKind.LOOP, channels=2, period_s=0.02))

    async def scenario() -> None:
        run = DriverRun(build("lanes", _params(emu.port, names={"2": "lane-n2"}), DriverContext()))
        await run.wait_for(lambda s: run.driver.describe()["board"] is not None, 5, "the board's HI")
        script.put(LoopVehicle(0, 0, 1, 780, 1523, 30.1, 4.6),  # per vehicle: left to the board's LI
                   LoopInterval(0, 0, 1, 60, 18, 12.5, 28.7), LoopInterval(0, 0, 2, 60, 0, 0.0))
        samples = await run.count(2)
        await run.stop()
        assert [(s.sensor, s.kind, dict(s.values)) for s in samples] == [
            ("lanes-1", "traffic.loop", {"count": 18.0, "occupancy_pct": 12.5, "interval_s": 60.0,
                                         "speed_kmh": 28.7}),
            ("lane-n2", "traffic.loop", {"count": 0.0, "occupancy_pct": 0.0, "interval_s": 60.0}),
        ]
        assert run.driver.describe()["ignored"] == 1

    asyncio.run(scenario())


def test_loop_vehicles_are_summed_per_interval(emulated) -> None:  # type: ignore[no-untyped-def]
    script = Script()
    emu = emulated(UpfwEmulator(script, kind=DeviceKind.LOOP, channels=2, period_s=0.02))
    clock = FakeClock()  # intervals close when the test moves the clock

    async def scenario() -> None:
        driver = build("lanes", _params(emu.port, loop_readings="vehicles", interval_s=10),
                       DriverContext(clock=clock))
        run = DriverRun(driver)
        await run.wait_for(lambda s: driver.describe()["board"] is not None, 5, "the board's HI")
        script.put(LoopVehicle(0, 0, 1, 600, 1, 30.0, 4.0), LoopVehicle(0, 0, 1, 900, 2, 20.0, 5.0),
                   LoopVehicle(0, 0, 1, 300, 3), LoopInterval(0, 0, 1, 60, 3, 3.0))
        await run.wait_for(lambda s: driver.describe()["messages"].get("LoopInterval") == 1, 5,
                           "the vehicles at the driver")
        assert run.samples == []
        clock.advance(10.0)
        script.put(Status(0, 0, StatusCode.OK, None, ""))  # any sentence wakes the driver up
        samples = await run.count(2)
        await run.stop()
        assert [(s.sensor, s.kind, dict(s.values)) for s in samples] == [
            ("lanes-1", "traffic.loop", {"count": 3.0, "interval_s": 10.0, "occupancy_pct": 18.0,
                                         "speed_kmh": 25.0, "speed_count": 2.0, "length_m": 4.5}),
            ("lanes-2", "traffic.loop", {"count": 0.0, "interval_s": 10.0, "occupancy_pct": 0.0}),
        ]
        assert samples[0].ts == clock.now()
        assert driver.describe()["ignored"] == 1  # the LI

    asyncio.run(scenario())


def test_loop_intervals_end_on_the_corrected_clock_after_a_wall_clock_step(emulated) -> None:  # type: ignore[no-untyped-def]
    """NTP corrects the node's clock after the agent started: the interval under way closes
    as it would, and the next ones end on the corrected clock's boundaries again, as the
    GPIO loops' do (edge/gpio/timing.py). Before, every later reading was stamped off the
    boundary by the step until a restart, and the cloud put each interval's vehicles in the
    window after its own."""
    script = Script()
    emu = emulated(UpfwEmulator(script, kind=DeviceKind.LOOP, channels=1, period_s=0.02))
    clock = FakeClock()  # 2026-01-01 00:00:00: on a boundary

    async def scenario() -> None:
        driver = build("lanes", _params(emu.port, loop_readings="vehicles", interval_s=10),
                       DriverContext(clock=clock))
        run = DriverRun(driver)
        await run.wait_for(lambda s: driver.describe()["board"] is not None, 5, "the board's HI")
        clock.jump(23.4)  # the interval under way: 00:00:00-00:00:10 by the old clock
        for n in (1, 2, 3):
            clock.advance(10.0)
            script.put(Status(0, 0, StatusCode.OK, None, ""))  # any sentence wakes the driver up
            await run.count(n)
        await run.stop()
        stamps = [s.ts.timestamp() % 10 for s in run.samples[:3]]
        assert stamps[1:] == [0.0, 0.0], [s.ts for s in run.samples]

    asyncio.run(scenario())


def test_a_stopped_driver_reports_the_vehicles_of_its_partial_interval(emulated) -> None:  # type: ignore[no-untyped-def]
    """The agent stopping (an upgrade, a config change) between two interval ends: the
    vehicles summed so far go out with the interval's real length, stamped at the stop."""
    script = Script()
    emu = emulated(UpfwEmulator(script, kind=DeviceKind.LOOP, channels=2, period_s=0.02))
    clock = FakeClock()

    async def scenario() -> None:
        driver = build("lanes", _params(emu.port, loop_readings="vehicles", interval_s=10),
                       DriverContext(clock=clock))
        run = DriverRun(driver)
        await run.wait_for(lambda s: driver.describe()["board"] is not None, 5, "the board's HI")
        script.put(LoopVehicle(0, 0, 1, 600, 1, 30.0, 4.0), LoopVehicle(0, 0, 2, 900, 1))
        await run.wait_for(lambda s: driver.describe()["messages"].get("LoopVehicle") == 2, 5,
                           "the vehicles at the driver")
        clock.advance(4.0)
        await run.stop()
        assert [(s.sensor, dict(s.values), s.ts) for s in run.samples] == [
            ("lanes-1", {"count": 1.0, "interval_s": 4.0, "occupancy_pct": 15.0,
                         "speed_kmh": 30.0, "speed_count": 1.0, "length_m": 4.0}, clock.now()),
            ("lanes-2", {"count": 1.0, "interval_s": 4.0, "occupancy_pct": 22.5}, clock.now()),
        ]

    asyncio.run(scenario())


def test_a_quiet_board_is_probed_not_failed(emulated) -> None:  # type: ignore[no-untyped-def]
    emu = emulated(UpfwEmulator(Script(), kind=DeviceKind.DOOR, channels=1, hello_period_s=3600))
    params = _params(emu.port, silence_timeout_s=0.4)

    async def scenario() -> None:
        driver = build("door", params, DriverContext())
        run = DriverRun(driver)
        # three probes answered take longer than the silence timeout
        await run.wait_for(lambda s: driver.probes >= 3, 5, "three IQ probes")
        assert not run.task.done()
        # the IQ at start and the probes, once their bytes have crossed the pty
        await run.wait_for(lambda s: emu.call(lambda: emu.commands_heard) >= 4, 5,
                           "the board to hear them")
        assert not run.task.done()
        await run.stop()

    asyncio.run(scenario())


def test_a_hung_board_fails_within_the_silence_timeout(emulated) -> None:  # type: ignore[no-untyped-def]
    emu = emulated(MuteBoard(Script(), kind=DeviceKind.BED, channels=1, hello_period_s=3600))
    params = _params(emu.port, silence_timeout_s=0.4)

    async def scenario() -> None:
        run = DriverRun(build("beds", params, DriverContext()))
        await run.wait_for(lambda s: run.driver.describe()["board"] is not None, 5, "the board's HI")
        emu.call(lambda: setattr(emu, "mute", True))
        muted = Elapsed()
        exc = await run.failure(3.0)
        assert isinstance(exc, DriverError)
        assert "no valid sentence in 0.4 s" in str(exc)
        assert muted() < params.silence_timeout_s + 0.3

    asyncio.run(scenario())


def test_unplug_fails_the_driver(emulated) -> None:  # type: ignore[no-untyped-def]
    emu = emulated(UpfwEmulator(kind=DeviceKind.DOOR, channels=1, period_s=0.05))
    params = _params(emu.port, silence_timeout_s=1.0)

    async def scenario() -> None:
        run = DriverRun(build("door", params, DriverContext()))
        await run.wait_for(lambda s: run.driver.describe()["frames"] >= 3, 5, "a few sentences")
        emu.unplug()
        exc = await run.failure(params.silence_timeout_s + 1.0)
        assert isinstance(exc, DriverError)
        assert "door" in str(exc)

    asyncio.run(scenario())


# -- the mapping alone -------------------------------------------------------------------


def _door(mapper: UpfwMapper, seq: int, t_ms: int, entered: int) -> list[Out]:
    return mapper.on_message(DoorCount(seq, t_ms, 1, entered, 0), 0.0)


def test_door_counts_survive_a_reboot_and_a_counter_wrap() -> None:
    m = UpfwMapper("door")
    assert _door(m, 10, 50_000, 100) == []  # baseline
    assert _door(m, 11, 110_000, 104) == [Out("door-1", "hospital.door", {"count": 4.0, "interval_s": 60.0})]
    # reboot: uptime steps back, totals restart from 0
    assert _door(m, 1, 30_000, 3) == [Out("door-1", "hospital.door", {"count": 3.0, "interval_s": 30.0})]
    assert m.reboots == 1
    # (steps under 2^31: a larger one reads as a total that fell, see below)
    assert _door(m, 2, 90_000, 2**31)[0].values["count"] == 2**31 - 3
    assert _door(m, 3, 150_000, 2**32 - 1)[0].values["count"] == 2**31 - 1
    assert _door(m, 4, 210_000, 5)[0].values["count"] == 6.0  # the total wrapped past 2^32
    assert m.lost_sentences == 0


def test_uptime_wrap_is_not_a_reboot_and_seq_gaps_are_counted() -> None:
    m = UpfwMapper("door")
    _door(m, 65534, 2**32 - 20_000, 10)
    out = _door(m, 1, 40_000, 12)  # seq 65535 and 0 were lost; uptime wrapped after 49.7 days
    assert out == [Out("door-1", "hospital.door", {"count": 2.0, "interval_s": 60.0})]
    assert (m.reboots, m.lost_sentences) == (0, 2)


def test_a_board_seen_booting_counts_doors_from_zero() -> None:
    m = UpfwMapper("door")
    m.on_message(Hello(0, 1532, DeviceKind.DOOR, "door-1", "1.0.0", 1), 0.0)
    assert _door(m, 1, 60_000, 5) == [Out("door-1", "hospital.door", {"count": 5.0, "interval_s": 60.0})]


def test_seq_0_long_after_a_boot_is_a_wrap_not_a_boot() -> None:
    """seq wraps to 0 every 65,536 sentences: a first sentence with seq 0 is the boot only
    if the board could not have sent 65,536 sentences in its uptime (t_ms)."""
    m = UpfwMapper("door")
    assert _door(m, 0, 18 * 3_600_000, 500) == []  # up 18 h: a wrap; the total is a baseline
    assert _door(m, 1, 18 * 3_600_000 + 60_000, 504) == [
        Out("door-1", "hospital.door", {"count": 4.0, "interval_s": 60.0})]
    booted = UpfwMapper("door")  # the shortest time 65,536 sentences take at 115200 baud
    assert _door(booted, 0, 96_000, 7) == [
        Out("door-1", "hospital.door", {"count": 7.0, "interval_s": 96.0})]


def test_a_first_sentence_with_seq_0_from_a_board_up_for_hours_counts_nobody_twice(emulated) -> None:  # type: ignore[no-untyped-def]
    """Without saved totals the driver took a first sentence with seq 0 for the board's
    boot and counted each door's whole total at once (some 1 start in 65,536: when the
    board's sentence counter had just wrapped)."""
    script = Script()
    emu = emulated(UpfwEmulator(script, kind=DeviceKind.DOOR, device_id="door-w", channels=1,
                                period_s=0.02))
    emu.age(18 * 3600.0, sentences=65535)  # the boot's HI (unheard) took seq 0: next is 0 again

    async def scenario() -> None:
        run = DriverRun(build("w-door", _params(emu.port), DriverContext()))
        await run.wait_for(lambda s: run.driver.describe()["board"] is not None, 5, "the board's HI")
        hello = run.driver.mapper.hello
        assert hello is not None
        assert (hello.seq, run.driver.mapper.lost_sentences) == (0, 0)  # the first heard
        script.put(DoorCount(0, 0, 1, 5000, 4990))  # 18 h of people: not this interval's
        await run.wait_for(lambda s: bool(run.driver.mapper.doors), 5, "the first count")
        script.put(DoorCount(0, 0, 1, 5003, 4992))
        samples = await run.count(1)
        await run.stop()
        assert [s.values["count"] for s in samples] == [3.0]

    asyncio.run(scenario())


def test_bed_state_is_resent_at_the_heartbeat() -> None:
    m = UpfwMapper("beds", bed_heartbeat_s=60.0)
    bw = BedWeight(0, 0, 3, 68.0, True, True)
    assert len(m.on_message(bw, 0.0)) == 1
    assert m.on_message(bw, 59.0) == []
    assert m.on_message(bw, 60.0) == [Out("beds-3", "hospital.bed", {"occupied": 1.0, "fault": 0.0})]
    board_fault = m.on_message(Status(0, 0, StatusCode.LOAD_CELL, None, ""), 61.0)
    assert board_fault == [Out("beds-3", "hospital.bed", {"occupied": 1.0, "fault": 1.0})]
    assert m.faults == {"board": "LOAD_CELL"}


@pytest.mark.parametrize(("raw", "key"), [
    ({}, "sensors[2].port"),
    ({"port": "/dev/x", "baudrate": 4800}, "sensors[2].baudrate"),
    ({"port": "/dev/x", "loop_readings": "both"}, "sensors[2].loop_readings"),
    ({"port": "/dev/x", "interval_s": 30}, "sensors[2].interval_s"),
    ({"port": "/dev/x", "loop_readings": "vehicles", "interval_s": 0}, "sensors[2].interval_s"),
    ({"port": "/dev/x", "silence_timeout_s": "10"}, "sensors[2].silence_timeout_s"),
    ({"port": "/dev/x", "names": ["bed-1"]}, "sensors[2].names"),
    ({"port": "/dev/x", "names": {"123456789": "bed-1"}}, "sensors[2].names.123456789"),
    ({"port": "/dev/x", "names": {"1": "Bed 1"}}, "sensors[2].names.1"),
    ({"port": "/dev/x", "names": {"1": "bed-1", "2": "bed-1"}}, "sensors[2].names.2"),
    ({"port": "/dev/x", "names": {"A": "q-a", "a": "q-b"}}, "sensors[2].names.a"),
    ({"port": "/dev/x", "channels": 4}, "sensors[2].channels"),
])
def test_bad_params_name_the_key(raw: dict[str, Any], key: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_params(raw, "sensors[2]")
    assert info.value.key == key


def test_sample_config_validates() -> None:
    config = load_config(SAMPLE)
    (sensor,) = config.sensors
    assert sensor.driver == "upfw"
    assert sensor.params.names == {"1": "bed-c301", "2": "bed-c302", "3": "bed-c303", "4": "bed-c304"}
    assert sensor.params.silence_timeout_s == 30.0


def test_door_totals_carry_over_a_driver_restart(emulated, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    script = Script()
    emu = emulated(UpfwEmulator(script, kind=DeviceKind.DOOR, device_id="door-main", channels=1,
                                period_s=0.02))
    outbox = Outbox(tmp_path / "outbox.sqlite3").open()
    keeper = StagedState(outbox)

    async def first_run() -> None:
        run = DriverRun(build("main-door", _params(emu.port), DriverContext(state=keeper)))
        await run.wait_for(lambda s: run.driver.describe()["board"] is not None, 5, "the board's HI")
        script.put(DoorCount(0, 0, 1, 150, 140))  # baseline
        await run.wait_for(lambda s: bool(run.driver.mapper.doors), 5, "the baseline")
        script.put(DoorCount(0, 0, 1, 159, 150))
        samples = await run.count(1)
        await run.stop()
        assert [s.values["count"] for s in samples] == [9.0]
        outbox.append([], 0, keeper.take())  # the agent's commit of those readings

    async def second_run() -> None:
        # A fresh driver, as the agent builds after a failure or a restart: 11 people
        # passed while it was away, and its first count must include them.
        restarted = DriverContext(state=StagedState(outbox))  # the agent restarted too
        run = DriverRun(build("main-door", _params(emu.port), restarted))
        await run.wait_for(lambda s: run.driver.describe()["board"] is not None, 5, "the board's HI")
        script.put(DoorCount(0, 0, 1, 170, 160))
        samples = await run.count(1)
        await run.stop()
        assert [s.values["count"] for s in samples] == [11.0]
        assert samples[0].values["interval_s"] > 0

    asyncio.run(first_run())
    asyncio.run(second_run())


def test_a_reboot_then_a_late_first_count_loses_nobody() -> None:
    """Totals restart from 0 at a boot, so the first count after one is every person since
    the boot, however long the board was up before it came: not a gap. The reading's
    interval is the contract's bound at most."""
    m = UpfwMapper("door")
    _door(m, 10, 50_000, 100)  # baseline
    m.on_message(Hello(0, 1532, DeviceKind.DOOR, "door-1", "1.0.0", 1), 0.0)  # reboot
    assert _door(m, 1, 7_200_000, 9) == [Out("door-1", "hospital.door",
                                             {"count": 9.0, "interval_s": 3600.0})]
    assert (m.reboots, m.door_gaps) == (1, 0)
    assert _door(m, 2, 7_260_000, 12)[0].values == {"count": 3.0, "interval_s": 60.0}


def test_a_door_unheard_for_over_an_hour_is_a_gap() -> None:
    """Within one boot, counts more than an hour apart: that door's sentences were lost
    (the board sends one at least every 60 s); the people between are not placed in time."""
    m = UpfwMapper("door")
    _door(m, 10, 50_000, 100)
    assert _door(m, 11, 50_000 + 3_600_001, 130) == []
    assert m.door_gaps == 1
    assert _door(m, 12, 50_000 + 3_660_001, 131)[0].values == {"count": 1.0, "interval_s": 60.0}


def _resumed(saved: DoorTotals) -> UpfwMapper:
    m = UpfwMapper("door")
    m.resume(saved)
    return m


def _counted(m: UpfwMapper) -> DoorTotals:
    _door(m, 10, 50_000, 100)  # baseline
    _door(m, 11, 110_000, 104)
    totals = m.door_totals()
    assert totals == DoorTotals(None, (11, 110_000), {1: (104, 110_000)})
    return totals


def test_resumed_totals_count_what_passed_while_the_driver_was_away() -> None:
    m = _resumed(_counted(UpfwMapper("door")))
    assert _door(m, 40, 170_000, 111) == [Out("door-1", "hospital.door",
                                              {"count": 7.0, "interval_s": 60.0})]
    assert m.lost_sentences == 28  # seq 12..39 went by while nobody listened


def test_a_board_that_rebooted_meanwhile_counts_from_zero() -> None:
    m = _resumed(_counted(UpfwMapper("door")))
    assert _door(m, 3, 20_000, 6) == [Out("door-1", "hospital.door",
                                          {"count": 6.0, "interval_s": 20.0})]
    assert m.reboots == 1


def test_a_board_that_rebooted_meanwhile_long_ago_counts_from_zero(emulated, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """The board (up 5 h) reboots while the driver is away and has been up 2 h when the
    driver comes back: its first count holds everyone since that boot."""
    script = Script()
    emu = emulated(UpfwEmulator(script, kind=DeviceKind.DOOR, device_id="door-main", channels=1,
                                period_s=0.02))
    emu.age(5 * 3600.0)
    outbox = Outbox(tmp_path / "outbox.sqlite3").open()
    keeper = StagedState(outbox)

    async def first_run() -> None:
        run = DriverRun(build("main-door", _params(emu.port), DriverContext(state=keeper)))
        await run.wait_for(lambda s: run.driver.describe()["board"] is not None, 5, "the board's HI")
        script.put(DoorCount(0, 0, 1, 150, 140))  # baseline
        await run.wait_for(lambda s: bool(run.driver.mapper.doors), 5, "the baseline")
        script.put(DoorCount(0, 0, 1, 159, 150))
        await run.count(1)
        await run.stop()
        outbox.append([], 0, keeper.take())

    async def second_run() -> None:
        run = DriverRun(build("main-door", _params(emu.port), DriverContext(state=StagedState(outbox))))
        await run.wait_for(lambda s: run.driver.describe()["board"] is not None, 5, "the board's HI")
        script.put(DoorCount(0, 0, 1, 9, 4))
        samples = await run.count(1)
        await run.stop()
        assert [s.values for s in samples] == [{"count": 9.0, "interval_s": 3600.0}]
        assert (run.driver.describe()["reboots"], run.driver.describe()["door_gaps"]) == (1, 0)

    asyncio.run(first_run())
    emu.unplug()  # power lost: the board boots again
    emu.replug()
    emu.age(2 * 3600.0)
    asyncio.run(second_run())


def test_sentences_heard_after_the_last_door_count_are_not_lost_at_a_restart(  # type: ignore[no-untyped-def]
        emulated, tmp_path: Path) -> None:
    """The board's sentences after its last DC (a status, a HI) were heard by the first
    run: the second one, resumed from the saved totals, counts none of them as lost."""
    script = Script()
    emu = emulated(UpfwEmulator(script, kind=DeviceKind.DOOR, device_id="door-main", channels=1,
                                period_s=0.02))
    outbox = Outbox(tmp_path / "outbox.sqlite3").open()
    keeper = StagedState(outbox)

    async def first_run() -> None:
        run = DriverRun(build("main-door", _params(emu.port), DriverContext(state=keeper)))
        await run.wait_for(lambda s: run.driver.describe()["board"] is not None, 5, "the board's HI")
        script.put(DoorCount(0, 0, 1, 150, 140))  # baseline
        await run.wait_for(lambda s: bool(run.driver.mapper.doors), 5, "the baseline")
        script.put(*(Status(0, 0, StatusCode.OK) for _ in range(5)))
        await run.wait_for(lambda s: run.driver.mapper.messages.get("Status") == 5, 5, "5 statuses")
        await run.stop()
        assert run.driver.describe()["lost_sentences"] == 0
        outbox.append([], 0, keeper.take())

    async def second_run() -> None:
        run = DriverRun(build("main-door", _params(emu.port), DriverContext(state=StagedState(outbox))))
        await run.wait_for(lambda s: run.driver.describe()["board"] is not None, 5, "the board's HI")
        script.put(DoorCount(0, 0, 1, 152, 141))
        samples = await run.count(1)
        await run.stop()
        assert [s.values["count"] for s in samples] == [2.0]
        assert run.driver.describe()["lost_sentences"] == 0

    asyncio.run(first_run())
    asyncio.run(second_run())


def test_another_board_on_the_port_gets_new_baselines() -> None:
    saved = DoorTotals("door-a", (11, 110_000), {1: (104, 110_000)})
    m = _resumed(saved)
    m.on_message(Hello(12, 120_000, DeviceKind.DOOR, "door-b", "1.0.0", 1), 0.0)
    assert _door(m, 13, 130_000, 5000) == []  # a baseline, not 4,896 people
    assert _door(m, 14, 190_000, 5004)[0].values["count"] == 4.0


def test_a_total_that_falls_is_a_new_baseline() -> None:
    m = _resumed(DoorTotals(None, (11, 110_000), {1: (104, 110_000)}))
    assert _door(m, 12, 170_000, 90) == []
    assert m.door_gaps == 1
    assert _door(m, 13, 230_000, 93)[0].values["count"] == 3.0


def test_door_totals_text_round_trips_and_a_damaged_one_names_its_key() -> None:
    saved = DoorTotals("door-a", (7, 2**32 - 1), {1: (2**32 - 1, 5), 2: (0, 9)})
    assert totals.decode(totals.encode(saved), "k") == saved
    with pytest.raises(DriverError, match=r"'upfw/d/doors' are damaged \(inconsistent.*; clear them with "
                       r"the agent stopped: urbanpulse edge driver-state --config FILE "
                       r"--key upfw/d/doors --clear$"):
        totals.decode('{"device_id": null, "last": [1, 2], "doors": {"1": [-5, 0]}}', "upfw/d/doors")
    with pytest.raises(DriverError, match="'upfw/d/doors' are damaged"):
        totals.decode("{not json", "upfw/d/doors")
    # JSON of another shape: damaged too, not an AttributeError that names nothing
    for text in ('{"device_id": null, "last": [1, 2], "doors": [[1, 2]]}', '[]', '"x"',
                 '{"device_id": null, "last": 5, "doors": {}}'):
        with pytest.raises(DriverError, match="'upfw/d/doors' are damaged"):
            totals.decode(text, "upfw/d/doors")
