"""A road loop's detector pickled with the road-traffic settings of before session 17 (tails
of 1,000 values, a difference memory of orders 1-5 in 2,500 contexts: up to 87 KB in
memory) takes today's when it is loaded (`AnomalyDetector.narrow`): under the 64 KB bound,
keeping what it learnt as far as today's settings hold it, which is what a detector of
today's settings fed the same values holds (docs/anomaly-detection.md, "Learnt state
across upgrades"). Other settings load as they were pickled."""

from __future__ import annotations

import lzma
import pickle
import random
from dataclasses import replace
from datetime import UTC
from pathlib import Path
from typing import Any

import pytest

from bench.detect.memory import deep_size, shared_objects
from bench.nab.corpus import load_corpus
from cloud.detect.detector import AnomalyDetector
from cloud.detect.errors import DetectError
from cloud.detect.novelty import ContextNovelty
from cloud.detect.profiles import (
    NAB_TUNED,
    ROAD_TRAFFIC,
    ROAD_TRAFFIC_BEFORE_17,
    detector_by_name,
    settings_for,
)
from cloud.detect.tail import TailHistory
from urbanpulse.clock import to_epoch_ns

# fixtures/README.md: the detector 263783f made for a road loop, after the first 1,500 rows
# of realTraffic/speed_6005.
FIXTURE = Path(__file__).parent / "fixtures" / "road_speed_6005_263783f.pickle.xz"
SERIES, HEAD = "realTraffic/speed_6005.csv", 1500
# What a detector's scores leave in it (which alert is open or damped, the last scores and
# their largest): its own, not those a detector of today's settings would have given.
SCORED = {"_last_scores", "_top", "_top_age", "_since_alert", "_since_report", "_held_until"}


def _series(nab_root: Path) -> tuple[list[int], list[float]]:
    (f,) = [f for f in load_corpus(nab_root, {"realTraffic"}) if f.key == SERIES]
    return [to_epoch_ns(ts.replace(tzinfo=UTC)) for ts in f.timestamps], list(f.values)


def _tail(tail: TailHistory) -> tuple[bytes, int, int, bytes]:
    """What a tail holds (not `lower`, the last value's surprise, computed again at each)."""
    return bytes(tail._values), tail._next, len(tail), bytes(tail._sorted)


def _learnt(detector: AnomalyDetector) -> dict[str, Any]:
    """Everything a detector holds but what its scores left in it, each part as it pickles."""
    state = detector.__getstate__()
    out: dict[str, Any] = {k: pickle.dumps(v) for k, v in state.items() if k not in SCORED}
    for name in ("_value_tail", "_jump_tail", "_mean_tail"):
        out[name] = _tail(state[name])
    season = state["_season"].__getstate__()
    residuals = season.pop("_residuals")
    out["_season"] = (pickle.dumps(season), None if residuals is None else _tail(residuals))
    return out


def test_a_tail_keeps_its_newest_values_as_a_shorter_history_fed_them() -> None:
    rng = random.Random(7)
    for pushed in (0, 40, 699, 700, 701, 999, 1000, 1001, 1733, 2500):
        values = [round(rng.gauss(50, 10), 1) for _ in range(pushed + 300)]
        wide, short = TailHistory(1000, 3.0, two_sided=True), TailHistory(700, 3.0, two_sided=True)
        for v in values[:pushed]:
            wide.surprise_push(v)
            short.surprise_push(v)
        wide.keep_newest(700, pushed)
        assert _tail(wide) == _tail(short), pushed
        for v in values[pushed:]:
            assert (wide.surprise_push(v), wide.lower) == (short.surprise_push(v), short.lower)
        assert _tail(wide) == _tail(short), pushed


def test_a_full_tail_of_unknown_pushes_keeps_its_newest_values_oldest_first() -> None:
    tail = TailHistory(100, 3.0)
    for v in range(250):
        tail.surprise_push(float(v))
    tail.keep_newest(60, pushed=17)  # not what the ring says (250 % 100 is its next slot, not 17)
    assert list(tail._values) == [float(v) for v in range(190, 250)]
    assert (tail._next, len(tail), list(tail._sorted)) == (0, 60, list(tail._values))
    with pytest.raises(ValueError, match="cannot keep 61"):
        tail.keep_newest(61)


def test_a_context_memory_narrowed_holds_what_a_narrower_one_fed_the_same_values_holds() -> None:
    """Orders 1-5 in a memory that forgets nothing, narrowed to orders 1-3 in 100 contexts
    (which forget most of them), against a memory of orders 1-3 and 100 contexts fed the
    same values: levels in runs (those longer than three the narrower skips), then a range
    twice as wide (the bins coarsened in both, after)."""
    for seed in range(3):
        rng = random.Random(seed)
        values: list[float] = []
        while len(values) < 3000:
            values += [float(rng.randrange(100))] * rng.choice([1, 1, 1, 2, 4, 5, 7])
        values += [rng.uniform(-100, 200) for _ in range(500)]
        wide = ContextNovelty(8, (1, 2, 3, 4, 5), 150, 2.5, 100_000)
        narrow = ContextNovelty(8, (1, 2, 3), 150, 2.5, 100)
        for v in values[:2500]:
            wide.update(v)
            narrow.update(v)
        assert len(wide._memory) > 1000
        assert len(narrow._memory) == 100
        wide.narrow((1, 2, 3), 100)
        assert list(wide._memory) == list(narrow._memory)
        assert pickle.dumps(wide) == pickle.dumps(narrow)
        assert [wide.update(v) for v in values[2500:]] == [narrow.update(v) for v in values[2500:]]
        assert pickle.dumps(wide) == pickle.dumps(narrow)
    with pytest.raises(ValueError, match="cannot be narrowed"):
        wide.narrow((4,), 100)


