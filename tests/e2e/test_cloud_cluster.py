"""Scale-out: two ingest processes share the subscription (MQTT 5 $share) and the dataflow
runs as a 2-process Bytewax cluster on loopback; the results equal those of one process.
Then the cluster's recovery store resumes on one process with one ingest (a scale-down),
and what the retired ingest had journaled but the cluster not yet read still arrives."""

from __future__ import annotations

import contextlib
import os
import signal
import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cloud.flow import sink_part
from cloud.journal import Journal, journal_path
from urbanpulse.clock import SystemClock, to_epoch_ns
from urbanpulse.influx_http import InfluxHTTP
from urbanpulse.mqtt import close_client, connect_and_wait, make_client
from urbanpulse.stack.process import free_ports
from urbanpulse.testing import wait_for
from urbanpulse.wire import Reading, data_topic, encode_batch

T0 = datetime(2026, 11, 27, 9, 0, tzinfo=UTC)
# Bytewax routes a key to a worker by its hash: of these, n6's state lives in process 1 (the
# snapshot of process 1's sink partition, awaited below, shows that process 1 wrote points).
NODES = ("n1", "n2", "n3", "n6")


def _dataset() -> dict[str, list[Reading]]:
    return {node: [Reading(f"pm-{k}", "air.pm", to_epoch_ns(T0 + timedelta(seconds=3 * i)), i,
                           {"pm25": 20.0 + (i * 7 + k) % 31, "pm10": 40.0 + i % 11})
                   for k in range(2) for i in range(300)] for node in NODES}


def _publish(add_stack_node, site: str, data: dict[str, list[Reading]]) -> None:  # type: ignore[no-untyped-def]
    for node, readings in data.items():
        creds = add_stack_node(site, node)
        client = make_client(f"pub-{site}-{node}", creds, clean_start=True)
        connect_and_wait(client)
        try:
            for i in range(0, len(readings), 60):
                client.publish(data_topic(site, node), encode_batch(site, node, readings[i:i + 60]),
                               qos=1).wait_for_publish(10)
        finally:
            close_client(client)


def _results(reader: InfluxHTTP, site: str) -> dict[tuple[str, str, int], tuple[float, ...]]:
    out = {}
    for r in reader.query_points(f"SELECT * FROM agg_1m.air_pm WHERE site = '{site}'", db="urbanpulse"):
        out[(r["node"], r["sensor"], r["time"])] = (r["count"], round(r["pm25_mean"], 9), r["pm25_max"],
                                                    r["pm10_last"])
    return out


def _snapshotted(recovery_dir: Path, step: str, key: str) -> bool:
    for part in recovery_dir.glob("part-*.sqlite3"):
        with contextlib.closing(sqlite3.connect(part)) as db:
            if db.execute("SELECT 1 FROM snaps WHERE step_id LIKE ? AND state_key = ?",
                          (f"%.{step}%", key)).fetchone():
                return True
    return False


def _raw(reader: InfluxHTTP, site: str) -> int:
    rows = reader.query_points(f"SELECT count(pm25) FROM raw.air_pm WHERE site = '{site}'",
                               db="urbanpulse")
    return int(rows[0]["count"]) if rows else 0


def test_two_process_cluster_gives_the_same_results_as_one_and_resumes_on_one_process(
        cloud_factory, add_stack_node, reader) -> None:  # type: ignore[no-untyped-def]
    data = _dataset()
    total = sum(len(v) for v in data.values())
    a0, a1 = free_ports(2)
    addresses = [f"127.0.0.1:{a0}", f"127.0.0.1:{a1}"]
    cluster = [cloud_factory("cluster", extra_args=("--process-id", str(pid)), log_name=f"p{pid}",
                             topic="urbanpulse/v1/hn-cl2/+", addresses=addresses, process_id=0,
                             ingest_instances=2, epoch_interval_s=0.2)
               for pid in (0, 1)]
    single = cloud_factory("single", topic="urbanpulse/v1/hn-cl1/+")
    for proc in (*cluster, single):
        proc.start()
    for proc in (*cluster, single):
        wait_for(lambda p=proc: "ingest subscribed" in p.log(), 60, f"{proc.log_path.name} to subscribe")

    _publish(add_stack_node, "hn-cl1", data)
    _publish(add_stack_node, "hn-cl2", data)

    wait_for(lambda: _raw(reader, "hn-cl1") == total and _raw(reader, "hn-cl2") == total, 90,
             f"{total} raw points for each site")
    one = wait_for(lambda: (lambda r: r if sum(v[0] for v in r.values()) == total else None)(
        _results(reader, "hn-cl1")), 60, "complete single-process aggregates")
    two = wait_for(lambda: (lambda r: r if sum(v[0] for v in r.values()) == total else None)(
        _results(reader, "hn-cl2")), 60, "complete cluster aggregates")
    assert one == two
    # Both ingest processes took part: the shared subscription split the messages.
    journal_dir = cluster[0].config_path.parent / "cluster" / "journal"
    for n in (0, 1):
        with sqlite3.connect(journal_dir / f"journal-i{n}.sqlite3") as db:
            (count,) = db.execute("SELECT COUNT(*) FROM entries").fetchone()
        assert count > 0, f"ingest i{n} journaled nothing"

    # The precondition of the scale-down: process 1's sink partition has a snapshot in the
    # store (Bytewax's own SQLite layout, read here only to know the epoch is committed).
    recovery_dir = journal_dir.parent / "recovery"
    wait_for(lambda: _snapshotted(recovery_dir, "influx", sink_part(1)), 30,
             "a committed snapshot of process 1's sink partition")
    for proc in cluster:  # the cluster's units stopped together
        assert proc.proc is not None
        os.killpg(proc.proc.pid, signal.SIGTERM)
    for proc in cluster:
        assert proc.proc is not None
        assert proc.proc.wait(20) == 0, proc.log()[-3000:]
    # As if ingest i1 had journaled (and PUBACKed) one more batch just before the stop.
    late = [Reading("pm-9", "air.pm", to_epoch_ns(T0 + timedelta(seconds=3 * i)), i,
                    {"pm25": 11.0, "pm10": 22.0}) for i in range(40)]
    journal = Journal(journal_path(journal_dir, "i1"), "i1").open()
    journal.append([(data_topic("hn-cl2", "n9"), encode_batch("hn-cl2", "n9", late))],
                   to_epoch_ns(SystemClock().now()))
    journal.close()
    resumed = cloud_factory("cluster", log_name="resumed", topic="urbanpulse/v1/hn-cl2/+",
                            ingest_instances=1)
    resumed.start()
    wait_for(lambda: _raw(reader, "hn-cl2") == total + len(late) or None, 60,
             "the retired ingest's last batch, read by the one process left")
    assert resumed.proc is not None
    assert resumed.proc.poll() is None, resumed.log()[-2000:]
    assert "routing map" not in resumed.log()
