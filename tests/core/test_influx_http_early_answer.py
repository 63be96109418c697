"""An answer given before the request's body was read (issue 6, zero loss, no stuck
dataflow). InfluxDB 1.x answers a body over its [http] max-body-size 413 {"error":"Request
Entity Too Large"} once it has read that much of it, and closes the connection: a client
still sending a body far larger has its send cut (a broken pipe or a reset; over https an
SSL EOF) while the answer waits to be read. Seen on 1.6.7 with max-body-size = 1 MB: a
2 MB body is read whole and answered, 8 MB and 32 MB bodies are cut, every time. InfluxHTTP
took the cut for no answer (InfluxUnavailable, or InfluxTLSError "TLS handshake failed"
over https), so the writer waited for ever for an InfluxDB that had answered, instead of
splitting the request; it now reads the answer that is there, and without one the send's
error stands as before (a stand-in that resets, a keep-alive connection the server closed)."""

from __future__ import annotations

import socket
import struct
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar

import pytest

from bench.influx.server import Server, with_settings
from cloud.logic.records import RP_RAW
from urbanpulse.influx_http import InfluxError, InfluxHTTP, InfluxUnavailable
from urbanpulse.stack import influxd, process
from urbanpulse.stack.config import StackConfig
from urbanpulse.stack.layout import Layout
from urbanpulse.stack.tls import ensure_tls
from urbanpulse.testing import wait_for

MAX_BODY = 1_000_000
LINE_BYTES = 100  # about, with its newline: see _body
ADMIN_PASSWORD = "admin-secret-0123456789"


