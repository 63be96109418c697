"""`cloud run` starts its ingest as a child process (flow.ingest_mode = "process", the
default): the child lives and dies with its parent, and data still arrives exactly once
when only the parent is SIGKILLed and restarted. Raw points in InfluxDB cannot show a
duplicate (an identical point overwrites), so exactly once is read where one would show:
the minute aggregates' counts, and the delivery ledger against the journal's rows."""

from __future__ import annotations

import contextlib
import os
import signal
import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from cloud.config import parse_cloud_config
from urbanpulse.clock import to_epoch_ns
from urbanpulse.errors import ConfigError
from urbanpulse.influx_http import InfluxHTTP
from urbanpulse.mqtt import close_client, connect_and_wait, make_client
from urbanpulse.testing import wait_for
from urbanpulse.wire import Reading, data_topic, encode_batch

T0 = datetime(2026, 11, 20, 8, 0, tzinfo=UTC)
BASE = {"mqtt": {"password_file": "p", "ca_file": "c"}, "influx": {"password_file": "p"}}


def _children(pid: int) -> list[int]:
    out: list[int] = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            out.extend(int(c) for c in (task / "children").read_text().split())
        except OSError:
            continue
    return out


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def _raw_count(reader: InfluxHTTP, node: str) -> int:
    rows = reader.query_points(f"SELECT count(co2) FROM raw.air_co2 WHERE node = '{node}'",
                               db="urbanpulse")
    return int(rows[0]["count"]) if rows else 0


def _ledger(reader: InfluxHTTP, node: str) -> dict[str, int]:
    rows = reader.query_points("SELECT sum(received) AS received, sum(duplicates) AS duplicates, "
                               "sum(expected) AS expected, sum(missing) AS missing FROM agg_1h.ledger "
                               f"WHERE node = '{node}'", db="urbanpulse")
    return {k: int(v) for k, v in rows[0].items() if k != "time"} if rows else {}


def _journaled_readings(journal: Path, batch: int) -> tuple[int, int]:
    """Readings in the journal's data rows, and how many distinct batches they are."""
    with contextlib.closing(sqlite3.connect(journal)) as db:
        rows, distinct = db.execute("SELECT COUNT(*), COUNT(DISTINCT payload) FROM entries "
                                    "WHERE topic LIKE '%/data'").fetchone()
    return rows * batch, distinct


def _publish(creds, site: str, node: str, readings: list[Reading]) -> None:  # type: ignore[no-untyped-def]
    client = make_client(f"pub-{node}", creds, clean_start=True)
    connect_and_wait(client)
    try:
        for i in range(0, len(readings), 50):
            client.publish(data_topic(site, node), encode_batch(site, node, readings[i:i + 50]),
                           qos=1).wait_for_publish(10)
    finally:
        close_client(client)


def test_ingest_mode_defaults_to_a_child_process_and_refuses_unknown_modes() -> None:
    assert parse_cloud_config(BASE).flow.ingest_mode == "process"
    thread = parse_cloud_config({**BASE, "flow": {"ingest_mode": "thread"}})
    assert thread.flow.ingest_mode == "thread"
    with pytest.raises(ConfigError, match=r"flow\.ingest_mode"):
        parse_cloud_config({**BASE, "flow": {"ingest_mode": "fork"}})


@pytest.mark.stack
@pytest.mark.slow
def test_the_ingest_child_ends_with_its_sigkilled_parent_and_nothing_is_lost(
        cloud_factory, add_stack_node, reader) -> None:  # type: ignore[no-untyped-def]
    site, node = "hn-ip", "co2-ip"
    creds = add_stack_node(site, node)
    cloud = cloud_factory("ingestproc", topic=f"urbanpulse/v1/{site}/+")
    cloud.start()
    wait_for(lambda: "ingest subscribed" in cloud.log(), 30, "the ingest to subscribe")
    assert cloud.proc is not None
    children = wait_for(lambda: _children(cloud.proc.pid), 10, "the ingest child")  # type: ignore[union-attr]
    assert len(children) == 1

    readings = [Reading("co2-1", "air.co2", to_epoch_ns(T0 + timedelta(seconds=5 * i)), i,
                        {"co2": 400.0 + i % 17}) for i in range(400)]
    _publish(creds, site, node, readings[:200])
    wait_for(lambda: _raw_count(reader, node) == 200, 60, "the first 200 raw points")

    os.kill(cloud.proc.pid, signal.SIGKILL)  # the parent only, not its process group
    cloud.proc.wait(10)
    wait_for(lambda: not _alive(children[0]), 20, "the orphaned ingest to stop")

    _publish(creds, site, node, readings[200:])  # the session queues them meanwhile
    cloud.start()
    wait_for(lambda: _raw_count(reader, node) >= 400, 60, "every raw point")
    assert _raw_count(reader, node) == 400
    minutes = wait_for(lambda: (lambda r: r if r and r[0]["sum"] >= 400 else None)(
        reader.query_points(f"SELECT sum(count) FROM agg_1m.air_co2 WHERE node = '{node}'",
                            db="urbanpulse")), 60, "the minute aggregates of every reading")
    assert minutes[0]["sum"] == 400  # a reading processed twice would count twice here
    ledger = wait_for(lambda: (lambda g: g if g.get("received", 0) - g.get("duplicates", 0) >= 400
                               else None)(_ledger(reader, node)), 60, "the delivery ledger")
    journaled, batches = _journaled_readings(
        cloud.config_path.parent / "ingestproc" / "journal" / "journal-i0.sqlite3", 50)
    assert batches == 8
    # Every journaled reading went through the node state once (a redelivered batch is
    # journaled again and counted as duplicates), none twice, and none is missing.
    assert ledger["received"] == journaled
    assert ledger["received"] - ledger["duplicates"] == 400
    assert ledger["expected"] == 400
    assert ledger["missing"] == 0
