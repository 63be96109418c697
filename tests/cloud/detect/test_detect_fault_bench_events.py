"""The fault rules raise on the fault bench exactly the events they raised before they were
made cheaper per reading (issue 6 throughput, issue 7): same types, stamps, values, detail
texts, sequence numbers, in the same order.

The runs are those of `python -m bench.faults.run` with its default options, on its default
seeds 1-4 and on 5-8 (`bench.faults.digest`: every event as raised, hashed). The digests
were computed with the code of commit 6e47edb, before the rules' fast path; a deliberate
change of the rules, of the bench or of the simulated city changes them: recompute them then
(`python -m bench.faults.digest --seeds 1 2 3 4`, and 5 6 7 8).
"""

from __future__ import annotations

import pytest

from bench.faults.digest import digest

PINNED = {
    (1, 2, 3, 4): ("c359f96e766cb6c691e2774bfc119be346643b49614ff694e36bc3577942e4b0", 1140),
    (5, 6, 7, 8): ("b4055515f4a18a8b20cd5700a9d21b8765c57eae4cf16f781e39ee3c7068f2b6", 1276),
}


@pytest.mark.slow
@pytest.mark.parametrize("seeds", sorted(PINNED))
def test_the_fault_bench_raises_the_events_it_raised_before(seeds: tuple[int, ...]) -> None:
    value, events = digest(list(seeds))
    assert events > 1000
    assert (value, events) == PINNED[seeds]
