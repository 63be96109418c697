"""An InfluxDB of the test's own, for what the session's shared one cannot show: a server
with `max-row-limit` set (it cuts long answers short) and a database whose ledger never
held a `restarts` field. The InfluxDB benchmark's private server (bench.influx.server):
the stack's own influxd config with that one setting changed, auth on; the test's
database `d` is made by `cloud init-db`'s code, and the test works as the admin."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from bench.influx.server import RETENTION, Server
from cloud.initdb import init_db
from urbanpulse.influx_http import InfluxHTTP


@contextmanager
def scratch_influx(home: Path, max_row_limit: int) -> Iterator[InfluxHTTP]:
    server = Server(home, {"http": {"max-row-limit": str(max_row_limit)}}, {})
    server.start()
    try:
        with server.client("admin") as client:
            init_db(client, "d", RETENTION)
            yield client
    finally:
        server.stop()
