"""queue_kiosk: a ticket kiosk's "ticket printed" output and the counters' "call next"
buttons on GPIO. Emits a `hospital.queue` reading per ticket issued (called = 0) and per
ticket called (called = 1, with the counter), stamped with the pulse's leading edge."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from edge.drivers.base import DriverContext, Emit, Sample
from edge.drivers.queue_kiosk import store
from edge.drivers.queue_kiosk.logic import QueueEvent, QueueKiosk, TicketState
from edge.gpio.params import Fields, InputWiring
from edge.gpio.runtime import GpioDriver, RawEdge
from edge.gpio.timing import wall_time_at

KIND = "hospital.queue"
MAX_COUNTER = 1000  # the contract's bound on `counter`


@dataclass(frozen=True, slots=True)
class QueueKioskParams:
    issue_pin: int
    call_pins: tuple[int, ...]
    counters: tuple[int, ...]
    wiring: InputWiring = field(default_factory=InputWiring)
    debounce_s: float = 0.03

    @property
    def pins(self) -> tuple[int, ...]:
        return (self.issue_pin, *self.call_pins)


def parse_params(raw: Mapping[str, Any], key: str) -> QueueKioskParams:
    f = Fields(raw, key)
    issue_pin = f.pin("issue_pin")
    call_pins = f.pin_list("call_pins")
    named: dict[str, int | None] = {"issue_pin": issue_pin}
    named.update({f"call_pins[{i}]": pin for i, pin in enumerate(call_pins)})
    f.distinct_pins(named)
    counters = f.integer_list("counter_numbers", 0, MAX_COUNTER)
    if counters is None:
        counters = tuple(range(1, len(call_pins) + 1))
    elif len(counters) != len(call_pins):
        raise f.error("counter_numbers", f"must have one number per call pin "
                      f"({len(call_pins)}), got {len(counters)}")
    elif len(set(counters)) != len(counters):
        raise f.error("counter_numbers", "must not repeat a counter")
    params = QueueKioskParams(issue_pin=issue_pin, call_pins=call_pins, counters=counters,
                              wiring=f.wiring(),
                              debounce_s=f.number("debounce_s", 0.03, 0.0, 0.5))
    f.finish()
    return params


class _KioskRun:
    def __init__(self, driver: QueueKioskDriver, logic: QueueKiosk, emit: Emit) -> None:
        self.driver = driver
        self.logic = logic
        self.emit = emit

    async def on_edge(self, edge: RawEdge) -> None:
        await self._publish(self.logic.feed(edge.line, edge.level, edge.t))

    def deadline(self) -> float | None:
        return self.logic.next_deadline()

    async def on_time(self, now: float) -> None:
        await self._publish(self.logic.poll(now))

    async def _publish(self, events: list[QueueEvent]) -> None:
        if not events:
            return
        # Staged, then emitted with no await in between: one commit holds both.
        keeper = self.driver.ctx.state
        if keeper is not None:
            keeper.stage(store.state_key(self.driver.sensor_id), store.encode(self.logic.state))
        clock = self.driver.ctx.clock
        for event in events:
            self.emit(Sample(self.driver.sensor_id, KIND, event.values(),
                             wall_time_at(clock, event.t)))


class QueueKioskDriver(GpioDriver):
    driver_name = "queue_kiosk"

    def __init__(self, sensor_id: str, params: QueueKioskParams, ctx: DriverContext) -> None:
        super().__init__(sensor_id, params.pins, params.wiring, ctx)
        self.params = params
        self.logic: QueueKiosk | None = None

    async def _saved_state(self) -> TicketState | None:
        keeper, key = self.ctx.state, store.state_key(self.sensor_id)
        text = None if keeper is None else keeper.load(key)
        if text is not None:
            return store.decode(text, repr(key))
        if keeper is not None and self.ctx.state_dir is not None:  # a node set up before
            return await asyncio.to_thread(store.load_legacy_file,
                                           store.legacy_path(self.ctx.state_dir, self.sensor_id))
        return None

    async def start(self, levels: list[bool], now: float, emit: Emit) -> _KioskRun:
        state = await self._saved_state()
        self.logic = QueueKiosk(counters=self.params.counters, bounce_s=self.params.debounce_s,
                                levels=levels, t0=now, state=state)
        return _KioskRun(self, self.logic, emit)

    def describe(self) -> dict[str, Any]:
        out = super().describe()
        out["persisted"] = self.ctx.state is not None
        if self.logic is not None:
            state = self.logic.state
            out.update(signals=[self.logic.level(line) for line in range(len(self.pins))],
                       issued=state.issued, called=state.called, waiting=state.waiting,
                       empty_calls=self.logic.empty_calls, glitches=self.logic.glitches)
        return out


def build(sensor_id: str, params: QueueKioskParams, ctx: DriverContext) -> QueueKioskDriver:
    return QueueKioskDriver(sensor_id, params, ctx)
