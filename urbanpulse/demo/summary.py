"""The demo's live terminal summary, read back from InfluxDB as an analyst would: raw
readings for the rates and latest values, the cloud's rollups (docs/domain-rollups.md)
for hospitals (occupancy, flows, queue waits), traffic and air quality, and `raw.events`
for anomalies and faults."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from typing import Any

from urbanpulse.influx_http import InfluxError, InfluxHTTP

WINDOW_S = 30
LIVE_MARK = "*"


@dataclass(frozen=True)
class Occupancy:
    beds: int
    occupied: int
    pct: float | None
    stale: int = 0  # of a ward: beds whose pad was not heard for over 2 h 10 min, not in beds


@dataclass(frozen=True)
class Crossing:
    vehicles: int
    flow_vpm: float | None
    occupancy_pct: float | None
    speed_kmh: float | None
    lanes: int
    speed_lanes: int | None = None  # of them, those with a speed (None: a row written before)


@dataclass(frozen=True)
class AirIndex:
    pm25_mean: float | None
    aqi_epa: int | None
    category_epa: str | None
    aqi_vn: int | None
    category_vn: str | None


@dataclass(frozen=True)
class QueueWait:
    """One queue node's hour: tickets called (patients served, exams done) and the wait
    between issue and call."""

    served: int
    median_s: float | None
    p90_s: float | None


@dataclass
class Summary:
    rates: dict[str, float] = field(default_factory=dict)
    nodes: set[str] = field(default_factory=set)
    air: dict[str, tuple[float, float]] = field(default_factory=dict)
    co2: dict[str, float] = field(default_factory=dict)
    aqi: dict[str, AirIndex] = field(default_factory=dict)
    traffic: dict[str, Crossing] = field(default_factory=dict)
    wards: dict[str, Occupancy] = field(default_factory=dict)
    hospitals: dict[str, Occupancy] = field(default_factory=dict)
    flow: dict[str, tuple[int, int]] = field(default_factory=dict)
    waits: dict[str, QueueWait] = field(default_factory=dict)
    dead_letters: int = 0
    received: int = 0
    missing: int = 0
    duplicates: int = 0
    events: list[str] = field(default_factory=list)


def _rows(client: InfluxHTTP, db: str, q: str) -> list[dict[str, Any]]:
    try:
        return client.query_points(q, db=db)
    except InfluxError:  # the measurement or retention policy has no data yet
        return []


def _int(value: Any) -> int:
    return int(value or 0)


def collect(client: InfluxHTTP, db: str, window_s: float = WINDOW_S) -> Summary:
    s = Summary()
    window = max(1, round(window_s))
    for row in _rows(client, db, f"SELECT count(seq) FROM raw./^(air|traffic|hospital)_/ "
                                  f"WHERE time > now() - {window}s GROUP BY kind"):
        s.rates[row["kind"]] = row["count"] / window
    for row in _rows(client, db, "SELECT count(seq) FROM raw./^(air|traffic|hospital)_/ "
                                 "WHERE time > now() - 5m GROUP BY site, node"):
        s.nodes.add(f"{row['site']}/{row['node']}")
    for row in _rows(client, db, "SELECT last(pm25) AS pm25, last(pm10) AS pm10 FROM raw.air_pm "
                                 "WHERE time > now() - 5m GROUP BY site, node"):
        s.air[f"{row['site']}/{row['node']}"] = (row["pm25"], row["pm10"])
    for row in _rows(client, db, "SELECT last(co2) AS co2 FROM raw.air_co2 "
                                 "WHERE time > now() - 5m GROUP BY site, node"):
        s.co2[f"{row['site']}/{row['node']}"] = row["co2"]
    for row in _rows(client, db, "SELECT last(pm25_mean) AS pm25, last(aqi_epa) AS epa, "
                                 "last(category_epa) AS cat_epa, last(aqi_vn) AS vn, "
                                 "last(category_vn) AS cat_vn FROM agg_1h.air_quality "
                                 "WHERE time > now() - 2h GROUP BY site, node"):
        s.aqi[f"{row['site']}/{row['node']}"] = AirIndex(
            row.get("pm25"), row.get("epa"), row.get("cat_epa"), row.get("vn"), row.get("cat_vn"))
    for row in _rows(client, db, "SELECT last(vehicles) AS n, last(flow_vpm) AS flow, "
                                 "last(occupancy_pct) AS occ, last(speed_kmh) AS v, "
                                 "last(lanes) AS lanes, last(speed_lanes) AS speeded "
                                 "FROM agg_1m.traffic_intersection "
                                 "WHERE time > now() - 5m GROUP BY site, node"):
        s.traffic[f"{row['site']}/{row['node']}"] = Crossing(
            _int(row.get("n")), row.get("flow"), row.get("occ"), row.get("v"),
            _int(row.get("lanes")), None if row.get("speeded") is None else _int(row["speeded"]))
    for row in _rows(client, db, "SELECT last(beds) AS beds, last(occupied) AS occ, "
                                 "last(occupancy_pct) AS pct, last(stale) AS stale "
                                 "FROM agg_1m.ward_occupancy "
                                 "WHERE time > now() - 10m GROUP BY site, node"):
        s.wards[f"{row['site']}/{row['node']}"] = Occupancy(
            _int(row.get("beds")), _int(row.get("occ")), row.get("pct"), _int(row.get("stale")))
    for row in _rows(client, db, "SELECT last(beds) AS beds, last(occupied) AS occ, "
                                 "last(occupancy_pct) AS pct FROM agg_1m.hospital_occupancy "
                                 "WHERE time > now() - 10m GROUP BY site"):
        s.hospitals[row["site"]] = Occupancy(_int(row.get("beds")), _int(row.get("occ")),
                                             row.get("pct"))
    for row in _rows(client, db, "SELECT last(er_arrivals) AS er, last(visits) AS visits "
                                 "FROM agg_1h.hospital_flow WHERE time > now() - 1h "
                                 "GROUP BY site"):
        s.flow[row["site"]] = (_int(row.get("er")), _int(row.get("visits")))
    for row in _rows(client, db, "SELECT last(n) AS n, last(median_s) AS med, "
                                 "last(p90_s) AS p90 FROM agg_1h.queue_wait "
                                 "WHERE time > now() - 1h GROUP BY site, node"):
        s.waits[f"{row['site']}/{row['node']}"] = QueueWait(
            _int(row.get("n")), row.get("med"), row.get("p90"))
    for row in _rows(client, db, "SELECT count(offset) FROM raw.dead_letter "
                                 "WHERE time > now() - 1h"):
        s.dead_letters = _int(row["count"])
    s.received, s.duplicates, s.missing = ledger(client, db)
    for row in _rows(client, db, "SELECT * FROM raw.events WHERE time > now() - 10m "
                                 "ORDER BY time DESC LIMIT 6"):
        s.events.append(_event(row))
    return s


def ledger(client: InfluxHTTP, db: str, site: str | None = None,
           nodes: Collection[str] = ()) -> tuple[int, int, int]:
    """The delivery ledger of the last 2 hours (`agg_1h.ledger`): readings received,
    duplicates and missing; of `site`'s `nodes` only when given."""
    where = "time > now() - 2h"
    if site is not None:
        where += f" AND site = '{site}'"
        if nodes:
            where += " AND (" + " OR ".join(f"node = '{n}'" for n in sorted(nodes)) + ")"
    for row in _rows(client, db, "SELECT sum(received) AS r, sum(duplicates) AS d, "
                                 f"sum(missing) AS m FROM agg_1h.ledger WHERE {where}"):
        return _int(row["r"]), _int(row["d"]), _int(row["m"])
    return 0, 0, 0


