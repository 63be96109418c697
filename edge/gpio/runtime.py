"""The part of a GPIO driver that touches gpiozero: open the pins on the context's pin
factory, carry their edges from gpiozero's callback threads onto the asyncio loop, and
run the driver's logic on edges and deadlines until cancelled.

Each edge is stamped with the context clock's monotonic time in the callback thread (as
close to the interrupt as Python gets) and handed over with `loop.call_soon_threadsafe`.
The driver loop waits for the next edge or the logic's next deadline, whichever is first,
always draining queued edges before acting on a deadline, so that a deadline never
decides on a level that an already-received edge contradicts.

The waits are real: deadlines are computed on the context clock's monotonic time and
slept through by the event loop, so a driver runs on SystemClock. The logic underneath
takes explicit timestamps and is tested on FakeClock.
"""

from __future__ import annotations

import asyncio
import contextlib
from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from edge.drivers.base import DriverContext, Emit
from edge.errors import DriverError
from edge.gpio.params import InputWiring


@contextlib.contextmanager
def opening_gpio(what: str) -> Iterator[None]:
    """Turn whatever gpiozero or its pin backend raises while `what` is opened into a
    DriverError that names it."""
    try:
        yield
    except Exception as exc:  # gpiozero's GPIOPinInUse, PinInvalidPin, backend errors
        raise DriverError(f"cannot open {what}: {type(exc).__name__}: {exc}") from exc


# The longest a stopping GPIO driver keeps its pins open to decide a change under way: a
# debounce (at most 0.5 s) twice and a minimum pulse length (at most 1 s); an input still
# chattering then is left undecided.
STOP_SETTLE_MAX_S = 2.5


@dataclass(frozen=True, slots=True)
class RawEdge:
    """A raw level change of input `line` (an index into the driver's pins) at
    monotonic time `t`; `level` is True when the signal is on (after active_state)."""

    line: int
    level: bool
    t: float


class PinInputs:
    """DigitalInputDevices for `pins`, opened by `open` and closed by `close`."""

    def __init__(self, pins: Sequence[int], wiring: InputWiring, ctx: DriverContext) -> None:
        self.pins = tuple(pins)
        self.wiring = wiring
        self._clock = ctx.clock
        self._devices: list[Any] = []
        self._queue: asyncio.Queue[RawEdge] = asyncio.Queue()
        self._invert = False

    def open(self, factory: Any, loop: asyncio.AbstractEventLoop) -> list[bool]:
        """Open every pin; returns their current levels (True = signal on)."""
        from gpiozero import DigitalInputDevice

        pull_up, active_state, self._invert = self.wiring.gpiozero_args()
        try:
            with opening_gpio(f"GPIO {self.pins}"):
                for line, pin in enumerate(self.pins):
                    device = DigitalInputDevice(pin, pull_up=pull_up, active_state=active_state,
                                                pin_factory=factory)
                    self._devices.append(device)
                    device.when_activated = self._callback(loop, line, True)
                    device.when_deactivated = self._callback(loop, line, False)
                return [bool(d.is_active) != self._invert for d in self._devices]
        except DriverError:
            self.close()
            raise

    def _callback(self, loop: asyncio.AbstractEventLoop, line: int, active: bool) -> Any:
        level = active != self._invert
        clock = self._clock
        queue = self._queue

        def changed() -> None:
            edge = RawEdge(line, level, clock.monotonic())
            # RuntimeError: the loop has closed, the driver is gone and so is the edge's use.
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(queue.put_nowait, edge)

        return changed

    def pending(self) -> bool:
        return not self._queue.empty()

    async def next_edge(self, until: float | None) -> RawEdge | None:
        """The next queued edge, waiting until monotonic time `until` (None: forever);
        None when the time is up first."""
        if not self._queue.empty():
            return self._queue.get_nowait()
        if until is None:
            return await self._queue.get()
        delay = until - self._clock.monotonic()
        if delay <= 0:
            return None
        try:
            async with asyncio.timeout(delay):
                return await self._queue.get()
        except TimeoutError:
            return None

    def drain(self) -> list[RawEdge]:
        """The edges queued and not yet taken (after `close`: no more will come)."""
        edges = []
        while not self._queue.empty():
            edges.append(self._queue.get_nowait())
        return edges

    def close(self) -> None:
        """Closes every pin; the first error, if any, raised once all were tried."""
        devices, self._devices = self._devices, []
        failed: Exception | None = None
        for device in devices:
            device.when_activated = None
            device.when_deactivated = None
            try:
                device.close()
            except Exception as exc:  # noqa: BLE001 - raised below, after the other pins
                failed = failed or exc
        if failed is not None:
            raise failed


