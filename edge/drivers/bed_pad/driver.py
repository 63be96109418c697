"""bed_pad: a bed-exit pad's dry contact on GPIO, optionally supervised against a cut
cable. Emits a `hospital.bed` reading at start-up, on every change of the reported state,
and as a heartbeat every `heartbeat_s` without a change."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from edge.drivers.base import DriverContext, Emit, Sample
from edge.drivers.bed_pad.logic import BedPadLogic, BedState, Supervision
from edge.gpio.params import Fields, InputWiring
from edge.gpio.runtime import GpioDriver, RawEdge

KIND = "hospital.bed"
SUPERVISIONS = ("none", "loopback", "changeover")
# Allowance for a changeover contact's travel between its sides (tens of milliseconds).
CHANGEOVER_TRANSIT_S = 0.1


@dataclass(frozen=True, slots=True)
class BedPadParams:
    pin: int
    wiring: InputWiring = field(default_factory=InputWiring)
    occupied_when_closed: bool = True
    supervision: Supervision = "none"
    supervision_pin: int | None = None
    exit_tolerance_s: float = 10.0
    debounce_s: float = 0.05
    fault_delay_s: float = 1.0
    heartbeat_s: float = 60.0
    # Getting into bed loads a pad for seconds; a shorter load is a false pulse.
    min_pulse_s: float = 0.5

    @property
    def pins(self) -> tuple[int, ...]:
        if self.supervision_pin is None:
            return (self.pin,)
        return (self.pin, self.supervision_pin)


def parse_params(raw: Mapping[str, Any], key: str) -> BedPadParams:
    f = Fields(raw, key)
    pin = f.pin("pin")
    chosen = f.choice("supervision", SUPERVISIONS, "none")
    supervision: Supervision = (
        "loopback" if chosen == "loopback" else "changeover" if chosen == "changeover"
        else "none")
    supervision_pin = f.optional_pin("supervision_pin")
    if supervision == "none":
        for name in ("supervision_pin", "fault_delay_s"):
            if f.has(name):
                raise f.error(name, "only used with supervision = \"loopback\" or "
                              "\"changeover\"")
    elif supervision_pin is None:
        raise f.error("supervision_pin", f"required with supervision = \"{supervision}\"")
    f.distinct_pins({"pin": pin, "supervision_pin": supervision_pin})
    wiring = f.wiring({"pin": pin, "supervision_pin": supervision_pin})
    occupied_when = f.choice("occupied_when", ("closed", "open"), "closed")
    params = BedPadParams(
        pin=pin,
        wiring=wiring,
        occupied_when_closed=occupied_when == "closed",
        supervision=supervision,
        supervision_pin=supervision_pin,
        exit_tolerance_s=f.number("exit_tolerance_s", 10.0, 0.0, 3600.0),
        debounce_s=f.number("debounce_s", 0.05, 0.0, 1.0),
        fault_delay_s=f.number("fault_delay_s", 1.0, 0.0, 60.0),
        heartbeat_s=f.number("heartbeat_s", 60.0, 0.1, 3600.0),
        min_pulse_s=f.number("min_pulse_s", 0.5, 0.0, 10.0),
    )
    f.finish()
    # At every entry the free side opens while the pad side's load is still held back as
    # a possible glitch: both read open for min_pulse_s (plus debounce and the contact's
    # travel), which is what a cut conductor looks like.
    both_open_s = params.min_pulse_s + params.debounce_s + CHANGEOVER_TRANSIT_S
    if supervision == "changeover" and params.fault_delay_s <= both_open_s:
        raise f.error("fault_delay_s", f"must be above min_pulse_s + debounce_s + "
                      f"{CHANGEOVER_TRANSIT_S:g} s ({both_open_s:g}) with supervision = "
                      "\"changeover\": both sides read open that long at every entry")
    return params


class _BedRun:
    def __init__(self, driver: BedPadDriver, levels: list[bool], now: float,
                 emit: Emit) -> None:
        params = driver.params
        self.driver = driver
        self.emit = emit
        self.logic = BedPadLogic(
            exit_tolerance_s=params.exit_tolerance_s, bounce_s=params.debounce_s,
            levels=levels, t0=now, supervision=params.supervision,
            fault_delay_s=params.fault_delay_s,
            occupied_when_closed=params.occupied_when_closed,
            min_pulse_s=params.min_pulse_s)
        self._glitches_sent = 0
        self.next_heartbeat = now
        self._send(self.logic.state, now)

    def _send(self, state: BedState, now: float) -> None:
        driver = self.driver
        driver.last_state = state
        values = state.values()
        glitches = self.logic.glitches - self._glitches_sent
        if glitches:
            values["glitches"] = glitches
            self._glitches_sent += glitches
        self.emit(Sample(driver.sensor_id, KIND, values, driver.ctx.clock.now()))
        self.next_heartbeat = now + driver.params.heartbeat_s

    async def on_edge(self, edge: RawEdge) -> None:
        for state in self.logic.feed(edge.line, edge.level, edge.t):
            self._send(state, self.driver.ctx.clock.monotonic())

    def deadline(self) -> float | None:
        due = self.logic.next_deadline()
        return self.next_heartbeat if due is None else min(due, self.next_heartbeat)

    async def on_time(self, now: float) -> None:
        changes = self.logic.poll(now)
        for state in changes:
            self._send(state, now)
        if not changes and now >= self.next_heartbeat:
            self._send(self.logic.state, now)

    def settling(self) -> float | None:
        """None: a state, not a count; the next run reads the pad afresh and sends it."""
        return None

    def on_stop(self, now: float) -> None:
        """Nothing held: every change of state was sent when it was decided."""


class BedPadDriver(GpioDriver):
    driver_name = "bed_pad"

    def __init__(self, sensor_id: str, params: BedPadParams, ctx: DriverContext) -> None:
        super().__init__(sensor_id, params.pins, params.wiring, ctx)
        self.params = params
        self.last_state: BedState | None = None
        self._run: _BedRun | None = None

    async def start(self, levels: list[bool], now: float, emit: Emit) -> _BedRun:
        self._run = _BedRun(self, levels, now, emit)
        return self._run

    def bad_input(self) -> dict[str, int]:
        """Pad loads too short to be a patient (edge/drivers/base.py `Counting`)."""
        run = self._run
        return {"glitches": 0 if run is None else run.logic.glitches}

    def describe(self) -> dict[str, Any]:
        out = super().describe()
        out["supervision"] = self.params.supervision
        if self.last_state is not None:
            out["occupied"] = self.last_state.occupied
            out["fault"] = self.last_state.fault
        if self._run is not None:
            logic = self._run.logic
            out.update(contacts=[logic.closed(line) for line in range(len(self.pins))],
                       exits=logic.exits, faults=logic.faults, glitches=logic.glitches)
        return out


def build(sensor_id: str, params: BedPadParams, ctx: DriverContext) -> BedPadDriver:
    return BedPadDriver(sensor_id, params, ctx)
