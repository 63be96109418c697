"""The demo's live terminal summary, read back from InfluxDB as an analyst would."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from urbanpulse.influx_http import InfluxError, InfluxHTTP

WINDOW_S = 30


@dataclass
class Summary:
    rates: dict[str, float] = field(default_factory=dict)
    air: dict[str, tuple[float, float]] = field(default_factory=dict)
    traffic: dict[str, tuple[float, float, float | None]] = field(default_factory=dict)
    beds: dict[str, tuple[int, int]] = field(default_factory=dict)
    dead_letters: int = 0
    received: int = 0
    missing: int = 0
    duplicates: int = 0
    anomalies: list[str] = field(default_factory=list)


def _rows(client: InfluxHTTP, db: str, q: str) -> list[dict[str, Any]]:
    try:
        return client.query_points(q, db=db)
    except InfluxError:
        return []


def collect(client: InfluxHTTP, db: str) -> Summary:
    s = Summary()
    for row in _rows(client, db, f"SELECT count(seq) FROM raw./^(air|traffic|hospital)_/ "
                                  f"WHERE time > now() - {WINDOW_S}s GROUP BY kind"):
        s.rates[row["kind"]] = row["count"] / WINDOW_S
    for row in _rows(client, db, "SELECT last(pm25) AS pm25, last(pm10) AS pm10 FROM raw.air_pm "
                                 "WHERE time > now() - 5m GROUP BY site, node"):
        s.air[f"{row['site']}/{row['node']}"] = (row["pm25"], row["pm10"])
    for row in _rows(client, db, "SELECT last(count) AS n, last(occupancy_pct) AS occ, "
                                 "last(speed_kmh) AS v FROM raw.traffic_loop WHERE time > now() - 5m "
                                 "GROUP BY site, node, sensor"):
        s.traffic[f"{row['site']}/{row['node']}/{row['sensor']}"] = (row["n"], row["occ"], row["v"])
    beds: dict[str, list[int]] = {}
    for row in _rows(client, db, "SELECT last(occupied) AS occ FROM raw.hospital_bed "
                                 "WHERE time > now() - 1h GROUP BY site, node, sensor"):
        key = f"{row['site']}/{row['node']}"
        beds.setdefault(key, [0, 0])
        beds[key][0] += int(row["occ"] or 0)
        beds[key][1] += 1
    s.beds = {k: (v[0], v[1]) for k, v in beds.items()}
    for row in _rows(client, db, "SELECT count(offset) FROM raw.dead_letter WHERE time > now() - 1h"):
        s.dead_letters = int(row["count"])
    for row in _rows(client, db, "SELECT sum(received) AS r, sum(missing) AS m, sum(duplicates) AS d "
                                 "FROM agg_1h.ledger WHERE time > now() - 2h"):
        s.received, s.missing, s.duplicates = int(row["r"] or 0), int(row["m"] or 0), int(row["d"] or 0)
    for row in _rows(client, db, "SELECT * FROM raw.events WHERE time > now() - 10m "
                                 "ORDER BY time DESC LIMIT 5"):
        s.anomalies.append(f"{row.get('site')}/{row.get('node')}/{row.get('sensor')}: "
                           f"{row.get('type')} {row.get('detail', '')}")
    return s


def render(s: Summary, elapsed_s: float, duration_s: float | None) -> str:
    lines = [f"urbanpulse demo — {elapsed_s:5.0f} s"
             + (f" of {duration_s:.0f} s" if duration_s else " (Ctrl-C to stop)"), ""]
    lines.append(f"readings/s per kind (last {WINDOW_S} s):")
    for kind in sorted(s.rates) or ["(waiting for the first readings...)"]:
        lines.append(f"  {kind:<16} {s.rates.get(kind, 0):7.1f}" if kind in s.rates else f"  {kind}")
    lines.append("")
    lines.append("air quality (latest, µg/m³):")
    for k, (pm25, pm10) in sorted(s.air.items()):
        lines.append(f"  {k:<28} PM2.5 {pm25:6.1f}   PM10 {pm10:6.1f}")
    lines.append("traffic (latest interval):")
    for k, (n, occ, v) in sorted(s.traffic.items()):
        speed = "   -  " if v is None else f"{v:5.1f} km/h"
        lines.append(f"  {k:<28} {n:4.0f} veh  occupancy {occ:5.1f} %  speed {speed}")
    lines.append("hospital beds (occupied / known):")
    for k, (occ, total) in sorted(s.beds.items()):
        lines.append(f"  {k:<28} {occ} / {total}")
    lines.append("")
    lines.append(f"delivery ledger (2 h): received {s.received}, duplicates {s.duplicates}, "
                 f"missing {s.missing}; dead letters (1 h): {s.dead_letters}")
    lines.append("anomalies and sensor faults (10 min):")
    lines.extend(f"  {a}" for a in s.anomalies or ["none"])
    return "\n".join(lines)
