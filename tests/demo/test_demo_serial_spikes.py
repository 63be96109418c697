"""The demo's live SDS011s carry the spikes fault's false samples at the rate the
lightweight readings do (`rate_per_h` an hour), although they send a frame every
SERIAL_PERIOD_S and the simulator decides spikes once per simulated second. The driver
emits every frame as a reading (active mode), so the frames' rate is the cloud's."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from urbanpulse.demo.live import SERIAL_PERIOD_S
from urbanpulse.demo.serial_devices import pm_feed
from urbanpulse.simulate import City, Simulation, make_event

H = 3600.0
HOURS = 10
RATE = 30.0  # the spikes fault's default: the lightweight readings' p is 0.25, not capped
SENSOR = ("hoan-kiem-lake", "aq-1", "sds011")
START = datetime(2026, 3, 1, 17, tzinfo=UTC)


class _At:
    """A simulation clock stopped at `t` (the feed asks only its offset)."""

    t = 0.0

    def offset(self) -> float:
        return self.t


def _spiked(faulty: float, clean: float) -> bool:
    return faulty > 3 * clean + 1  # the fault multiplies by 6; the noise is far smaller


def test_live_sds011_frames_carry_spikes_at_the_lightweight_rate() -> None:
    city = City.load()
    events = [make_event("spikes", *SENSOR, 0.0, HOURS * H, {"rate_per_h": RATE, "factor": 6.0},
                         "test")]
    faulty = Simulation(city, seed=3, start=START, events=events)
    clean = Simulation(city, seed=3, start=START)

    light: dict[int, float] = {}
    base: dict[int, float] = {}
    for sim, out in ((faulty, light), (clean, base)):
        for batch in sim.readings().run(HOURS * H):
            out.update({r.ts: r.values["pm25"] for r in batch.readings
                        if (batch.site, batch.node, r.sensor) == SENSOR})
    light_spikes = sum(_spiked(light[ts], base[ts]) for ts in light)
    assert light_spikes == pytest.approx(RATE * HOURS, rel=0.2)

    clock = _At()
    feed = pm_feed(faulty, *SENSOR, clock, SERIAL_PERIOD_S)  # type: ignore[arg-type]
    reference = pm_feed(clean, *SENSOR, clock, SERIAL_PERIOD_S)  # type: ignore[arg-type]
    frames = 0
    live_spikes = 0
    clock.t = 0.37  # frames at any phase of the second
    while clock.t < HOURS * H:
        live_spikes += _spiked(feed()[0], reference()[0])
        frames += 1
        clock.t += SERIAL_PERIOD_S
    assert frames == HOURS * H / SERIAL_PERIOD_S
    assert live_spikes == pytest.approx(RATE * HOURS, rel=0.2), (live_spikes, light_spikes)
