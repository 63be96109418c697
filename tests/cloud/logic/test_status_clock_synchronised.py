"""A node's own word on its clock reaches `node_status`: the agent reads the kernel's
STA_UNSYNC flag and sends it in every heartbeat (`health.clock.synchronised`: true, false,
or null when its `clock_check` is off; absent from agents older than the check). Without it
in the store an operator sees a clock 10 minutes off and cannot tell a node that never
synchronised (no NTP server reachable) from one synchronised to a wrong server.

The statuses go the processor's way: journal records stamped on reception, payloads as the
agent encodes them (`encode_status`), decoded by `decode_record`, heartbeats through the
node's state, written by the real sink's writer to the session's InfluxDB and read back."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from cloud.config import CloudInflux, parse_cloud_config
from cloud.journal import JournalRecord
from cloud.logic.node import NodeState
from cloud.logic.records import decode_record
from cloud.sink import InfluxWriter, make_writer
from cloud.stack_config import cloud_config_for_stack
from urbanpulse.clock import SystemClock, from_epoch_ns, to_epoch_ns
from urbanpulse.influx_http import InfluxHTTP
from urbanpulse.stack import StackInfo
from urbanpulse.wire import encode_status, status_topic

pytestmark = pytest.mark.stack

S = 10**9
_runs = itertools.count()

# node -> what its heartbeat's `clock` says
CLOCKS: dict[str, dict[str, Any]] = {
    "synced": {"jumps": 0, "synchronised": True},
    "unsynced": {"jumps": 0, "synchronised": False},
    "unchecked": {"jumps": 0, "synchronised": None},  # clock_check off
    "older": {"jumps": 0},  # an agent from before the check
    "odd": {"jumps": 0, "synchronised": 1},  # not a bool: not trusted
}


@pytest.fixture
def writer(db_ready: StackInfo) -> Iterator[InfluxWriter]:
    influx: CloudInflux = parse_cloud_config(
        cloud_config_for_stack(db_ready, Path("/nonexistent-state"))).influx
    out = make_writer(influx)
    yield out
    out.close()


def _site() -> str:
    return f"clock-sync-{to_epoch_ns(SystemClock().now()) % 10**6}-{next(_runs)}"


def _take(writer: InfluxWriter, site: str, statuses: list[tuple[str, str, dict[str, Any] | None]],
          received_ns: int) -> None:
    """One status message per (node, state, clock), a second apart, as the processor takes
    them; a clock of None is a status without health (the MQTT last will)."""
    states: dict[str, NodeState] = {}
    points = []
    for k, (node, state, clock) in enumerate(statuses):
        received = received_ns + k * S
        health = None if clock is None else {"uptime_s": 60, "outbox_depth": 0, "clock": clock}
        rec = JournalRecord("i0", k + 1, received, status_topic(site, node),
                            encode_status(state, from_epoch_ns(received - S // 4), health))
        data, out = decode_record(rec, 4096)
        assert [p for p in out if p[1].startswith("dead_letter")] == []
        points += out
        if data is not None:
            points += states.setdefault(node, NodeState(3600 * S, detect=True)).process(data)
    writer.write(points)
    assert writer.stats.refused_requests == 0


def _stored(reader: InfluxHTTP, db: str, site: str) -> dict[str, list[tuple[str, object]]]:
    """Per node, (state, clock_synchronised) of each node_status point, oldest first."""
    out: dict[str, list[tuple[str, object]]] = {}
    for row in reader.query_points(
            f'SELECT "node", "state", "clock_synchronised" FROM "raw"."node_status" '
            f"WHERE \"site\" = '{site}' AND time > now() - 1h", db=db):
        out.setdefault(str(row["node"]), []).append((str(row["state"]), row["clock_synchronised"]))
    return out


def test_each_heartbeat_stores_whether_the_node_says_its_clock_is_synchronised(
        writer: InfluxWriter, reader: InfluxHTTP, db_ready: StackInfo) -> None:
    site = _site()
    now = to_epoch_ns(SystemClock().now())
    _take(writer, site, [(node, "online", clock) for node, clock in CLOCKS.items()], now - 60 * S)
    stored = _stored(reader, db_ready.database, site)
    assert stored == {"synced": [("online", True)], "unsynced": [("online", False)],
                      "unchecked": [("online", None)], "older": [("online", None)],
                      "odd": [("online", None)]}
    # written as a boolean, as `online` is (a float or a string would be another field type)
    fields = {r["fieldKey"]: r["fieldType"] for r in reader.query_points(
        'SHOW FIELD KEYS FROM "raw"."node_status"', db=db_ready.database)}
    assert fields["clock_synchronised"] == "boolean"


def test_a_node_whose_clock_synchronises_reads_so_from_that_heartbeat_and_the_will_says_nothing(
        writer: InfluxWriter, reader: InfluxHTTP, db_ready: StackInfo) -> None:
    site = _site()
    now = to_epoch_ns(SystemClock().now())
    _take(writer, site, [("pi", "online", CLOCKS["unsynced"]), ("pi", "online", CLOCKS["synced"]),
                         ("pi", "offline", None)], now - 60 * S)
    assert _stored(reader, db_ready.database, site) == {
        "pi": [("online", False), ("online", True), ("offline", None)]}
