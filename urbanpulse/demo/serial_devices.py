"""The live air sensors: firmware_bridge SDS011 emulators on pseudo-terminals, reporting
what the simulation says the sensor reads now.

Each emulator sits behind a stable link in the demo directory (like a
/dev/serial/by-id/ name), so the agent's config names a port that survives an unplug.
While the simulation says the sensor sends nothing (a `silence` or `cut_cable` fault),
the adapter is unplugged; it is plugged back when the sensor speaks again, and the agent
reopens the port.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from firmware_bridge.protocols.sds011.emulator import Sds011Emulator
from urbanpulse.simulate import SimClock, Simulation
from urbanpulse.simulate.air import AirSensorModel


class PmFeed:
    """The emulator's value callable: PM2.5/PM10 at the simulation clock's offset (the
    last values while the sensor is silent, until the runner unplugs it).

    Asked once per frame, every `period_s`: the spikes fault's false samples are drawn
    for that sampling period (`AirSensorModel.values`), so that the frames carry about
    `rate_per_h` of them an hour, as the lightweight readings do. Drawn for 1 s (the
    simulator's `SerialSource`) and sampled every 2 s, they were half that."""

    def __init__(self, model: AirSensorModel, clock: SimClock, period_s: float) -> None:
        self.model = model
        self.clock = clock
        self.period_s = period_s
        self.last = self.pm(clock.offset()) or (0.0, 0.0)

    def pm(self, t: float) -> tuple[float, float] | None:
        """(pm25, pm10) at offset t, or None while the sensor sends nothing."""
        times = np.array([float(t)])
        if self.model.silent(times)[0]:
            return None
        values = self.model.values(times, self.period_s)
        return float(values["pm25"][0]), float(values["pm10"][0])

    def __call__(self) -> tuple[float, float]:
        pm = self.pm(self.clock.offset())
        if pm is not None:
            self.last = pm
        return self.last

    def speaking(self) -> bool:
        return not self.model.silent(np.array([self.clock.offset()]))[0]


def pm_feed(sim: Simulation, site: str, node: str, sensor: str, clock: SimClock,
            period_s: float) -> PmFeed:
    sim.serial_source(site, node, sensor)  # refuses a sensor that is not a serial air one
    model = sim.output(site, node, sensor)
    assert isinstance(model, AirSensorModel)
    return PmFeed(model, clock, period_s)


class SerialDevice:
    def __init__(self, sensor: str, feed: PmFeed, emulator: Sds011Emulator) -> None:
        self.sensor = sensor
        self.feed = feed
        self.emulator = emulator
        self.plugged = True
        self.unplugs = 0

    def follow(self) -> None:
        """Unplug or replug to match the simulation; called by the runner's loop."""
        speaking = self.feed.speaking()
        if speaking and not self.plugged:
            self.emulator.replug()
            self.plugged = True
        elif not speaking and self.plugged:
            self.emulator.unplug()
            self.plugged = False
            self.unplugs += 1

    def stop(self) -> None:
        self.emulator.stop()


def start_sds011(sensor: str, feed: PmFeed, link: Path) -> SerialDevice:
    """An SDS011 already warm (no 30 s of zeros: the demo's devices were powered on
    before it started), reporting every `period_s`, behind the link `link`."""
    link.parent.mkdir(parents=True, exist_ok=True)
    link.unlink(missing_ok=True)
    emulator = Sds011Emulator(feed, period_s=feed.period_s, warmup_s=0.0, link_path=str(link))
    emulator.start()
    return SerialDevice(sensor, feed, emulator)
