"""The per-hospital (site) step's output pinned byte for byte, so that a faster
`HospitalSite.process` cannot change a point. The digests were computed by the code before
its ward snapshots were sorted once per call (commit 3574abd), on the benchmark's own
city: once in order, and once with the messages shuffled, a fifth of them replayed and a
1-hour horizon (eviction), with the updates of several messages per call as the dataflow
batches them. Resumed from a snapshot at every call (in the layout of snapshots taken
before the ward and bed window starts were kept sorted), the points are the same."""

from __future__ import annotations

import hashlib
import pickle
import random
from datetime import UTC, datetime
from functools import cache

import pytest

from bench.pipeline.workload import Workload, generate
from cloud.journal import JournalRecord
from cloud.logic.domain.hospital import SiteUpdate
from cloud.logic.domain.hospital_site import HospitalSite
from cloud.logic.node import NodeState
from cloud.logic.records import decode_record

NOW = datetime(2026, 6, 1, 12, tzinfo=UTC)  # generate() is then deterministic
HOUR_NS = 3600 * 10**9


@cache
def _workload() -> Workload:
    return generate(20_000, now=NOW)


def _old_snapshot_layout(state: NodeState) -> NodeState:
    """The node state through a snapshot as taken before its bed window starts were kept
    sorted (sets then)."""
    hospital = state.domain.hospital
    hospital.bed_windows = {rp: set(starts) for rp, starts in hospital.bed_windows.items()}  # type: ignore[misc]
    resumed: NodeState = pickle.loads(pickle.dumps(state))
    assert all(isinstance(s, list) for s in resumed.domain.hospital.bed_windows.values())
    return resumed


def _site_points(shuffle: bool, horizon_ns: int, group: int, resume: bool = False
                 ) -> tuple[str, int]:
    w = _workload()
    msgs = list(enumerate(w.messages))
    if shuffle:
        random.Random(7).shuffle(msgs)
        msgs += msgs[: len(msgs) // 5]
    nodes: dict[str, NodeState] = {}
    sites: dict[str, HospitalSite] = {}
    pending: dict[str, list[SiteUpdate]] = {}
    digest = hashlib.sha256()
    count = 0

    def flush() -> None:
        nonlocal count
        for site, updates in pending.items():
            state = sites.setdefault(site, HospitalSite(horizon_ns))
            for rp, ln in state.process(site, updates):
                digest.update(f"{rp}\t{ln}\n".encode())
                count += 1
            if resume:
                sites[site] = pickle.loads(pickle.dumps(state))
        pending.clear()
        if resume:
            for key, node_state in nodes.items():
                nodes[key] = _old_snapshot_layout(node_state)

    for n, (i, m) in enumerate(msgs):
        data, _ = decode_record(JournalRecord("i0", i + 1, w.last_ts_ns + i * 10_000_000, m.topic,
                                              m.payload), 4096)
        if data is None:
            continue
        state = nodes.setdefault(data.key, NodeState(horizon_ns, False))
        state.process(data)
        for u in state.take_site_updates():
            pending.setdefault(u.site, []).append(u)
        if n % group == group - 1:
            flush()
    flush()
    return digest.hexdigest(), count


# Both re-pinned when a door's reading (stamped at the end of its interval) went to the
# hour of its interval's last instant, ts - 1 ns (cloud.logic.rollup.window_ts): checked
# point by point, only hospital_flow points moved (17 in order, 9 messy), each exactly what
# the code before writes with the door readings stamped 1 ns earlier; every other point is
# the same and in the same order. (Before: cfecce91... in order, 70f4520a... messy.)
# Both re-pinned again when hospital_flow began to write `faulty` (door readings with
# fault = 1 in the hour, tests/cloud/logic/test_door_faults.py): checked point by point,
# the only change is ",faulty=0i" at the end of the fields of each hospital_flow point (19
# in order, 10 messy; no generated door reading has a fault): with it taken out, both runs
# give the digests before (3cdfe6fb... in order, 23f741b8... messy).
# All re-pinned when a bed silent for longer than STALE_NS (2 h 10 min) began to count as
# `stale`, and a ward whose latest snapshot is that old as stale as a whole
# (tests/cloud/logic/test_stale_pad.py): checked point by point, in order the only change is
# ",stale=0i" after `faulty` of each hospital_occupancy point (1379): with it taken out, the
# digest before. Messy (and resumed, the same): that field (587 points) and 55 points of
# viet-duc (54 minutes 07:00 to 07:53 and the 07:00 hour), whose ward of 28 beds had its
# latest snapshot the site held
# 2 h 10 min or more before the window (its updates lag in the shuffled order): those beds
# are now stale (beds 48 -> 20, stale 28), counted with that snapshot before; same points,
# same order. (Before: 0f237c29... in order, f9293a90... messy.)
IN_ORDER = ("4526e1e10a7dfbb4e5af449d15db2aa00e8e1a522598edbd7a8785e4252fcfe0", 1428)
# The messy run's updates lag the site by hours (a 1-hour horizon): the code before wrote
# 550 more points, totals of windows whose other wards, gates and halls the site had let go
# (1222 points, ac45d829...). With the replays the sink runs for the requests, 76 of that
# code's final hospital_occupancy points were wrong against in-order processing of every
# reading; now none is (test_site_lagging_node.py for the case).
MESSY = ("45b0d721b126bce41820cf9c97cc60f20e3d4c054ed58e6d3b7fda87f8938208", 672)


@pytest.mark.parametrize(("shuffle", "horizon_ns", "group", "resume", "expected"), [
    (False, 6 * HOUR_NS, 3, False, IN_ORDER),
    (True, HOUR_NS, 2, False, MESSY),
    (True, HOUR_NS, 2, True, MESSY),
], ids=["in-order", "messy", "messy-resumed-at-every-call"])
def test_site_points_are_those_of_the_code_before(shuffle: bool, horizon_ns: int, group: int,
                                                  resume: bool, expected: tuple[str, int]) -> None:
    assert _site_points(shuffle, horizon_ns, group, resume) == expected
