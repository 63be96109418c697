"""A write InfluxDB did not answer can still be applied after a newer one of the same points.

The dataflow writes an open window (a minute, an hour, a ledger hour) again and again with
newer values, and InfluxDB keeps the value it applies last. A request that got no answer
(influx.timeout_s ran out: a dead link, a stalled InfluxDB) is not cancelled by the writer
closing its connection: what the kernel had not delivered it retransmits for up to about
102 s (Linux, tcp_orphan_retries), and InfluxDB 1.x applies a request it has read whether
or not its client is still there (services/httpd/handler.go: serveWrite reads the body and
calls WritePoints, which takes no context). Meanwhile the writer's retry went through on a
fresh connection and the newer value after it: the late request then overwrote it, and the
older value stood for good. Seen with the kernel's own TCP (the writer and influxd in a
network namespace, the link cut by taking lo down for 4 s with a 2 s timeout): the newer
value stored at 4.5 s, the timed-out request applied over it at 7.5 s, for good.

Here the dead link is a forwarder that delivers what a client sent into it before the cut
(and gave up on) only after the requests made since, as those retransmissions arrive; the
real InfluxDB, and the processor's own writer thread, its timeout and retries. The writer
now writes the points of such a request that were written again since once more,
REWRITE_AFTER_S after the last write without an answer (cloud.sink)."""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from types import TracebackType

import pytest

from cloud import sink
from cloud.flow import InfluxPartition
from cloud.influx_v2 import InfluxV2Client
from cloud.logic.records import RP_1M
from cloud.sink import InfluxWriter, outcome_unknown
from urbanpulse.influx_http import InfluxError, InfluxHTTP
from urbanpulse.stack import StackInfo
from urbanpulse.stack.process import free_ports
from urbanpulse.testing import wait_for

REWRITE_AFTER_S = 10.0  # far beyond the late request's landing here, a second or two after the heal


@dataclass(eq=False)
class _Link:
    client: socket.socket
    old: bool  # made before the cut
    server: socket.socket | None = None


class LateLinks:
    """A TCP forwarder on 127.0.0.1 to `upstream` whose link dies (`cut`) and heals in two
    steps: `heal_new` lets the connections made since the cut through (those whose client
    gave up meanwhile never reach the server: their handshake would not have completed),
    `heal_old` the connections made before it, whose bytes sent into the dead link, and
    their client's close after them, arrive only then, as the retransmissions of a
    connection its client closed arrive. `late_answers`: the server's answers on those."""

    def __init__(self, upstream: tuple[str, int]) -> None:
        self.upstream = upstream
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port: int = self._listener.getsockname()[1]
        self._cond = threading.Condition()
        self._cut = self._old_held = self._new_held = self._closed = False
        self._links: list[_Link] = []
        self.late_answers = 0

    def __enter__(self) -> LateLinks:
        threading.Thread(target=self._accept, name="late-links", daemon=True).start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()
            links = list(self._links)
        self._listener.close()
        for link in links:
            for sock in (link.client, link.server):
                if sock is not None:
                    sock.close()

    def cut(self) -> None:
        with self._cond:
            self._cut = self._old_held = self._new_held = True

    def heal_new(self) -> None:
        with self._cond:
            self._new_held = False
            self._cond.notify_all()

    def heal_old(self) -> None:
        with self._cond:
            self._old_held = False
            self._cond.notify_all()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            with self._cond:
                link = _Link(client, old=not self._cut)
                self._links.append(link)
            if link.old:
                link.server = socket.create_connection(self.upstream)
                self._start(self._down, link)
            self._start(self._up, link)

    def _start(self, pump: Callable[[_Link], None], link: _Link) -> None:
        threading.Thread(target=pump, args=(link,), name="late-links-pump", daemon=True).start()

    def _up(self, link: _Link) -> None:
        """Client to server: held while its side of the link is dead."""
        try:
            while True:
                data = link.client.recv(65536)
                with self._cond:
                    while (self._old_held if link.old else self._new_held) and not self._closed:
                        self._cond.wait()
                    if self._closed:
                        return
                if link.server is None:
                    if not data or _gave_up(link.client):
                        link.client.close()
                        return
                    link.server = socket.create_connection(self.upstream)
                    self._start(self._down, link)
                if not data:
                    link.server.shutdown(socket.SHUT_WR)
                    return
                link.server.sendall(data)
        except OSError:
            return

    def _down(self, link: _Link) -> None:
        """Server to client: answers come only to requests let through."""
        assert link.server is not None
        try:
            while data := link.server.recv(65536):
                if link.old and self._cut:
                    with self._cond:
                        self.late_answers += 1
                with contextlib.suppress(OSError):  # its client gave up on it
                    link.client.sendall(data)
        except OSError:
            return


