"""The context memory in arrays (`_Contexts`) against the dict it replaced, kept here as it
was (`DictMemory`): on random streams of keys, with evictions, snapshots, coarsenings and
the memory's growth, every value's novelty count and the pickled keys (their order) must
be the dict's."""

from __future__ import annotations

import random

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cloud.detect.novelty import _MIX, _coarser, _Contexts, _memory


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


def _stream(rng: random.Random, steps: int, pool: int, orders: int) -> list[list[int]]:
    """Groups of keys as a value gives them (one to `orders`, a key again in a group now
    and then), drawn mostly from a pool of recurring keys, some new, up to 2**59."""
    common = [rng.getrandbits(rng.choice([8, 20, 44, 59])) for _ in range(pool)]
    out = []
    for _ in range(steps):
        group = []
        for _ in range(rng.randint(1, orders)):
            group.append(rng.choice(common) if rng.random() < 0.8 else rng.getrandbits(44))
        if rng.random() < 0.05:
            group.append(group[0])
        out.append(group)
    return out


def _check(stream: list[list[int]], capacity: int, orders: int, events: dict[int, str]) -> None:
    old = DictMemory()
    new = _memory((), 5, capacity, orders)
    for i, keys in enumerate(stream):
        event = events.get(i)
        if event == "snapshot":
            state = new.to_bytes()
            assert state == old.pickled(), i
            old.unpickle(old.pickled())
            new = _Contexts.of(np.frombuffer(state, dtype=np.int64), capacity + orders)
        elif event == "coarsen":
            old.coarsen(5)
            new = _memory(_coarser(new, 5), 5, capacity, orders)
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
)
def test_the_memory_forgets_and_orders_as_the_dict(
    seed: int, capacity: int, orders: int, steps: int, events: list[tuple[int, str]]
) -> None:
    rng = random.Random(seed)
    pool = rng.choice([4, capacity, 2 * capacity + 7])
    _check(_stream(rng, steps, pool, orders), capacity, orders, dict(events))


@pytest.mark.parametrize(("capacity", "pool"), [(3, 10), (40, 60), (300, 500), (2500, 3500),
                                                (2500, 1200)])
def test_long_streams_through_growth_and_the_log_s_compaction(capacity: int, pool: int) -> None:
    """Long enough to fill the memory, grow it to its room and compact its log many times."""
    rng = random.Random(capacity + pool)
    stream = _stream(rng, 12_000, pool, 5)
    _check(stream, capacity, 5, {3_000: "snapshot", 7_000: "coarsen", 9_000: "snapshot"})


def _keys_at_the_table_s_end(bits: int, n: int, rng: random.Random) -> list[int]:
    """Distinct keys whose slot is the last of a table of 2**bits slots."""
    inverse = pow(_MIX, -1, 2**64)
    keys: set[int] = set()
    while len(keys) < n:
        product = ((2**bits - 1) << (64 - bits)) | rng.getrandbits(64 - bits)
        key = product * inverse % 2**64
        if key < 2**63:
            keys.add(key)
    return sorted(keys)


def test_keys_placed_round_the_table_s_end_are_found_and_forgotten() -> None:
    """Built at once (a snapshot loaded), keys of the last slot go round to the first ones."""
    rng = random.Random(7)
    memory = _Contexts(40)
    bits = memory._mask.bit_length()
    crowded = _keys_at_the_table_s_end(bits, 12, rng)
    others = [rng.getrandbits(44) for _ in range(20)]
    keys = others[:10] + crowded + others[10:]
    old = DictMemory()
    old.see(keys, 40)
    memory = _Contexts.of(np.array(keys, dtype=np.int64), 40)
    assert (memory._mask.bit_length(), list(memory)) == (bits, keys)
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
