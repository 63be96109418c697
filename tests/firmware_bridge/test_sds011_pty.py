"""The SDS011 emulator over real pseudo-terminals, driven through the async transport."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from firmware_bridge.errors import LinkLostError, PortBusyError, PortNotFoundError, ProtocolError
from firmware_bridge.protocols import get_protocol
from firmware_bridge.protocols.sds011 import Sds011Decoder, commands
from firmware_bridge.protocols.sds011.emulator import Sds011Emulator
from firmware_bridge.protocols.sds011.frames import (
    ReportMode,
    Sds011DeviceIdReply,
    Sds011FirmwareReply,
    Sds011Frame,
    Sds011Measurement,
    Sds011ReportModeReply,
    Sds011WorkingPeriodReply,
    Sds011WorkStateReply,
    WorkState,
)
from firmware_bridge.transport import ReconnectingLink, SerialLink, open_link

VALUES = (12.3, 45.6)
Waiter = Callable[..., None]


@pytest.fixture
def emulator(tmp_path: Path) -> Iterator[Sds011Emulator]:
    emu = Sds011Emulator(lambda: VALUES, period_s=0.05, warmup_s=0.0, link_path=str(tmp_path / "sds011"))
    emu.start()
    yield emu
    emu.stop()


async def measurements(link: SerialLink, decoder: Sds011Decoder, n: int) -> list[Sds011Frame]:
    out: list[Sds011Frame] = []
    while len([f for f in out if isinstance(f, Sds011Measurement)]) < n:
        out += decoder.feed(await link.read())
    return out


async def skipped(link: SerialLink, decoder: Sds011Decoder, n: int) -> None:
    """Read until the decoder has skipped `n` bytes in all."""
    while decoder.stats.bytes_skipped < n:
        decoder.feed(await link.read())


async def read_until_error(link: ReconnectingLink) -> None:
    while True:
        await link.read()


def is_measurement(frame: Sds011Frame) -> bool:
    return isinstance(frame, Sds011Measurement)


def test_streams_paced_frames_only_once_the_client_listens(
    emulator: Sds011Emulator, wait_until: Waiter
) -> None:
    wait_until(lambda: emulator.bytes_unheard >= 30)
    assert emulator.bytes_written == 0

    async def scenario() -> tuple[list[Sds011Frame], int]:
        link = await open_link(emulator.port, 9600, timeout_s=2.0, coalesce_s=0.0)
        decoder = Sds011Decoder()
        reads = 0
        frames: list[Sds011Frame] = []
        while len(frames) < 3:
            frames += decoder.feed(await link.read())
            reads += 1
        await link.close()
        assert decoder.stats.bytes_skipped == 0  # the first frame arrived whole
        return frames, reads

    frames, reads = asyncio.run(scenario())
    assert frames == [Sds011Measurement(*VALUES, "a160")] * 3
    assert reads > 3  # bytes are paced: frames arrive in pieces


def test_commands_are_answered(emulator: Sds011Emulator) -> None:
    async def scenario() -> None:
        link = await open_link(emulator.port, 9600, timeout_s=1.0)
        dec = Sds011Decoder()

        reply = await link.request(
            commands.set_report_mode(ReportMode.QUERY), dec, lambda f: not is_measurement(f)
        )
        assert reply == Sds011ReportModeReply(True, ReportMode.QUERY, "a160")
        assert await link.request(commands.query_data(), dec, is_measurement) == (
            Sds011Measurement(*VALUES, "a160")
        )
        assert await link.request(commands.get_report_mode(), dec, lambda f: True) == (
            Sds011ReportModeReply(False, ReportMode.QUERY, "a160")
        )

        reply = await link.request(commands.set_work_state(WorkState.SLEEP), dec, lambda f: True)
        assert reply == Sds011WorkStateReply(True, WorkState.SLEEP, "a160")
        with pytest.raises(ProtocolError):
            await link.request(commands.query_data(), dec, is_measurement, retries=1, timeout_s=0.2)
        reply = await link.request(commands.set_work_state(WorkState.WORK), dec, lambda f: True)
        assert reply == Sds011WorkStateReply(True, WorkState.WORK, "a160")

        reply = await link.request(commands.set_working_period(3), dec, lambda f: True)
        assert reply == Sds011WorkingPeriodReply(True, 3, "a160")
        reply = await link.request(commands.get_firmware_version(), dec, lambda f: True)
        assert reply == Sds011FirmwareReply(2015, 7, 10, "a160")

        reply = await link.request(commands.set_device_id("beef", "a160"), dec, lambda f: True)
        assert reply == Sds011DeviceIdReply("beef")
        # addressed to the old id: no longer ours
        with pytest.raises(ProtocolError):
            await link.request(commands.query_data("a160"), dec, is_measurement, retries=0, timeout_s=0.2)
        assert await link.request(commands.query_data("beef"), dec, is_measurement) == (
            Sds011Measurement(*VALUES, "beef")
        )
        await link.close()

    asyncio.run(scenario())
    assert emulator.report_mode is ReportMode.QUERY
    assert emulator.working_period_min == 3


def test_warm_up_zeros_are_flagged(tmp_path: Path) -> None:
    emu = Sds011Emulator(lambda: VALUES, period_s=0.05, warmup_s=0.4)

    async def scenario() -> list[Sds011Frame]:
        link = await open_link(emu.port, 9600, timeout_s=2.0)
        dec = Sds011Decoder()
        frames: list[Sds011Frame] = []
        while not frames or frames[-1] != Sds011Measurement(*VALUES, "a160"):
            frames += dec.feed(await link.read())
        await link.close()
        return frames

    emu.start()
    try:
        frames = asyncio.run(scenario())
    finally:
        emu.stop()
    zeros = [f for f in frames if isinstance(f, Sds011Measurement) and f.suspect_zero]
    assert zeros
    assert frames[: len(zeros)] == zeros


def test_faults_on_demand_are_counted_and_good_frames_survive(
    emulator: Sds011Emulator,
) -> None:
    async def scenario() -> Sds011Decoder:
        link = await open_link(emulator.port, 9600, timeout_s=2.0)
        dec = Sds011Decoder()
        await measurements(link, dec, 1)
        emulator.inject_bad_checksum()
        emulator.inject_truncated_frame()  # both hit the same next frame: cut, wrong sum
        await measurements(link, dec, 1)
        emulator.inject_bad_checksum()
        await measurements(link, dec, 1)
        emulator.inject_garbage(200)
        # The frames already on the line are read before the burst: on a busy machine three
        # of them were, and the burst was never read.
        await asyncio.wait_for(skipped(link, dec, 200 + 5), 10)
        await measurements(link, dec, 3)
        await link.close()
        return dec

    dec = asyncio.run(scenario())
    assert dec.stats.checksum_errors >= 1
    assert dec.stats.bytes_skipped >= 200 + 5


def test_unplug_and_replug_under_a_stable_name(emulator: Sds011Emulator) -> None:
    async def scenario() -> None:
        link = ReconnectingLink(emulator.port, 9600, timeout_s=2.0)
        dec = Sds011Decoder()
        while not dec.feed(await link.read()):
            pass
        emulator.unplug()
        assert not Path(emulator.port).exists()
        with pytest.raises(LinkLostError):
            await read_until_error(link)
        with pytest.raises(PortNotFoundError):
            await link.read()
        emulator.replug()
        fresh = Sds011Decoder()
        got: list[Sds011Frame] = []
        while not got:
            got = fresh.feed(await link.read())
        assert got[0] == Sds011Measurement(*VALUES, "a160")
        assert (link.opens, link.losses) == (2, 1)
        await link.close()

    asyncio.run(scenario())


def test_port_is_opened_exclusively(emulator: Sds011Emulator) -> None:
    async def scenario() -> None:
        first = await open_link(emulator.port, 9600, timeout_s=1.0)
        with pytest.raises(PortBusyError):
            await open_link(emulator.port, 9600, timeout_s=1.0)
        await first.close()
        second = await open_link(emulator.port, 9600, timeout_s=1.0)
        await second.close()

    asyncio.run(scenario())


def test_missing_port(tmp_path: Path) -> None:
    with pytest.raises(PortNotFoundError):
        asyncio.run(open_link(str(tmp_path / "nothing"), 9600, timeout_s=1.0))


def test_registry_builds_a_working_emulator_and_decoder() -> None:
    spec = get_protocol("sds011")
    assert (spec.name, spec.baudrate) == ("sds011", 9600)
    emu = spec.new_emulator(values=lambda: VALUES, period_s=0.05, warmup_s=0.0)
    decoder = spec.new_decoder()

    async def scenario() -> list[object]:
        link = await open_link(emu.port, spec.baudrate, timeout_s=2.0)
        frames: list[object] = []
        while not frames:
            frames += decoder.feed(await link.read())
        await link.close()
        return frames

    emu.start()
    try:
        frames = asyncio.run(scenario())
    finally:
        emu.stop()
    assert spec.record(frames[0]) == {"pm25": 12.3, "pm10": 45.6, "device_id": "a160"}


def test_coalescing_reads_takes_paced_bytes_in_chunks(emulator: Sds011Emulator) -> None:
    async def scenario(coalesce_s: float) -> float:
        link = await open_link(emulator.port, 9600, timeout_s=2.0, coalesce_s=coalesce_s)
        decoder = Sds011Decoder()
        reads, frames = 0, 0
        while frames < 3:
            frames += len(decoder.feed(await link.read()))
            reads += 1
        await link.close()
        return reads / frames

    per_frame_paced = asyncio.run(scenario(0.0))
    per_frame_coalesced = asyncio.run(scenario(0.1))
    assert per_frame_coalesced < per_frame_paced / 2  # a 10-byte frame per 1-2 reads, not ~10


def test_a_replug_right_after_an_unplug_is_never_lost() -> None:
    """The emulator thread must not sleep through an action queued while it takes the
    previous one (an unplugged device waits on its wake-up pipe alone)."""
    emu = Sds011Emulator(period_s=0.05, warmup_s=0.0)
    emu.start()
    try:
        for _ in range(300):
            emu.unplug()
            emu.replug()
        assert emu.pty_path is not None
    finally:
        emu.stop()
