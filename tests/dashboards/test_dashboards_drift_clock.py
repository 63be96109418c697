"""The "Sensor fault" alert on a DRIFT found on a late or early reading, on the real InfluxDB.

The rule counts the `events` of the last 15 minutes (`type` not anomaly, so DRIFT too) by
their stamps ($timeFilter). A drift event was stamped by the reading it fired on: for the
cross-station rule, whichever station's reading completed the judged hour, on that node's
clock; for a station's two modules, the module's reading. Found on a backlog (the stations
delivering an hour late after an outage) or on nodes whose clocks are behind, it was
written that far back and never alerted; on clocks an hour ahead, alerted an hour late. It
is now stamped as the fault events of a reading are (cloud/logic/events.py,
`stamped_at_reception`): at that reading's reception where it came more than 5 min after
its stamp or more than 1 min before it, the reading's stamp in `node_ts`.

The messages go the processor's way: journal records (stamped on reception by the cloud's
clock), decoded, through each node's state with detection on, the readings it took handed
to the city's drift step with their reception (`drift_inputs`), every point written by
the real sink. The rule's own query text (the
shipped provisioning file's) is then run as Grafana would run it at the drift's reception:
Grafana cannot run here, so `interpolate` puts in $timeFilter for the rule's relative time
range, as `urbanpulse dashboards check` does.
"""

from __future__ import annotations

import itertools
import math
import random
from datetime import UTC, datetime, timedelta

import pytest

from cloud.journal import JournalRecord
from cloud.logic.domain.city_drift import CityAir, drift_inputs
from cloud.logic.node import NodeState
from cloud.logic.records import NodeData, Point, decode_record
from tests.dashboards.conftest import Store
from tests.dashboards.test_dashboards_sensor_fault_clock import _alerted  # the rule as Grafana runs it
from urbanpulse.clock import from_epoch_ns, to_epoch_ns
from urbanpulse.wire import Reading, data_topic, encode_batch, format_ts

pytestmark = pytest.mark.stack

S = 10**9
MIN = 60 * S
HOUR = 60 * MIN
HORIZON_NS = 6 * HOUR
DELIVERY_NS = 2 * S  # from a reading to its reception, on a right clock
_runs = itertools.count()


def _cross(hours: int) -> list[tuple[str, Reading]]:
    """PM2.5 of five stations every 10 minutes from hour 0 (node time), weather x the
    station's level x noise; from hour 50 station aq-3's gain grows 10 %/h."""
    rng = random.Random(7)
    out = []
    for k in range(hours * 6):
        h = k / 6
        weather = 40 * (1.5 + math.sin(2 * math.pi * h / 24))
        for i, level in enumerate((1.0, 1.3, 0.9, 1.1, 0.7)):
            value = weather * level * math.exp(0.08 * rng.gauss(0, 1)) * (
                1 + 0.1 * max(0.0, h - 50) if i == 3 else 1.0)
            out.append((f"aq-{i}", Reading("pm-1", "air.pm", k * 10 * MIN + i * S, k,
                                           {"pm25": round(value, 1), "pm10": round(1.6 * value, 1)})))
    return out


def _pair(hours: int) -> list[tuple[str, Reading]]:
    """One station's two PM modules every minute, the first drifting +8 %/h from hour 30."""
    rng = random.Random(1)
    out = []
    for k in range(hours * 60):
        h = k / 60
        air = 50 * math.exp(0.3 * math.sin(h / 2) + 0.2 * math.sin(h * 1.7))
        differ = 0.03 * math.sin(2 * math.pi * h / 17)
        a = air * math.exp(differ + 0.06 * rng.gauss(0, 1)) * (1 + 0.08 * max(0.0, h - 30))
        b = air * 0.93 * math.exp(0.06 * rng.gauss(0, 1))
        out.append(("aq-0", Reading("pm-1", "air.pm", k * MIN, k, {"pm25": round(a, 1), "pm10": 60.0})))
        out.append(("aq-0", Reading("pm-1-b", "air.pm", k * MIN + 3 * S, k,
                                    {"pm25": round(b, 1), "pm10": 60.0})))
    return out


SHAPES = {"cross": (_cross, 72), "pair": (_pair, 36)}


def _fired_at(readings: list[tuple[str, Reading]], site: str) -> int:
    """The node stamp of the reading the one drift fires on."""
    (alert,) = CityAir().process((site, node, r, None) for node, r in readings)[1]
    return alert.ts_ns


