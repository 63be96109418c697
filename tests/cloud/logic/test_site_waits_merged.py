"""A site's `hospital_wait` hour from the sorted list it keeps of every queue's waits
(`HospitalSite._merged`, updated as each node replaces its waits of the hour) against the
same site made again from its snapshot before every call (the list then sorted afresh from
the nodes' waits, as the code before it did on every write): the same points, byte for byte,
through a day of kiosks whose hour gains a wait or two a message, waits corrected (removed
or changed), repeated values, partial hours, hours let go past the horizon and late hours."""

from __future__ import annotations

import pickle
import random

import pytest

from cloud.logic.domain.common import HOUR_NS
from cloud.logic.domain.hospital import SiteUpdate, WaitSamples
from cloud.logic.domain.hospital_site import HospitalSite, _replace_sorted

T0 = 1_780_272_000 * 10**9  # 2026-06-01 00:00 UTC
SITE = "opd"
KIOSKS = 12


def _calls(seed: int) -> list[list[SiteUpdate]]:
    rng = random.Random(seed)
    waits: dict[tuple[str, int], list[float]] = {}
    calls: list[list[SiteUpdate]] = []
    t = T0
    while t < T0 + 26 * HOUR_NS:
        t += rng.randint(1, 90) * 10**9
        call: list[SiteUpdate] = []
        for _ in range(rng.randint(1, 3)):
            node = f"kiosk-{rng.randrange(KIOSKS)}"
            hour = t - t % HOUR_NS - (rng.randint(1, 4) * HOUR_NS if rng.random() < 0.03 else 0)
            mine = waits.setdefault((node, hour), [])
            roll = rng.random()
            if roll < 0.1 and mine:  # a correction: a wait gone or changed
                mine.pop(rng.randrange(len(mine)))
                if roll < 0.05:
                    mine.append(float(rng.randint(0, 3600)))
            else:  # new waits, some equal to waits already held (whole seconds)
                mine.extend(float(rng.randint(0, 3600)) for _ in range(rng.choice((1, 1, 1, 2))))
            call.append(WaitSamples(SITE, node, hour, tuple(sorted(mine)), partial=rng.random() < 0.02))
        calls.append(call)
    return calls


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_the_kept_sorted_waits_write_what_sorting_them_afresh_writes(seed: int) -> None:
    kept = HospitalSite(2 * HOUR_NS)
    fresh = HospitalSite(2 * HOUR_NS)
    written = 0
    for call in _calls(seed):
        fresh = pickle.loads(pickle.dumps(fresh))  # no list kept: sorted from the nodes' waits
        got, want = kept.process(SITE, call), fresh.process(SITE, call)
        assert got == want
        assert kept.take_late() == fresh.take_late()
        written += len(got)
    assert written > 1000
    assert kept._merged  # the list was kept, not made again at every write
    assert min(kept._merged) >= min(kept.waits)  # hours let go are let go from it too
    assert "_merged" not in kept.__getstate__()


def test_a_node_s_waits_replaced_in_the_merged_list() -> None:
    merged = [1.0, 2.0, 2.0, 5.0, 7.0]  # this node's (2.0, 5.0) and another's (1.0, 2.0, 7.0)
    assert _replace_sorted(merged, (2.0, 5.0), (2.0, 3.0, 5.0, 9.0))
    assert merged == [1.0, 2.0, 2.0, 3.0, 5.0, 7.0, 9.0]
    assert _replace_sorted(merged, (2.0, 3.0, 5.0, 9.0), (3.0,))
    assert merged == [1.0, 2.0, 3.0, 7.0]
    assert not _replace_sorted(merged, (4.0,), ())  # not there: the caller makes it again
