"""The session's real InfluxDB 1.6.7: auth on, least-privilege users, the HTTP client."""

from __future__ import annotations

import socket
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import pytest

from urbanpulse.influx_http import InfluxError, InfluxHTTP, InfluxUnavailable
from urbanpulse.stack import StackConfig, StackInfo, influxd
from urbanpulse.stack.layout import Layout

Client = Callable[[str | None], InfluxHTTP]

# Other tests may give the shared database a retention policy: write recent points only,
# to measurements of this module's own.
T0 = (int(time.time()) - 300) * 1_000_000_000
T1 = T0 + 1_000_000_000
LINES = (
    f"st_air,site=hn-a,node=n1,sensor=s1,kind=pm pm25=12.5,pm10=20.0,seq=1i {T0}\n"
    f"st_air,site=hn-a,node=n1,sensor=s1,kind=pm pm25=13.5,pm10=21.0,seq=2i {T1}\n"
    f"st_air,site=hn-a,node=n2,sensor=s9,kind=pm pm25=7.0,pm10=9.0,seq=1i {T0}\n"
).encode()

pytestmark = pytest.mark.stack


def test_writer_writes_and_reader_reads(stack: StackInfo, influx_client: Client) -> None:
    influx_client("writer").write(LINES, db=stack.database)
    reader = influx_client("reader")
    points = reader.query_points(
        'SELECT pm25, seq FROM st_air WHERE site = \'hn-a\' GROUP BY "node"', db=stack.database
    )
    assert sorted((p["node"], p["time"], p["pm25"], p["seq"]) for p in points) == [
        ("n1", T0, 12.5, 1),
        ("n1", T1, 13.5, 2),
        ("n2", T0, 7.0, 1),
    ]
    series = reader.query('SELECT last(pm25) FROM st_air GROUP BY "node"', db=stack.database)
    assert [(s["name"], s["tags"], s["columns"]) for s in series] == [
        ("st_air", {"node": "n1"}, ["time", "last"]),
        ("st_air", {"node": "n2"}, ["time", "last"]),
    ]
    # epoch=None: RFC 3339 strings, as InfluxDB renders them.
    rows = reader.query_points(
        "SELECT pm25 FROM st_air WHERE node = 'n2'", db=stack.database, epoch=None
    )
    rfc3339 = datetime.fromtimestamp(T0 // 1_000_000_000, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    assert rows == [{"time": rfc3339, "pm25": 7.0}]


def test_same_point_twice_is_one_point(stack: StackInfo, influx_client: Client) -> None:
    writer = influx_client("writer")
    line = f"st_dup,sensor=s1 v=1.0 {T0}\n".encode()
    writer.write(line, db=stack.database)
    writer.write(line, db=stack.database)
    count = influx_client("reader").query_points("SELECT count(v) FROM st_dup", db=stack.database)
    assert count[0]["count"] == 1


def test_reader_cannot_write(stack: StackInfo, influx_client: Client) -> None:
    with pytest.raises(InfluxError) as info:
        influx_client("reader").write(f"st_x v=1 {T0}\n".encode(), db=stack.database)
    assert info.value.status == 403
    assert not info.value.retryable


def test_writer_cannot_read(stack: StackInfo, influx_client: Client) -> None:
    # InfluxDB 1.6.7 answers a SELECT by a WRITE-only user with HTTP 403.
    with pytest.raises(InfluxError) as info:
        influx_client("writer").query("SELECT * FROM st_air", db=stack.database)
    assert info.value.status == 403
    assert "not authorized" in info.value.body


def test_only_admin_manages_users(stack: StackInfo, influx_client: Client) -> None:
    for role in ("writer", "reader"):
        with pytest.raises(InfluxError) as info:
            influx_client(role).query("CREATE USER mallory WITH PASSWORD 'x'", post=True)
        assert info.value.status == 403
    users = {p["user"]: p["admin"] for p in influx_client("admin").query_points("SHOW USERS")}
    assert users == {"admin": True, "writer": False, "reader": False}
    grants = influx_client("admin").query_points("SHOW GRANTS FOR reader")
    assert grants == [{"database": stack.database, "privilege": "READ"}]
    grants = influx_client("admin").query_points("SHOW GRANTS FOR writer")
    assert grants == [{"database": stack.database, "privilege": "WRITE"}]


def test_influxd_runs_with_gogc_200(stack: StackInfo, stack_config: StackConfig) -> None:
    # Go's collector target, measured in docs/influx-cost.md; the stack's influxd has it.
    pid = influxd.running_pid(Layout(stack_config.home))
    assert pid is not None
    environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    assert [v for v in environ if v.startswith(b"GOGC=")] == [b"GOGC=200"]


def test_anonymous_and_wrong_password_refused(stack: StackInfo, influx_client: Client) -> None:
    anonymous = influx_client(None)
    assert anonymous.ping()  # /ping needs no credentials
    with pytest.raises(InfluxError) as info:
        anonymous.query("SHOW DATABASES")
    assert info.value.status == 401
    with pytest.raises(InfluxError) as info:
        anonymous.write(f"st_x v=1 {T0}\n".encode(), db=stack.database)
    assert info.value.status == 401
    with InfluxHTTP(stack.influx_url, "reader", "wrong") as wrong, pytest.raises(InfluxError) as info:
        wrong.query("SHOW DATABASES")
    assert info.value.status == 401


def test_bad_line_protocol_is_a_400_with_the_reason(
    stack: StackInfo, influx_client: Client
) -> None:
    with pytest.raises(InfluxError) as info:
        influx_client("writer").write(b"st_air,site=x pm25=\n", db=stack.database)
    assert info.value.status == 400
    assert "unable to parse" in info.value.body


def test_query_error_names_the_problem(stack: StackInfo, influx_client: Client) -> None:
    with pytest.raises(InfluxError, match="error parsing query"):
        influx_client("reader").query("SELEC nothing", db=stack.database)


def test_keep_alive_connection_is_reused(stack: StackInfo, influx_client: Client) -> None:
    reader = influx_client("reader")
    writer = influx_client("writer")
    for i in range(5):
        reader.query("SHOW MEASUREMENTS", db=stack.database)
        writer.write(f"st_ka v={i} {T0 + i}\n".encode(), db=stack.database)
    assert (reader.connections_opened, writer.connections_opened) == (1, 1)


def test_unreachable_server_is_influx_unavailable() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with InfluxHTTP(f"http://127.0.0.1:{port}", timeout_s=2.0) as client:
        assert not client.ping()
        with pytest.raises(InfluxUnavailable) as info:
            client.query("SHOW DATABASES")
    assert info.value.status == 0
    assert info.value.retryable


def test_url_is_validated() -> None:
    with pytest.raises(ValueError, match="http"):
        InfluxHTTP("127.0.0.1:8086")