def _body(run: str, megabytes: int) -> tuple[bytes, int]:
    """About `megabytes` MB of lines of the run (stamped ten minutes ago); their number."""
    t = (time.time_ns() // 1_000_000_000 - 600) * 1_000_000_000
    n = megabytes * 1_000_000 // LINE_BYTES
    pad = "x" * 60
    body = "\n".join(f's10_early,run={run} v={i}i,pad="{pad}" {t + i}' for i in range(n)).encode()
    return body, n


def _count(admin: InfluxHTTP, db: str, run: str) -> int:
    rows = admin.query_points(f"SELECT count(\"v\") FROM \"{RP_RAW}\".\"s10_early\" "
                              f"WHERE \"run\" = '{run}'", db=db)
    return int(rows[0]["count"]) if rows else 0


@pytest.fixture(scope="module")
def limited(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """A real InfluxDB 1.6.7 of the tests' own with [http] max-body-size = 1 MB."""
    server = Server(tmp_path_factory.mktemp("early413"), {"http": {"max-body-size": str(MAX_BODY)}}, {})
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.mark.parametrize("megabytes", [8, 32])
def test_a_413_given_before_the_body_was_read_is_the_answer(limited: Server, megabytes: int) -> None:
    run = f"http{megabytes}-{time.monotonic_ns()}"
    body, _ = _body(run, megabytes)
    with limited.client("writer") as client:
        with pytest.raises(InfluxError) as refused:
            client.write(body, db=limited.database, rp=RP_RAW)
        assert not isinstance(refused.value, InfluxUnavailable), refused.value
        assert refused.value.status == 413
        assert refused.value.body == "Request Entity Too Large"
        assert refused.value.version is not None
        assert refused.value.version.startswith("1.6")
        # The cut connection is not used again: the next request has a fresh one, and works.
        opened = client.connections_opened
        client.write(b"\n".join(body.split(b"\n")[:10]), db=limited.database, rp=RP_RAW)
        assert client.connections_opened == opened + 1
    with limited.client("admin") as admin:
        assert _count(admin, limited.database, run) == 10


@dataclass
class HttpsInflux:
    url: str
    ca_file: Path
    layout: Layout


@pytest.fixture(scope="module")
def limited_https(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HttpsInflux]:
    """A real InfluxDB 1.6.7 over https (the stack's CA) with max-body-size = 1 MB, auth on,
    an admin only."""
    influxd.require_binary()
    home = tmp_path_factory.mktemp("early413https")
    layout = Layout(home)
    ensure_tls(layout)
    http_port, rpc_port, unused_mqtt = process.free_ports(3)
    config = StackConfig(home=home, mqtt_port=unused_mqtt, influx_port=http_port,
                         influx_rpc_port=rpc_port)
    influxd.write_config(config, layout)
    layout.influx_conf.write_text(with_settings(layout.influx_conf.read_text(), {"http": {
        "https-enabled": "true", "https-certificate": f'"{layout.server_cert}"',
        "https-private-key": f'"{layout.server_key}"', "max-body-size": str(MAX_BODY)}}))
    process.start_detached([influxd.BINARY, "run", "-config", str(layout.influx_conf)],
                           output=layout.influx_log, pidfile=layout.influx_pid, env=influxd.ENVIRONMENT)
    url = f"https://127.0.0.1:{http_port}"
    try:
        with InfluxHTTP(url, ca_file=layout.ca_cert) as anonymous:
            wait_for(anonymous.ping, 30.0, "influxd over https to answer", every_s=0.05)
            anonymous.query(f"CREATE USER admin WITH PASSWORD '{ADMIN_PASSWORD}' WITH ALL PRIVILEGES",
                            post=True)
        with InfluxHTTP(url, "admin", ADMIN_PASSWORD, ca_file=layout.ca_cert) as admin:
            admin.query("CREATE DATABASE early", post=True)
        yield HttpsInflux(url, layout.ca_cert, layout)
    finally:
        influxd.stop(layout)


def test_a_413_given_before_the_body_was_read_is_the_answer_over_https(
        limited_https: HttpsInflux) -> None:
    """Over TLS the cut send is an SSL EOF, which was taken for a failed handshake."""
    run = f"https-{time.monotonic_ns()}"
    body, _ = _body(run, 8)
    with InfluxHTTP(limited_https.url, "admin", ADMIN_PASSWORD, ca_file=limited_https.ca_file) as admin:
        with pytest.raises(InfluxError) as refused:
            admin.write(body, db="early")
        assert not isinstance(refused.value, InfluxUnavailable), refused.value
        assert (refused.value.status, refused.value.body) == (413, "Request Entity Too Large")
        admin.write(b"\n".join(body.split(b"\n")[:3]), db="early")
        rows = admin.query_points(f"SELECT count(\"v\") FROM \"s10_early\" WHERE \"run\" = '{run}'",
                                  db="early")
        assert rows[0]["count"] == 3


class _Resetting:
    """A server on 127.0.0.1 that reads a little of each request and resets the connection
    without an answer (SO_LINGER 0: a RST, not a FIN)."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        self.accepted = 0
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.accepted += 1
            conn.recv(65536)
            conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            conn.close()

    def close(self) -> None:
        # Closing the socket alone leaves the thread in accept() (Linux): the join waited its
        # 5 s. A shutdown wakes the accept, which then raises OSError.
        self.sock.shutdown(socket.SHUT_RDWR)
        self.sock.close()
        self._thread.join(5)
        assert not self._thread.is_alive()


def test_a_send_cut_without_an_answer_is_still_no_answer() -> None:
    server = _Resetting()
    try:
        with InfluxHTTP(server.url, timeout_s=5) as client, pytest.raises(InfluxUnavailable):
            client.write(b"m v=1 1\n" * 1_000_000, db="city")
    finally:
        server.close()
    assert server.accepted == 1


class _ClosingAfterEachAnswer(BaseHTTPRequestHandler):
    """Answers 204 as if keeping the connection alive (HTTP/1.1, no Connection: close), then
    closes it: the next request on it finds it gone, as after a server's idle timeout."""

    protocol_version = "HTTP/1.1"
    bodies: ClassVar[list[int]] = []

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        type(self).bodies.append(len(self.rfile.read(length)))
        self.send_response(204)
        self.send_header("X-Influxdb-Version", "1.6.7~rc0")
        self.end_headers()
        self.wfile.flush()
        self.close_connection = True

    def log_message(self, format: str, *args: Any) -> None:
        pass


def test_a_large_request_on_a_keep_alive_connection_the_server_closed_is_sent_again() -> None:
    """The cut send finds no answer to read there: tried once more on a fresh connection."""
    _ClosingAfterEachAnswer.bodies = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), _ClosingAfterEachAnswer)
    thread = threading.Thread(target=server.serve_forever, args=(0.01,), daemon=True)
    thread.start()
    try:
        with InfluxHTTP(f"http://127.0.0.1:{server.server_address[1]}", timeout_s=5) as client:
            client.write(b"m v=1 1", db="city")
            wait_for(lambda: _server_closed(client), 5.0, "the server to close the connection")
            big = b"m v=1 1\n" * 1_000_000
            client.write(big, db="city")
            assert client.connections_opened == 2
    finally:
        server.shutdown()
        server.server_close()
    assert _ClosingAfterEachAnswer.bodies == [7, len(big)]


def _server_closed(client: InfluxHTTP) -> bool:
    """The client's idle connection was closed by its server (it reads as ended)."""
    conn = client._conn
    if conn is None or conn.sock is None:
        return True
    timeout = conn.sock.gettimeout()
    conn.sock.setblocking(False)
    try:
        return conn.sock.recv(1, socket.MSG_PEEK) == b""
    except BlockingIOError:
        return False
    finally:
        conn.sock.settimeout(timeout)
