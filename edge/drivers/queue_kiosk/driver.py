"""queue_kiosk: a ticket kiosk's "ticket printed" output and the counters' "call next"
buttons on GPIO. Emits a `hospital.queue` reading per ticket issued (called = 0) and per
ticket called (called = 1, with the counter), stamped with the pulse's leading edge.
Optionally supervised (a loopback pair in the cable, the kiosk's "in service" output):
reported in the node's heartbeat (`supervision()`), not in readings."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any
from zoneinfo import ZoneInfo

from edge.drivers.base import DriverContext, Emit, Sample
from edge.drivers.queue_kiosk import store
from edge.drivers.queue_kiosk.logic import QueueEvent, QueueKiosk, TicketState
from edge.drivers.queue_kiosk.service_hours import ServiceHours, parse_service_hours
from edge.drivers.queue_kiosk.supervision import CABLE, READY, KioskSupervision
from edge.gpio.params import Fields, InputWiring
from edge.gpio.runtime import GpioDriver, RawEdge
from edge.gpio.timing import wall_time_at

KIND = "hospital.queue"
MAX_COUNTER = 1000  # the contract's bound on `counter`
SUPERVISIONS = ("none", "loopback")
HOURS, CLOSED = "hours", "closed"  # the report's entry outside `ready_hours`


@dataclass(frozen=True, slots=True)
class QueueKioskParams:
    issue_pin: int
    call_pins: tuple[int, ...]
    counters: tuple[int, ...]
    wiring: InputWiring = field(default_factory=InputWiring)
    debounce_s: float = 0.03
    supervision_pin: int | None = None  # the cable's loopback pair; None: unsupervised
    ready_pin: int | None = None  # the kiosk's "in service" output; None: not read
    fault_delay_s: float = 1.0
    ready_hours: ServiceHours | None = None  # when the ready line is judged; None: always

    @property
    def supervision_lines(self) -> tuple[str, ...]:
        """The supervision lines wired, in pin order after the call pins."""
        return tuple(name for name, pin in ((CABLE, self.supervision_pin),
                                            (READY, self.ready_pin)) if pin is not None)

    @property
    def pins(self) -> tuple[int, ...]:
        extra = tuple(p for p in (self.supervision_pin, self.ready_pin) if p is not None)
        return (self.issue_pin, *self.call_pins, *extra)

    @property
    def whole_level(self) -> bool:
        """The level (after active_state) the loopback line reads while the cable is
        whole: the pair ties the pin to the rail opposite its pull (as door_counter)."""
        tied_high = self.wiring.pull == "down"
        return tied_high == self.wiring.active_high


def parse_params(raw: Mapping[str, Any], key: str) -> QueueKioskParams:
    f = Fields(raw, key)
    issue_pin = f.pin("issue_pin")
    call_pins = f.pin_list("call_pins")
    named: dict[str, int | None] = {"issue_pin": issue_pin}
    named.update({f"call_pins[{i}]": pin for i, pin in enumerate(call_pins)})
    supervised = f.choice("supervision", SUPERVISIONS, "none") == "loopback"
    supervision_pin = f.optional_pin("supervision_pin")
    ready_pin = f.optional_pin("ready_pin")
    if not supervised and f.has("supervision_pin"):
        raise f.error("supervision_pin", "only used with supervision = \"loopback\"")
    if supervised and supervision_pin is None:
        raise f.error("supervision_pin", "required with supervision = \"loopback\"")
    if not supervised and ready_pin is None and f.has("fault_delay_s"):
        raise f.error("fault_delay_s", "only used with supervision or a ready_pin")
    named.update(supervision_pin=supervision_pin, ready_pin=ready_pin)
    ready_hours = None
    if f.has("ready_hours") or f.has("timezone") or f.has("ready_closed"):
        if ready_pin is None:
            name = next(n for n in ("ready_hours", "timezone", "ready_closed") if f.has(n))
            raise f.error(name, "only used with a ready_pin")
        ready_hours = parse_service_hours(f.value("ready_hours"), f.value("ready_closed"),
                                          f.value("timezone"), key)
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
                              wiring=f.wiring(named),
                              debounce_s=f.number("debounce_s", 0.03, 0.0, 0.5),
                              supervision_pin=supervision_pin, ready_pin=ready_pin,
                              fault_delay_s=f.number("fault_delay_s", 1.0, 0.0, 60.0),
                              ready_hours=ready_hours)
    f.finish()
    return params


class _KioskRun:
    def __init__(self, driver: QueueKioskDriver, logic: QueueKiosk,
                 supervision: KioskSupervision | None, emit: Emit) -> None:
        self.driver = driver
        self.logic = logic
        self.supervision = supervision
        self.first_supervised = 1 + len(logic.counters)  # the lines after the call pins
        self.emit = emit

    async def on_edge(self, edge: RawEdge) -> None:
        if edge.line >= self.first_supervised and self.supervision is not None:
            self.supervision.feed(self.supervision.lines[edge.line - self.first_supervised],
                                  edge.level, edge.t)
            return
        await self._publish(self.logic.feed(edge.line, edge.level, edge.t))

    def deadline(self) -> float | None:
        due = [d for d in (self.logic.next_deadline(),
                           None if self.supervision is None else self.supervision.next_deadline())
               if d is not None]
        return min(due) if due else None

    async def on_time(self, now: float) -> None:
        if self.supervision is not None:
            self.supervision.poll(now)
        await self._publish(self.logic.poll(now))

    def settling(self) -> float | None:
        """When the pulses under way are decided (not the supervision lines')."""
        return self.logic.next_deadline()

    def on_stop(self, now: float) -> None:
        """Nothing held: every ticket was sent when its pulse was decided (a pulse under
        way at the stop too: the run settles it first)."""

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
        self.supervised: KioskSupervision | None = None
        self._zone: ZoneInfo | None = None

    async def _saved_state(self) -> TicketState | None:
        keeper, key = self.ctx.state, store.state_key(self.sensor_id)
        text = None if keeper is None else keeper.load(key)
        if text is not None:
            return store.decode_saved(text, key)
        if keeper is not None and self.ctx.state_dir is not None:  # a node set up before
            return await asyncio.to_thread(store.load_legacy_file,
                                           store.legacy_path(self.ctx.state_dir, self.sensor_id))
        return None

    async def start(self, levels: list[bool], now: float, emit: Emit) -> _KioskRun:
        params = self.params
        if params.ready_hours is not None:
            self._zone = await asyncio.to_thread(params.ready_hours.zone)
        state = await self._saved_state()
        first = 1 + len(params.counters)
        self.logic = QueueKiosk(counters=params.counters, bounce_s=params.debounce_s,
                                levels=levels[:first], t0=now, state=state)
        lines = params.supervision_lines
        self.supervised = KioskSupervision(
            lines=lines, levels=tuple(levels[first:]), t0=now, bounce_s=params.debounce_s,
            delay_s=params.fault_delay_s, whole_level=params.whole_level) if lines else None
        return _KioskRun(self, self.logic, self.supervised, emit)

    def supervision(self) -> dict[str, str | bool] | None:
        """For the node's heartbeat: {"cable": "ok" | "cut", "ready": bool}, the lines
        wired only; outside `ready_hours` "hours": "closed" instead of "ready"; None when
        unsupervised or not running."""
        if self.supervised is None or not self.running:
            return None
        report = self.supervised.report(self.ctx.clock.monotonic())
        hours, zone = self.params.ready_hours, self._zone
        if hours is None or zone is None:
            return report
        now = self.ctx.clock.now()
        if not hours.covers(now.astimezone(zone)):
            # Switched off on purpose, maybe: the line says nothing. Said, not just left
            # out: a ready-only kiosk's empty report would drop its entry from the
            # heartbeat, and the cloud would keep a dead-kiosk episode open overnight.
            report.pop(READY, None)
            report[HOURS] = CLOSED
        elif report.get(READY) is False and not hours.covers(
                (now - timedelta(seconds=self.params.fault_delay_s)).astimezone(zone)):
            # Off since before the hours began: like any out-of-service state it counts
            # once it has lasted fault_delay_s, within the hours (a kiosk switched on as
            # they begin is still starting). Both ends covered is enough: spans are whole
            # minutes apart and the delay at most 60 s.
            report[READY] = True
        return report

    def bad_input(self) -> dict[str, int]:
        """Pulses that settled back within the debounce time, and calls with nobody waiting
        (ignored) (edge/drivers/base.py `Counting`)."""
        logic = self.logic
        if logic is None:
            return {"glitches": 0, "empty_calls": 0}
        return {"glitches": logic.glitches, "empty_calls": logic.empty_calls}

    def describe(self) -> dict[str, Any]:
        out = super().describe()
        out["persisted"] = self.ctx.state is not None
        if self.logic is not None:
            state = self.logic.state
            lines = 1 + len(self.params.counters)
            out.update(signals=[self.logic.level(line) for line in range(lines)],
                       issued=state.issued, called=state.called, waiting=state.waiting,
                       empty_calls=self.logic.empty_calls, glitches=self.logic.glitches)
        if self.params.supervision_lines:
            out["supervision"] = self.supervision()
        return out


def build(sensor_id: str, params: QueueKioskParams, ctx: DriverContext) -> QueueKioskDriver:
    return QueueKioskDriver(sensor_id, params, ctx)
