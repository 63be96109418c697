"""A fault monitor's part of a node's snapshot (`FaultMonitor.snapshot_parts`) keeps its
pickled bytes until the monitor changes: on one fault bench run's calls (the recorded
fixture of test_detect_fault_old_pickle.py: readings in and out of order, ticks, heartbeats,
held clock jumps and sequence gaps, restarts), the parts taken after any call load into a
monitor whose state is the monitor's, and the bytes kept are those a fresh pickling gives.
Every call that changes what the bytes hold must let them go: a test of each such path, on
the calls the bench makes (mutation-checked)."""

from __future__ import annotations

import pickle
import random
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from cloud.detect import FaultMonitor
from cloud.detect.faults import _OUTSIDE_AT
from tests.cloud.detect.fault_pickle_fixture import load, replay

FIXTURE = Path(__file__).parent / "fixtures" / "fault_monitors_ff2de12.pickle.xz"


@pytest.fixture(scope="module")
def recorded() -> dict[str, Any]:
    return load(FIXTURE)


def _fresh_bytes(m: FaultMonitor) -> bytes:
    values = list(m.__getstate__()[1])
    for at in _OUTSIDE_AT:
        values[at] = None
    return pickle.dumps(tuple(values), protocol=pickle.HIGHEST_PROTOCOL)


def _loaded(parts: tuple[object, ...]) -> FaultMonitor:
    m = FaultMonitor.__new__(FaultMonitor)
    m.__setstate__(pickle.loads(pickle.dumps(parts, protocol=pickle.HIGHEST_PROTOCOL)))
    return m


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_the_parts_after_any_call_load_into_the_monitor_s_state(
        recorded: dict[str, Any], seed: int) -> None:
    """Parts taken after every call of the monitor called, and of another after a random
    third of them, each checked against the monitor's own state and a fresh pickling."""
    rng = random.Random(seed)
    counts = {"kept": 0, "taken": 0}

    def check(monitors: list[FaultMonitor], m: int) -> None:
        checked = [monitors[m], rng.choice(monitors)] if rng.random() < 0.35 else [monitors[m]]
        for monitor in checked:
            was = monitor._cold
            parts = monitor.snapshot_parts()
            counts["kept"] += was is not None and parts[0] is was
            counts["taken"] += 1
            assert parts[0] == _fresh_bytes(monitor)
            loaded = _loaded(parts)
            assert loaded.__getstate__() == monitor.__getstate__()
            # (its parts at once, as a resumed node's next snapshot: equal, not byte for byte,
            # as objects shared in the monitor are pickled once each after a load)
            assert _loaded(loaded.snapshot_parts()).__getstate__() == monitor.__getstate__()

    replay(recorded["made"], recorded["calls"], after=check)
    kept, taken = counts["kept"], counts["taken"]
    assert taken > 1000
    assert kept > taken // 10  # the bytes were kept across calls that changed nothing in them


def test_ticks_and_heartbeats_alone_keep_the_bytes() -> None:
    """A quiet sensor's monitor sees only the node's ticks and heartbeats between two
    snapshots: those write the parts kept outside, and the bytes stay the same object."""
    m = FaultMonitor("hospital.bed", "occupied", "bed-1")
    assert _loaded(m.snapshot_parts()).__getstate__() == m.__getstate__()  # a fresh one too
    t0 = datetime(2026, 12, 1, 8, tzinfo=UTC)
    for k in range(40):  # a reading every 5 min, ticks and heartbeats every 30 s
        at = t0 + timedelta(minutes=5 * k)
        m.update(at, float(k % 2), seq=k, received=at + timedelta(seconds=1))
        for j in range(1, 10):
            m.tick(at + timedelta(seconds=30 * j + 2))
            m.node_heartbeat(at + timedelta(seconds=30 * j), at + timedelta(seconds=30 * j + 1))
    first = m.snapshot_parts()
    at = t0 + timedelta(minutes=5 * 40)
    m.update(at, 1.0, seq=40, received=at + timedelta(seconds=1))
    second = m.snapshot_parts()
    assert second[0] != first[0]
    m.tick(at + timedelta(seconds=30))  # the reading's arrival, taken by the tick
    third = m.snapshot_parts()
    assert third[0] != second[0]
    for j in range(2, 10):
        m.tick(at + timedelta(seconds=30 * j))
        m.node_heartbeat(at + timedelta(seconds=30 * j), at + timedelta(seconds=30 * j + 1))
    fourth = m.snapshot_parts()
    assert fourth[0] is third[0]
    assert fourth[3:] != third[3:]  # the tick's and heartbeat's own slots, taken anew
    third = fourth
    assert _loaded(third).__getstate__() == m.__getstate__()


