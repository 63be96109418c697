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

from firmware_bridge.protocols.sds011.emulator import Sds011Emulator
from urbanpulse.simulate import SerialSource, SimClock


class PmFeed:
    """The emulator's value callable: PM2.5/PM10 at the simulation clock's offset (the
    last values while the sensor is silent, until the runner unplugs it)."""

    def __init__(self, source: SerialSource, clock: SimClock) -> None:
        self.source = source
        self.clock = clock
        self.last = source.pm(clock.offset()) or (0.0, 0.0)

    def __call__(self) -> tuple[float, float]:
        pm = self.source.pm(self.clock.offset())
        if pm is not None:
            self.last = pm
        return self.last

    def speaking(self) -> bool:
        return self.source(self.clock.offset()) is not None


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


def start_sds011(sensor: str, source: SerialSource, clock: SimClock, link: Path,
                 period_s: float) -> SerialDevice:
    """An SDS011 already warm (no 30 s of zeros: the demo's devices were powered on
    before it started), reporting every `period_s`, behind the link `link`."""
    link.parent.mkdir(parents=True, exist_ok=True)
    link.unlink(missing_ok=True)
    feed = PmFeed(source, clock)
    emulator = Sds011Emulator(feed, period_s=period_s, warmup_s=0.0, link_path=str(link))
    emulator.start()
    return SerialDevice(sensor, feed, emulator)
