"""A rollup's closed windows by start (`cloud.logic.frozen_index.FrozenIndex`: starts and row
ids as int32 offsets where they fit, int64 where they do not, and for windows frozen without
a store their bytes) behave as the dict they replace, kept in increasing order of start, at
every step of random work and through a pickle, whatever encoding the work forces; with row
ids only they cost 8 bytes a window in memory and in a snapshot, 4 when the starts are one run."""

from __future__ import annotations

import pickle
import random
from array import array

import pytest

from bench.pipeline.node_state_size import deep_size
from cloud.frozen_store import LOST_ROW, PART_SHIFT
from cloud.logic.frozen_index import FrozenIndex, _load

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


def _pickled(index: FrozenIndex) -> int:
    return len(pickle.dumps(index, protocol=pickle.HIGHEST_PROTOCOL))


# How the work draws starts and ids: (the index's width, the starts' width, off the grid,
# a row id) - a process's ids in order, another process's, a LOST_ROW, ids far apart.
REGIMES = {
    "a process's ids": (MINUTE, MINUTE, 0.0, "counter"),
    "ids of two processes": (MINUTE, MINUTE, 0.0, "two processes"),
    "lost rows among the ids": (MINUTE, MINUTE, 0.0, "lost"),
    "starts off the width's grid": (MINUTE, MINUTE, 0.05, "counter"),
    "no width, any ids": (1, MINUTE, 0.0, "any"),
    "hour windows, ids far apart": (60 * MINUTE, 60 * MINUTE, 0.0, "far"),
}


@pytest.mark.parametrize("regime", REGIMES)
@pytest.mark.parametrize("seed", range(6))
def test_random_work_matches_a_dict_in_order(regime: str, seed: int) -> None:
    width, spacing, off_grid, ids = REGIMES[regime]
    rng = random.Random(f"{regime}/{seed}")
    index, reference = FrozenIndex(width=width), {}
    inline = seed % 2 == 0  # half the runs mix frozen bytes with row ids
    counter = rng.randrange(1, 1 << 40)

    def a_ref() -> int:
        nonlocal counter
        counter += rng.randint(1, 60)
        if ids == "two processes" and rng.random() < 0.1:
            return (rng.randint(1, 3) << PART_SHIFT) + counter
        if ids == "lost" and rng.random() < 0.05:
            return LOST_ROW
        if ids == "any":
            return rng.choice((LOST_ROW, rng.randrange(1, 1 << 62)))
        if ids == "far" and rng.random() < 0.1:
            counter += 1 << 31
        return counter

    for step in range(600):
        op = rng.random()
        start = rng.randrange(-20, 400) * spacing  # (before 1970 too)
        if rng.random() < off_grid:
            start += rng.randrange(1, width)
        if op < 0.5:
            value = rng.randbytes(rng.randint(1, 40)) if inline and rng.random() < 0.5 else a_ref()
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
            floor = rng.randrange(-20, 400) * spacing + rng.choice((0, 0, 1, -1))
            dropped = [v for s, v in sorted(reference.items()) if s < floor]
            assert index.drop_before(floor) == dropped
            reference = {s: v for s, v in reference.items() if s >= floor}
        elif op < 0.8:
            index = pickle.loads(pickle.dumps(index, protocol=pickle.HIGHEST_PROTOCOL))
            assert index.width == width
        _check(index, reference)
        if step % 50 == 0 and reference:
            key = rng.choice(list(reference))
            assert index[key] == reference[key]


def _a_sensor(windows: int, every: int, part: int) -> FrozenIndex:
    """A sensor's closed minute windows, one in `every` minutes, their rows among a node's."""
    rng = random.Random(windows * every)
    ref = (part << PART_SHIFT) + 1_000
    items = []
    for s in range(windows):
        ref += rng.randint(10, 40)  # (the node's other sensors' rows in between)
        items.append((s * every * MINUTE, ref))
    return FrozenIndex(items, MINUTE)


@pytest.mark.parametrize("part", [0, 5])
def test_a_window_costs_8_bytes_and_4_in_a_run(part: int) -> None:
    loop = _a_sensor(360, 1, part)  # a loop detector's 6 h: one run of starts
    assert _pickled(loop) < 360 * 4 + 120
    assert deep_size(loop) < 360 * 10 + 200  # (arrays grown by appends keep some slack)
    assert deep_size(dict(loop.items())) > 10 * deep_size(loop)
    pad = _a_sensor(70, 5, part)  # a bed pad's: sparse starts
    assert 70 * 8 < _pickled(pad) < 70 * 8 + 120
    for index in (loop, pad):
        assert pickle.loads(pickle.dumps(index)) == dict(index.items())


