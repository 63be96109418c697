"""A fault monitor keeps the largest of its last 240 gaps as a sliding maximum (the gaps
larger than every later one) and the 15 newest, not the 240 gaps themselves: the same
`_longest` and expected interval as the ring of 240 the code before kept, at every step,
through its fast path and its general one, and from a snapshot of the code before."""

from __future__ import annotations

import pickle
import random
from array import array
from datetime import UTC, datetime, timedelta

import pytest

from cloud.detect import FaultMonitor
from cloud.detect.compat import slot_state

START = datetime(2026, 6, 1, tzinfo=UTC)
START_NS = int(START.timestamp()) * 10**9


def gap_series(rng: random.Random, n: int) -> list[float]:
    """Positive gaps of every shape the maximum can trip on: ties, plateaus, a long rise, a
    long fall (the most gaps kept), and spikes that leave after 240."""
    shape = rng.choice(("ties", "plateaus", "rise", "fall", "spikes"))
    if shape == "ties":
        return [float(rng.choice((30, 30, 30, 31, 29, 60))) for _ in range(n)]
    if shape == "plateaus":
        out: list[float] = []
        while len(out) < n:
            out += [rng.uniform(1, 600)] * rng.randint(1, 300)
        return out[:n]
    if shape == "rise":
        return [1.0 + i * 0.5 for i in range(n)]
    if shape == "fall":
        return [1.0 + (n - i) * 0.5 for i in range(n)]
    return [rng.choice((30.0, 3600.0)) if rng.random() < 0.01 else rng.gauss(30, 2) + 10
            for _ in range(n)]


def expected_of(ring: list[float]) -> timedelta | None:
    """`expected_interval` as the code before computed it from its ring."""
    newest = sorted(ring[-15:])
    return None if len(ring) < 10 else timedelta(seconds=newest[len(newest) // 2])


@pytest.mark.parametrize("seed", range(12))
def test_the_largest_and_the_interval_are_the_ring_s_at_every_gap(seed: int) -> None:
    rng = random.Random(seed)
    m = FaultMonitor("hospital.bed", "load")
    ring: list[float] = []  # the code before's: the last 240 gaps
    kept = 0
    for gap in gap_series(rng, 1000):
        m._remember_gap(gap)
        ring = [*ring, gap][-240:]
        assert m._longest == max(ring)
        assert m.expected_interval() == expected_of(ring)
        assert sorted(m._last_gaps) == sorted(ring[-15:])
        kept = max(kept, len(m._tops) // 2)
    assert kept <= 240


def test_a_regular_sensor_keeps_one_gap_for_its_largest() -> None:
    m = FaultMonitor("traffic.loop", "count")
    for _ in range(1000):
        m._remember_gap(60.0)
    assert m._tops == [60.0, 999]
    assert len(m._last_gaps) == 15
    assert m._gap_count == 1000


def feed(m: FaultMonitor, gaps: list[float], fast: bool, values: list[float]) -> list[str]:
    """Readings of `m`'s field at consecutive numbers, the gaps apart (whole µs), received at
    once: with integer stamps (the fast path of `update`) or datetimes (`_arrival`)."""
    events = []
    at_us = 0
    for seq, (gap, value) in enumerate(zip(gaps, values, strict=True)):
        at_us += round(gap * 1e6)
        if fast:
            ns = START_NS + at_us * 1000
            got = m.update(ns, value, seq, None, ns)
        else:
            ts = START + timedelta(microseconds=at_us)
            got = m.update(ts, value, seq, None, ts)
        events += [f"{e.fault}: {e.detail}" for e in got]
    return events


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize(("kind", "field"), [("traffic.loop", "count"), ("hospital.bed", "load")])
def test_the_fast_path_and_the_general_one_keep_the_same_gaps(seed: int, kind: str, field: str
                                                              ) -> None:
    rng = random.Random(seed)
    gaps = [round(g, 3) for g in gap_series(rng, 600)]
    values = [float(rng.randint(0, 3)) for _ in gaps]
    fast, general = FaultMonitor(kind, field), FaultMonitor(kind, field)
    assert feed(fast, gaps, True, values) == feed(general, gaps, False, values)
    assert pickle.dumps(fast) == pickle.dumps(general)
    assert fast._gap_count > 240


def as_session_19(m: FaultMonitor, ring: list[float]) -> FaultMonitor:
    """`m` loaded from the layout of sessions 19-22: its gaps as one array of the last 240
    (`ring`), without the parts this version keeps instead."""
    state = slot_state(m.__getstate__())
    for name in ("_gap_count", "_last_gaps", "_tops"):
        del state[name]
    state["_long_gaps"] = array("d", ring)
    loaded = FaultMonitor.__new__(FaultMonitor)
    loaded.__setstate__(state)
    return loaded


@pytest.mark.parametrize("seed", range(6))
def test_a_monitor_pickled_with_its_240_gaps_goes_on_as_it_would_have(seed: int) -> None:
    rng = random.Random(seed)
    gaps = gap_series(rng, 900)
    m = FaultMonitor("hospital.bed", "load")
    ring: list[float] = []
    for gap in gaps[:500]:
        m._remember_gap(gap)
        ring = [*ring, gap][-240:]
    old = as_session_19(m, ring)
    assert pickle.loads(pickle.dumps(old)).__getstate__() == old.__getstate__()
    for gap in gaps[500:]:
        m._remember_gap(gap)
        old._remember_gap(gap)
        ring = [*ring, gap][-240:]
        assert m._longest == old._longest == max(ring)
        assert m.expected_interval() == old.expected_interval() == expected_of(ring)


def test_a_monitor_pickled_with_fewer_gaps_than_it_learns_from_still_learns() -> None:
    m = FaultMonitor("traffic.loop", "count")
    for _ in range(5):
        m._remember_gap(30.0)
    old = as_session_19(m, [30.0] * 5)
    assert old.expected_interval() is None  # 10 gaps are needed
    for _ in range(5):
        old._remember_gap(30.0)
    assert old.expected_interval() == timedelta(seconds=30)
