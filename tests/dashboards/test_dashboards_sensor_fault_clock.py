"""The "Sensor fault" alert on a node whose clock is wrong, on the real InfluxDB.

The rule counts the `events` of the last 15 minutes by their stamps ($timeFilter). A
sensor's fault event was stamped by its reading, i.e. the node's clock: on a node 20 min or
an hour behind (or a backlog that old) it was written that far in the past and the rule
never saw it; an hour ahead, an hour in the future, and the rule fired an hour late. An
event whose reading the cloud received more than 5 min after its stamp, or more than 1 min
before it, is now stamped when the cloud received it (the journal's stamp, so a replay
writes the same point), the reading's stamp kept in the field `node_ts`, as the heartbeat
rules' events keep the heartbeat's; the others keep the reading's stamp
(docs/anomaly-detection.md, "Fault events of a reading out of the alert's reach").

The messages go the processor's way: journal records (stamped on reception by the cloud's
clock), decoded, through the node's state with detection on, written by the real sink. The
rule's own query text (the shipped provisioning file's) is then run as Grafana would run it
at the last reception: Grafana cannot run here, so `interpolate` puts in $timeFilter for
the rule's relative time range, as `urbanpulse dashboards check` does.
"""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from cloud.journal import JournalRecord
from cloud.logic.node import NodeState
from cloud.logic.records import NodeData, Point, decode_record
from cloud.sink import InfluxWriter
from tests.dashboards.conftest import Store
from urbanpulse.clock import SystemClock, from_epoch_ns, to_epoch_ns
from urbanpulse.dashboards.alerts import RULES, AlertRule
from urbanpulse.dashboards.city import all_dashboards
from urbanpulse.dashboards.queries import TimeRange, interpolate, regex_value
from urbanpulse.influx_http import InfluxHTTP
from urbanpulse.wire import Reading, data_topic, encode_batch, format_ts

pytestmark = pytest.mark.stack

S = 10**9
MIN = 60 * S
HOUR = 60 * MIN
HORIZON_NS = 6 * 3600 * S
PROVISIONING = Path(__file__).parents[2] / "dashboards" / "provisioning" / "alerting" / "urbanpulse.yaml"
_runs = itertools.count()


def _rule() -> AlertRule:
    (rule,) = [r for r in RULES if r.uid == "urbanpulse-sensor-fault"]
    # the query Grafana is provisioned with ($ written $$ in the provisioning file)
    assert rule.influxql.replace("$", "$$").replace('"', '\\"') in PROVISIONING.read_text()
    return rule


def _alerted(reader: InfluxHTTP, db: str, site: str, at_ns: int) -> dict[tuple[str, str], float]:
    """What the rule's reducer (`last`) sees per (sensor, type) of `site`, evaluated at `at_ns`."""
    rule = _rule()
    now = from_epoch_ns(at_ns)
    query = interpolate(rule.influxql, TimeRange.last(now, timedelta(seconds=rule.window_s),
                                                      timedelta(seconds=rule.window_end_s)), {})
    return {(s["tags"]["sensor"], s["tags"]["type"]): float(s["values"][-1][1])
            for s in reader.query(query, db=db) if s["tags"]["site"] == site}


class Processor:
    """The processor's node step on journal records, its points written by the real sink."""

    def __init__(self, writer: InfluxWriter) -> None:
        self.writer = writer
        self.nodes: dict[str, NodeState] = {}

    def take(self, records: list[JournalRecord]) -> list[Point]:
        out: list[Point] = []
        for rec in records:
            data, points = decode_record(rec, 4096)
            assert points == []
            assert isinstance(data, NodeData)
            state = self.nodes.setdefault(data.key, NodeState(HORIZON_NS, detect=True))
            out += state.process(data)
        self.writer.write(out)
        assert self.writer.stats.refused_requests == 0
        return out


def _records(site: str, node: str, lead: timedelta, end_ns: int) -> list[JournalRecord]:
    """A dust sensor's messages as the journal holds them, stamped on reception by the
    cloud's clock up to `end_ns`; its readings, every minute, stamped by the node's clock
    `lead` ahead of the cloud's (a delivery of 2 s less): seq 0-19 in the first message,
    then 25 (seq 20-24 never come: a gap, held in case they are only late), then 26, out of
    range, which also lets the gap go (received more than 10 s after it)."""
    topic = data_topic(site, node)
    lead_ns = round(lead.total_seconds() * S)

    def reading(seq: int, pm25: float) -> Reading:
        return Reading("pm-1", "air.pm", end_ns - (26 - seq) * MIN + lead_ns - 2 * S, seq,
                       {"pm25": pm25, "pm10": 20.0 + seq % 3})

    messages = [(end_ns - 7 * MIN, [reading(seq, 10.0 + seq % 4) for seq in range(20)]),
                (end_ns - MIN, [reading(25, 12.0)]),
                (end_ns, [reading(26, 5000.0)])]
    return [JournalRecord("i0", k + 1, received, topic, encode_batch(site, node, readings))
            for k, (received, readings) in enumerate(messages)]


@pytest.mark.parametrize("lead", [timedelta(hours=-1), timedelta(minutes=-20), timedelta(0),
                                  timedelta(hours=1)], ids=["behind-1h", "behind-20m", "right", "ahead-1h"])