class Processor:
    """The processor's node step and the city's drift step on journal records, as
    cloud/flow.py runs them (NodeLogic, DriftLogic), their points written by the real sink;
    the readings go to the drift step with their message's reception (`drift_inputs`'
    `received_ns`: NodeLogic is to hand it data.received_ns)."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.nodes: dict[str, NodeState] = {}
        self.city = CityAir()

    def take(self, records: list[JournalRecord]) -> list[Point]:
        out: list[Point] = []
        for rec in records:
            data, points = decode_record(rec, 4096)
            assert points == []
            assert isinstance(data, NodeData)
            state = self.nodes.setdefault(data.key, NodeState(HORIZON_NS, detect=True))
            out += state.process(data)
            drift_points, _ = self.city.process(
                drift_inputs(data.site, data.node, state.take_measured(), data.received_ns))
            out += drift_points
        self.store.writer.write(out)
        assert self.store.writer.stats.refused_requests == 0
        return out


def _records(site: str, shape: str, lead: timedelta) -> tuple[list[JournalRecord], int, int]:
    """The messages of `shape` (one a node and minute), the node's clocks `lead` ahead of
    the cloud's, as the journal holds them up to the one the drift fires on, whose reading
    is stamped in the last hour (node time, hours aligned as the drift step's bins); with
    that reading's stamp and reception."""
    make, hours = SHAPES[shape]
    base = make(hours)
    fired = _fired_at(base, site)
    now = to_epoch_ns(datetime.now(UTC))
    t0 = (now - fired) // HOUR * HOUR
    lead_ns = round(lead.total_seconds() * S)
    messages: dict[tuple[str, int], list[Reading]] = {}
    for node, r in base:
        if r.ts_ns <= fired:
            moved = Reading(r.sensor, r.kind, t0 + r.ts_ns, r.seq, r.values)
            messages.setdefault((node, r.ts_ns // MIN), []).append(moved)
    records = []
    for k, ((node, _), readings) in enumerate(messages.items()):
        received = readings[-1].ts_ns - lead_ns + DELIVERY_NS
        records.append(JournalRecord("i0", k + 1, received, data_topic(site, node),
                                     encode_batch(site, node, readings)))
    records.sort(key=lambda rec: rec.received_ns)
    return records, t0 + fired, t0 + fired - lead_ns + DELIVERY_NS


@pytest.mark.parametrize("shape", ["cross", "pair"])
@pytest.mark.parametrize("lead", [timedelta(hours=-1), timedelta(minutes=-20), timedelta(0),
                                  timedelta(hours=1)], ids=["behind-1h", "behind-20m", "right", "ahead-1h"])
def test_a_drift_alerts_when_the_cloud_receives_the_reading_it_fired_on(
        store: Store, shape: str, lead: timedelta) -> None:
    reader, db = store.client, store.database
    site = f"drift-clock-{shape}-{to_epoch_ns(datetime.now(UTC)) % 10**6}-{next(_runs)}"
    records, stamp, received = _records(site, shape, lead)
    points = Processor(store).take(records)
    drifts = [p for _, p in points if p.startswith("events,") and "type=drift" in p]
    assert len(drifts) == 1

    # evaluated by Grafana a moment after the cloud received the reading the drift fired on
    seen = {k: v for k, v in _alerted(reader, db, site, received + 5 * S).items() if k[1] == "drift"}
    sensor = "pm-1+pm-1-b" if shape == "pair" else "pm-1"  # a lone station: no module named
    assert seen == {(sensor, "drift"): 1}

    # the reading's stamp is the point's time within the rule's reach, else node_ts
    (row,) = reader.query_points(
        f"SELECT \"node\", \"node_ts\", \"detail\" FROM \"raw\".\"events\" WHERE \"site\" = '{site}' "
        "AND \"type\" = 'drift'", db=db, epoch="ns")
    assert row["node"] == ("aq-0" if shape == "pair" else "aq-3")
    if abs(lead) > timedelta(minutes=1):
        assert (row["time"] // 10_000 * 10_000, row["node_ts"]) == (
            received, format_ts(from_epoch_ns(stamp)))
    else:
        assert (row["time"], row["node_ts"]) == (stamp, None)


def test_a_replay_of_the_journal_overwrites_the_drift_it_wrote(store: Store) -> None:
    """A processor that crashed before any snapshot replays the journal from its start with
    fresh state: the same drift point (the journal's reception stamp), not a second one."""
    reader, db = store.client, store.database
    site = f"drift-replay-{to_epoch_ns(datetime.now(UTC)) % 10**6}-{next(_runs)}"
    records, _, _ = _records(site, "pair", timedelta(hours=-1))
    first = Processor(store).take(records)
    again = Processor(store).take(records)
    drifts = [p for p in first if "type=drift" in p[1]]
    assert len(drifts) == 1
    assert [p for p in again if "type=drift" in p[1]] == drifts
    (series,) = reader.query(f"SELECT count(\"detail\") FROM \"raw\".\"events\" WHERE \"site\" = '{site}' "
                             "AND \"type\" = 'drift'", db=db)
    assert series["values"][0][1] == 1
