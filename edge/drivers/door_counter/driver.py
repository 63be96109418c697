"""door_counter: a light-beam (or contact) door counter on GPIO, one beam or two for
direction, optionally supervised against a cut cable and self-tested through the beams'
test input. Emits one `hospital.door` reading (people entering) per interval, stamped
with the interval's end; a failed self-test and a blocked beam go in the node's
heartbeat (`supervision()`)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from edge.drivers.base import DriverContext, Emit
from edge.drivers.door_counter.logic import DoorCounter
from edge.drivers.door_counter.self_test import BeamSelfTest
from edge.gpio.intervals import IntervalReactor
from edge.gpio.params import ACTIVE_STATES, Fields, InputWiring
from edge.gpio.runtime import GpioDriver, opening_gpio

KIND = "hospital.door"
SUPERVISIONS = ("none", "loopback")


@dataclass(frozen=True, slots=True)
class DoorCounterParams:
    pin: int
    inner_pin: int | None = None
    wiring: InputWiring = field(default_factory=InputWiring)
    interval_s: float = 60.0
    debounce_s: float = 0.03
    # A walking adult breaks a beam for 0.2-0.6 s; a false pulse on the cable is shorter.
    min_pulse_s: float = 0.1
    supervision_pin: int | None = None  # the loopback pair(s); None: unsupervised
    fault_delay_s: float = 1.0
    # Longer than anyone takes through a doorway: a beam broken this long is blocked.
    blocked_after_s: float = 60.0
    test_pin: int | None = None  # the emitters' test input; None: no self-test
    test_active_high: bool = True  # the test_pin level that switches the emitters off
    self_test_every_s: float = 300.0
    self_test_s: float = 0.2

    @property
    def pins(self) -> tuple[int, ...]:
        beams = (self.pin,) if self.inner_pin is None else (self.pin, self.inner_pin)
        return beams if self.supervision_pin is None else (*beams, self.supervision_pin)

    @property
    def whole_level(self) -> bool:
        """The level (after active_state) the loopback line reads while the cables are
        whole: the pair ties the pin to the rail opposite its pull (GND with a pull-up or
        none, 3.3 V with a pull-down)."""
        tied_high = self.wiring.pull == "down"
        return tied_high == self.wiring.active_high


def parse_params(raw: Mapping[str, Any], key: str) -> DoorCounterParams:
    f = Fields(raw, key)
    pin = f.pin("pin")
    inner_pin = f.optional_pin("inner_pin")
    supervised = f.choice("supervision", SUPERVISIONS, "none") == "loopback"
    supervision_pin = f.optional_pin("supervision_pin")
    if not supervised:
        for name in ("supervision_pin", "fault_delay_s"):
            if f.has(name):
                raise f.error(name, "only used with supervision = \"loopback\"")
    elif supervision_pin is None:
        raise f.error("supervision_pin", "required with supervision = \"loopback\"")
    test_pin = f.optional_pin("test_pin")
    if test_pin is None:
        for name in ("test_active_state", "self_test_every_s", "self_test_s"):
            if f.has(name):
                raise f.error(name, "only used with a test_pin")
    f.distinct_pins({"pin": pin, "inner_pin": inner_pin, "supervision_pin": supervision_pin,
                     "test_pin": test_pin})
    every_s = f.number("self_test_every_s", 300.0, 10.0, 86_400.0)
    test_s = f.number("self_test_s", 0.2, 0.005, 2.0)
    params = DoorCounterParams(
        pin=pin,
        inner_pin=inner_pin,
        wiring=f.wiring({"pin": pin, "inner_pin": inner_pin, "supervision_pin": supervision_pin}),
        interval_s=f.interval("interval_s", 60.0, 0.1, 3600.0),
        debounce_s=f.number("debounce_s", 0.03, 0.0, 0.5),
        min_pulse_s=f.number("min_pulse_s", 0.1, 0.0, 1.0),
        supervision_pin=supervision_pin,
        fault_delay_s=f.number("fault_delay_s", 1.0, 0.0, 60.0),
        blocked_after_s=f.number("blocked_after_s", 60.0, 5.0, 86_400.0),
        test_pin=test_pin,
        test_active_high=f.choice("test_active_state", ACTIVE_STATES, "high") == "high",
        self_test_every_s=every_s,
        self_test_s=test_s,
    )
    f.finish()
    return params


class DoorCounterDriver(GpioDriver):
    driver_name = "door_counter"

    def __init__(self, sensor_id: str, params: DoorCounterParams, ctx: DriverContext) -> None:
        super().__init__(sensor_id, params.pins, params.wiring, ctx)
        self.params = params
        self.logic: DoorCounter | None = None
        self._run: IntervalReactor | None = None
        self._test_output: Any = None  # gpiozero DigitalOutputDevice of the test_pin

    async def run(self, emit: Emit) -> None:
        try:
            await super().run(emit)
        finally:
            output, self._test_output = self._test_output, None
            if output is not None:
                output.close()

    def _open_test_output(self, pin: int) -> Any:
        from gpiozero import DigitalOutputDevice

        assert self.ctx.pin_factory is not None  # run() checked it
        with opening_gpio(f"the test output GPIO {pin}"):
            return DigitalOutputDevice(pin, active_high=self.params.test_active_high,
                                       initial_value=False, pin_factory=self.ctx.pin_factory())

    def _blank(self, on: bool) -> None:
        if on:
            self._test_output.on()
        else:
            self._test_output.off()

    async def start(self, levels: list[bool], now: float, emit: Emit) -> IntervalReactor:
        params = self.params
        tested: Callable[[int, float], BeamSelfTest] | None = None
        if params.test_pin is not None:
            self._test_output = self._open_test_output(params.test_pin)
            tested = lambda beams, t0: BeamSelfTest(  # noqa: E731
                beams=beams, t0=t0, every_s=params.self_test_every_s,
                test_s=params.self_test_s, blank=self._blank)
        self.logic = DoorCounter(bounce_s=params.debounce_s, levels=levels, t0=now,
                                 min_pulse_s=params.min_pulse_s,
                                 supervised=params.supervision_pin is not None,
                                 whole_level=params.whole_level,
                                 fault_delay_s=params.fault_delay_s,
                                 blocked_after_s=params.blocked_after_s,
                                 self_test=tested)
        self._run = IntervalReactor(self.logic, sensor_id=self.sensor_id, kind=KIND,
                                    interval_s=self.params.interval_s, clock=self.ctx.clock,
                                    now=now, emit=emit)
        return self._run

    def supervision(self) -> dict[str, str | bool] | None:
        """For the node's heartbeat: {"blocked": bool} and, with a test_pin,
        "self_test": "ok" | "failed" once a test has run; None when not running."""
        logic = self.logic
        if logic is None or not self.running:
            return None
        out: dict[str, str | bool] = {"blocked": logic.blocked(self.ctx.clock.monotonic())}
        if logic.self_test is not None and logic.self_test.result is not None:
            out["self_test"] = logic.self_test.result
        return out

    def bad_input(self) -> dict[str, int]:
        """Beam breaks too short to be a person (edge/drivers/base.py `Counting`)."""
        return {"glitches": 0 if self.logic is None else self.logic.glitches}

    def describe(self) -> dict[str, Any]:
        out = super().describe()
        out["directional"] = self.params.inner_pin is not None
        out["supervision"] = "none" if self.params.supervision_pin is None else "loopback"
        out["last"] = None if self._run is None else self._run.last_values
        if self.logic is not None:
            entries, exits, turned_back = self.logic.totals
            beams = len(self.pins) - (self.params.supervision_pin is not None)
            out.update(broken=[self.logic.broken(line) for line in range(beams)],
                       entries=entries, glitches=self.logic.glitches)
            if self.params.supervision_pin is not None:
                out.update(cable_whole=self.logic.cable_whole, faults=self.logic.faults)
            if self.params.inner_pin is not None:
                out.update(exits=exits, turned_back=turned_back)
            out["blocked"] = self.logic.blocked(self.ctx.clock.monotonic())
            test = self.logic.self_test
            if test is not None:
                out.update(self_test=test.result, self_tests=test.tests,
                           self_test_failures=test.failures,
                           self_test_failed_beams=list(test.failed_beams))
        return out


def build(sensor_id: str, params: DoorCounterParams, ctx: DriverContext) -> DoorCounterDriver:
    return DoorCounterDriver(sensor_id, params, ctx)