def _event(row: dict[str, Any]) -> str:
    where = "/".join(str(row.get(k) or "-") for k in ("site", "node", "sensor"))
    text = f"{where}: {row.get('type')} ({row.get('kind')})"
    if row.get("field") is not None:
        text += f" {row['field']}"
        if row.get("value") is not None:
            text += f" = {row['value']:g}"
    if row.get("score") is not None:
        text += f", score {row['score']:.1f}"
    if row.get("detail"):
        text += f" — {row['detail']}"
    return text


def _num(value: float | None, fmt: str, missing: str = "-") -> str:
    return missing if value is None else format(value, fmt)


def _minutes(seconds: float | None) -> str:
    return _num(None if seconds is None else seconds / 60, "5.1f", "    -")


def _speed_lanes(x: Crossing) -> str:
    """Says when the mean speed comes from fewer lanes than counted vehicles (a single loop
    gives no speed: docs/domain-rollups.md, `speed_lanes`)."""
    if x.speed_lanes is None or x.speed_lanes >= x.lanes:
        return ""
    return f" (from {x.speed_lanes} of {x.lanes} lanes)"


def render(s: Summary, elapsed_s: float, duration_s: float | None,
           live: Collection[str] = (), departments: Collection[str] = (),
           gateway: Sequence[str] = ()) -> str:
    """`live` holds the "site/node" keys that run on edge agents (marked with *),
    `departments` those of paraclinical departments (their queues count exams); `gateway`
    the lines of the site behind a gateway (gateway_site.GatewaySite.summary_lines)."""

    def name(key: str) -> str:
        return f"{key}{' ' + LIVE_MARK if key in live else ''}"

    lines = [f"urbanpulse demo — {elapsed_s:5.0f} s"
             + (f" of {duration_s:.0f} s" if duration_s else " (Ctrl-C to stop)")
             + f"   ({LIVE_MARK} = live edge agent on emulated devices)", ""]
    lines.append(f"readings/s per kind (last {WINDOW_S} s), {len(s.nodes)} nodes reporting "
                 f"(last 5 min):")
    if not s.rates:
        lines.append("  (waiting for the first readings...)")
    lines += [f"  {kind:<16} {s.rates[kind]:7.2f}" for kind in sorted(s.rates)]
    lines.append("")
    lines.append("air quality (latest PM µg/m³, CO2 ppm; this hour's mean PM2.5, hourly AQI "
                 "once 2 of the last 3 hours have data):")
    for k in sorted(set(s.air) | set(s.co2) | set(s.aqi)):
        pm = s.air.get(k)
        parts = [f"PM2.5 {pm[0]:6.1f}  PM10 {pm[1]:6.1f}" if pm else " " * 26]
        if k in s.co2:
            parts.append(f"CO2 {s.co2[k]:5.0f}")
        idx = s.aqi.get(k)
        if idx is not None:
            parts.append(f"mean PM2.5 {_num(idx.pm25_mean, '.1f')}")
            parts.append(f"AQI EPA {_num(idx.aqi_epa, '.0f')} ({idx.category_epa or '-'}), "
                         f"VN {_num(idx.aqi_vn, '.0f')} ({idx.category_vn or '-'})")
        lines.append(f"  {name(k):<28} " + "   ".join(parts))
    lines.append("traffic per intersection (latest minute):")
    for k, x in sorted(s.traffic.items()):
        lines.append(f"  {name(k):<28} {x.lanes} lanes {x.vehicles:4d} veh  "
                     f"{_num(x.flow_vpm, '5.1f')} veh/min  occupancy "
                     f"{_num(x.occupancy_pct, '5.1f')} %  speed {_num(x.speed_kmh, '5.1f')} km/h"
                     + _speed_lanes(x))
    lines.append("hospital wards (occupied / beds, latest minute):")
    for k, o in sorted(s.wards.items()):
        stale = f"   {o.stale} stale (pads not heard for over 2 h 10 min)" if o.stale else ""
        lines.append(f"  {name(k):<28} {o.occupied:3d} / {o.beds:<3d} {_num(o.pct, '5.1f')} %{stale}")
    lines.append("hospitals (occupancy; ER arrivals and visits this hour):")
    for site in sorted(set(s.hospitals) | set(s.flow)):
        h = s.hospitals.get(site)
        occ = f"{h.occupied:3d} / {h.beds:<3d} {_num(h.pct, '5.1f')} %" if h else "  -"
        er, visits = s.flow.get(site, (0, 0))
        lines.append(f"  {site:<28} {occ}   ER arrivals {er:4d}   visits {visits:5d}")
    lines.append("hospital queues (this hour: patients served or exams done; wait median / "
                 "p90 in minutes):")
    if not s.waits:
        lines.append("  (no ticket called this hour)")
    for k, w in sorted(s.waits.items()):
        what = "exams   " if k in departments else "patients"
        lines.append(f"  {name(k):<28} {what} {w.served:5d}   wait {_minutes(w.median_s)} / "
                     f"{_minutes(w.p90_s)} min")
    lines.append("")
    lines.extend(gateway)
    lines.append(f"delivery ledger (2 h): received {s.received}, duplicates {s.duplicates}, "
                 f"missing {s.missing}; dead letters (1 h): {s.dead_letters}")
    lines.append("anomalies and sensor faults (10 min):")
    lines.extend(f"  {a}" for a in s.events or ["none"])
    return "\n".join(lines)
