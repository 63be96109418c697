"""PMS5003(T) and MH-Z19B emulators over real pseudo-terminals."""

from __future__ import annotations

import asyncio

import pytest

from firmware_bridge.errors import LinkTimeoutError, ProtocolError
from firmware_bridge.protocols.mhz19b import Mhz19bDecoder, Mhz19bReading
from firmware_bridge.protocols.mhz19b import commands as mhz
from firmware_bridge.protocols.mhz19b.emulator import Mhz19bEmulator
from firmware_bridge.protocols.pms5003 import (
    Mode,
    Pms5003Ack,
    Pms5003Decoder,
    Pms5003Measurement,
    Pms5003tDecoder,
    Pms5003tMeasurement,
)
from firmware_bridge.protocols.pms5003 import commands as pms
from firmware_bridge.protocols.pms5003.emulator import (
    Pms5003Emulator,
    Pms5003tEmulator,
    reading,
    reading_t,
)
from firmware_bridge.transport import open_link


def test_pms5003_active_passive_sleep_wake() -> None:
    value = reading(20, 33)
    emu = Pms5003Emulator(lambda: value, period_s=0.05, warmup_s=0.3)

    async def scenario() -> None:
        link = await open_link(emu.port, 9600, timeout_s=1.0)
        dec = Pms5003Decoder()

        def is_data(f: object) -> bool:
            return isinstance(f, Pms5003Measurement)

        def is_ack(f: object) -> bool:
            return isinstance(f, Pms5003Ack)

        frames: list[object] = []
        while value not in frames:
            frames += dec.feed(await link.read())
        assert isinstance(frames[0], Pms5003Measurement)
        assert frames[0].suspect_zero  # warm-up

        assert await link.request(pms.set_mode(Mode.PASSIVE), dec, is_ack) == Pms5003Ack(0xE1, 0)
        assert await link.request(pms.read_passive(), dec, is_data) == value
        assert await link.request(pms.sleep(), dec, is_ack) == Pms5003Ack(0xE4, 0)
        with pytest.raises(ProtocolError):
            await link.request(pms.read_passive(), dec, is_data, retries=0, timeout_s=0.2)
        await link.write(pms.wake())
        woke = await link.request(pms.read_passive(), dec, is_data)
        assert isinstance(woke, Pms5003Measurement)
        assert woke.suspect_zero  # the fan restarted: warm-up again
        await link.close()

    emu.start()
    try:
        asyncio.run(scenario())
    finally:
        emu.stop()


def test_pms5003t_streams_temperature_and_humidity() -> None:
    value = reading_t(12, 20, temperature_c=-3.5, humidity_pct=91.5)
    emu = Pms5003tEmulator(lambda: value, period_s=0.05, warmup_s=0.0)

    async def scenario() -> list[Pms5003tMeasurement | Pms5003Ack]:
        link = await open_link(emu.port, 9600, timeout_s=1.0)
        dec = Pms5003tDecoder()
        frames: list[Pms5003tMeasurement | Pms5003Ack] = []
        while len(frames) < 2:
            frames += dec.feed(await link.read())
        await link.close()
        return frames

    with emu:
        assert asyncio.run(scenario()) == [value, value]


def test_mhz19b_read_calibrate_and_preheat() -> None:
    true_ppm = [900.0]
    emu = Mhz19bEmulator(lambda: true_ppm[0], temperature_c=30, warmup_s=0.3)

    async def scenario() -> None:
        link = await open_link(emu.port, 9600, timeout_s=1.0)
        dec = Mhz19bDecoder()

        async def read() -> Mhz19bReading:
            return await link.request(mhz.read_co2(), dec, lambda f: True)

        first = await read()
        assert first == Mhz19bReading(0, 30)  # preheating
        assert first.suspect_zero
        while (current := await read()).suspect_zero:
            pass
        assert current == Mhz19bReading(900, 30)

        await link.write(mhz.set_abc(False))
        await link.write(mhz.zero_calibration())  # the present air becomes 400 ppm
        assert await read() == Mhz19bReading(400, 30)
        true_ppm[0] = 1900.0
        await link.write(mhz.span_calibration(2000))
        assert await read() == Mhz19bReading(2000, 30)
        await link.write(mhz.set_range(2000))
        true_ppm[0] = 5000.0
        assert await read() == Mhz19bReading(2000, 30)  # clipped to the range
        await link.close()

    with emu:
        asyncio.run(scenario())
        assert emu.abc_enabled is False
        assert emu.range_ppm == 2000


def test_mhz19b_late_answers() -> None:
    """reply_delay_s holds every answer back that long; hold_replies(1) keeps one answer
    until the next query's, then sends both, oldest first, back to back."""
    ppm = iter(range(600, 700))
    emu = Mhz19bEmulator(lambda: float(next(ppm)), warmup_s=0.0, reply_delay_s=0.2)

    async def scenario() -> None:
        link = await open_link(emu.port, 9600, timeout_s=1.0, coalesce_s=0.0)
        dec = Mhz19bDecoder()
        loop = asyncio.get_running_loop()

        async def frames(n: int) -> list[Mhz19bReading]:
            out: list[Mhz19bReading] = []
            while len(out) < n:
                out += [f for f in dec.feed(await link.read()) if isinstance(f, Mhz19bReading)]
            return out

        asked = loop.time()
        await link.write(mhz.read_co2())
        assert await frames(1) == [Mhz19bReading(600, 28)]
        assert loop.time() - asked >= 0.2

        emu.hold_replies(1)
        await link.write(mhz.read_co2())
        with pytest.raises(LinkTimeoutError):  # held: nothing within twice the delay
            await link.read(timeout_s=0.4)
        await link.write(mhz.read_co2())
        assert await frames(2) == [Mhz19bReading(601, 28), Mhz19bReading(602, 28)]
        await link.close()

    with emu:
        asyncio.run(scenario())
        assert emu.readings_sent == 3
