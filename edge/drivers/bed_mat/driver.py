"""bed_mat: an analogue bed mat (piezo or FSR/capacitive sheet with its conditioning) read
through an MCP3008 SPI ADC. Emits `hospital.bed` readings with `occupied` as bed_pad does,
plus `load` and `motion` (edge/drivers/bed_mat/logic.py): at start-up, on every change of
the reported state, and every `heartbeat_s` without one."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from edge.drivers.base import DriverContext, Emit, Sample
from edge.drivers.bed_mat.logic import BedMatLogic, MatReading, MatSettings
from edge.errors import DriverError
from edge.gpio.params import Fields
from edge.gpio.runtime import opening_gpio

KIND = "hospital.bed"
ADC_BITS = 10  # MCP3008
FULL_SCALE = 2**ADC_BITS - 1
# The Pi's SPI0 chip selects: CE0 (BCM 8) and CE1 (BCM 7).
SPI_DEVICES = (0, 1)


@dataclass(frozen=True, slots=True)
class BedMatParams:
    channel: int = 0
    spi_device: int = 0
    sample_hz: float = 10.0
    settings: MatSettings = field(default_factory=MatSettings)

    @property
    def resources(self) -> tuple[tuple[str, str, str], ...]:
        """What the config refuses a second sensor (edge/config.py `_claims`): this ADC
        input. A "gpio ..." resource: a node with a mat needs the GPIO backend. The SPI
        bus's pins (BCM 7-11) are claimed by edge/config.py for the bus, shared by every mat."""
        return ((f"gpio spi0.{self.spi_device} channel {self.channel}",
                 f"MCP3008 input {self.channel} on SPI0 CE{self.spi_device}", "channel"),)


def parse_params(raw: Mapping[str, Any], key: str) -> BedMatParams:
    f = Fields(raw, key)
    channel = f.value("channel")
    if channel is None:
        raise f.error("channel", "required (the MCP3008 input the mat is on, 0..7)")
    if type(channel) is not int or not 0 <= channel <= 7:
        raise f.error("channel", f"must be an MCP3008 input 0..7, got {channel!r}")
    spi_device = f.value("spi_device")
    if spi_device is None:
        spi_device = 0
    if type(spi_device) is not int or spi_device not in SPI_DEVICES:
        raise f.error("spi_device", f"must be 0 (CE0, BCM 8) or 1 (CE1, BCM 7), got {spi_device!r}")
    sample_hz = f.number("sample_hz", 10.0, 1.0, 100.0)
    occupied_level = f.number("occupied_level", 0.25, 0.0, 1.0, low_inclusive=False)
    free_level = f.number("free_level", 0.15, 0.0, 1.0)
    if free_level >= occupied_level:
        raise f.error("free_level", f"must be below occupied_level ({occupied_level:g}), got "
                      f"{free_level:g}: the gap between them is the hysteresis")
    supervision = f.choice("supervision", ("bias", "none"), "bias")
    if supervision == "none":
        for name in ("fault_below", "fault_above", "fault_delay_s"):
            if f.has(name):
                raise f.error(name, 'only with supervision = "bias" (supervision is "none")')
    fault_below = f.number("fault_below", 0.02, 0.0, 1.0, low_inclusive=False)
    if fault_below >= free_level:
        raise f.error("fault_below", f"must be below free_level ({free_level:g}), got "
                      f"{fault_below:g}: an empty bed's bias lies between them")
    fault_above = f.number("fault_above", 1.0, 0.0, 1.0, low_inclusive=False)
    if fault_above <= occupied_level:
        raise f.error("fault_above", f"must be above occupied_level ({occupied_level:g}), got "
                      f"{fault_above:g}: a patient's level lies between them")
    settings = MatSettings(
        supervision="bias" if supervision == "bias" else "none",
        fault_below=fault_below,
        fault_above=fault_above,
        fault_delay_s=f.number("fault_delay_s", 1.0, 0.0, 60.0),
        occupied_level=occupied_level,
        free_level=free_level,
        min_load_s=f.number("min_load_s", 0.5, 0.0, 10.0),
        exit_tolerance_s=f.number("exit_tolerance_s", 10.0, 0.0, 3600.0),
        motion_tau_s=f.number("motion_tau_s", 5.0, 0.1, 60.0),
        glitch_level=f.number("glitch_level", 0.2, 0.01, 1.0),
        glitch_s=f.number("glitch_s", 0.3, 0.0, 2.0),
        heartbeat_s=f.number("heartbeat_s", 60.0, 0.1, 3600.0),
    )
    f.finish()
    if settings.motion_tau_s * sample_hz < 5:
        raise f.error("motion_tau_s", f"must span at least 5 samples (motion_tau_s x sample_hz "
                      f">= 5, got {settings.motion_tau_s * sample_hz:g}): a shorter high-pass "
                      "leaves the sampling noise, not the body's movement")
    return BedMatParams(channel=channel, spi_device=spi_device, sample_hz=sample_hz,
                        settings=settings)


