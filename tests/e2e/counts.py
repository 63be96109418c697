"""What the end-to-end tests count in InfluxDB: a node's raw points of a measurement, and
the readings its 1-minute aggregates count (the sum of their `count`)."""

from __future__ import annotations

from urbanpulse.influx_http import InfluxHTTP


def raw_count(reader: InfluxHTTP, measurement: str, field: str, node: str) -> int:
    rows = reader.query_points(f"SELECT count({field}) FROM raw.{measurement} WHERE node = '{node}'",
                               db="urbanpulse")
    return int(rows[0]["count"]) if rows else 0


def minute_count(reader: InfluxHTTP, measurement: str, node: str) -> int:
    rows = reader.query_points(f"SELECT sum(count) FROM agg_1m.{measurement} WHERE node = '{node}'",
                               db="urbanpulse")
    return int(rows[0]["sum"]) if rows else 0
