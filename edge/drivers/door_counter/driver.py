"""door_counter: a light-beam (or contact) door counter on GPIO, one beam or two for
direction, optionally supervised against a cut cable. Emits one `hospital.door` reading
(people entering) per interval, stamped with the interval's end."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from edge.drivers.base import DriverContext, Emit
from edge.drivers.door_counter.logic import DoorCounter
from edge.gpio.intervals import IntervalReactor
from edge.gpio.params import Fields, InputWiring
from edge.gpio.runtime import GpioDriver

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
    f.distinct_pins({"pin": pin, "inner_pin": inner_pin, "supervision_pin": supervision_pin})
    params = DoorCounterParams(
        pin=pin,
        inner_pin=inner_pin,
        wiring=f.wiring(),
        interval_s=f.number("interval_s", 60.0, 0.1, 3600.0),
        debounce_s=f.number("debounce_s", 0.03, 0.0, 0.5),
        min_pulse_s=f.number("min_pulse_s", 0.1, 0.0, 1.0),
        supervision_pin=supervision_pin,
        fault_delay_s=f.number("fault_delay_s", 1.0, 0.0, 60.0),
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

    async def start(self, levels: list[bool], now: float, emit: Emit) -> IntervalReactor:
        params = self.params
        self.logic = DoorCounter(bounce_s=params.debounce_s, levels=levels, t0=now,
                                 min_pulse_s=params.min_pulse_s,
                                 supervised=params.supervision_pin is not None,
                                 whole_level=params.whole_level,
                                 fault_delay_s=params.fault_delay_s)
        self._run = IntervalReactor(self.logic, sensor_id=self.sensor_id, kind=KIND,
                                    interval_s=self.params.interval_s, clock=self.ctx.clock,
                                    now=now, emit=emit)
        return self._run

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
        return out


def build(sensor_id: str, params: DoorCounterParams, ctx: DriverContext) -> DoorCounterDriver:
    return DoorCounterDriver(sensor_id, params, ctx)