class PinReactor(Protocol):
    """One run of a GPIO driver: its logic, fed with edges and woken at deadlines."""

    async def on_edge(self, edge: RawEdge) -> None: ...

    def deadline(self) -> float | None:
        """The monotonic time on_time must next run at; None: only edges matter."""
        ...

    async def on_time(self, now: float) -> None: ...

    def settling(self) -> float | None:
        """When a change under way (being debounced, or a pulse held for its minimum
        length) that a reading would come of is decided; None when none is. A stopping
        run keeps its pins open until then (at most STOP_SETTLE_MAX_S)."""
        ...

    def on_stop(self, now: float) -> None:
        """The run ends at `now` (cancelled, or failed): emit what would otherwise be lost
        with it (an interval driver's counts so far). No await: the agent commits what
        its cancelled drivers emitted."""
        ...


class GpioDriver(ABC):
    """Base of the GPIO drivers: opens the pins, then drives the reactor that the
    subclass's `start` builds from the pins' levels at start-up."""

    driver_name = "gpio"

    def __init__(self, sensor_id: str, pins: Sequence[int], wiring: InputWiring,
                 ctx: DriverContext) -> None:
        self.sensor_id = sensor_id
        self.ctx = ctx
        self.pins = tuple(pins)
        self.wiring = wiring
        self.running = False
        self.edges_seen = 0

    async def run(self, emit: Emit) -> None:
        if self.ctx.pin_factory is None:
            raise DriverError(f"{self.sensor_id}: no GPIO pin factory in the driver context")
        factory = self.ctx.pin_factory()
        inputs = PinInputs(self.pins, self.wiring, self.ctx)
        reactor: PinReactor | None = None
        try:
            levels = inputs.open(factory, asyncio.get_running_loop())
            reactor = await self.start(levels, self.ctx.clock.monotonic(), emit)
            self.running = True
            while True:
                edge = await inputs.next_edge(reactor.deadline())
                if edge is not None:
                    self.edges_seen += 1
                    await reactor.on_edge(edge)
                    if inputs.pending():
                        continue
                now = self.ctx.clock.monotonic()
                due = reactor.deadline()
                if due is not None and now >= due:
                    await reactor.on_time(now)
        except asyncio.CancelledError as cancelled:
            if reactor is not None:
                try:
                    await self._settle(inputs, reactor)
                except Exception as exc:
                    # Still a stop: another error in its place would have the agent restart
                    # the driver instead of ending it.
                    raise cancelled from exc
            raise
        finally:
            self.running = False
            try:
                inputs.close()
            finally:  # a pin failing to close still hands over what the run counted
                if reactor is not None:  # cancelled (the agent stops) or failed
                    for edge in inputs.drain():  # they came before the stop
                        self.edges_seen += 1
                        await reactor.on_edge(edge)
                    reactor.on_stop(self.ctx.clock.monotonic())

    async def _settle(self, inputs: PinInputs, reactor: PinReactor) -> None:
        """The run is stopping (cancelled): keep the pins open until the changes under way
        are decided, fed and polled as while running, so that a pulse begun just before
        the stop counts in the run's last readings. Closed at once, the run dropped it,
        and the next run, starting on the level the pulse left, never saw its onset: a
        vehicle, a person or a ticket lost at each stop or upgrade."""
        clock = self.ctx.clock
        limit = clock.monotonic() + STOP_SETTLE_MAX_S
        while (due := reactor.settling()) is not None and clock.monotonic() < limit:
            edge = await inputs.next_edge(min(due, limit))
            if edge is not None:
                self.edges_seen += 1
                await reactor.on_edge(edge)
                continue
            now = clock.monotonic()
            await reactor.on_time(now)
            if reactor.settling() == due <= now:
                return  # nothing the time decides: do not spin until the limit

    @abstractmethod
    async def start(self, levels: list[bool], now: float, emit: Emit) -> PinReactor:
        """Build this run's logic from the pins' levels (True = signal on) at `now`."""

    def describe(self) -> dict[str, Any]:
        return {
            "driver": self.driver_name,
            "pins": list(self.pins),
            "running": self.running,
            "edges": self.edges_seen,
        }
