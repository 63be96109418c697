"""Dead letters whose text a node chose, written to the real InfluxDB (issue 6: nothing on the
input side can crash the flow).

A dead letter's `detail` quotes what the node sent where the contract refused it. JSON can
carry a lone surrogate (`"\\ud800"`), which `json.loads` keeps in the str it gives, and
Python's `datetime.fromisoformat` takes any character between a date and its time: a reading
stamped `"2019-06-01\\ud80012:00:00Z"` parses, is refused as before 2020, and its detail held
the surrogate. The sink encodes its lines as UTF-8, which no lone surrogate has: the write
raised UnicodeEncodeError, the flow died, and its restart read the same record again and
died again, every node's data stalled behind one message. So do a field name, which the
`unknown_field` detail quoted as it came, and a status's stamp.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from cloud.config import parse_cloud_config
from cloud.journal import JournalRecord
from cloud.logic.records import decode_record
from cloud.sink import InfluxWriter, make_writer
from cloud.stack_config import cloud_config_for_stack
from urbanpulse.clock import SystemClock, to_epoch_ns
from urbanpulse.influx_http import InfluxHTTP
from urbanpulse.stack import StackInfo

pytestmark = pytest.mark.stack

_runs = itertools.count()


@pytest.fixture
def writer(db_ready: StackInfo) -> Iterator[InfluxWriter]:
    influx = parse_cloud_config(cloud_config_for_stack(db_ready, Path("/nonexistent-state"))).influx
    w = make_writer(influx)
    yield w
    w.close()


def _record(site: str, node: str, stream: str, body: dict[str, object], offset: int) -> JournalRecord:
    now = to_epoch_ns(SystemClock().now())
    return JournalRecord("p0", offset, now - now % 1000 + offset,
                         f"urbanpulse/v1/{site}/{node}/{stream}", json.dumps(body).encode())


@pytest.mark.parametrize("what", ["ts", "field", "status"])
def test_a_lone_surrogate_a_node_sent_is_dead_lettered_and_the_rest_written(
        writer: InfluxWriter, reader: InfluxHTTP, db_ready: StackInfo, what: str) -> None:
    site, node = f"surrogate-{next(_runs)}-{to_epoch_ns(SystemClock().now()) % 10**6}", "n1"
    ok = {"sensor": "c1", "kind": "air.co2", "ts": "2024-06-01T12:00:00.000000Z", "seq": 1,
          "values": {"co2": 400}}
    bad: dict[str, object] = dict(ok, seq=2)
    if what == "ts":
        bad["ts"] = "2019-06-01\ud80012:00:00Z"
    elif what == "field":
        bad["values"] = {"co2": 400, "\ud800": 1}
    records = [_record(site, node, "data", {"v": 1, "site": site, "node": node,
                                            "units": {"air.co2": {"co2": "ppm"}},
                                            "readings": [ok, bad]}, 0)]
    if what == "status":
        records = [_record(site, node, "status", {"v": 1, "state": "online",
                                                  "ts": "2019-06-01\ud80012:00:00Z"}, 1)]
    points = [p for rec in records for p in decode_record(rec, 4096)[1]]
    assert len(points) == 1, points
    writer.write(points)  # raised UnicodeEncodeError
    rows = reader.query_points(
        f"SELECT \"detail\", \"payload\", \"reason\" FROM \"raw\".\"dead_letter\" WHERE \"site\" = '{site}'",
        db=db_ready.database)
    assert len(rows) == 1, rows
    reason = {"ts": "ts_out_of_range", "field": "unknown_field", "status": "ts_out_of_range"}[what]
    assert rows[0]["reason"] == reason
    assert "\\ud800" in str(rows[0]["detail"]), rows[0]["detail"]
    assert writer.stats.points == 1
    assert writer.stats.refused_requests == 0


def test_counts_that_are_not_whole_are_dead_letters_of_their_node_and_the_rest_goes_on(
        writer: InfluxWriter, reader: InfluxHTTP, db_ready: StackInfo) -> None:
    """A door count of 2.5 or -3 (the query API returns counts as whole numbers, and would
    refuse such a point) is refused as the contract's other broken values are: one
    `bad_count` dead letter per reading, counted under its node, its neighbours kept."""
    site = f"counts-{next(_runs)}-{to_epoch_ns(SystemClock().now()) % 10**6}"
    units = {"hospital.door": {"count": "persons", "interval_s": "s"}}

    def door(seq: int, count: object) -> dict[str, object]:
        return {"sensor": "door-1", "kind": "hospital.door", "ts": f"2024-06-01T12:0{seq}:00.000000Z",
                "seq": seq, "values": {"count": count, "interval_s": 60}}

    records = [_record(site, "er", "data", {"v": 1, "site": site, "node": "er", "units": units,
                                            "readings": [door(1, 3), door(2, 2.5), door(3, 4.0)]}, 0),
               _record(site, "visits", "data", {"v": 1, "site": site, "node": "visits", "units": units,
                                                "readings": [door(1, -3), door(2, 1)]}, 1)]
    decoded = [decode_record(rec, 4096) for rec in records]
    kept = {data.node: [r.values["count"] for r in data.readings] for data, _ in decoded if data}
    assert kept == {"er": [3, 4.0], "visits": [1]}
    writer.write([p for _, points in decoded for p in points])
    rows = reader.query_points(
        f"SELECT \"detail\", \"node\", \"reason\" FROM \"raw\".\"dead_letter\" WHERE \"site\" = '{site}'",
        db=db_ready.database)
    assert sorted((r["node"], r["reason"], r["detail"]) for r in rows) == [
        ("er", "bad_count", "readings[1].values.count: a count of persons must be a whole number "
                            "in [0, 2^53]; 2.5 is not a whole number"),
        ("visits", "bad_count", "readings[0].values.count: a count of persons must be a whole number "
                                "in [0, 2^53]; -3 is negative")]
    per_node = reader.query_points(
        f"SELECT count(\"detail\") FROM \"raw\".\"dead_letter\" WHERE \"site\" = '{site}' "
        "AND \"reason\" = 'bad_count' GROUP BY \"node\"", db=db_ready.database)
    assert sorted((r["node"], r["count"]) for r in per_node) == [("er", 1), ("visits", 1)]
