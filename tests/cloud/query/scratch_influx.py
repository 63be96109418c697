"""An InfluxDB of the test's own, for what the session's shared one cannot show: a server
with `max-row-limit` set (it cuts long answers short) and a database whose ledger never
held a `restarts` field. The InfluxDB benchmark's private server (bench.influx.server):
the stack's own influxd config with that one setting changed, auth on; the test's
database `d` is made by `cloud init-db`'s code, and the test works as the admin."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

from bench.influx.server import RETENTION, Server
from cloud.initdb import init_db
from cloud.logic.lines import line
from cloud.logic.node import NodeState
from cloud.logic.records import NodeData
from cloud.stack_config import to_toml
from urbanpulse.clock import to_epoch_ns
from urbanpulse.influx_http import InfluxHTTP
from urbanpulse.wire import Reading

LIMIT = 7  # the server's max-row-limit
BIG = 12_005  # rows of one series: more than InfluxDB's own pieces of 10,000
T0 = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) - timedelta(hours=2)
T0_NS = to_epoch_ns(T0)
S = 10**9
HORIZON_NS = 6 * 3600 * 10**9


@contextmanager
def scratch_influx(home: Path, max_row_limit: int) -> Iterator[Server]:
    """The started server, with database `d`; `server.client("admin")` to work in it."""
    server = Server(home, {"http": {"max-row-limit": str(max_row_limit)}}, {})
    server.start()
    try:
        with server.client("admin") as client:
            init_db(client, "d", RETENTION)
        yield server
    finally:
        server.stop()


def new_database(server: Server, prefix: str) -> str:
    """A new database with the project's retention policies, which the reader may read."""
    name = f"{prefix}_{uuid.uuid4().hex[:8]}"
    with server.client("admin") as admin:
        init_db(admin, name, RETENTION)
        admin.query(f'GRANT READ ON "{name}" TO "reader"', post=True)
    return name


def reader_config(server: Server, database: str, path: Path) -> Path:
    """A cloud config at `path` for `urbanpulse query` on `database`, as the reader."""
    path.write_text(to_toml({
        "mqtt": {"password_file": "unused", "ca_file": "unused"},
        "influx": {"url": server.url(), "database": database, "password_file": "unused",
                   "reader_username": "reader",
                   "reader_password_file": str(server.layout.influx_password("reader"))},
    }))
    return path


def _pm(sensor: str, at_ns: int, value: float) -> str:
    return line("air_pm", {"site": "s", "node": "n", "sensor": sensor, "kind": "air.pm"},
                {"pm25": value, "seq": 1}, at_ns)


def fill(client: InfluxHTTP) -> None:
    """The limit tests' data in database `d`, all from T0 on."""
    lines = [
        # 20 points of 3 sensors (7, 7, 6) in the first minute: 2.9 answers' worth
        *(_pm(f"pm-{i % 3}", T0_NS + i * S, float(i)) for i in range(20)),
        # exactly LIMIT points in the second minute
        *(_pm("pm-0", T0_NS + 60 * S + i * S, 100.0 + i) for i in range(LIMIT)),
        # LIMIT + 1 series at one nanosecond in the third minute
        *(_pm(f"pm-x{i}", T0_NS + 120 * S + 1, 200.0 + i) for i in range(LIMIT + 1)),
        # one long series, one point a second
        *(f"big,sensor=a v={i}i {T0_NS + i * S}" for i in range(BIG)),
    ]
    client.write("\n".join(lines).encode(), db="d", rp="raw")
    # a ledger without restarts, written by the processor's own code as it was before it
    # wrote restarts when 0 (that build's ledger held restarts only where a sensor restarted)
    readings = [Reading("co2-1", "air.co2", T0_NS + i * S, i, {"co2": 400.0}) for i in range(3)]
    points = NodeState(HORIZON_NS, detect=False).process(
        NodeData("s/n", "s", "n", T0_NS + 10 * S, readings))
    for rp in ("raw", "agg_1m", "agg_1h"):
        body = "\n".join(text.replace(",restarts=0i ", " ") if text.startswith("ledger,") else text
                         for r, text in points if r == rp)
        assert "restarts" not in body
        client.write(body.encode(), db="d", rp=rp)
