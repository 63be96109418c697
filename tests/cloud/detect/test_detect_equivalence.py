"""The cheaper detection code gives what the straightforward code gave, bit for bit.

* Tail ranks: `TailHistory` (binary search in a sorted copy, one ring for a statistic
  and its negation) against the plain pass over a float32 ring it replaced.
* Context keys: built incrementally and coarsened all at once, against `_encode` and
  `_decode` key by key; a level repeating the last ones leaves the memory as it is.
* The refractory rule's running maximum against `max()` over a plain window.
* NAB: the scores of two files are pinned to those of the code before the speed-up
  (commit 77631b9), a third to those of the code that added the seasonal residual;
  `update_many` gives the same as `update`.
* City readings: the batch call the dataflow makes (`check_readings`, one per message)
  raises the same points and alerts, in the same order, as `SensorWatch.check` per reading,
  though it scores a message per sensor and field and then restores the reading order.
"""

from __future__ import annotations

import hashlib
import itertools
import math
import pickle
from dataclasses import replace
from datetime import UTC
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from bench.nab.corpus import read_series
from cloud.detect import AnomalyDetector, DetectError, DetectorSettings
from cloud.detect.novelty import ContextNovelty, _coarser, _decode, _encode
from cloud.detect.profiles import detector_by_name
from cloud.detect.tail import RECORD_CAP, TailHistory
from cloud.logic.events import Alert, SensorWatch, check_readings
from cloud.logic.records import Point
from urbanpulse.clock import to_epoch_ns
from urbanpulse.simulate import City, Simulation
from urbanpulse.wire import Reading


class PlainTail:
    """The tail history as it was: a float32 ring, counted in full for every value."""

    def __init__(self, size: int, record_weight: float, min_count: int = 30) -> None:
        self.values: npt.NDArray[np.float32] = np.zeros(size, dtype=np.float32)
        self.count = 0
        self.next = 0
        self.record_weight = record_weight
        self.min_count = min_count

    def surprise(self, value: float) -> float:
        n = self.count
        if n < self.min_count:
            return 0.0
        kept = self.values if n == len(self.values) else self.values[:n]
        value = float(np.float32(value))
        at_or_above = int(np.count_nonzero(kept >= value))
        if at_or_above:
            return -math.log(at_or_above / (n + 1))
        spread = float(kept.std(dtype=np.float64)) + 1e-12
        beyond = min((value - float(kept.max())) / spread, RECORD_CAP)
        return math.log(n + 1) + self.record_weight * beyond

    def push(self, value: float) -> None:
        self.values[self.next] = value
        self.next = (self.next + 1) % len(self.values)
        self.count = min(self.count + 1, len(self.values))


# Few distinct values (ties, zeros of both signs, records) and a wide continuous range.
_VALUES = st.one_of(
    st.sampled_from([0.0, -0.0, 1.0, -1.0, 2.5, 1e-3]),
    st.floats(-1e6, 1e6, allow_nan=False, allow_infinity=False),
)


@settings(max_examples=60, deadline=None)
@given(st.lists(_VALUES, min_size=1, max_size=300), st.integers(50, 120), st.integers(1, 299))
def test_a_two_sided_tail_ranks_as_two_plain_tails(values: list[float], size: int, cut: int) -> None:
    tail = TailHistory(size, 3.0, min_count=30, two_sided=True)
    upper, lower = PlainTail(size, 3.0), PlainTail(size, 3.0)
    for i, v in enumerate(values):
        if i == cut:  # a snapshot midway: the sorted copy is rebuilt from the ring
            tail = pickle.loads(pickle.dumps(tail))
        expected_upper, expected_lower = upper.surprise(v), lower.surprise(-v)
        upper.push(v)
        lower.push(-v)
        assert tail.surprise_push(v) == expected_upper
        assert tail.lower == expected_lower
    assert len(tail) == upper.count


def _plain_keys(recent: list[int], orders: tuple[int, ...]) -> list[int]:
    return [_encode(recent[-order:]) for order in orders if len(recent) >= order]


# Levels in runs: a level repeated at least max(orders) + 1 times in a row takes a shortcut.
_LEVEL_RUNS = st.lists(st.tuples(st.integers(-300, 300), st.integers(1, 9)), min_size=1, max_size=60)


@settings(max_examples=80, deadline=None)
@given(
    _LEVEL_RUNS,
    st.sampled_from([(1, 2, 3, 4, 5), (2, 4), (3, 1, 2), (1,)]),
    st.sampled_from([40, 3]),
)
@example(runs=[(5, 9), (130, 7), (5, 8)], orders=(1, 2, 3, 4, 5), capacity=40)
@example(runs=[(5, 9)], orders=(1, 2, 3, 4, 5), capacity=3)
def test_context_memory_matches_key_by_key_encoding(
    runs: list[tuple[int, int]], orders: tuple[int, ...], capacity: int
) -> None:
    """Levels beyond +-128 wrap in the key; the incremental keys must wrap the same way.
    A memory smaller than the number of orders forgets contexts of the value itself."""
    levels = [level for level, times in runs for _ in range(times)]
    novelty = ContextNovelty(8, orders, 150, 2.5, capacity)
    memory: dict[int, None] = {}
    recent: list[int] = []
    for level in levels:
        recent = [*recent, level][-max(orders):]
        keys = _plain_keys(recent, orders)
        novel = 0
        for key in keys:
            if key in memory:
                del memory[key]
            else:
                novel += 1
            memory[key] = None
        while len(memory) > capacity:
            del memory[next(iter(memory))]
        assert novelty._observe(level) == (novel / len(keys) if keys else 0.0)
        assert list(novelty._memory) == list(memory)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.lists(st.integers(-128, 127), min_size=1, max_size=5), max_size=60))
