"""queue_kiosk: a ticket kiosk's "ticket printed" output and the counters' "call next"
buttons on GPIO. Emits a `hospital.queue` reading per ticket issued (called = 0) and per
ticket called (called = 1, with the counter), stamped with the pulse's leading edge."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edge.drivers.base import DriverContext, Emit, Sample
from edge.drivers.queue_kiosk.logic import QueueEvent, QueueKiosk
from edge.drivers.queue_kiosk.store import TicketStore
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
    def __init__(self, driver: QueueKioskDriver, logic: QueueKiosk, store: TicketStore | None,
                 emit: Emit) -> None:
        self.driver = driver
        self.logic = logic
        self.store = store
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
        # saved before emitting: a crash in between skips numbers rather than reusing them
        if self.store is not None:
            await asyncio.to_thread(self.store.save, self.logic.state)
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

    @property
    def state_path(self) -> Path | None:
        if self.ctx.state_dir is None:
            return None
        return self.ctx.state_dir / "queue_kiosk" / f"{self.sensor_id}.json"

    async def start(self, levels: list[bool], now: float, emit: Emit) -> _KioskRun:
        path = self.state_path
        store = None if path is None else TicketStore(path)
        state = None if store is None else await asyncio.to_thread(store.load)
        self.logic = QueueKiosk(counters=self.params.counters, bounce_s=self.params.debounce_s,
                                levels=levels, t0=now, state=state)
        return _KioskRun(self, self.logic, store, emit)

    def describe(self) -> dict[str, Any]:
        out = super().describe()
        out["persisted"] = self.ctx.state_dir is not None
        if self.logic is not None:
            state = self.logic.state
            out.update(signals=[self.logic.level(line) for line in range(len(self.pins))],
                       issued=state.issued, called=state.called, waiting=state.waiting,
                       empty_calls=self.logic.empty_calls, glitches=self.logic.glitches)
        return out


def build(sensor_id: str, params: QueueKioskParams, ctx: DriverContext) -> QueueKioskDriver:
    return QueueKioskDriver(sensor_id, params, ctx)
