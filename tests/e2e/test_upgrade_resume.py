"""An upgrade of the processor resumes the recovery store the previous release wrote
(docs/runbook.md, "Upgrading or rolling back the processor"): the city's workload, half of
it through the processor of UPGRADED_FROM (snapshots of NodeState, HospitalSite, detectors
and fault monitors as that code pickled them), stopped, the rest through today's processor
resumed from that store and the same journal. What it leaves in InfluxDB is compared with
an uninterrupted run of today's processor over the same journal, the two runs told apart
by their sites' names: only what the day's changes mean to change may differ
(`_differences`). Then the roll back the runbook describes: the store's copy from before
the upgrade put back, the old release resumes it over the whole journal. Real processors,
journals and InfluxDB; UPGRADE_DIFF_OUT=<path> keeps the differences found."""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from bench.pipeline.workload import generate
from cloud.journal import Journal, journal_path
from tests.conftest import CloudProcess
from tests.e2e.test_processor_health import committed_offset, old_tree
from urbanpulse.clock import from_epoch_ns, to_epoch_ns
from urbanpulse.influx_http import InfluxHTTP
from urbanpulse.testing import wait_for
from urbanpulse.wire import data_topic

pytestmark = [pytest.mark.stack, pytest.mark.slow]

# The release before the day whose changes moved what the snapshots hold (door entries'
# fault, FaultEvent.received, the detector's alert hold, FaultMonitor._set_back, ...),
# STATE_VERSION kept at "1".
UPGRADED_FROM = "263783f"
NOW = datetime(2026, 11, 29, 12, tzinfo=UTC)
READINGS, BATCH = 60_000, 100


def _messages(prefix: str) -> tuple[list[tuple[str, bytes]], list[int]]:
    """The workload's messages with each site named `prefix` + site, and their receptions
    (a second after each message's newest reading, the same in both runs), with faults
    whose state the snapshot taken at the half holds: a door cut around the half, two
    messages of a node swapped across it (a sequence gap held), a node's clock set back
    40 minutes 40 minutes before it."""
    bodies, received = [], []
    for m in generate(READINGS, batch=BATCH, now=NOW).messages:
        body = json.loads(m.payload)
        bodies.append(body)
        newest = max(r["ts"] for r in body["readings"])
        received.append(to_epoch_ns(datetime.fromisoformat(newest)) + 1_000_000_000)
    order = sorted(range(len(bodies)), key=lambda i: received[i])
    bodies, received = [bodies[i] for i in order], [received[i] for i in order]
    half = len(bodies) // 2
    cut = received[half - 1] - 1_000_000_000

    def of(site: str, node: str) -> list[int]:
        return [i for i, b in enumerate(bodies) if (b["site"], b["node"]) == (site, node)]

    for i in of("bach-mai", "opd-hall"):  # a door cut from 30 min before the half to 30 after
        for r in bodies[i]["readings"]:
            if r["kind"] == "hospital.door" and abs(_ns(r["ts"]) - cut) <= 1800 * 10**9:
                r["values"]["fault"] = 1
    cabinet = of("kim-lien", "cabinet")  # its last message before the half comes after it
    before = max(i for i in cabinet if i < half)
    after = min(i for i in cabinet if i >= half)
    bodies[before], bodies[after] = bodies[after], bodies[before]
    for i in of("hoan-kiem-lake", "aq-1"):  # clock set back 40 min, 40 min before the half
        for r in bodies[i]["readings"]:
            ts = _ns(r["ts"])
            if ts > cut - 2400 * 10**9:
                r["ts"] = from_epoch_ns(ts - 2400 * 10**9).isoformat().replace("+00:00", "Z")
    out = []
    for body in bodies:
        body["site"] = site = prefix + body["site"]
        out.append((data_topic(site, body["node"]), json.dumps(body, separators=(",", ":")).encode()))
    return out, received


def _ns(ts: str) -> int:
    return to_epoch_ns(datetime.fromisoformat(ts))


def _append(state_dir: Path, messages: list[tuple[str, bytes]], received: list[int]) -> None:
    journal_dir = state_dir / "journal"
    journal_dir.mkdir(parents=True, exist_ok=True)
    journal = Journal(journal_path(journal_dir, "i0"), "i0").open()
    journal.append(messages, 0, received)
    journal.close()