def test_an_id_that_does_not_fit_widens_the_ids_until_it_is_gone() -> None:
    index = _a_sensor(100, 1, 1)
    compact = _pickled(index)
    index[100 * MINUTE] = LOST_ROW  # (far below the process's ids)
    assert _pickled(index) > compact + 100 * 4 - 20
    assert index.drop_before(101 * MINUTE)[-1] == LOST_ROW  # gone: int32 again


def test_ids_that_travel_past_2_to_the_31_stay_int32_while_their_span_fits() -> None:
    index, reference = FrozenIndex(width=MINUTE), {}
    for m in range(1_000):
        ref = 1 + m * (1 << 25)  # 1,000 ids 2^25 apart: past 2^34 in all, 20 held at a time
        index[m * MINUTE] = reference[m * MINUTE] = ref
        index.drop_before((m - 19) * MINUTE)
        reference = {s: v for s, v in reference.items() if s >= (m - 19) * MINUTE}
        assert _pickled(index) < len(reference) * 4 + 120
    _check(index, reference)


def test_an_index_pickled_before_session_25_loads_and_a_rollup_gives_it_its_width() -> None:
    from cloud.logic.rollup import FROZEN_ROLLUP, SensorRollup

    starts, refs = [s * MINUTE for s in range(50)], [(2 << PART_SHIFT) + 7 * s for s in range(50)]

    class Before:  # what FrozenIndex.__reduce__ made from session 23 to 24
        def __reduce__(self) -> tuple[object, ...]:
            return _load, (array("q", starts).tobytes(), array("q", refs).tobytes(), None)

    loaded = pickle.loads(pickle.dumps(Before()))
    assert loaded == dict(zip(starts, refs, strict=True))
    rollup = SensorRollup(MINUTE, 6 * 60 * MINUTE)
    for m in range(60):
        rollup.add(m * MINUTE + 1, {"v": float(m)})
    state = rollup.__getstate__()
    resumed = SensorRollup.__new__(SensorRollup)
    resumed.__setstate__((FROZEN_ROLLUP, *state[1:10], loaded))  # (its index an object)
    assert type(resumed.frozen) is FrozenIndex
    assert resumed.frozen.width == MINUTE
    assert resumed.frozen == loaded
    assert _pickled(resumed.frozen) < 50 * 4 + 120


def test_a_dict_of_the_code_before_loads_into_a_rollup() -> None:
    from cloud.logic.rollup import FROZEN_ROLLUP, INDEXED_ROLLUP, SensorRollup

    rollup = SensorRollup(MINUTE, 6 * 60 * MINUTE)
    for m in range(200):
        rollup.add(m * MINUTE + 1, {"v": float(m)})
        rollup.evict()
    assert rollup.frozen
    state = rollup.__getstate__()
    assert state[0] == INDEXED_ROLLUP
    before = (FROZEN_ROLLUP, *state[1:10], dict(rollup.frozen.items()))  # before session 23
    loaded = SensorRollup.__new__(SensorRollup)
    loaded.__setstate__(before)
    assert type(loaded.frozen) is FrozenIndex
    assert loaded.frozen.width == MINUTE
    assert loaded.frozen == rollup.frozen
    assert loaded.starts() == rollup.starts()
    assert loaded.window_at(5 * MINUTE) == rollup.window_at(5 * MINUTE)


def test_a_width_below_1_is_refused() -> None:
    with pytest.raises(ValueError, match="width must be at least 1, not 0"):
        FrozenIndex(width=0)


def test_a_run_of_int64_starts_pickled_takes_any_start_after() -> None:
    """A run of starts an int32 cannot hold, pickled as its first and count, loads as the
    int64 starts themselves: a start at the other end of int64 is still taken."""
    index, low = FrozenIndex(width=60), -9 * 10**18
    index[low], index[low + 1] = 1, 2  # (off the grid of 60 from each other: int64 starts)
    index.pop(low + 1)
    loaded = pickle.loads(pickle.dumps(index, protocol=pickle.HIGHEST_PROTOCOL))
    high = 9 * 10**18 - 9 * 10**18 % 60
    for held in (index, loaded):
        held[high] = 3
        assert held.items() == [(low, 1), (high, 3)]
