"""The site step of a large hospital (40 wards, a few door nodes) pinned byte for byte: its
points and the replays it asks for, from a random stream of ward snapshots of the live
minute and hour, late ones (up to 3 h behind, some past the 2-h horizon), corrections of a
window already sent, wards that fall silent for good (stale after 2 h 10 min, gone after a
week), door totals and replayed hours, handed over 1-5 updates a call, and resumed from a
snapshot every 40 calls in the second run. The digests were computed by the code that
summed every ward for each window written (6178094), so a cheaper `HospitalSite.process`
cannot change a point; test_site_pinned_output.py pins the benchmark city's (two or three
wards a site)."""

from __future__ import annotations

import hashlib
import pickle
import random

import pytest

from cloud.logic.domain.common import HOUR_NS, MINUTE_NS, WIDTHS
from cloud.logic.domain.hospital import DoorTotals, SiteReplayed, SiteUpdate, WardSnapshot
from cloud.logic.domain.hospital_site import HospitalSite
from cloud.logic.domain.site_sums import WindowSums

T0 = 1_780_272_000 * 10**9  # 2026-06-01 00:00 UTC
SITE = "big-hospital"
WARDS = 40
SILENT_FROM = {0: 1, 1: 2, 2: 3}  # ward -> day after which it sends nothing


def _updates(seed: int) -> list[list[SiteUpdate]]:
    rng = random.Random(seed)
    beds = [rng.randint(8, 40) for _ in range(WARDS)]
    calls: list[list[SiteUpdate]] = []
    t = T0
    while t < T0 + 9 * 24 * HOUR_NS:
        t += (6 * HOUR_NS if rng.random() < 1 / 250
              else rng.randint(5, 120) * 10**9)
        call: list[SiteUpdate] = []
        for _ in range(rng.randint(1, 5)):
            roll = rng.random()
            if roll < 0.05:
                hour = t - t % HOUR_NS - rng.choice((0, 0, HOUR_NS))
                call.append(DoorTotals(SITE, f"gate-{rng.randint(0, 2)}", hour,
                                       float(rng.randint(0, 30)), float(rng.randint(0, 200)),
                                       rng.choice((0, 0, 1, None))))
                continue
            if roll < 0.07:
                hour = t - t % HOUR_NS - rng.randint(0, 3) * HOUR_NS
                call.append(SiteReplayed(SITE, "ward-00", (("beds", hour),)))
                continue
            ward = rng.randrange(WARDS)
            if t - T0 > SILENT_FROM.get(ward, 99) * 24 * HOUR_NS:
                continue
            lag = rng.randint(0, 3 * HOUR_NS) if rng.random() < 0.08 else 0
            n = beds[ward]
            faulty = rng.randint(0, 2)
            occupied = rng.randint(0, n - faulty)
            stale = rng.randint(0, 1)
            for rp, width in WIDTHS:
                at = t - lag
                call.append(WardSnapshot(SITE, f"ward-{ward:02d}", rp, at - at % width, n,
                                         occupied, n - faulty - occupied, faulty, stale))
        if call:
            calls.append(call)
    return calls


def _digest(seed: int, resume_every: int) -> tuple[str, int, int]:
    site = HospitalSite(2 * HOUR_NS)
    digest = hashlib.sha256()
    points = asked = 0
    for n, call in enumerate(_updates(seed)):
        for rp, ln in site.process(SITE, call):
            digest.update(f"{rp}\t{ln}\n".encode())
            points += 1
        for scope, hour in site.take_late():
            digest.update(f"late\t{scope}\t{hour}\n".encode())
            asked += 1
        if resume_every and n % resume_every == resume_every - 1:
            site = pickle.loads(pickle.dumps(site))
    return digest.hexdigest(), points, asked


PINNED = {
    1: ("27233f51df3d0c2405030d7981bf642733d0d5d4f8334790a55ed85e03682742", 73953, 6207),
    2: ("8332ed6d1034df90fdbc92a384cd89fb22e80819b81320ab13ceed7bd519122c", 88349, 8841),
}


@pytest.mark.parametrize(("seed", "resume_every"), [(1, 0), (2, 40)],
                         ids=["live", "resumed-every-40-calls"])
def test_a_large_hospitals_site_points_are_those_of_the_code_before(
        seed: int, resume_every: int) -> None:
    assert _digest(seed, resume_every) == PINNED[seed]


def test_the_stream_reaches_what_it_is_for() -> None:
    """The stream has late snapshots past the horizon, stale and gone wards."""
    calls = _updates(1)
    snaps = [u for call in calls for u in call if isinstance(u, WardSnapshot)]
    assert len({u.node for u in snaps}) == WARDS
    last = max(u.start_ns for u in snaps)
    assert last - T0 > 8 * 24 * HOUR_NS  # ward-00 silent since day 1: gone (a week) by then
    newest = 0
    behind = 0
    for u in snaps:
        newest = max(newest, u.start_ns)
        behind += newest - u.start_ns > 2 * HOUR_NS + MINUTE_NS
    assert behind > 10


def test_the_kept_sums_are_those_summed_afresh() -> None:
    """Every window sum the site keeps (changed by each ward's update since it was first
    summed, `site_sums.WindowSums`) equals the sum over its wards made anew, at every 97th
    call of a stream with late snapshots, corrections, stale and gone wards."""
    site = HospitalSite(2 * HOUR_NS)
    checked = 0
    for n, call in enumerate(_updates(3)):
        site.process(SITE, call)
        if n % 97:
            continue
        for rp, _ in WIDTHS:
            kept = site._sums[rp]
            afresh = WindowSums({node: dict(snaps) for node, snaps in site.wards[rp].items()})
            for start, sums in kept.sums.items():
                assert sums == afresh.total(start), (rp, start)
                checked += 1
            assert kept.starts == afresh.starts
    assert checked > 1000