class BedMatDriver:
    driver_name = "bed_mat"

    def __init__(self, sensor_id: str, params: BedMatParams, ctx: DriverContext) -> None:
        self.sensor_id = sensor_id
        self.params = params
        self.ctx = ctx
        self.running = False
        self.logic: BedMatLogic | None = None
        self.last: MatReading | None = None

    def _open(self) -> Any:
        if self.ctx.pin_factory is None:
            raise DriverError(f"{self.sensor_id}: no GPIO pin factory in the driver context")
        from gpiozero import MCP3008

        factory = self.ctx.pin_factory()
        with opening_gpio(f"MCP3008 channel {self.params.channel} on SPI0 CE"
                          f"{self.params.spi_device}"):
            return MCP3008(channel=self.params.channel, port=0, device=self.params.spi_device,
                           pin_factory=factory)

    def _read(self, adc: Any) -> float:
        try:
            raw = adc.raw_value
        except Exception as exc:  # gpiozero's SPI errors, the backend's OSError
            raise DriverError(f"{self.sensor_id}: MCP3008 read failed: "
                              f"{type(exc).__name__}: {exc}") from exc
        level: float = int(raw) / FULL_SCALE
        return level

    async def run(self, emit: Emit) -> None:
        clock = self.ctx.clock
        period = 1.0 / self.params.sample_hz
        adc = self._open()
        logic = self.logic = BedMatLogic(self.params.settings)
        try:
            self.running = True
            due = clock.monotonic()
            while True:
                # A read over SPI takes tens of microseconds: done on the loop's thread.
                level = self._read(adc)
                for reading in logic.feed(level, clock.monotonic()):
                    self._send(reading, emit)
                due += period
                delay = due - clock.monotonic()
                if delay < -period:  # the loop fell behind (a busy node): no burst to catch up
                    due = clock.monotonic()
                await asyncio.sleep(max(delay, 0.0))
        finally:
            self.running = False
            adc.close()

    def _send(self, reading: MatReading, emit: Emit) -> None:
        self.last = reading
        emit(Sample(self.sensor_id, KIND, reading.values(), self.ctx.clock.now()))

    def bad_input(self) -> dict[str, int]:
        """Single-sample excursions held out of the readings (edge/drivers/base.py
        `Counting`)."""
        return {"glitches": 0 if self.logic is None else self.logic.glitches}

    def describe(self) -> dict[str, Any]:
        out: dict[str, Any] = {"driver": self.driver_name, "channel": self.params.channel,
                               "spi_device": self.params.spi_device, "running": self.running}
        if self.logic is not None:
            out.update(samples=self.logic.samples, exits=self.logic.exits,
                       glitches=self.logic.glitches, faults=self.logic.faults)
        if self.last is not None:
            out.update(occupied=self.last.occupied, load=round(self.last.load, 4),
                       motion=round(self.last.motion, 4))
            if self.last.fault is not None:
                out.update(fault=self.last.fault)
        return out


def build(sensor_id: str, params: BedMatParams, ctx: DriverContext) -> BedMatDriver:
    return BedMatDriver(sensor_id, params, ctx)
