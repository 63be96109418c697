"""Sites of the simulated city as journal records, sent on time or with a node's backlog
arriving late, for the late-data end-to-end tests: a hospital (bach-mai: two wards, an ER
gate, an outpatient hall with its door, kiosks and an air station, two paraclinical
departments), and as a test asks an intersection and an air station.

Each node sends a message a minute (the readings stamped in it), received a second after
its minute ends. A node down over [down, up) sends nothing then; at `up` it sends its fresh
message first and then its backlog oldest first, in batches of BACKLOG_BATCH readings, as
the edge agent does (docs/delivery.md). The data is of a weekday's outpatient hours (the
kiosks are quiet at weekends) within the raw retention policy (30 days)."""

from __future__ import annotations

import contextlib
import json
import pickle
import sqlite3
import threading
from collections.abc import Callable, Sequence
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import bytewax.operators as op
from bytewax.dataflow import Dataflow
from bytewax.inputs import DynamicSource, StatelessSourcePartition
from bytewax.testing import TestingSink, cluster_main

from cloud.journal import Journal, journal_path
from tests.e2e.test_processor_health import committed_offset
from urbanpulse.influx_http import InfluxHTTP
from urbanpulse.simulate import City, Simulation
from urbanpulse.testing import wait_for
from urbanpulse.wire import Reading, data_topic, encode_batch

SITE = "bach-mai"
HOUR_NS = 3600 * 10**9
MINUTE_NS = 60 * 10**9
BACKLOG_BATCH = 200
BACKLOG_STEP_NS = 50_000_000  # 20 backlog batches a second (the agent's backlog_batches_per_s)

Record = tuple[int, str, bytes]  # (received ns, topic, payload)
Node = tuple[str, str]  # (site, node), the site as the city names it


def weekday_start(hours: int, now: datetime | None = None) -> datetime:
    """The latest 00:00 UTC (07:00 in Hanoi) of a weekday whose `hours` are over by now."""
    now = now or datetime.now(UTC)
    day = now.replace(hour=0, minute=0, second=0, microsecond=0)
    while day.weekday() >= 5 or day + timedelta(hours=hours + 1) > now:
        day -= timedelta(days=1)
    return day


def readings(start: datetime, hours: int, sites: Sequence[str] = (SITE,)) -> dict[Node, list[Reading]]:
    """The readings of `sites` of the simulated city over `hours` from `start`, per node,
    in the order read."""
    city = City.load()
    city = replace(city, hospitals=tuple(h for h in city.hospitals if h.site in sites),
                   intersections=tuple(x for x in city.intersections if x.site in sites),
                   air_stations=tuple(a for a in city.air_stations if a.site in sites),
                   events=tuple(e for e in city.events if e.site in sites))
    out: dict[Node, list[Reading]] = {}
    for nb in Simulation(city, seed=1, start=start).readings().advance(hours * 3600.0):
        out.setdefault((nb.site, nb.node), []).extend(nb.readings)
    for rs in out.values():
        rs.sort(key=lambda r: r.ts_ns)
    return out


def records(run: str, data: dict[Node, list[Reading]],
            down: dict[Node, tuple[int, int]] | None = None,
            lag: dict[Node, int] | None = None) -> list[Record]:
    """The journal's records of `data`, in received order, each site named `run`-site;
    `down`: (site, node) -> (down, up) epoch ns, whole minutes; `lag`: (site, node) -> ns
    by which all its messages arrive later (a link that holds them)."""
    out: list[Record] = []
    for (plain, node), rs in data.items():
        site = f"{run}-{plain}"
        topic = data_topic(site, node)
        minutes: dict[int, list[Reading]] = {}
        for r in rs:
            minutes.setdefault(r.ts_ns - r.ts_ns % MINUTE_NS, []).append(r)
        gone, back = (down or {}).get((plain, node), (0, 0))
        backlog = [r for m, chunk in sorted(minutes.items()) if gone <= m < back for r in chunk]
        fresh_sent = False
        for minute, chunk in sorted(minutes.items()):
            if gone <= minute < back:
                continue
            received = minute + MINUTE_NS + 10**9 + (lag or {}).get((plain, node), 0)
            out.append((received, topic, encode_batch(site, node, chunk)))
            if backlog and not fresh_sent and minute >= back:
                fresh_sent = True
                for i in range(0, len(backlog), BACKLOG_BATCH):
                    received += BACKLOG_STEP_NS
                    out.append((received, topic, encode_batch(site, node, backlog[i:i + BACKLOG_BATCH])))
        assert not backlog or fresh_sent, f"{node} never came back"
    out.sort(key=lambda rec: rec[0])
    return out


def append(journal_dir: Path, recs: Sequence[Record]) -> None:
    """Journals `recs` as the ingest would have (instance i0)."""
    journal_dir.mkdir(parents=True, exist_ok=True)
    journal = Journal(journal_path(journal_dir, "i0"), "i0").open()
    journal.append([(topic, payload) for _, topic, payload in recs], 0, [rx for rx, _, _ in recs])
    journal.close()