def _fed_bed() -> tuple[FaultMonitor, datetime]:
    m = FaultMonitor("hospital.bed", "occupied", "bed-1")
    t0 = datetime(2026, 12, 1, 8, tzinfo=UTC)
    for k in range(20):
        at = t0 + timedelta(minutes=5 * k)
        m.update(at, float(k % 2), seq=k, received=at + timedelta(seconds=1))
        m.tick(at + timedelta(seconds=31))
    return m, t0 + timedelta(minutes=100)


def _fed_air() -> tuple[FaultMonitor, datetime]:
    """An air sensor every 10 s, then 5 numbers missing: a silence held (`_hold_gap`)."""
    m = FaultMonitor("air.pm", "pm25", "pm-1")
    t0 = datetime(2026, 12, 1, 8, tzinfo=UTC)
    for k in range(30):
        at = t0 + timedelta(seconds=10 * k)
        m.update(at, 10.0 + k % 3, seq=k, received=at + timedelta(seconds=1))
    at = t0 + timedelta(seconds=10 * 35)
    m.update(at, 11.0, seq=35, received=at + timedelta(seconds=1))
    assert m._gaps_held
    return m, at


@pytest.mark.parametrize("call", ["unjudged", "heartbeat", "agent_started", "started_heartbeat",
                                  "restarted", "gap_released", "gap_filled", "kiosk_stamped_before",
                                  "kiosk_tick"])
def test_the_calls_the_bench_does_not_make_let_the_bytes_go(call: str) -> None:
    """The fixture's calls are updates, ticks, heartbeats of the node and readings stamped
    before: the others that change a monitor, and paths of those its run does not take,
    each after the bytes were kept."""
    m, at = _fed_air() if call.startswith("gap") else _fed_bed()
    if call.startswith("kiosk"):
        m = FaultMonitor("hospital.queue", "ticket", "kiosk-1")
        at = datetime(2026, 12, 1, 8, tzinfo=UTC)
        for n in range(60):  # busy: a ticket issued each minute, each called 2.5 min after
            for seq, t, ticket, called in ((2 * n, at + timedelta(minutes=n), n + 1, 0.0),
                                           (2 * n + 1, at + timedelta(minutes=n + 0.5), n - 1, 1.0)):
                if ticket >= 1:
                    m.update(t, float(ticket), seq=seq, values={"called": called})
                    m.tick(t)
        at += timedelta(minutes=60)
    before = m.snapshot_parts()
    assert m.snapshot_parts()[0] is before[0]
    if call == "unjudged":
        m.unjudged(20, at + timedelta(seconds=1))
    elif call == "heartbeat":
        m.heartbeat(at, 20)
    elif call == "agent_started":
        m.agent_started(at - timedelta(seconds=5))
    elif call == "started_heartbeat":
        m.node_heartbeat(at, at + timedelta(seconds=1), started=at - timedelta(seconds=5))
    elif call == "restarted":
        m.restarted()
    elif call == "gap_released":  # a heartbeat past the gap's grace raises it
        assert m.node_heartbeat(at + timedelta(minutes=30), at + timedelta(minutes=30))
        assert not m._gaps_held
    elif call == "gap_filled":  # a missing number, late
        m.stamped_before(at - timedelta(seconds=40), 10.5, seq=31, received=at + timedelta(seconds=2))
    elif call == "kiosk_stamped_before":  # the kiosk clock rule
        m.stamped_before(at - timedelta(hours=2), 3.0, seq=500, received=at)
    else:  # the kiosk rule: both streams stopped with tickets waiting
        assert m.tick(at + timedelta(minutes=12))
    parts = m.snapshot_parts()
    assert parts[0] == _fresh_bytes(m)
    assert _loaded(parts).__getstate__() == m.__getstate__()
    assert parts[0] is not before[0]
