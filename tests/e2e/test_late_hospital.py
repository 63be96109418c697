"""Late data of a hospital's nodes through the real processor, journal and InfluxDB, every
stored point compared with a run of the same readings sent on time, or with an
uninterrupted run of the same late readings (tests/e2e/late_hospital.py). The runs of a
test go side by side, each with its own state dir and its own site name."""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from cloud.flow import sink_part
from tests.conftest import CloudProcess
from tests.e2e import late_hospital as lh
from tests.e2e.test_processor_health import committed_offset
from urbanpulse.clock import to_epoch_ns
from urbanpulse.influx_http import InfluxHTTP
from urbanpulse.stack.process import free_ports
from urbanpulse.testing import wait_for

pytestmark = [pytest.mark.stack, pytest.mark.slow]

_runs = itertools.count()
DOMAIN = {"ward_occupancy", "hospital_occupancy", "door_flow", "hospital_flow", "queue_wait",
          "hospital_wait", "traffic_lane", "traffic_intersection", "air_quality"}


def _name(name: str) -> str:
    """A run's name, unique in the session's InfluxDB: its sites are named after it
    (`late_hospital.records`)."""
    return f"{name}{int(time.time()) % 10**6}{next(_runs)}"


# The runs' stops drain: the replays held for their interval run at a drain's end (`close`),
# and the tests compare what InfluxDB holds right after the stops. A stop by abort leaves
# them in the committed snapshot, for the next start's first epoch end.
STOP = "drain"


def _run(cloud_factory: Callable[..., CloudProcess], name: str, recs: list[lh.Record],
         **flow: object) -> CloudProcess:
    proc = cloud_factory(name, extra_args=("--no-ingest",), epoch_interval_s=0.2, stop=STOP, **flow)
    lh.append(proc.config_path.parent / name / "journal", recs)
    proc.start()
    return proc


def _stop(proc: CloudProcess) -> None:
    proc.stop()
    assert proc.proc is not None
    assert proc.proc.returncode == 0, proc.log()[-3000:]


def _only_late_counted(key: tuple[Any, ...], a: dict[tuple[Any, ...], dict[str, Any]],
                       b: dict[tuple[Any, ...], dict[str, Any]]) -> bool:
    """A ledger hour that differs only in its count of readings that came late: what a
    late run means to change."""
    x, y = a.get(key), b.get(key)
    return (key[1] == "ledger" and x is not None and y is not None
            and {k: v for k, v in x.items() if k != "late"} == {k: v for k, v in y.items() if k != "late"})


def test_a_ward_whose_backlog_arrives_an_hour_late_ends_with_the_hospital_rows_of_an_on_time_run(
        cloud_factory: Callable[..., CloudProcess], reader: InfluxHTTP, tmp_path: Path) -> None:
    hours = 8
    start = lh.weekday_start(hours)
    data = lh.readings(start, hours)
    t0 = to_epoch_ns(start)
    down = {(lh.SITE, "ward-resp"): (t0 + 4 * lh.HOUR_NS, t0 + 5 * lh.HOUR_NS)}
    on_time, late = _name("ot"), _name("lt")
    a_recs, b_recs = lh.records(on_time, data), lh.records(late, data, down)
    assert len(b_recs) < len(a_recs)  # the backlog's minutes sent in fewer, larger batches
    procs = [_run(cloud_factory, "ontime", a_recs), _run(cloud_factory, "late", b_recs)]
    lh.committed(tmp_path / "ontime" / "recovery", len(a_recs))
    lh.committed(tmp_path / "late" / "recovery", len(b_recs))
    for proc in procs:
        _stop(proc)
    a, b = lh.stored(reader, on_time), lh.stored(reader, late)
    assert sum(1 for k in a if k[1] in DOMAIN) > 1000
    assert {k[1] for k in a} >= DOMAIN - {"traffic_lane", "traffic_intersection"}
    diff = lh.differences(a, b, lambda k: not _only_late_counted(k, a, b))
    assert diff == [], lh.summary(diff)


