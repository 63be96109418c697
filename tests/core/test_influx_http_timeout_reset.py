"""A request the client gave up on must not reach InfluxDB later (issue 6: a window's older
value landing after its newer one stays for good). A plain close of a timed-out connection
leaves the kernel sending what it had not delivered (on a dead link, for up to ~100 s:
tcp_orphan_retries); InfluxHTTP closes it with a reset, which drops it. The server here is a
listening socket that never answers, a stand-in for InfluxDB stalled or cut off: what is
checked is how the client ends its connection, which a real InfluxDB cannot report."""

from __future__ import annotations

import socket
import threading
import time

import pytest

from urbanpulse.influx_http import InfluxHTTP, InfluxUnavailable


def _ending(server: socket.socket, outcome: list[str], deadline_s: float) -> None:
    conn, _ = server.accept()
    conn.settimeout(0.1)
    deadline = time.monotonic() + deadline_s
    with conn:
        while time.monotonic() < deadline:
            try:
                data = conn.recv(65536)
            except TimeoutError:
                continue
            except ConnectionResetError:
                outcome.append("reset")
                return
            if not data:
                outcome.append("fin")
                return
    outcome.append("still open")


def test_a_timed_out_write_is_reset_not_closed() -> None:
    with socket.create_server(("127.0.0.1", 0)) as server:
        port = server.getsockname()[1]
        outcome: list[str] = []
        watcher = threading.Thread(target=_ending, args=(server, outcome, 10.0))
        watcher.start()
        client = InfluxHTTP(f"http://127.0.0.1:{port}", timeout_s=0.3)
        with pytest.raises(InfluxUnavailable, match="timed out"):
            client.write(b"m v=1i 1\n", db="d")
        watcher.join(15.0)
    assert outcome == ["reset"]


def test_an_answered_connection_is_still_closed_gently() -> None:
    """The reset is for a request left without an answer only: closing the client after
    nothing is pending ends with a FIN, as before (a server sees a clean end)."""
    with socket.create_server(("127.0.0.1", 0)) as server:
        port = server.getsockname()[1]
        outcome: list[str] = []

        def answer_once() -> None:
            conn, _ = server.accept()
            conn.settimeout(5.0)
            with conn:
                request = b""
                while b"\r\n\r\n" not in request or not request.endswith(b"1\n"):
                    request += conn.recv(65536)
                conn.sendall(b"HTTP/1.1 204 No Content\r\nContent-Length: 0\r\n\r\n")
                try:
                    data = conn.recv(65536)
                except ConnectionResetError:
                    outcome.append("reset")
                    return
                outcome.append("fin" if not data else "more")

        watcher = threading.Thread(target=answer_once)
        watcher.start()
        client = InfluxHTTP(f"http://127.0.0.1:{port}", timeout_s=5.0)
        client.write(b"m v=1i 1\n", db="d")
        client.close()
        watcher.join(10.0)
    assert outcome == ["fin"]