def test_coarsening_all_keys_at_once_matches_key_by_key(contexts: list[list[int]]) -> None:
    keys = [_encode(levels) for levels in contexts]
    assert _coarser(keys, 5) == [_encode([lv // 2 for lv in _decode(k)]) for k in keys]


# sha256 of the float64 scores, from `bench.nab.run`'s detectors at commit 77631b9 (before
# the speed-up). A deliberate change of the detector changes them: recompute them then.
# The seasonal residual left these two as they were (5f5533 has a period, 8 values, whose
# residual never beats its other evidence; speed_7578 none); art_daily_nojump, where it
# finds the missing daily rise, is pinned from the code that added it. speed_7578 re-pinned
# with the road profile's own difference memory and 700-value tails (session 17).
PINNED = {
    "realAWSCloudwatch/ec2_cpu_utilization_5f5533.csv": ("default", "ffcad2c436ba5dca7f89300e15e14565"),
    "realTraffic/speed_7578.csv": ("traffic", "88a9995165a1d7980bd662c56be8ebf8"),
    "artificialWithAnomaly/art_daily_nojump.csv": ("default", "c9c99a56abd7d8d07afcaff1e29d4acb"),
}


@pytest.mark.parametrize("key", sorted(PINNED))
def test_nab_scores_are_the_pinned_ones(nab_root: Path, key: str) -> None:
    name, digest = PINNED[key]
    stamps, values = read_series(nab_root / "data" / key)
    ns = [to_epoch_ns(ts.replace(tzinfo=UTC)) for ts in stamps]
    one = detector_by_name(name)
    scores = [one.update(t, v) for t, v in zip(ns, values, strict=True)]
    many = detector_by_name(name)
    half = len(ns) // 2
    batched = many.update_many(ns[:half], values[:half])
    many = pickle.loads(pickle.dumps(many))
    batched += many.update_many(ns[half:], values[half:])
    assert batched == scores
    assert hashlib.sha256(np.array(scores, dtype=np.float64).tobytes()).hexdigest()[:32] == digest
    assert sum(s >= one.threshold for s in scores) > 0


def test_update_many_refuses_what_update_refuses() -> None:
    detector = detector_by_name("default")
    with pytest.raises(DetectError, match="stamps for"):
        detector.update_many([1, 2], [1.0])
    with pytest.raises(DetectError, match="not finite"):
        detector.update_many([1, 2], [1.0, math.nan])


def test_the_batch_call_raises_the_same_points_and_alerts_as_one_check_per_reading() -> None:
    sim = Simulation(City.load(), seed=5)
    one: dict[tuple[str, str, str], SensorWatch] = {}
    batch: dict[tuple[str, str], dict[str, SensorWatch]] = {}
    points: tuple[list[Point], list[Point]] = ([], [])
    alerts: tuple[list[Alert], list[Alert]] = ([], [])
    readings = 0
    for nb in sim.readings(max_batch=200).run(until=8 * 3600, step=1800):
        rs: list[Reading] = list(nb.readings)
        readings += len(rs)
        for r in rs:
            watch = one.setdefault((nb.site, nb.node, r.sensor), SensorWatch())
            points[0].extend(watch.check(nb.site, nb.node, r, alerts[0]))
        watches = batch.setdefault((nb.site, nb.node), {})
        points[1].extend(check_readings(nb.site, nb.node, rs, watches, alerts[1]))
    assert readings > 20_000
    assert points[0] == points[1]
    assert alerts[0] == alerts[1]
    kinds = {a.type for a in alerts[0]}
    assert "anomaly" in kinds


# Readings of three sensors, one of which changes kind: (sensor, kind, fields) choices.
_SENSORS = (("co2-a", "air.co2", ("co2", "temperature_c")),
            ("co2-a", "air.pm", ("pm25", "temperature_c")),
            ("loop-b", "traffic.loop", ("occupancy_pct", "speed_kmh", "count")),
            ("co2-c", "air.co2", ("temperature_c", "co2")))


def _warm_readings() -> list[Reading]:
    """200 readings of each series, interleaved: the detectors are past their warm-up."""
    out = []
    for i in range(200):
        for sensor, kind, names in (_SENSORS[0], _SENSORS[2], _SENSORS[3]):
            values = {name: 20.0 + (i * 7 + len(name)) % 5 for name in names}
            out.append(Reading(sensor, kind, T0_NS + i * 60 * 10**9, i, values))
    return out


T0_NS = 1_714_000_000 * 10**9


@settings(max_examples=30, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 3), st.integers(-5, 3),
                          st.lists(st.sampled_from([21.0, 22.0, 95.0, 400.0, 20_000.0, -50.0]),
                                   min_size=1, max_size=3)),
                min_size=1, max_size=60),
       st.lists(st.integers(1, 60), max_size=4))
