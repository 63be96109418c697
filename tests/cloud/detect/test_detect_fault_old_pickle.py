"""Fault monitors pickled by the code before their slots and arrays (ff2de12: an instance
dict of deques) load into this code and raise, from there, the very events they raised
then, as monitors never pickled do; and this code raises the events the code before raised
on the same calls (fault_pickle_fixture.py: one fault bench run's calls, recorded)."""

from __future__ import annotations

import operator
import pickle
import pickletools
from array import array
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from cloud.detect import FaultMonitor
from cloud.detect.faults import _PICKLED
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


def test_monitors_pickled_with_their_arrays_and_datetimes_resume_as_if_never_pickled(
        recorded: dict[str, Any]) -> None:
    """The layout of sessions 19 to 26: every slot by position, the rings as arrays and the
    tick's stamps as datetimes (since session 27 as bytes and µs)."""
    made, calls, split = recorded["made"], recorded["calls"], recorded["split"]
    never, _ = replay(made, calls, stop=split)
    held = [(_PICKLED, operator.attrgetter(*_PICKLED)(m)) for m in never]
    assert any(isinstance(v, array) for _, values in held for v in values)
    assert any(isinstance(v, datetime) for _, values in held for v in values)
    old = []
    for state in pickle.loads(pickle.dumps(held, protocol=pickle.HIGHEST_PROTOCOL)):
        m = FaultMonitor.__new__(FaultMonitor)
        m.__setstate__(state)
        old.append(m)
    assert [m.__getstate__() for m in old] == [m.__getstate__() for m in never]
    _, after = replay(made, calls, old, start=split)
    assert after == recorded["events"][split:]


def test_a_monitor_pickles_no_array_and_no_datetime(recorded: dict[str, Any]) -> None:
    """Pickle makes a reduce of each (a call, a global looked up): bytes and ints it writes
    as they are."""
    never, _ = replay(recorded["made"], recorded["calls"], stop=recorded["split"])
    kiosk = FaultMonitor("hospital.queue", "ticket", "kiosk-1")
    t0 = datetime(2026, 12, 1, 8, tzinfo=UTC)
    for n in range(6):
        kiosk.update(t0 + timedelta(seconds=40 * n), float(n), seq=n,
                     values={"ticket": float(n), "called": float(max(n - 2, 0))})
    kiosk.tick(t0 + timedelta(minutes=5))
    never.append(kiosk)
    assert kiosk._pair is not None
    assert all(kiosk._pair)
    assert all(m._now is not None for m in never)
    pickled = pickle.dumps(never, protocol=pickle.HIGHEST_PROTOCOL)
    names = {arg for op, arg, _ in pickletools.genops(pickled) if isinstance(arg, str)}
    assert not names & {"array", "_array_reconstructor", "datetime", "timezone"}
    again: list[FaultMonitor] = pickle.loads(pickled)
    for m, n in zip(again, never, strict=True):
        assert (m._heard, m._now) == (n._heard, n._now)
        assert m._now is None or m._now.tzinfo is UTC
        assert [type(getattr(m, name)) for name in ("_last_gaps", "_leads", "_rx_gaps")] == [
            type(getattr(n, name)) for name in ("_last_gaps", "_leads", "_rx_gaps")]
