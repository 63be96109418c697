"""The context memory keeps its recent levels packed (`_body`) to build the keys of
consecutive orders by shifts: the packing must follow `_recent` through learning, runs,
coarsening and snapshots, and the keys must be those of `_encode`, level by level."""

from __future__ import annotations

import pickle

from hypothesis import given, settings
from hypothesis import strategies as st

from cloud.detect.novelty import ContextNovelty, _encode, _packed

# Steps, plateaus (the repeated-level shortcut) and growing ranges (coarsening).
_VALUES = st.lists(
    st.tuples(st.floats(-1e4, 1e4, allow_nan=False, allow_infinity=False), st.integers(1, 8)),
    min_size=1,
    max_size=120,
)


@settings(max_examples=80, deadline=None)
@given(_VALUES, st.integers(0, 400), st.sampled_from([(1, 2, 3, 4, 5), (1,), (1, 2, 3)]))
def test_the_packed_levels_follow_the_recent_ones(
    runs: list[tuple[float, int]], cut: int, orders: tuple[int, ...]
) -> None:
    novelty = ContextNovelty(8, orders, 20, 2.5, 60)
    values = [value for value, times in runs for _ in range(times)]
    for i, value in enumerate(values):
        if i == cut:  # a snapshot: the packing is not pickled, but made again
            novelty = pickle.loads(pickle.dumps(novelty))
        before = list(novelty._memory)
        novelty.update(value)
        assert novelty._body == _packed(novelty._recent)
        # The newest contexts are those of the recent levels (unless the shortcut left
        # the memory as it was, or the value was still being learned).
        recent = novelty._recent
        if recent and list(novelty._memory) != before:
            expected = [_encode(recent[-order:]) for order in orders if order <= len(recent)]
            assert list(novelty._memory)[-len(expected):] == expected


def test_a_snapshot_keeps_its_bytes() -> None:
    """The packing is made from `_recent`, not stored: the pickled state is the old one."""
    novelty = ContextNovelty(8, (1, 2, 3, 4, 5), 20, 2.5, 60)
    for i in range(200):
        novelty.update(float(i % 17) * (1 + i // 50))
    state = novelty.__getstate__()
    assert "_body" not in state
    again = pickle.loads(pickle.dumps(novelty))
    assert again._body == novelty._body != 0
    assert pickle.dumps(again) == pickle.dumps(novelty)
