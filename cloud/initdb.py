"""`urbanpulse cloud init-db`: the database and its retention policies.

raw (default policy): readings, dead letters, node status; agg_1m: 1-minute aggregates;
agg_1h: hourly aggregates and the delivery ledger. Hourly aggregates come from the stream,
not from continuous queries (those ignore late data).
"""

from __future__ import annotations

from cloud.config import Retention, refuse_zero_retention
from cloud.logic.records import RP_1H, RP_1M, RP_RAW
from urbanpulse.influx_http import InfluxHTTP


def _q(name: str) -> str:
    return '"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"'


def init_db(admin: InfluxHTTP, database: str, retention: Retention) -> list[str]:
    """Idempotent: creates what is missing and brings durations to the configured ones.
    A duration of zero is refused (ConfigError naming its key) before anything is made:
    InfluxDB takes it for INF, and a raw policy meant to keep nothing kept everything."""
    policies = ((RP_RAW, retention.raw, True), (RP_1M, retention.agg_1m, False),
                (RP_1H, retention.agg_1h, False))
    for rp, duration, _ in policies:
        refuse_zero_retention(rp, duration)
    done = []
    admin.query(f"CREATE DATABASE {_q(database)}", post=True)
    existing = {row["name"]: row for row in admin.query_points(
        f"SHOW RETENTION POLICIES ON {_q(database)}")}
    for rp, duration, default in policies:
        dur = "INF" if duration == "INF" else duration
        verb = "ALTER" if rp in existing else "CREATE"
        stmt = f"{verb} RETENTION POLICY {_q(rp)} ON {_q(database)} DURATION {dur}"
        stmt += " REPLICATION 1" + (" DEFAULT" if default else "")
        admin.query(stmt, post=True)
        done.append(stmt)
    return done
