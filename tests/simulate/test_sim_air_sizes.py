"""The particulate fields of one reading keep their order: PM1 <= PM2.5 <= PM10."""

from __future__ import annotations

from datetime import UTC, datetime

from urbanpulse.simulate import City, Simulation


def test_pm_fields_nest_like_the_modules_size_bins(hanoi: City) -> None:
    # A rainy-season week: PM2.5 near 5 ug/m3 at times, where the noise of each field
    # once put PM2.5 above PM10 in 1 % of readings and PM1 above PM2.5 in 0.4 %.
    sim = Simulation(hanoi, seed=2, start=datetime(2026, 7, 5, 17, tzinfo=UTC), events=())
    pm = [r.values for b in sim.readings().run(24 * 3600.0) for r in b.readings
          if r.kind == "air.pm"]
    assert len(pm) > 10_000
    assert min(v["pm25"] for v in pm) < 8  # low enough for the noise to matter
    assert all(v["pm25"] <= v["pm10"] for v in pm)
    assert all(v["pm1"] <= v["pm25"] for v in pm if "pm1" in v)
