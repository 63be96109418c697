from __future__ import annotations

from datetime import UTC, datetime

import pytest

from urbanpulse.simulate import City, Simulation

# A Monday, 00:00 in Hanoi (UTC+7).
MONDAY = datetime(2026, 3, 1, 17, 0, tzinfo=UTC)


@pytest.fixture(scope="session")
def hanoi() -> City:
    return City.load()


@pytest.fixture(scope="session")
def day_sim(hanoi: City) -> Simulation:
    """The default city for one seed; tests only read from it."""
    return Simulation(hanoi, seed=7, start=MONDAY)
