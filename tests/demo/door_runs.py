"""The demo's live door counter on the demo's own wiring, for the door tests: the live node
and agent config the demo picks (`choose_live`, `node_config`), its gpiozero mock pins
driven by its pin player from the simulation, and the real door_counter driver opened on
them."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from edge.config import parse_config
from edge.drivers.base import Driver, DriverContext, Sample
from edge.drivers.door_counter.driver import build
from urbanpulse.demo.live import choose_live, node_config
from urbanpulse.demo.runner import _wire_pins
from urbanpulse.simulate import City, Simulation
from urbanpulse.simulate.events import Event

AT = 300.0  # the demo's simulation starts this far back (runner.HISTORY_S)
MQTT = {"host": "127.0.0.1", "port": 8883, "ca_file": "/ca.pem",
        "password_file": "/node.password"}


async def until(predicate: Callable[[], bool], what: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        await asyncio.sleep(0.01)  # the poll's interval, under a deadline


@dataclass
class DemoDoor:
    city: City
    site: str
    node: str
    sensor: str
    start: datetime  # the simulation's start, AT before now

    @classmethod
    def pick(cls) -> DemoDoor:
        city = City.load()
        door = next(n for n in choose_live(city) if any(s.spec.driver == "door_counter"
                                                       for s in n.sensors))
        sensor = next(s for s in door.sensors if s.spec.driver == "door_counter")
        return cls(city, door.site, door.node, sensor.id, datetime.now(UTC) - timedelta(seconds=AT))

    @property
    def key(self) -> tuple[str, str, str]:
        return self.site, self.node, self.sensor

    def simulation(self, events: list[Event] | None = None) -> Simulation:
        return Simulation(self.city, seed=1, start=self.start, speed=1.0, events=events or [])

    def run(self, sim: Simulation, watch: Callable[[Driver, asyncio.Task[None], list[Sample]],
                                                   Awaitable[None]],
            **params: Any) -> tuple[Driver, Any, list[Sample]]:
        """The door's driver (its demo params, some replaced by `params`) on the demo's pins
        played from `sim`, until `watch` returns: (driver, its params, what it emitted)."""
        door = next(n for n in choose_live(self.city) if (n.site, n.node) == (self.site, self.node))
        clock = sim.clock(at_offset=AT)
        config = parse_config(node_config(door, MQTT, Path("/state"), {}))
        door_params = replace(next(s.params for s in config.sensors if s.id == self.sensor), **params)
        factories, player = _wire_pins(sim, clock, [door])
        factory = factories[door.key]
        driver = build(self.sensor, door_params, DriverContext(pin_factory=lambda: factory))
        samples: list[Sample] = []

        async def scenario() -> None:
            task = asyncio.create_task(driver.run(samples.append))
            try:
                await watch(driver, task, samples)
                if task.done():
                    task.result()
            finally:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task

        player.prime(clock.offset())
        player.start()
        try:
            asyncio.run(scenario())
        finally:
            player.stop()
            factory.close()
        return driver, door_params, samples
