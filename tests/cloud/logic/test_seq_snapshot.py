"""A sensor's numberings (`cloud.logic.seqs.SeqRanges`) pickle as one tuple each, their
earlier numberings inside (since session 25; before, Python's (None, slots dict)), and a
node's snapshot holds them as those tuples: each layout resumes the same numberings."""

from __future__ import annotations

import pickle
from typing import Any

from cloud.logic.node import NodeState
from cloud.logic.rollup import HOUR_NS
from cloud.logic.seqs import SeqRanges


def _slots(seqs: SeqRanges) -> dict[str, Any]:
    held: dict[str, Any] = {name: getattr(seqs, name) for name in SeqRanges.__slots__}
    held["previous"] = [_slots(p) for p in seqs.previous]
    return held


def _numberings() -> SeqRanges:
    seqs = SeqRanges(max_ranges=3)
    for seq in (1, 2, 3, 7, 9, 12, 15):  # gaps past max_ranges: one given up
        seqs.add(seq)
    seqs.newest_ns, seqs.newest_seq = 1_000, 15
    seqs.restart(1, "s1#b", "b")
    seqs.add(2)
    seqs.restart(None, "s1#c", "c")
    seqs.add(5)
    seqs.forgotten = ("a",)
    return seqs


def test_numberings_resume_the_same_from_either_layout() -> None:
    seqs = _numberings()
    assert len(seqs.previous) == 2
    assert seqs.previous[0].given_up  # (kept with the first numbering)
    state = seqs.__getstate__()
    assert type(state) is tuple
    before = SeqRanges.__new__(SeqRanges)  # a snapshot of the code before: (None, slots)
    before.__setstate__((None, {name: getattr(seqs, name) for name in SeqRanges.__slots__}))
    for resumed in (pickle.loads(pickle.dumps(seqs, protocol=pickle.HIGHEST_PROTOCOL)), before):
        assert _slots(resumed) == _slots(seqs)
        assert all(type(p) is SeqRanges for p in resumed.previous)
        assert resumed.named("b", 0) is resumed.previous[1]
        assert resumed.add(6)
        assert not resumed.add(5)


def test_a_node_snapshot_holds_its_numberings_as_tuples() -> None:
    node = NodeState(HOUR_NS)
    node.seqs["s1"], node.seqs["s2"] = _numberings(), SeqRanges()
    state = node.__getstate__()
    assert all(type(held) is tuple for held in state["seqs"].values())
    before = {**state, "seqs": dict(node.seqs)}  # the code before held the objects
    for snapshot in (state, before):
        resumed = NodeState.__new__(NodeState)
        resumed.__setstate__(pickle.loads(pickle.dumps(snapshot, protocol=pickle.HIGHEST_PROTOCOL)))
        assert {s: _slots(held) for s, held in resumed.seqs.items()} == {
            s: _slots(held) for s, held in node.seqs.items()}
        assert all(type(held) is SeqRanges for held in resumed.seqs.values())