def test_a_road_detector_of_263783f_loads_with_today_s_settings_under_the_bound(
        nab_root: Path) -> None:
    stamps, values = _series(nab_root)
    detector_by_name("traffic").update(0, 0.0)  # the caches detectors fill, before the shared part
    AnomalyDetector(ROAD_TRAFFIC_BEFORE_17).update(0, 0.0)
    _, shared = shared_objects()
    loaded = pickle.loads(lzma.decompress(FIXTURE.read_bytes()))
    assert loaded.settings == ROAD_TRAFFIC
    assert loaded.count == HEAD
    assert {len(t._values) for t in (loaded._value_tail, loaded._jump_tail, loaded._mean_tail)} == {700}
    assert (loaded._differences.orders, loaded._differences.capacity) == ((1, 2, 3), 500)
    assert len(loaded._differences._memory) == 301  # of orders 1-3, of its 1,856 of orders 1-5
    assert deep_size(loaded, shared) < 64_000  # as measured, 49,504 (55,072 with a copy of the settings)
    kept = AnomalyDetector(ROAD_TRAFFIC_BEFORE_17)  # what it held with the settings it was made with
    for ts, v in zip(stamps[:HEAD], values[:HEAD], strict=True):
        kept.update(ts, v)
    assert deep_size(kept, shared) > 64 * 1024  # as measured, 73,448
    scores = [loaded.update(ts, v) for ts, v in zip(stamps[HEAD:], values[HEAD:], strict=True)]
    assert all(0.0 <= score <= 1.0 for score in scores)
    assert max(scores) >= ROAD_TRAFFIC.threshold


def test_a_road_detector_of_263783f_holds_and_scores_as_one_of_today_s_settings(
        nab_root: Path) -> None:
    """It holds what a detector made with today's settings holds after the same 1,500 rows,
    but what its scores left; on the 1,000 rows after, one score differs (the 11th: its
    largest score of the last 20 is higher than the other's, and that one's is not a new
    high for it), and after them everything it holds is the same."""
    stamps, values = _series(nab_root)
    loaded = pickle.loads(lzma.decompress(FIXTURE.read_bytes()))
    fresh = AnomalyDetector(ROAD_TRAFFIC, "traffic")
    for ts, v in zip(stamps[:HEAD], values[:HEAD], strict=True):
        fresh.update(ts, v)
    assert _learnt(loaded) == _learnt(fresh)
    mine = [loaded.update(ts, v) for ts, v in zip(stamps[HEAD:], values[HEAD:], strict=True)]
    theirs = [fresh.update(ts, v) for ts, v in zip(stamps[HEAD:], values[HEAD:], strict=True)]
    assert [i for i, (a, b) in enumerate(zip(mine, theirs, strict=True)) if a != b] == [10]
    assert (mine[10], round(theirs[10], 3)) == (0.0, 0.525)
    assert max(theirs) >= ROAD_TRAFFIC.threshold  # it did alert after, as the other did
    # `_held_until`: 263783f kept no alert's time (its class default, no alert open by time).
    assert set(loaded.__getstate__()) - {"_held_until"} == set(fresh.__getstate__()) - {"_held_until"}
    assert _learnt(loaded) == _learnt(fresh)
    scored = {k: pickle.dumps(getattr(loaded, k)) for k in SCORED - {"_held_until"}}
    assert scored == {k: pickle.dumps(getattr(fresh, k)) for k in SCORED - {"_held_until"}}


def test_a_vehicle_count_s_detector_of_before_takes_today_s_count_settings() -> None:
    old = AnomalyDetector(replace(ROAD_TRAFFIC_BEFORE_17, warmup=288), "loop/count")
    loaded = pickle.loads(pickle.dumps(old))
    assert loaded.settings == settings_for("traffic.loop", "count")
    assert loaded._value_tail._size == 700


@pytest.mark.parametrize("settings", [
    NAB_TUNED,
    ROAD_TRAFFIC,
    replace(ROAD_TRAFFIC_BEFORE_17, hold=11),  # no profile's, before or now: as it was made
    replace(ROAD_TRAFFIC_BEFORE_17, difference_orders=(1, 2, 3, 4, 5), difference_capacity=2500),
])
def test_other_settings_load_as_they_were_pickled(settings: Any) -> None:
    detector = AnomalyDetector(settings)
    for i in range(400):
        detector.update(i * 300 * 10**9, float(i % 17))
    loaded = pickle.loads(pickle.dumps(detector))
    assert loaded.settings == settings
    parts = {k: pickle.dumps(v) for k, v in detector.__getstate__().items()}
    assert {k: pickle.dumps(v) for k, v in loaded.__getstate__().items()} == parts


def test_narrowing_to_settings_that_differ_otherwise_is_refused() -> None:
    detector = AnomalyDetector(ROAD_TRAFFIC_BEFORE_17, "loop-1/speed")
    with pytest.raises(DetectError, match="only the tails and the difference memory"):
        detector.narrow(replace(ROAD_TRAFFIC, threshold=0.9))
    with pytest.raises(DetectError, match="tails of 1000 values cannot keep 1200"):
        detector.narrow(replace(ROAD_TRAFFIC, history=1200))
    with pytest.raises(DetectError, match=r"loop-1/speed: contexts of orders .* cannot be narrowed"):
        detector.narrow(replace(ROAD_TRAFFIC, difference_orders=(2, 6)))
    assert detector.settings == ROAD_TRAFFIC_BEFORE_17
