"""The context memory in arrays (`_Contexts`) against the dict it replaced, kept here as it
was (`DictMemory`): on random streams of keys, with evictions, snapshots, coarsenings, the
memory's growth and its stamps numbered again, every value's novelty count and the pickled
keys (their order) must be the dict's."""

from __future__ import annotations

import random

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cloud.detect.novelty import _coarser, _Contexts, _key_bits, _memory


class DictMemory:
    """The memory as the dict of commit ee6bedd kept it (cloud/detect/novelty.py)."""

    def __init__(self) -> None:
        # Insertion-ordered set of context keys, least recently seen first (values all 0).
        self._memory: dict[int, int] = {}

    def see(self, keys: list[int], capacity: int) -> int:
        memory = self._memory
        pop = memory.pop
        novel = 0
        for key in keys:
            novel += pop(key, 1)  # 1 if new; a key seen before moves to the end
            memory[key] = 0
        if novel:
            while len(memory) > capacity:
                del memory[next(iter(memory))]
        return novel

    def pickled(self) -> bytes:  # __getstate__
        return np.fromiter(self._memory, dtype=np.int64).tobytes()

    def unpickle(self, memory: bytes) -> None:  # __setstate__
        keys = np.frombuffer(memory, dtype=np.int64)
        self._memory = dict.fromkeys((int(key) for key in keys), 0)

    def coarsen(self, longest: int) -> None:  # _coarsen
        self._memory = dict.fromkeys(_coarser(self._memory, longest), 0)


