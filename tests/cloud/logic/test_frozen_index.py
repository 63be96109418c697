"""A rollup's closed windows by start (`cloud.logic.frozen_index.FrozenIndex`, two int64
arrays and, for windows frozen without a store, their bytes) behave as the dict they
replace, kept in increasing order of start, at every step of random work and through a
pickle; with row ids only they cost 16 bytes a window in memory and in a snapshot."""

from __future__ import annotations

import pickle
import random

import pytest

from bench.pipeline.node_state_size import deep_size
from cloud.frozen_store import LOST_ROW
from cloud.logic.frozen_index import FrozenIndex

MINUTE = 60 * 10**9


def _check(index: FrozenIndex, reference: dict[int, bytes | int]) -> None:
    ordered = dict(sorted(reference.items()))
    assert list(index) == list(ordered)
    assert index.items() == list(ordered.items())
    assert index.values() == list(ordered.values())
    assert len(index) == len(ordered)
    assert bool(index) == bool(ordered)
    if ordered:
        assert index.first() == next(iter(ordered))
        assert index.last() == next(reversed(ordered))
    assert index == reference


@pytest.mark.parametrize("seed", range(20))
def test_random_work_matches_a_dict_in_order(seed: int) -> None:
    rng = random.Random(seed)
    index, reference = FrozenIndex(), {}
    inline = seed % 2 == 0  # half the runs mix frozen bytes with row ids
    for step in range(600):
        op = rng.random()
        start = rng.randrange(-20, 400) * MINUTE  # (before 1970 too)
        if op < 0.5:
            value: bytes | int = (rng.randbytes(rng.randint(1, 40)) if inline and rng.random() < 0.5
                                  else rng.choice((LOST_ROW, rng.randrange(1, 1 << 62))))
            index[start] = value
            reference[start] = value
        elif op < 0.7:
            assert index.get(start) == reference.get(start)
            assert (start in index) == (start in reference)
            if start in reference:
                assert index.pop(start) == reference.pop(start)
            else:
                with pytest.raises(KeyError):
                    index.pop(start)
        elif op < 0.75:
            floor = rng.randrange(-20, 400) * MINUTE
            dropped = [v for s, v in sorted(reference.items()) if s < floor]
            assert index.drop_before(floor) == dropped
            reference = {s: v for s, v in reference.items() if s >= floor}
        elif op < 0.8:
            index = pickle.loads(pickle.dumps(index, protocol=pickle.HIGHEST_PROTOCOL))
        _check(index, reference)
        if step % 50 == 0 and reference:
            key = rng.choice(list(reference))
            assert index[key] == reference[key]


def test_a_window_held_by_its_row_costs_16_bytes() -> None:
    index = FrozenIndex((s * MINUTE, (1 << 48) + s) for s in range(360))  # a sensor's 6 h
    as_dict = dict(index.items())
    assert len(pickle.dumps(index, protocol=pickle.HIGHEST_PROTOCOL)) < 360 * 16 + 200
    assert deep_size(index) < 360 * 18 + 200  # (arrays grown by appends keep some slack)
    assert deep_size(as_dict) > 5 * deep_size(index)


def test_a_dict_of_the_code_before_loads_into_a_rollup() -> None:
    from cloud.logic.rollup import FROZEN_ROLLUP, SensorRollup

    rollup = SensorRollup(MINUTE, 6 * 60 * MINUTE)
    for m in range(200):
        rollup.add(m * MINUTE + 1, {"v": float(m)})
        rollup.evict()
    assert rollup.frozen
    state = rollup.__getstate__()
    assert state[0] == FROZEN_ROLLUP
    before = (*state[:10], dict(rollup.frozen.items()))  # as pickled before session 23
    loaded = SensorRollup.__new__(SensorRollup)
    loaded.__setstate__(before)
    assert type(loaded.frozen) is FrozenIndex
    assert loaded.frozen == rollup.frozen
    assert loaded.starts() == rollup.starts()
    assert loaded.window_at(5 * MINUTE) == rollup.window_at(5 * MINUTE)
