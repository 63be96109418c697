"""The site step keeps the site-wide hours replayed for a node (`SiteReplayed`) and asks
for them again when it writes a hospital window they reach (cloud.logic.domain.hospital_site;
the whole way: test_domain_replay_other_ward.py)."""

from __future__ import annotations

import pickle

from cloud.logic.domain.hospital import DoorTotals, SiteReplayed, WaitSamples, WardSnapshot
from cloud.logic.domain.hospital_site import HospitalSite
from cloud.logic.domain_replay import DOMAIN_REPLAY, ReplaySpan, site_step
from tests.cloud.logic.domain_helpers import HOUR, MIN, T0

HORIZON = 6 * HOUR
RP_1M = "agg_1m"


def _ward(node: str, start: int, occupied: int = 1) -> WardSnapshot:
    return WardSnapshot("bv", node, RP_1M, start, 2, occupied, 2 - occupied, 0)


def test_a_window_another_ward_writes_within_a_replayed_hour_asks_for_it_again() -> None:
    site = HospitalSite(HORIZON)
    site.process("bv", [_ward("ward-a", T0 + 10 * HOUR), _ward("ward-b", T0 + 10 * HOUR)])
    assert site.process("bv", [SiteReplayed("bv", "ward-a", (("beds", T0 + 5 * HOUR),))]) == []
    assert site.take_late() == []  # nothing written: nothing to ask again
    # ward-b's backlog writes the hospital total of T0 + 5 h 30 from ward-a's live state
    points = site.process("bv", [_ward("ward-b", T0 + 5 * HOUR + 30 * MIN, occupied=0)])
    assert points
    assert site.take_late() == [("beds", T0 + 5 * HOUR)]
    assert site.take_late() == []  # given once


def test_windows_outside_the_replayed_hours_or_of_another_scope_ask_nothing() -> None:
    site = HospitalSite(HORIZON)
    site.process("bv", [_ward("ward-a", T0 + 10 * HOUR), _ward("ward-b", T0 + 10 * HOUR)])
    # beds: the hour and the one after it (a bed's state lasts up to its next reading)
    site.process("bv", [SiteReplayed("bv", "ward-a", (("beds", T0 + 5 * HOUR),))])
    site.process("bv", [_ward("ward-b", T0 + 7 * HOUR)])  # after the span's end (T0 + 7 h)
    site.process("bv", [DoorTotals("bv", "er", T0 + 5 * HOUR, 3.0, 4.0)])  # doors: not replayed
    site.process("bv", [WaitSamples("bv", "kiosk", T0 + 6 * HOUR, (60.0,))])
    assert site.take_late() == []
    site.process("bv", [_ward("ward-b", T0 + 6 * HOUR + 59 * MIN)])  # the last minute of the span
    assert site.take_late() == [("beds", T0 + 5 * HOUR)]


def test_the_marks_are_dropped_once_no_window_within_the_horizon_reaches_them() -> None:
    site = HospitalSite(HORIZON)
    site.process("bv", [_ward("ward-a", T0 + 10 * HOUR)])
    site.process("bv", [SiteReplayed("bv", "ward-a", (("beds", T0 + 5 * HOUR),))])
    assert site.marks
    site.process("bv", [_ward("ward-a", T0 + 14 * HOUR)])  # floor T0 + 8 h: the span ended at T0 + 7 h
    assert not site.marks


def test_site_step_turns_them_into_site_wide_replay_requests_after_the_points() -> None:
    site = HospitalSite(HORIZON)
    site_step(site, "bv", [_ward("ward-a", T0 + 10 * HOUR), _ward("ward-b", T0 + 10 * HOUR)])
    site_step(site, "bv", [SiteReplayed("bv", "ward-a", (("beds", T0 + 5 * HOUR),))])
    points = site_step(site, "bv", [_ward("ward-b", T0 + 5 * HOUR + 30 * MIN)])
    # from the hour before (a gap its first reading may close: test_replay_bed_gaps.py)
    assert points[-1] == (DOMAIN_REPLAY, ReplaySpan("beds", "bv", "", T0 + 4 * HOUR, T0 + 7 * HOUR).encode())
    assert all(rp != DOMAIN_REPLAY for rp, _ in points[:-1])


def test_a_snapshot_from_before_the_marks_loads_without_any() -> None:
    site = HospitalSite(HORIZON)
    site.process("bv", [_ward("ward-a", T0 + 10 * HOUR)])
    old = dict(site.__dict__)
    del old["marks"], old["late"]
    loaded = HospitalSite.__new__(HospitalSite)
    loaded.__setstate__(old)
    assert not loaded.marks
    assert loaded.take_late() == []
    again = pickle.loads(pickle.dumps(loaded))
    assert again.process("bv", [_ward("ward-a", T0 + 11 * HOUR)]) == site.process(
        "bv", [_ward("ward-a", T0 + 11 * HOUR)])
