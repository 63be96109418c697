"""Fault monitors pickled by the code before their slots and arrays (ff2de12: an instance
dict of deques) load into this code and raise, from there, the very events they raised
then, as monitors never pickled do; and this code raises the events the code before raised
on the same calls (fault_pickle_fixture.py: one fault bench run's calls, recorded)."""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

import pytest

from cloud.detect import FaultMonitor
from tests.cloud.detect.fault_pickle_fixture import load, replay

# fixtures/README.md: made by `python -m tests.cloud.detect.fault_pickle_fixture` at ff2de12.
FIXTURE = Path(__file__).parent / "fixtures" / "fault_monitors_ff2de12.pickle.xz"


@pytest.fixture(scope="module")
def recorded() -> dict[str, Any]:
    return load(FIXTURE)


def test_the_same_calls_raise_the_events_the_code_before_raised(recorded: dict[str, Any]) -> None:
    _, events = replay(recorded["made"], recorded["calls"])
    assert events == recorded["events"]
    split = recorded["split"]
    assert sum(map(len, events[:split])) > 0
    assert sum(map(len, events[split:])) > 0


def test_monitors_pickled_by_the_code_before_resume_as_if_never_pickled(
        recorded: dict[str, Any]) -> None:
    made, calls, split = recorded["made"], recorded["calls"], recorded["split"]
    old: list[FaultMonitor] = pickle.loads(recorded["state"])
    assert all(type(m) is FaultMonitor and not hasattr(m, "__dict__") for m in old)
    never, _ = replay(made, calls, stop=split)
    assert [m.__getstate__() for m in old] == [m.__getstate__() for m in never]
    _, after = replay(made, calls, old, start=split)
    assert after == recorded["events"][split:]
    # and pickled again by this code: the same once more
    again: list[FaultMonitor] = pickle.loads(pickle.dumps(never, protocol=pickle.HIGHEST_PROTOCOL))
    _, after_again = replay(made, calls, again, start=split)
    assert after_again == recorded["events"][split:]


def test_a_loaded_monitor_shares_its_settings_and_range_with_a_fresh_one(
        recorded: dict[str, Any]) -> None:
    old: list[FaultMonitor] = pickle.loads(recorded["state"])
    for m in old:
        fresh = FaultMonitor(m.kind, m.field, m.sensor)
        assert m.settings is fresh.settings  # one object, not pickle's copy per monitor
        assert m.spec is fresh.spec
