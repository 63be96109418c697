"""traffic_loop: an inductive-loop detector card's output on GPIO (one lane), optionally
with a second, downstream loop for speed and vehicle length. Emits one `traffic.loop`
reading per interval, stamped with the interval's end."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from edge.drivers.base import DriverContext, Emit
from edge.drivers.traffic_loop.logic import (
    MAX_LENGTH_M,
    MAX_SPEED_KMH,
    MIN_SPEED_KMH,
    LoopPair,
    Mode,
    TrafficLoopLogic,
)
from edge.gpio.intervals import IntervalReactor
from edge.gpio.params import Fields, InputWiring
from edge.gpio.runtime import GpioDriver

KIND = "traffic.loop"
MAX_PULSE_DEBOUNCE_S = 0.05  # half the shortest pulse (100 ms) of a pulse-output card
# Shortest real detection: a 1.2 m motorbike over a 2 m loop at 115 km/h lasts 0.1 s.
# A pulse card's own pulses last 100-250 ms, so below that for "pulse" outputs.
MIN_PULSE_S = {"presence": 0.1, "pulse": 0.05}


@dataclass(frozen=True, slots=True)
class TrafficLoopParams:
    pin: int
    output: Mode = "presence"
    wiring: InputWiring = field(default_factory=InputWiring)
    interval_s: float = 60.0
    debounce_s: float = 0.02
    min_pulse_s: float = MIN_PULSE_S["presence"]
    downstream_pin: int | None = None
    pair: LoopPair | None = None

    @property
    def pins(self) -> tuple[int, ...]:
        if self.downstream_pin is None:
            return (self.pin,)
        return (self.pin, self.downstream_pin)


def parse_params(raw: Mapping[str, Any], key: str) -> TrafficLoopParams:
    f = Fields(raw, key)
    pin = f.pin("pin")
    downstream_pin = f.optional_pin("downstream_pin")
    f.distinct_pins({"pin": pin, "downstream_pin": downstream_pin})
    output: Mode = "pulse" if f.choice("output", ("presence", "pulse"), "presence") == "pulse" \
        else "presence"
    wiring = f.wiring({"pin": pin, "downstream_pin": downstream_pin})
    interval_s = f.interval("interval_s", 60.0, 0.1, 3600.0)
    debounce_s = f.number("debounce_s", 0.02, 0.0, 0.5)
    if output == "pulse" and debounce_s > MAX_PULSE_DEBOUNCE_S:
        raise f.error("debounce_s", f"must be <= {MAX_PULSE_DEBOUNCE_S} with output = "
                      "\"pulse\" (pulses last 100-250 ms)")
    min_pulse_s = f.number("min_pulse_s", MIN_PULSE_S[output], 0.0, 1.0)
    if output == "pulse" and min_pulse_s >= 0.1:
        raise f.error("min_pulse_s", "must be below 0.1 with output = \"pulse\" (pulses "
                      "last 100-250 ms)")
    distance = f.optional_number("loop_distance_m", 0.0, 100.0, low_inclusive=False)
    loop_length = f.optional_number("loop_length_m", 0.0, MAX_LENGTH_M, low_inclusive=False)
    min_speed = f.optional_number("min_speed_kmh", 0.0, MAX_SPEED_KMH, low_inclusive=False)
    max_speed = f.optional_number("max_speed_kmh", 0.0, MAX_SPEED_KMH, low_inclusive=False)
    pair = None
    if downstream_pin is None:
        for name in ("loop_distance_m", "loop_length_m", "min_speed_kmh", "max_speed_kmh"):
            if f.has(name):
                raise f.error(name, "only used with a loop pair (set downstream_pin)")
    else:
        if distance is None:
            raise f.error("loop_distance_m", "required with downstream_pin (metres between "
                          "the two loops' leading edges)")
        if loop_length is not None and output == "pulse":
            raise f.error("loop_length_m", "vehicle length needs presence output (a pulse "
                          "carries no on-time)")
        low = MIN_SPEED_KMH[output] if min_speed is None else min_speed
        high = 200.0 if max_speed is None else max_speed
        if low >= high:
            raise f.error("min_speed_kmh", f"must be below max_speed_kmh ({high:g})")
        pair = LoopPair(distance_m=distance, loop_length_m=loop_length,
                        min_speed_kmh=low, max_speed_kmh=high)
    f.finish()
    return TrafficLoopParams(pin=pin, output=output, wiring=wiring, interval_s=interval_s,
                             debounce_s=debounce_s, min_pulse_s=min_pulse_s,
                             downstream_pin=downstream_pin, pair=pair)


class TrafficLoopDriver(GpioDriver):
    driver_name = "traffic_loop"

    def __init__(self, sensor_id: str, params: TrafficLoopParams, ctx: DriverContext) -> None:
        super().__init__(sensor_id, params.pins, params.wiring, ctx)
        self.params = params
        self.logic: TrafficLoopLogic | None = None
        self._run: IntervalReactor | None = None

    async def start(self, levels: list[bool], now: float, emit: Emit) -> IntervalReactor:
        params = self.params
        self.logic = TrafficLoopLogic(mode=params.output, bounce_s=params.debounce_s,
                                      levels=levels, t0=now, pair=params.pair,
                                      min_pulse_s=params.min_pulse_s)
        self._run = IntervalReactor(self.logic, sensor_id=self.sensor_id, kind=KIND,
                                    interval_s=params.interval_s, clock=self.ctx.clock,
                                    now=now, emit=emit)
        return self._run

    def bad_input(self) -> dict[str, int]:
        """Pulses too short to be a vehicle and, with a loop pair, onsets no speed came of
        and lengths left out (edge/drivers/base.py `Counting`)."""
        logic = self.logic
        out = {"glitches": 0 if logic is None else logic.glitches}
        if self.params.pair is not None:
            totals = None if logic is None else logic.totals
            out.update(unmatched_upstream=0 if totals is None else totals.unmatched_upstream,
                       unmatched_downstream=0 if totals is None else totals.unmatched_downstream,
                       implausible_length=0 if totals is None else totals.implausible_length)
        return out

    def describe(self) -> dict[str, Any]:
        out = super().describe()
        out["output"] = self.params.output
        out["last"] = None if self._run is None else self._run.last_values
        logic = self.logic
        if logic is not None:
            totals = logic.totals
            levels = [logic.level(line) for line in range(len(self.pins))]
            out.update(on=levels[0], levels=levels, vehicles=totals.vehicles,
                       glitches=logic.glitches)
            if self.params.pair is not None:
                out.update(measured=totals.measured,
                           unmatched_upstream=totals.unmatched_upstream,
                           unmatched_downstream=totals.unmatched_downstream,
                           implausible_length=totals.implausible_length)
        return out


def build(sensor_id: str, params: TrafficLoopParams, ctx: DriverContext) -> TrafficLoopDriver:
    return TrafficLoopDriver(sensor_id, params, ctx)