def test_replays_held_when_the_processor_is_killed_end_as_those_of_an_uninterrupted_run(
        cloud_factory: Callable[..., CloudProcess], reader: InfluxHTTP, tmp_path: Path) -> None:
    """A ward and the outpatient hall (its door and kiosks) down 7 h: their backlog's first
    hour is older than the horizon (6 h), so its windows are rebuilt from the raw points and
    the hospital's rollups replayed, and the live readings after it ask for the same spans
    again, held for `replay_interval_s`. The processor is killed (SIGKILL) with such held
    requests in its committed snapshot and the journal half read, and restarted; what
    InfluxDB ends with equals an uninterrupted run's, point for point, and the domain
    rollups equal those of the readings sent on time."""
    hours = 9
    start = lh.weekday_start(hours)
    data = lh.readings(start, hours, (lh.SITE, "kim-lien", "hoan-kiem-lake"))
    t0 = to_epoch_ns(start)
    up = t0 + 8 * lh.HOUR_NS
    down = {(lh.SITE, "ward-resp"): (t0 + lh.HOUR_NS, up),
            (lh.SITE, "opd-hall"): (t0 + 90 * lh.MINUTE_NS, up),
            ("kim-lien", "cabinet"): (t0 + 70 * lh.MINUTE_NS, up),
            ("hoan-kiem-lake", "aq-1"): (t0 + 80 * lh.MINUTE_NS, up)}
    on_time, straight, killed = _name("ok"), _name("st"), _name("kl")
    o_recs = lh.records(on_time, data)
    s_recs = lh.records(straight, data, down)
    k_recs = lh.records(killed, data, down)
    first = sum(1 for rx, _, _ in k_recs if rx <= up + 5 * lh.MINUTE_NS)  # the backlog and 5 min
    procs = [_run(cloud_factory, "ontime", o_recs), _run(cloud_factory, "straight", s_recs),
             _run(cloud_factory, "killed", k_recs[:first])]
    recovery = tmp_path / "killed" / "recovery"
    lh.committed(recovery, first)
    lh.append(tmp_path / "killed" / "journal", k_recs[first:])

    def held() -> list[str] | None:
        snap = lh.committed_sink_snapshot(recovery, sink_part(0))
        return snap if snap and committed_offset(recovery, "i0") != first else None

    holding = wait_for(held, 60, "replays held in a committed snapshot after more was read", every_s=0.05)
    procs[2].kill()
    assert any(not t.startswith("window") for t in holding), holding
    restarted = cloud_factory("killed", extra_args=("--no-ingest",), log_name="restarted",
                              epoch_interval_s=0.2, stop=STOP)
    restarted.start()
    lh.committed(tmp_path / "ontime" / "recovery", len(o_recs))
    lh.committed(tmp_path / "straight" / "recovery", len(s_recs))
    lh.committed(recovery, len(k_recs))
    for proc in (procs[0], procs[1], restarted):
        _stop(proc)
    o, s, k = lh.stored(reader, on_time), lh.stored(reader, straight), lh.stored(reader, killed)
    diff = lh.differences(s, k)
    assert diff == [], lh.summary(diff)
    diff = lh.differences(o, s, lambda key: key[1] in DOMAIN)
    assert diff == [], lh.summary(diff)


def _split_name(name: str, late: str, other: str) -> str:
    """A run's name whose hospital's nodes `late` and `other` a 2-process cluster runs in
    different processes (Bytewax routes a key by its hash)."""
    for i in range(100):
        site = _name(f"{name}{i}x")
        keys = [f"{site}-{lh.SITE}/{late}", f"{site}-{lh.SITE}/{other}"]
        where = lh.workers_of(keys, 2)
        if where[keys[0]] != where[keys[1]]:
            return site
    raise AssertionError("no run name splits the wards")


def _idle(recovery: Path, records: int, parts: list[str]) -> bool:
    """The journal read up to `records` in a committed epoch whose sink snapshots hold no
    request (nothing held for a later epoch end)."""
    return committed_offset(recovery, "i0") == records and all(
        lh.committed_sink_snapshot(recovery, p) == [] for p in parts)


def test_a_site_back_from_an_outage_on_a_two_process_cluster_ends_as_on_one_process(
        cloud_factory: Callable[..., CloudProcess], reader: InfluxHTTP, tmp_path: Path) -> None:
    """The whole hospital down 7 h (its network): every node comes back at once with its
    backlog, whose first hour is beyond the horizon. On a 2-process cluster, the two wards'
    node steps in different processes, each process's site-wide replays read the raw points
    the other process is writing in the same epochs. What InfluxDB holds once every epoch
    is committed and no replay is held equals a single process's run of the same journal."""
    hours = 9
    start = lh.weekday_start(hours)
    data = lh.readings(start, hours)
    t0 = to_epoch_ns(start)
    down = {node: (t0 + lh.HOUR_NS, t0 + 8 * lh.HOUR_NS) for node in data}
    one, two = _name("o1"), _split_name("c2", "ward-resp", "ward-cardio")
    one_recs, two_recs = lh.records(one, data, down), lh.records(two, data, down)
    a0, a1 = free_ports(2)
    cluster = [cloud_factory("cluster", extra_args=("--no-ingest", "--process-id", str(pid)),
                             log_name=f"p{pid}", addresses=[f"127.0.0.1:{a0}", f"127.0.0.1:{a1}"],
                             process_id=0, epoch_interval_s=0.2, replay_interval_s=2.0, stop=STOP)
               for pid in (0, 1)]
    lh.append(tmp_path / "cluster" / "journal", two_recs)
    single = _run(cloud_factory, "single", one_recs, replay_interval_s=2.0)
    for proc in cluster:
        proc.start()
    wait_for(lambda: _idle(tmp_path / "single" / "recovery", len(one_recs), [sink_part(0)]), 120,
             "the single process's run done, nothing held", every_s=0.2)
    wait_for(lambda: _idle(tmp_path / "cluster" / "recovery", len(two_recs), [sink_part(0), sink_part(1)]),
             120, "the cluster's run done, nothing held", every_s=0.2)
    a, b = lh.stored(reader, one), lh.stored(reader, two)
    assert sum(1 for k in a if k[1] in DOMAIN) > 1000
    diff = lh.differences(a, b)
    assert diff == [], lh.summary(diff)
    for proc in (single, *cluster):
        _stop(proc)