def test_a_message_scored_per_field_raises_its_events_in_reading_order(
        steps: list[tuple[int, int, list[float]]], cuts: list[int]) -> None:
    """`check_readings` scores a message per sensor and field and puts the events back in
    reading order: the same points, alerts and watches as one check per reading, with
    sensors interleaved, readings stamped back, a sensor changing kind, several fields of
    one reading firing (out of range, spikes, anomalies) and messages cut anywhere."""
    readings = _warm_readings()
    seqs = dict.fromkeys(("co2-a", "loop-b", "co2-c"), 200)
    minute = 200
    for choice, back, values in steps:
        sensor, kind, names = _SENSORS[choice]
        minute += 1
        seqs[sensor] += 1
        fields = {name: values[i % len(values)] for i, name in enumerate(names[:len(values)])}
        readings.append(Reading(sensor, kind, T0_NS + (minute + back) * 60 * 10**9,
                                seqs[sensor], fields))
    bounds = sorted({0, len(readings), *(len(readings) - c for c in cuts)})
    one: dict[str, SensorWatch] = {}
    batch: dict[str, SensorWatch] = {}
    silent: dict[str, SensorWatch] = {}  # no alerts asked for
    points: tuple[list[Point], list[Point], list[Point]] = ([], [], [])
    alerts: tuple[list[Alert], list[Alert]] = ([], [])
    for start, end in itertools.pairwise(bounds):
        message = readings[start:end]
        for r in message:
            points[0].extend(one.setdefault(r.sensor, SensorWatch()).check("hn", "n1", r, alerts[0]))
        points[1].extend(check_readings("hn", "n1", message, batch, alerts[1]))
        points[2].extend(check_readings("hn", "n1", message, silent))
    assert points[0] == points[1] == points[2]
    assert alerts[0] == alerts[1]
    assert list(one) == list(batch)
    for sensor, watch in one.items():
        other = batch[sensor].fields
        assert list(watch.fields) == list(other)
        assert [(w.last_ts_ns, w.low, w.high) for w in watch.fields.values() if w is not None] == [
            (w.last_ts_ns, w.low, w.high) for w in other.values() if w is not None]


def test_events_of_several_fields_of_a_reading_keep_the_reading_s_field_order() -> None:
    """A message whose first and third readings have two fields out of range (an excursion
    fires once: the second is back in range), the third with its fields in the other order:
    the events follow each reading's own order of fields."""
    readings = [Reading("s1", "air.co2", T0_NS, 1, {"co2": 20_000.0, "temperature_c": 200.0}),
                Reading("s1", "air.co2", T0_NS + 60 * 10**9, 2, {"co2": 400.0, "temperature_c": 20.0}),
                Reading("s1", "air.co2", T0_NS + 120 * 10**9, 3,
                        {"temperature_c": 300.0, "co2": 30_000.0})]
    alerts: list[Alert] = []
    check_readings("hn", "n1", readings, {}, alerts)
    assert [(a.type, a.field, a.value) for a in alerts] == [
        ("out_of_range", "co2", 20_000.0), ("out_of_range", "temperature_c", 200.0),
        ("out_of_range", "temperature_c", 300.0), ("out_of_range", "co2", 30_000.0)]


@settings(max_examples=40, deadline=None)
@given(st.lists(st.sampled_from([0.0, 1.0, 2.0, 5.0, 40.0, -3.0]), min_size=60, max_size=400),
       st.integers(1, 6))
def test_the_refractory_rule_keeps_the_maximum_of_a_plain_window(values: list[float], span: int) -> None:
    """A score is kept only when higher than each of the `span` before it: the detector's
    running maximum against `max()` over a plain window of the raw scores (no damping nor
    hold, so the raw scores are what a detector without the rule returns)."""
    plain = DetectorSettings(history=50, warmup=0, learn=20, refractory=0, damp_span=0, hold=0,
                             season_learn=0)
    raw_detector = AnomalyDetector(plain)
    detector = AnomalyDetector(replace(plain, refractory=span))
    raw = [raw_detector.update(i, v) for i, v in enumerate(values)]
    scores = []
    for i, v in enumerate(values):
        if i == len(values) // 2:
            detector = pickle.loads(pickle.dumps(detector))
        scores.append(detector.update(i, v))
    expected = [r if i == 0 or r > max(raw[max(0, i - span):i]) else 0.0 for i, r in enumerate(raw)]
    assert scores == expected
    assert any(s == 0.0 < r for s, r in zip(scores, raw, strict=True))