def committed(recovery_dir: Path, records_read: int, timeout_s: float = 120) -> None:
    """Waits for an epoch committed with the journal read up to `records_read`: every point
    of it written, and the replays due at its end run (those held for their interval run
    at a clean stop)."""
    wait_for(lambda: committed_offset(recovery_dir, "i0") == records_read, timeout_s,
             f"the journal's {records_read} records read in a committed epoch", every_s=0.2)


def stored(reader: InfluxHTTP, run: str) -> dict[tuple[Any, ...], dict[str, Any]]:
    """Every point InfluxDB holds of the sites of `run` (`records`): (rp, measurement, time,
    tags) -> fields, the run's name taken out of the site tag."""
    out: dict[tuple[Any, ...], dict[str, Any]] = {}
    names = [str(r["name"]) for r in reader.query_points('SHOW MEASUREMENTS ON "urbanpulse"',
                                                           db="urbanpulse")]
    for rp in ("raw", "agg_1m", "agg_1h"):
        for name in names:
            if name == "processor":
                continue
            for row in reader.query_points(
                    f'SELECT * FROM "{rp}"."{name}" WHERE "site" =~ /^{run}-/ GROUP BY *',
                    db="urbanpulse"):
                row = {k: v for k, v in row.items() if v is not None}
                row["site"] = row["site"][len(run) + 1:]
                time = row.pop("time")
                tags = tuple(sorted((k, v) for k, v in row.items() if isinstance(v, str) and k != "detail"))
                out[(rp, name, time, tags)] = {k: v for k, v in row.items() if (k, v) not in tags}
    return out


def differences(a: dict[tuple[Any, ...], dict[str, Any]], b: dict[tuple[Any, ...], dict[str, Any]],
                keep: Callable[[tuple[Any, ...]], bool] = lambda _: True) -> list[Any]:
    """The keys `keep` takes whose points differ, with both sides."""
    return [(k, a.get(k), b.get(k)) for k in sorted(set(a) | set(b), key=repr)
            if keep(k) and a.get(k) != b.get(k)]


def summary(diff: list[Any], limit: int = 12) -> str:
    """A readable head of `differences`, and what measurements they are of."""
    kinds: dict[tuple[str, str], int] = {}
    for (rp, name, _, _), _, _ in diff:
        kinds[(rp, name)] = kinds.get((rp, name), 0) + 1
    return json.dumps({"count": len(diff), "by_measurement": {f"{k[0]}.{k[1]}": v for k, v in kinds.items()},
                       "first": diff[:limit]}, default=str, indent=1)


def committed_sink_snapshot(recovery_dir: Path, part: str) -> list[str] | None:
    """What the newest committed snapshot of the InfluxDB sink partition `part` holds (the
    replay requests and window rebuilds it held), None before there is one. Bytewax's own
    SQLite layout, read only to know what a resume starts from."""
    best: tuple[int, list[str]] | None = None
    for path in recovery_dir.glob("part-*.sqlite3"):
        with contextlib.closing(sqlite3.connect(path)) as db:
            commits = db.execute("SELECT commit_epoch FROM commits").fetchall()
            if not commits:
                continue
            committed = min(c for (c,) in commits)
            for epoch, blob in db.execute(
                    "SELECT snap_epoch, ser_change FROM snaps WHERE step_id LIKE '%.influx' "
                    "AND state_key = ? AND snap_epoch <= ?", (part, committed)):
                if best is None or epoch > best[0]:
                    best = (epoch, (pickle.loads(blob) or []) if blob is not None else [])
    return None if best is None else best[1]


class _Keys(StatelessSourcePartition[str]):
    def __init__(self, keys: list[str]) -> None:
        self.keys: list[str] | None = keys

    def next_batch(self) -> list[str]:
        if self.keys is None:
            raise StopIteration
        out, self.keys = self.keys, None
        return out


class _KeySource(DynamicSource[str]):
    def __init__(self, keys: list[str], workers: dict[int, int]) -> None:
        self.keys = keys
        self.workers = workers  # thread id -> worker index

    def build(self, step_id: str, worker_index: int, worker_count: int) -> _Keys:
        self.workers[threading.get_ident()] = worker_index
        return _Keys(self.keys if worker_index == 0 else [])


class _Where(op.StatefulBatchLogic[str, None, None]):
    def __init__(self, workers: dict[int, int], where: dict[str, int]) -> None:
        self.workers = workers
        self.where = where

    def on_batch(self, values: list[str]) -> tuple[list[None], bool]:
        for key in values:
            self.where[key] = self.workers[threading.get_ident()]
        return [], op.StatefulBatchLogic.DISCARD

    def snapshot(self) -> None:
        return None


def workers_of(keys: list[str], workers: int) -> dict[str, int]:
    """The worker Bytewax runs each key's state on, among `workers` (a cluster of that many
    one-worker processes: process k runs worker k), found by running a stateful step keyed
    so on that many workers of this process."""
    threads: dict[int, int] = {}
    where: dict[str, int] = {}
    flow = Dataflow("where")
    keyed = op.key_on("key", op.input("keys", flow, _KeySource(keys, threads)), lambda k: k)
    op.output("out", op.stateful_batch("state", keyed, lambda _: _Where(threads, where)),
              TestingSink([]))
    cluster_main(flow, [], 0, worker_count_per_proc=workers)
    return where