def _drained(reader: InfluxHTTP, since: datetime, records: int) -> None:
    def done() -> bool | None:
        rows = reader.query_points(
            f'SELECT * FROM "raw"."processor" WHERE time >= {to_epoch_ns(since)}', db="urbanpulse")
        return any(r.get("records_read") == records and r.get("journal_backlog") == 0
                   and r["points_pending"] == 0 for r in rows) or None
    wait_for(done, 240, f"a report of {records} records read and every point written", every_s=0.5)


def _stored(reader: InfluxHTTP, prefix: str) -> dict[tuple[Any, ...], dict[str, Any]]:
    """Every point of the sites named `prefix`..., keyed with the prefix taken out."""
    out: dict[tuple[Any, ...], dict[str, Any]] = {}
    for rp in ("raw", "agg_1m", "agg_1h"):
        for (name,) in [tuple(r.values()) for r in reader.query_points(
                'SHOW MEASUREMENTS ON "urbanpulse"', db="urbanpulse")]:
            if name == "processor":
                continue
            for row in reader.query_points(
                    f'SELECT * FROM "{rp}"."{name}" WHERE "site" =~ /^{prefix}/ GROUP BY *',
                    db="urbanpulse"):
                row = {k: v for k, v in row.items() if v is not None}
                row["site"] = row["site"][len(prefix):]
                time = row.pop("time")
                key = (rp, name, time, tuple(sorted((k, v) for k, v in row.items()
                                                    if isinstance(v, str) and k != "detail")))
                out[key] = row
    return out


def test_the_previous_release_s_recovery_store_resumes_as_an_uninterrupted_run(
        cloud_factory: Callable[..., CloudProcess], reader: InfluxHTTP, tmp_path: Path) -> None:
    old_src = old_tree(tmp_path / "old-src", UPGRADED_FROM)
    a_msgs, a_rx = _messages("ua-")
    b_msgs, b_rx = _messages("ub-")
    half = len(b_msgs) // 2

    # Today's processor, uninterrupted.
    straight = cloud_factory("straight", extra_args=("--no-ingest",), epoch_interval_s=0.2,
                             health_every_s=1.0)
    _append(straight.config_path.parent / "straight", a_msgs, a_rx)
    since = datetime.now(UTC)
    straight.start()
    _drained(reader, since, len(a_msgs))
    straight.stop()

    # The previous release on the first half, stopped, then today's on its store.
    state_dir = tmp_path / "upgraded"
    _append(state_dir, b_msgs[:half], b_rx[:half])
    old = _start_old(cloud_factory, "upgraded", "upgraded-old", old_src)
    wait_for(lambda: committed_offset(state_dir / "recovery", "i0") == half, 240,
             "the first half's journal offset in a committed epoch", every_s=0.5)
    old.stop()
    assert old.proc is not None
    assert old.proc.returncode == 0, old.log()[-3000:]
    shutil.copytree(state_dir / "recovery", state_dir / "recovery-copy")  # the runbook's step 1
    _append(state_dir, b_msgs[half:], b_rx[half:])
    new = cloud_factory("upgraded", extra_args=("--no-ingest",), log_name="upgraded-new",
                        epoch_interval_s=0.2, health_every_s=1.0)
    since = datetime.now(UTC)
    new.start()
    _drained(reader, since, len(b_msgs) - half)
    assert new.proc is not None
    assert new.proc.poll() is None, new.log()[-3000:]
    new.stop()

    a, b = _stored(reader, "ua-"), _stored(reader, "ub-")
    report = _differences(a, b, _cuts(b_msgs[:half]), b_rx[half - 1])
    (Path(os.environ.get("UPGRADE_DIFF_OUT", tmp_path / "diff.json"))).write_text(
        json.dumps(report, default=str, indent=1))
    assert len(a) > 50_000
    assert report["unintended"] == []
    # The detectors resumed what the old code learnt, its alerts' holds counted in values
    # (docs/anomaly-detection.md): a few anomalies differ after the upgrade, no more. A road
    # loop's detectors saved with the road settings of before session 17 switch to today's when
    # loaded (`AnomalyDetector.narrow`), keeping their newest tails and contexts, where the
    # uninterrupted run's were made with today's: theirs differ a little more (4 measured,
    # every one a traffic.loop's; 20 when they resumed with their old settings).
    others = [d for d in report["anomalies_after"] if dict(d[0][3]).get("kind") != "traffic.loop"]
    assert len(others) <= 8, others
    assert len(report["anomalies_after"]) - len(others) <= 8, report["anomalies_after"]
    assert _counted(b) == _counted(a)  # each reading in one minute, in the upgrade's too

    # Rolling back (docs/runbook.md): the copy taken before the upgrade put back, the old
    # release resumes it and reads again what the journal received since.
    shutil.rmtree(state_dir / "recovery")
    shutil.copytree(state_dir / "recovery-copy", state_dir / "recovery")
    back = _start_old(cloud_factory, "upgraded", "rolled-back", old_src)
    wait_for(lambda: committed_offset(state_dir / "recovery", "i0") == len(b_msgs), 240,
             "the whole journal's offset in a committed epoch", every_s=0.5)
    back.stop()
    assert back.proc is not None
    assert back.proc.returncode == 0, back.log()[-3000:]
    c = _stored(reader, "ub-")
    raw = {k: v for k, v in b.items() if k[0] == "raw" and k[1] != "events"}
    assert {k: v for k, v in c.items() if k[0] == "raw" and k[1] != "events"} == raw
    # Every reading in one minute, none in two, but in the minutes of loops and doors that
    # today's release wrote and the old one does not write again (the minute the upgrade fell
    # in; a minute of kim-lien's swapped message, taken after the upgrade): they keep
    # today's figures (docs/runbook.md). Nothing is lost.
    counted, straight_counted = _counted(c), _counted(a)
    assert counted.keys() == straight_counted.keys()
    doubled = {k: counted[k] - straight_counted[k] for k in counted if counted[k] != straight_counted[k]}
    assert {k[0] for k in doubled} <= {"traffic_loop", "hospital_door"}, doubled
    assert set(doubled.values()) <= {1, 2}, doubled