def test_a_fault_alerts_when_the_cloud_receives_it_whatever_the_nodes_clock(
        store: Store, lead: timedelta) -> None:
    reader, db = store.client, store.database
    site = f"fault-clock-{to_epoch_ns(SystemClock().now()) % 10**6}-{next(_runs)}"
    end = to_epoch_ns(datetime.now(UTC).replace(microsecond=0))
    records = _records(site, "aq-1", lead, end)
    points = Processor(store.writer).take(records)
    # the gap, on both fields, and the value out of range
    assert sum(p.startswith("events,") for _, p in points) == 3

    # evaluated by Grafana a moment after the cloud received the faulty reading: both events
    assert _alerted(reader, db, site, end + 5 * S) == {("pm-1", "silence"): 2, ("pm-1", "out_of_range"): 1}

    # what analysts see as the time of the fault is still the reading's (the node's clock):
    # the point's time where the reading was received within reach of the rule, else the
    # field node_ts, the point stamped when the cloud received that reading
    rows = reader.query_points(
        f"SELECT \"type\", \"field\", \"node_ts\", \"seq\" FROM \"raw\".\"events\" WHERE \"site\" = '{site}'",
        db=db, epoch="ns")
    lead_ns = round(lead.total_seconds() * S)
    gap, bad = (end - k * MIN + lead_ns - 2 * S for k in (1, 0))
    at_reception = abs(lead) > timedelta(minutes=1)
    shown = sorted((r["type"], r["field"], r["seq"], r["time"] // 10_000 * 10_000, r["node_ts"])
                   for r in rows)
    if at_reception:
        assert shown == [("out_of_range", "pm25", 26, end, format_ts(from_epoch_ns(bad))),
                         ("silence", "pm10", 25, end - MIN, format_ts(from_epoch_ns(gap))),
                         ("silence", "pm25", 25, end - MIN, format_ts(from_epoch_ns(gap)))]
    else:
        assert shown == [("out_of_range", "pm25", 26, bad, None), ("silence", "pm10", 25, gap, None),
                         ("silence", "pm25", 25, gap, None)]


def test_a_replay_of_the_journal_overwrites_the_events_it_wrote(
        store: Store) -> None:
    """A processor that crashed before any snapshot replays the journal from its start with
    fresh state: the same points (the journal's reception stamps), not a second set."""
    reader, db = store.client, store.database
    site = f"fault-replay-{to_epoch_ns(SystemClock().now()) % 10**6}-{next(_runs)}"
    end = to_epoch_ns(datetime.now(UTC).replace(microsecond=0))
    records = _records(site, "aq-1", timedelta(hours=-1), end)
    first = Processor(store.writer).take(records)
    again = Processor(store.writer).take(records)
    events = [p for p in first if p[1].startswith("events,")]
    assert [p for p in again if p[1].startswith("events,")] == events
    (series,) = reader.query(f"SELECT count(\"detail\") FROM \"raw\".\"events\" WHERE \"site\" = '{site}'",
                             db=db)
    assert series["values"][0][1] == 3


def test_a_fault_the_processor_finds_more_than_15_minutes_behind_is_not_alerted(store: Store) -> None:
    """The events are stamped when the cloud received their readings, whatever the
    processor's lag: one catching up 20 minutes behind (after an outage of its own or of
    InfluxDB) writes them 20 minutes in the past, out of the rule's 15 minutes when written
    and ever after (docs/runbook.md, "Processor behind": look for them on the events
    dashboard once it has caught up). Within the lag (the rule evaluated at the reception,
    had the processor kept up) it fires."""
    reader, db = store.client, store.database
    site = f"fault-lag-{to_epoch_ns(SystemClock().now()) % 10**6}-{next(_runs)}"
    received = to_epoch_ns(datetime.now(UTC).replace(microsecond=0)) - 20 * MIN
    Processor(store.writer).take(_records(site, "aq-1", timedelta(0), received))
    written = to_epoch_ns(SystemClock().now())
    assert _alerted(reader, db, site, written) == {}
    assert _alerted(reader, db, site, written + 10 * MIN) == {}
    assert _alerted(reader, db, site, received + 5 * S) == {("pm-1", "silence"): 2,
                                                             ("pm-1", "out_of_range"): 1}


def test_latest_sensor_faults_shows_when_the_node_took_the_reading(store: Store) -> None:
    """The events dashboard's "Latest sensor faults" table, its query as generated, run as
    Grafana would: an event stamped at its reception shows the reading's stamp (node_ts)
    beside it; one stamped by its reading, none."""
    reader, db = store.client, store.database
    (panel,) = [p for d in all_dashboards() for p in d.panels if p.title == "Latest sensor faults"]
    (query,) = panel.queries
    end = to_epoch_ns(datetime.now(UTC).replace(microsecond=0))
    rows: dict[str, list[tuple[object, ...]]] = {}
    for name, lead in (("behind", timedelta(hours=-1)), ("right", timedelta(0))):
        site = f"fault-table-{to_epoch_ns(SystemClock().now()) % 10**6}-{next(_runs)}"
        Processor(store.writer).take(_records(site, "aq-1", lead, end))
        text = interpolate(query.influxql, TimeRange.last(from_epoch_ns(end + 5 * S), timedelta(hours=3)),
                           {"site": regex_value(site), "node": regex_value("aq-1")})
        (series,) = reader.query(text, db=db)
        assert series["columns"] == ["time", "type", "site", "node", "sensor", "field", "node_ts",
                                     "detail", "delay_s"]
        rows[name] = [tuple(row[i] for i in (1, 5, 6)) for row in series["values"]]
    bad, gap = (format_ts(from_epoch_ns(end - k * MIN - HOUR - 2 * S)) for k in (0, 1))
    assert rows["behind"] == [("out_of_range", "pm25", bad), ("silence", "pm10", gap),
                              ("silence", "pm25", gap)]
    assert rows["right"] == [("out_of_range", "pm25", None), ("silence", "pm10", None),
                             ("silence", "pm25", None)]