def _stream(rng: random.Random, steps: int, pool: int, orders: int, bits: int = 44) -> list[list[int]]:
    """Groups of keys as a value gives them (one to `orders`, a key again in a group now
    and then), drawn mostly from a pool of recurring keys, some new, below 2**bits (the
    keys of orders up to 5 are below 2**44)."""
    common = [rng.getrandbits(rng.choice([min(8, bits), bits // 2, bits])) for _ in range(pool)]
    out = []
    for _ in range(steps):
        group = []
        for _ in range(rng.randint(1, orders)):
            group.append(rng.choice(common) if rng.random() < 0.8 else rng.getrandbits(bits))
        if rng.random() < 0.05:
            group.append(group[0])
        out.append(group)
    return out


def _check(stream: list[list[int]], capacity: int, orders: int, events: dict[int, str],
           longest: int = 5) -> None:
    old = DictMemory()
    new = _memory((), longest, capacity, orders)
    assert isinstance(new, _Contexts)
    for i, keys in enumerate(stream):
        event = events.get(i)
        if event == "snapshot":
            state = new.to_bytes()
            assert state == old.pickled(), i
            old.unpickle(old.pickled())
            new = _Contexts.of(np.frombuffer(state, dtype=np.int64), capacity + orders, longest)
        elif event == "coarsen":
            old.coarsen(longest)
            new = _memory(_coarser(new, longest), longest, capacity, orders)
        assert new.see(keys, capacity) == old.see(keys, capacity), i
        assert len(new) == len(old._memory), i
    assert new.to_bytes() == old.pickled()
    assert list(new) == list(old._memory)


@settings(max_examples=150, deadline=None)
@given(
    st.integers(0, 2**32),
    st.sampled_from([1, 2, 3, 5, 12, 40, 300]),
    st.integers(1, 6),
    st.integers(1, 400),
    st.lists(st.tuples(st.integers(0, 400), st.sampled_from(["snapshot", "coarsen"])),
             max_size=4),
    st.sampled_from([5, 3, 1]),
)
def test_the_memory_forgets_and_orders_as_the_dict(
    seed: int, capacity: int, orders: int, steps: int, events: list[tuple[int, str]], longest: int
) -> None:
    rng = random.Random(seed)
    pool = rng.choice([4, capacity, 2 * capacity + 7])
    stream = _stream(rng, steps, pool, orders, _key_bits(longest))
    _check(stream, capacity, orders, dict(events), longest)


@pytest.mark.parametrize(("capacity", "pool"), [(3, 10), (40, 60), (300, 500), (2500, 3500),
                                                (2500, 1200)])
def test_long_streams_through_growth_and_the_queue_of_the_least_recent(capacity: int, pool: int) -> None:
    """Long enough to fill the memory, grow it to its room and find its least recent keys
    many times."""
    rng = random.Random(capacity + pool)
    stream = _stream(rng, 12_000, pool, 5)
    _check(stream, capacity, 5, {3_000: "snapshot", 7_000: "coarsen", 9_000: "snapshot"})


@pytest.mark.parametrize(("capacity", "pool"), [(3, 10), (300, 500), (2000, 1200)])
def test_stamps_numbered_again_keep_the_order(capacity: int, pool: int) -> None:
    """Keys of orders up to 6 leave a word 12 bits of stamp: the clock comes to its end
    every few thousand keys seen and the stamps are numbered again, many times here."""
    rng = random.Random(capacity * pool)
    stream = _stream(rng, 12_000, pool, 5, _key_bits(6))
    _check(stream, capacity, 5, {5_000: "snapshot", 8_000: "coarsen"}, longest=6)


def test_wider_keys_or_a_larger_memory_keep_the_dict() -> None:
    """Keys and stamps that do not fit a word: the memory is the dict, as the orders beyond
    7 levels always were."""
    assert isinstance(_memory((), 6, 2500, 6), dict)
    assert isinstance(_memory((), 7, 40, 7), dict)
    assert isinstance(_memory((), 5, 2500, 5), _Contexts)
    with pytest.raises(ValueError, match="below 2\\*\\*44"):
        _Contexts.of(np.array([1 << 44], dtype=np.int64), 40)


def _keys_at_the_table_s_end(memory: _Contexts, n: int, rng: random.Random) -> list[int]:
    """Distinct keys of orders up to 5 (below 2**44) whose slot is the last of the index."""
    keys: set[int] = set()
    while len(keys) < n:
        key = rng.getrandbits(44)
        if memory._slot(key)[0] == memory._slots - 1:
            keys.add(key)
    return sorted(keys)


def test_keys_placed_round_the_table_s_end_are_found_and_forgotten() -> None:
    """Built at once (a snapshot loaded), keys of the last slot go round to the first ones."""
    rng = random.Random(7)
    memory = _Contexts(40)
    slots = memory._slots
    crowded = _keys_at_the_table_s_end(memory, 12, rng)
    others = [rng.getrandbits(44) for _ in range(20)]
    keys = others[:10] + crowded + others[10:]
    old = DictMemory()
    old.see(keys, 40)
    memory = _Contexts.of(np.array(keys, dtype=np.int64), 40)
    assert (memory._slots, list(memory)) == (slots, keys)
    assert any(memory._index[slot] for slot in range(3))  # some went round
    for step in range(200):  # each key seen again, new ones forget the oldest
        group = [keys[step % len(keys)], rng.getrandbits(44)]
        assert memory.see(group, 40) == old.see(group, 40)
        assert list(memory) == list(old._memory)


@settings(max_examples=100, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["pop", "set", "del"]), st.integers(0, 30)),
                max_size=200))
def test_the_dict_s_own_ways_behave_as_the_dict_s(ops: list[tuple[str, int]]) -> None:
    """What treats the memory as a dict (pop with a default, assignment, deletion,
    iteration, length, equality) sees the dict's behaviour."""
    memory = _Contexts(4)
    plain: dict[int, int] = {}
    for op, key in ops:
        if op == "pop":
            assert memory.pop(key, 1) == plain.pop(key, 1)
        elif op == "set":
            memory[key] = 0
            plain[key] = 0
        elif key in plain:
            del memory[key]
            del plain[key]
        else:
            with pytest.raises(KeyError):
                del memory[key]
        assert list(memory) == list(plain)
        assert len(memory) == len(plain)
        assert memory == plain
    assert (memory == {}) == (not plain)