def _counted(stored: dict[tuple[Any, ...], dict[str, Any]]) -> dict[tuple[str, str, str, str], float]:
    """Readings counted per sensor over its per-sensor minute aggregates."""
    out: dict[tuple[str, str, str, str], float] = {}
    for (rp, name, _, tags), row in stored.items():
        t = dict(tags)
        if rp == "agg_1m" and "sensor" in t and "kind" in t and "count" in row:
            key = (name, t["site"], t["node"], t["sensor"])
            out[key] = out.get(key, 0) + row["count"]
    return out


def _start_old(cloud_factory: Callable[..., CloudProcess], name: str, log_name: str,
               old_src: Path) -> CloudProcess:
    proc = cloud_factory(name, extra_args=("--no-ingest",), log_name=log_name, epoch_interval_s=0.2)
    with proc.log_path.open("ab") as log:  # as CloudProcess.start, on the old sources
        proc.proc = subprocess.Popen(
            [sys.executable, "-m", "urbanpulse.cli", "cloud", "run", "--config", str(proc.config_path),
             *proc.extra_args],
            cwd=old_src, env={**os.environ, "PYTHONPATH": str(old_src)},
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    return proc


def _cuts(before: list[tuple[str, bytes]]) -> dict[tuple[str, str], int]:
    """(site, node) -> the newest stamp the old release took of the node, and (site, "")
    the newest of the site's."""
    cuts: dict[tuple[str, str], int] = {}
    for _, payload in before:
        body = json.loads(payload)
        site = body["site"][len("ub-"):]
        newest = max(_ns(r["ts"]) for r in body["readings"])
        for key in ((site, body["node"]), (site, "")):
            cuts[key] = max(cuts.get(key, 0), newest)
    return cuts


INTERVAL_AGGREGATES = {"traffic_loop", "traffic_lane", "traffic_intersection", "hospital_door",
                       "door_flow", "hospital_flow"}


def _rounded_alike(x: dict[str, Any] | None, y: dict[str, Any] | None) -> bool:
    """The same aggregate but for means within float rounding (64 units in the last place):
    the old release kept a window's sums as running float sums, today's exact ones (a54a9fb)."""
    if x is None or y is None or x.keys() != y.keys():
        return False
    return all(x[k] == y[k] or (k.endswith("_mean") and isinstance(x[k], int | float)
                                and isinstance(y[k], int | float)  # (107.0 is read back as 107)
                                and abs(x[k] - y[k]) <= 64 * math.ulp(max(abs(x[k]), abs(y[k]))))
               for k in x)


def _stamped_by_the_old_release(key: tuple[Any, ...], x: dict[str, Any] | None,
                                y: dict[str, Any] | None, a: dict[tuple[Any, ...], dict[str, Any]],
                                b: dict[tuple[Any, ...], dict[str, Any]], upgraded_ns: int) -> bool:
    """A fault event the old release stamped with its reading and today's at its reception
    (with the reading's stamp in `node_ts`): the reading arrived too long after (or before)
    its own stamp for the Sensor fault alert to see it by the node's time. The same event
    otherwise, one in each run."""
    def plain(k: tuple[Any, ...], v: dict[str, Any]) -> tuple[Any, ...]:  # less stamp and node_ts
        return (k[0], k[1], tuple(p for p in k[3] if p[0] != "node_ts"),
                tuple(sorted((f, w) for f, w in v.items() if f != "node_ts")))

    def read_at(v: dict[str, Any]) -> int:
        return to_epoch_ns(datetime.fromisoformat(v["node_ts"].replace("Z", "+00:00")))

    if x is not None and y is None and "node_ts" in x and key[2] <= upgraded_ns:
        return any(k[2] // 1000 * 1000 == read_at(x) and plain(k, v) == plain(key, x)
                   for k, v in b.items() if k not in a and k[1] == "events")
    if y is not None and x is None and "node_ts" not in y:
        return any(k[2] <= upgraded_ns and read_at(v) == key[2] // 1000 * 1000
                   and plain(k, v) == plain(key, y)
                   for k, v in a.items() if k not in b and k[1] == "events" and "node_ts" in v)
    return False


def _differences(a: dict[tuple[Any, ...], dict[str, Any]], b: dict[tuple[Any, ...], dict[str, Any]],
                 cuts: dict[tuple[str, str], int], upgraded_ns: int) -> dict[str, list[Any]]:
    """What the upgraded run (b) stored otherwise than the uninterrupted one (a), but for
    what the upgrade means to change: the windows of interval readings the old release
    placed (by their stamps, not ts - 1 ns: every window starting at or before the newest
    reading it took of the node, the one the upgrade falls in holding two intervals), door
    hours without `faulty` or with only the faulty readings taken since (their faults
    before are not known), the anomalies of detectors that learnt under the old code
    (listed apart), the clock set back of aq-1, which the old release missed and
    today's raises at the node's first reading after the upgrade, and the wards' and
    hospitals' windows the old release wrote without `stale`, where the new run found
    none stale."""
    unintended: list[Any] = []
    anomalies_after: list[Any] = []
    jumps: list[Any] = []
    for key in sorted(set(a) | set(b)):
        rp, name, time, tags = key
        x, y = a.get(key), b.get(key)
        if x == y:
            continue
        t = dict(tags)
        cut = cuts.get((t["site"], t.get("node", "")), 0)
        if rp != "raw" and time <= cut and _rounded_alike(x, y):
            continue  # a window the old release summed some of in a running float sum
        if rp != "raw" and name in INTERVAL_AGGREGATES and time <= cut:
            if x is not None and y is not None and name in ("door_flow", "hospital_flow"):
                # left out (not known), or the faulty readings taken since: some if any
                faulty, right = y.get("faulty"), x.get("faulty", 0)
                if faulty is not None and (faulty > right or (faulty == 0 and right > 0)):
                    unintended.append((key, x, y))
            continue
        if (name in ("ward_occupancy", "hospital_occupancy") and time <= upgraded_ns
                and x is not None and y is not None and "stale" not in y and x.get("stale") == 0
                and {k: v for k, v in x.items() if k != "stale"} == y):
            continue  # written by the old release, before `stale` (2c39dc3): none was stale
        if name == "events" and t.get("type") == "anomaly":
            if time > upgraded_ns:
                anomalies_after.append((key, x, y))
            continue
        if name == "events" and t.get("type") == "clock_jump" and t["node"] == "aq-1":
            jumps.append((key, x, y))
            continue
        if name == "events" and _stamped_by_the_old_release(key, x, y, a, b, upgraded_ns):
            continue
        unintended.append((key, x, y))
    # aq-1's set back: one event in each run, the upgraded one after the upgrade
    if not (len(jumps) == 2 and jumps[0][2] is None and jumps[1][1] is None
            and jumps[1][0][2] > upgraded_ns):
        unintended += jumps
    return {"unintended": unintended, "anomalies_after": anomalies_after, "aq1_jumps": jumps}
