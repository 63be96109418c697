"""The bed_mat driver end to end: gpiozero's MCP3008 over the MockFactory's SPI pins
(software SPI, the bits clocked one by one), answered by an MCP3008 slave written here on
gpiozero's MockSPIDevice (gpiozero 2.0 ships the slave base class, not the chip; an ADC
cannot run here). Under asyncio with the real clock."""

from __future__ import annotations

import asyncio
import math
import time

import gpiozero
import pytest
from gpiozero import Device
from gpiozero.pins.mock import MockFactory, MockSPIDevice

from edge.drivers.base import DriverContext
from edge.drivers.bed_mat.driver import build, parse_params
from edge.errors import DriverError

EMPTY = 0.05  # an empty bed's bias (the README's wiring)
BIAS = round(EMPTY * 1023) / 1023  # as the 10-bit ADC reads it


class MCP3008Slave(MockSPIDevice):
    """The chip's side of a single-ended or differential read: a start bit, the mode bit,
    three channel bits, then a null bit and 10 result bits, MSB first."""

    def __init__(self, factory: MockFactory, select_pin: int = 8) -> None:
        super().__init__(11, 10, 9, select_pin, pin_factory=factory)
        self.level = [0.0] * 8  # what each input reads, 0..1 of the reference
        self.reads = 0
        self.phase = "idle"

    def on_start(self) -> None:
        super().on_start()
        self.phase = "idle"

    def on_bit(self) -> None:
        if self.phase == "idle":
            if self.rx_buf[-1]:
                self.phase, self.rx_buf = "mode", []
        elif self.phase == "mode":
            self.phase, self.rx_buf = "channel", []
        elif self.phase == "channel" and len(self.rx_buf) == 3:
            code = max(0, min(1023, round(self.level[self.rx_word()] * 1023)))
            self.tx_word(code, 12)  # the sampling bit, the null bit, the result
            self.reads += 1
            self.phase = "result"


@pytest.fixture
def adc(gpio, monkeypatch: pytest.MonkeyPatch) -> MCP3008Slave:
    # gpiozero 2.0.1's SPISoftwareBus builds its Device without the pin factory it is given
    # (Device.__init__ then looks up the default one): the mock must be the default too.
    monkeypatch.setattr(Device, "pin_factory", gpio.factory)
    return MCP3008Slave(gpio.factory)


def test_a_patient_breathing_then_leaving_and_a_glitch(gpio, adc) -> None:
    params = parse_params({"channel": 3, "sample_hz": 50, "min_load_s": 0.1,
                           "exit_tolerance_s": 0.3, "heartbeat_s": 0.4, "motion_tau_s": 0.2},
                          "sensors[0]")
    driver = build("bed-07", params, DriverContext(pin_factory=gpio.provider))
    start = time.monotonic()
    adc.level[3] = EMPTY

    def breathe() -> None:  # 0.6 with a 2 Hz movement of +-0.03 (fast, for the test)
        adc.level[3] = 0.6 + 0.03 * math.sin(2 * math.pi * 2 * (time.monotonic() - start))

    async def scenario() -> None:
        async with gpio.running(driver) as samples:
            assert samples[0].values == {"occupied": 0, "load": BIAS, "motion": 0.0, "fault": 0}
            deadline = time.monotonic() + 2.0
            while time.monotonic() < deadline and sum(
                    s.values["occupied"] == 1 for s in samples) < 3:
                breathe()
                await asyncio.sleep(0.005)  # the poll's interval, under a deadline
            occupied = [s.values for s in samples if s.values["occupied"] == 1]
            assert len(occupied) >= 3, samples
            beat = occupied[-1]  # a whole heartbeat's samples, all of them breathing
            assert beat["load"] == pytest.approx(0.6, abs=0.02)
            assert 0.005 < beat["motion"] < 0.05  # 0.021 at 2 Hz through the 0.2 s high-pass
            adc.level[3] = EMPTY  # the patient leaves
            await gpio.wait_until(lambda: samples[-1].values["occupied"] == 0, "exit")
            n = adc.reads
            adc.level[3] = 1.0  # one sample's pulse: read once, then back
            await gpio.wait_until(lambda: adc.reads > n, "the pulse read")
            adc.level[3] = EMPTY
            await gpio.wait_until(lambda: driver.describe()["glitches"] == 1, "glitch")
            await gpio.wait_until(lambda: "glitches" in samples[-1].values, "its reading")
        # the pulse is held out of the load; the motion is the high-pass settling after the exit
        last = samples[-1].values
        assert (last["occupied"], last["load"], last["glitches"], last["fault"]) == (0, BIAS, 1, 0)
        assert last["motion"] < 0.1
        assert driver.bad_input() == {"glitches": 1}
        assert all(s.kind == "hospital.bed" and s.sensor == "bed-07" for s in samples)
        gpio.assert_contract(samples)
        assert driver.describe()["exits"] == 1

    asyncio.run(scenario())


def test_an_adc_that_fails_is_a_driver_error(gpio, adc, monkeypatch: pytest.MonkeyPatch) -> None:
    # A bus that stops answering reads zeros over SPI (no error to see): what fails is the
    # SPI device itself (spidev's OSError on the Pi), made here by its read raising.
    params = parse_params({"channel": 0}, "sensors[0]")
    driver = build("bed-08", params, DriverContext(pin_factory=gpio.provider))

    def broken(self: object) -> int:
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(gpiozero.MCP3008, "raw_value", property(broken))

    async def scenario() -> None:
        task = asyncio.create_task(driver.run(lambda s: None))
        await gpio.wait_until(task.done, "the run to end")
        with pytest.raises(DriverError, match=r"MCP3008 read failed: OSError"):
            task.result()
        assert not driver.describe()["running"]

    asyncio.run(scenario())


def test_a_cut_cable_is_a_fault_with_occupied_frozen_until_mended(gpio, adc) -> None:
    params = parse_params({"channel": 1, "sample_hz": 50, "min_load_s": 0.1,
                           "exit_tolerance_s": 0.3, "heartbeat_s": 5, "fault_delay_s": 0.3},
                          "sensors[0]")
    driver = build("bed-09", params, DriverContext(pin_factory=gpio.provider))
    adc.level[1] = 0.6

    async def scenario() -> None:
        async with gpio.running(driver) as samples:
            await gpio.wait_until(lambda: bool(samples), "the start-up reading")
            assert (samples[0].values["occupied"], samples[0].values["fault"]) == (1, 0)
            adc.level[1] = 0.0  # the cable cut: the ADC input pulled down
            await gpio.wait_until(lambda: samples[-1].values["fault"] == 1, "the fault")
            assert samples[-1].values["occupied"] == 1  # frozen: no exit from a cut
            assert driver.describe()["faults"] == 1
            adc.level[1] = 0.6  # mended, the patient still there
            await gpio.wait_until(lambda: samples[-1].values["fault"] == 0, "the fault cleared")
        assert [s.values["occupied"] for s in samples] == [1, 1, 1]
        assert driver.describe()["exits"] == 0
        gpio.assert_contract(samples)

    asyncio.run(scenario())
