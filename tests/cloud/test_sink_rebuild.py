"""A window older than the horizon is rebuilt by the sink from the raw points InfluxDB
holds: every one of them, also on a server whose `max-row-limit` cuts a one-piece answer
short (InfluxDB 1.x then says nothing reliable about the cut, so the sink reads the
answer streamed)."""

from __future__ import annotations

from pathlib import Path

from bench.influx.server import Server
from cloud.logic.lines import line
from cloud.logic.recompute import RECOMPUTE, Recompute
from cloud.sink import InfluxWriter

MINUTE_NS = 60 * 10**9
START_NS = 1_795_000_000_000_000_000 - 1_795_000_000_000_000_000 % MINUTE_NS
LIMIT = 5
POINTS = 3 * LIMIT + 2


def test_a_window_with_more_raw_points_than_the_row_limit_is_rebuilt_from_all_of_them(
        tmp_path: Path) -> None:
    server = Server(tmp_path / "influx", {"http": {"max-row-limit": str(LIMIT)}}, {})
    server.start()
    try:
        db = server.database
        tags = {"site": "s", "node": "n", "sensor": "pm-1", "kind": "air.pm"}
        raw = [line("air_pm", tags, {"pm25": float(i), "pm10": 20.0, "seq": i}, START_NS + i * 10**9)
               for i in range(POINTS)]
        with server.client("writer") as writer_client, server.client("reader") as reader:
            writer_client.write("\n".join(raw).encode(), db=db, rp="raw")
            # The server does cut a one-piece answer: what the sink read before.
            assert len(reader.query_points('SELECT * FROM "raw"."air_pm"', db=db)) == LIMIT
            writer = InfluxWriter(writer_client, db, 5000, reader=reader)
            request = Recompute("agg_1m", "air_pm", "s", "n", "pm-1", "air.pm", MINUTE_NS, START_NS)
            writer.write([(RECOMPUTE, request.encode())])
            [row] = reader.query_points('SELECT "count", "pm25_max", "pm25_mean" FROM "agg_1m"."air_pm"',
                                        db=db)
        assert writer.stats.recomputed == 1
        assert (row["count"], row["pm25_max"]) == (POINTS, float(POINTS - 1))
        assert row["pm25_mean"] == sum(range(POINTS)) / POINTS
    finally:
        server.stop()