def _gave_up(client: socket.socket) -> bool:
    """The client closed its end (what it sent is read already)."""
    try:
        return client.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT) == b""
    except BlockingIOError:
        return False
    except OSError:
        return True


def test_a_write_influxdb_applies_late_does_not_stand_over_the_newer_value(
        db_ready: StackInfo, admin: InfluxHTTP, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sink, "REWRITE_AFTER_S", REWRITE_AFTER_S)
    creds = db_ready.influx("writer")
    host, port = db_ready.influx_url.split("//", 1)[1].rsplit(":", 1)
    t = time.time_ns() // 60_000_000_000 * 60_000_000_000
    window = f"sink_unanswered,site=s,node=n,sensor=a window_mean={{}} {t}"

    def stored() -> float | None:
        rows = admin.query_points(
            f'SELECT window_mean FROM "{RP_1M}"."sink_unanswered" WHERE time = {t}',
            db=db_ready.database)
        return None if not rows else float(rows[0]["window_mean"])

    with LateLinks((host, int(port))) as links:
        client = InfluxHTTP(f"http://127.0.0.1:{links.port}", creds.username, creds.password(),
                            timeout_s=1.0)
        writer = InfluxWriter(client, db_ready.database, 5000)
        partition = InfluxPartition(writer)
        try:
            partition.write_batch([[(RP_1M, window.format(0.0))]])
            partition.flush()  # its keep-alive connection: made before the cut
            links.cut()
            partition.write_batch([[(RP_1M, window.format(1.0))]])  # into the dead link
            wait_for(lambda: writer.stats.retries >= 2, 30, "the write unanswered, and retried")
            partition.write_batch([[(RP_1M, window.format(2.0))]])  # the window's next value
            links.heal_new()
            wait_for(lambda: stored() == 2.0, 30, "the newer value written")
            links.heal_old()
            wait_for(lambda: links.late_answers, 30, "InfluxDB to apply the late request")
            late = stored()
            assert (late, writer.stats.rewritten) == (1.0, 0), "the late request did not land late"
            # Written once more REWRITE_AFTER_S after the last write without an answer: by
            # the writer thread, with no more data coming.
            wait_for(lambda: stored() == 2.0, REWRITE_AFTER_S + 30,
                     "the newer value to stand again (the late request's 1.0 stood)")
            partition.flush()
        finally:
            partition.close()
    assert writer.stats.unanswered >= 2
    assert writer.stats.rewritten == 1  # the window's last line, once
    assert stored() == 2.0


@pytest.mark.parametrize("api", ["v1", "v2"])
def test_each_transport_tells_a_write_without_an_answer_from_one_never_sent(api: str) -> None:
    """A timeout after the request was sent leaves it to InfluxDB (`outcome_unknown`); a
    connection refused sent nothing. The same for InfluxHTTP and the v2 client."""

    def write(url: str) -> InfluxError:
        client: InfluxHTTP | InfluxV2Client
        if api == "v1":
            client = InfluxHTTP(url, "writer", "x", timeout_s=0.5)
        else:
            client = InfluxV2Client(url, "token", "org", timeout_s=0.5)
        try:
            client.write(b"m v=1 1", db="db", rp="rp")
        except InfluxError as exc:
            return exc
        finally:
            client.close()
        raise AssertionError("written")

    with socket.create_server(("127.0.0.1", 0)) as silent:  # connects, never answers
        unanswered = write(f"http://127.0.0.1:{silent.getsockname()[1]}")
    assert (unanswered.status, outcome_unknown(unanswered)) == (0, True), unanswered
    (closed,) = free_ports(1)
    refused = write(f"http://127.0.0.1:{closed}")
    assert (refused.status, outcome_unknown(refused)) == (0, False), refused


@pytest.mark.parametrize(("status", "version", "unknown"), [
    (504, None, True), (502, None, True), (504, "1.6.7", False), (503, None, False),
    (500, "1.6.7", False), (400, "1.6.7", False)])
def test_only_a_proxys_gateway_errors_leave_a_write_unanswered(
        status: int, version: str | None, unknown: bool) -> None:
    """A proxy's 502 or 504 says nothing of whether InfluxDB got the request and still
    works on it; any answer of InfluxDB's own comes once it is done with it."""
    assert outcome_unknown(InfluxError(status, "x", version=version)) is unknown
