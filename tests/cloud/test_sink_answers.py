"""Answers of InfluxDB (or of what stands in its place) that the sink misread (issue 6, zero
loss): what InfluxDB 1.6.7 really answers, run here on real servers where it can be shown,
and a small stand-in HTTP server on 127.0.0.1 for what 1.6.7 cannot show (2.x's JSON
errors, a proxy's pages).

Checked on 1.6.7 (by hand, and by the tests below where marked): every answer carries
X-Influxdb-Version and X-Influxdb-Build, its 404 page ("404 page not found", text/plain)
and 405 ("Method Not Allowed") too; a query's error for a limit, a missing database or
retention policy, or too many queries comes inside a 200 answer ({"results":[{"error":
...}]}): "max-select-series limit exceeded: (3/2)", "query-timeout limit exceeded",
"max-concurrent-queries limit exceeded(1, 1)", "retention policy not found: nope",
"database not found: nodb" (an admin's; a user without READ gets the 403 first); a query
it cannot parse is a 400 ("error parsing query: ..."); a request over max-body-size a 413
{"error":"Request Entity Too Large"}.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from functools import partial
from typing import Any

import pytest

from bench.influx.server import Server
from cloud.errors import InfluxAccessError, ReadRefused
from cloud.logic.recompute import Recompute
from cloud.sink import (
    InfluxWriter,
    ReadFailure,
    WriterUser,
    _each_row,
    check_reader,
    check_writer,
    read_failure,
)
from tests.cloud import influx_standin
from tests.cloud.influx_standin import Reply, Request, serving
from tests.cloud.test_domain_replay_influx import cloud_config_for_stack_influx
from urbanpulse.influx_http import InfluxError, InfluxHTTP
from urbanpulse.stack import StackInfo

SINK_LOG = "urbanpulse.cloud.sink"
INFLUX_HEADERS = {"X-Influxdb-Version": "1.6.7~rc0", "X-Influxdb-Build": "OSS"}
NGINX_413 = (b"<html><head><title>413 Request Entity Too Large</title></head><body><center>"
             b"<h1>413 Request Entity Too Large</h1></center><hr><center>nginx</center></body></html>")
LOGIN_PAGE = b"<!DOCTYPE html><html><body><form>Sign in to the network</form></body></html>"


# -- a stand-in HTTP server ------------------------------------------------------------------

@dataclass
class Answer:
    status: int
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    ctype: str = "text/html"


@dataclass
class StandIn(influx_standin.StandIn):
    """Answers each request with the next of `answers` (then 204 as InfluxDB); a request's
    body larger than `limit` gets a proxy's 413 while it is set. `taken`: the bodies of the
    writes answered 204."""

    answers: list[Answer] = field(default_factory=list)
    limit: int | None = None
    taken: list[bytes] = field(default_factory=list)

    def answer(self, request: Request) -> Reply:
        answer = self._next(request.body)
        return Reply(answer.status, answer.body,
                     [*answer.headers.items(), ("Content-Type", answer.ctype)])

    def _next(self, body: bytes) -> Answer:
        if self.limit is not None and len(body) > self.limit:
            return Answer(413, NGINX_413)
        if self.answers:
            return self.answers.pop(0)
        self.taken.append(body)
        return Answer(204, headers=INFLUX_HEADERS, ctype="application/json")


@pytest.fixture
def stand_in() -> Iterator[StandIn]:
    with serving(StandIn()) as state:
        yield state


@dataclass
class Clocked:
    now: float = 0.0

    def wait(self, delay: float) -> bool:
        self.now += delay
        return False


def _logged(caplog: pytest.LogCaptureFixture, level: int) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == SINK_LOG and r.levelno == level]


def _writer(url: str, **kw: Any) -> InfluxWriter:
    clock = Clocked()
    return InfluxWriter(InfluxHTTP(url), "city", kw.pop("batch_lines", 5000), wait=clock.wait,
                        user=WriterUser("w", "influx.password_file (/etc/w.pw)"),
                        monotonic=lambda: clock.now, **kw)


# -- InfluxDB 2.x's JSON errors (item 2) -----------------------------------------------------

def test_influxdb_2_json_errors_are_read_for_their_message(
        stand_in: StandIn, caplog: pytest.LogCaptureFixture) -> None:
    """2.x answers {"code": ..., "message": ...} (its v1 API too): the message is InfluxDB's
    words, not the raw JSON; 1.x's {"error": ...} as before."""
    forbidden = b'{"code":"forbidden","message":"insufficient permissions for write"}'
    stand_in.answers = [Answer(403, forbidden, ctype="application/json; charset=utf-8"),
                        Answer(400, b'{"code":"invalid","message":"error parsing query: found SELEC"}',
                               ctype="application/json")]
    with InfluxHTTP(stand_in.url) as client:
        with pytest.raises(InfluxError) as denied:
            client.write(b"m v=1 1", db="city")
        with pytest.raises(InfluxError) as bad:
            client.results("SELEC 1", db="city")
    assert denied.value.body == "insufficient permissions for write"
    assert str(denied.value) == "InfluxDB error 403: insufficient permissions for write"
    assert denied.value.from_influxdb  # its JSON error, though no X-Influxdb-Version header
    assert bad.value.body == "error parsing query: found SELEC"
    assert read_failure(bad.value) is ReadFailure.QUERY
    # as cloud.influx_v2 raises it from the 2.x client library's exception
    v2 = InfluxError(422, '{"code":"unprocessable entity","message":"failure writing points to '
                          'database: partial write: points beyond retention policy dropped=1"}')
    assert v2.body.startswith("failure writing points to database: partial write")
    assert InfluxError(401, '{"error":"authorization failed"}').body == "authorization failed"
    assert InfluxError(401, '{"code":"unauthorized","message":""}').body == "unauthorized"

    stand_in.answers = [Answer(403, forbidden, ctype="application/json")]
    writer = _writer(stand_in.url)
    caplog.set_level(logging.INFO, logger=SINK_LOG)
    writer.write([("raw", "m v=1 1")])
    (error,) = _logged(caplog, logging.ERROR)
    assert "(status 403: insufficient permissions for write)" in error
    assert '"code"' not in error
    writer.close()


# -- answers that are not InfluxDB's (item 3) ------------------------------------------------

def test_a_write_answered_by_something_not_influxdb_is_held_until_influx_url_is_fixed(
        stand_in: StandIn, caplog: pytest.LogCaptureFixture) -> None:
    """A captive portal's or a proxy's page (200 or 400, no InfluxDB header, no InfluxDB
    error) and InfluxDB's own 405 (a path that is not its write API) say nothing about the
    lines: they were counted as refused lines and dropped. Held until influx.url is fixed."""
    stand_in.answers = [Answer(200, LOGIN_PAGE), Answer(200, LOGIN_PAGE),
                        Answer(400, b"<html><h1>400 Bad Request</h1>nginx</html>"),
                        Answer(405, b"Method Not Allowed\n", INFLUX_HEADERS, "text/plain; charset=utf-8")]
    writer = _writer(stand_in.url)
    caplog.set_level(logging.INFO, logger=SINK_LOG)
    writer.write([("raw", "m v=1 1"), ("raw", "m v=2 2")])
    assert stand_in.taken == [b"m v=1 1\nm v=2 2"]  # held, then written once
    s = writer.stats
    assert (s.points, s.refused_requests, s.denied) == (2, 0, 4)
    errors = _logged(caplog, logging.ERROR)
    assert len(errors) == 3  # once per status, not per retry
    assert all("influx.url" in e and "held, not dropped" in e for e in errors)
    assert errors[0].startswith("What answers at influx.url (not InfluxDB) refuses the writer 'w'")
    assert "(status 200: <!DOCTYPE html>" in errors[0]
    assert errors[2].startswith("InfluxDB refuses")
    assert "status 405" in errors[2]
    assert not any("GRANT" in e for e in errors)
    writer.close()


def test_the_writer_and_reader_checks_stop_on_an_answer_that_is_not_influxdb(
        stand_in: StandIn, db_ready: StackInfo) -> None:
    cfg = replace(cloud_config_for_stack_influx(db_ready), url=stand_in.url)
    stand_in.answers = [Answer(200, LOGIN_PAGE)]
    with pytest.raises(InfluxAccessError, match=r"what answers at .* \(not InfluxDB\) refuses") as w:
        check_writer(cfg)
    assert "check influx.url" in str(w.value)
    stand_in.answers = [Answer(200, LOGIN_PAGE)]
    with pytest.raises(InfluxAccessError, match=r"is not InfluxDB's query API .*check influx\.url"):
        check_reader(cfg)


def test_a_wrong_path_in_influx_url_is_named_as_such_not_as_a_missing_database(
        db_ready: StackInfo) -> None:
    """Real 1.6.7: a path after the port gets its "404 page not found" (text/plain, with its
    headers), which the writer check took for a dropped database (init-db)."""
    cfg = cloud_config_for_stack_influx(db_ready)
    with pytest.raises(InfluxAccessError, match=r"\(404: 404 page not found\)") as denied:
        check_writer(replace(cfg, url=cfg.url + "/influxdb"))
    assert "check influx.url" in str(denied.value)
    assert "init-db" not in str(denied.value)


# -- a request too large (item 4) --------------------------------------------------------------

def test_a_proxys_413_for_a_single_line_holds_it_until_its_limit_is_raised(
        stand_in: StandIn, caplog: pytest.LogCaptureFixture) -> None:
    """A proxy whose body limit is below one line: the request is split down to single
    lines, and those it still refuses were each logged and dropped. InfluxDB never saw them:
    held (one ERROR) until the proxy's limit is raised."""
    stand_in.limit = 40
    lines = [f"m v={i} {i}" for i in range(8)] + ['m s="' + "x" * 60 + '" 99']
    clock = Clocked()
    raised: list[float] = []

    def wait(delay: float) -> bool:
        clock.now += delay
        if clock.now > 30 and not raised:  # the operator raises the proxy's limit
            raised.append(clock.now)
            stand_in.limit = None
        return False

    writer = InfluxWriter(InfluxHTTP(stand_in.url), "city", 5000, wait=wait,
                          monotonic=lambda: clock.now)
    caplog.set_level(logging.INFO, logger=SINK_LOG)
    writer.write([("raw", ln) for ln in lines])
    assert b"\n".join(stand_in.taken).decode().split("\n") == lines  # each once, in order
    assert writer.stats.refused_requests == 0
    assert writer.stats.denied > 1
    (error,) = _logged(caplog, logging.ERROR)
    assert "client_max_body_size" in error
    assert error.startswith("What answers at influx.url (not InfluxDB)")
    writer.close()


@pytest.fixture(scope="module")
def limited(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """A real InfluxDB 1.6.7 of the tests' own, with small limits: [http] max-body-size of
    300 bytes, [coordinator] max-select-series of 2."""
    server = Server(tmp_path_factory.mktemp("limited"),
                    {"http": {"max-body-size": "300"}, "coordinator": {"max-select-series": "2"}}, {})
    server.start()
    try:
        yield server
    finally:
        server.stop()


def _count(admin: InfluxHTTP, db: str, run: str) -> int:
    rows = admin.query_points(f"SELECT count(\"v\") FROM \"raw\".\"s9_big\" WHERE \"run\" = '{run}'",
                              db=db)
    return int(rows[0]["count"]) if rows else 0


def test_lines_influxdb_refuses_as_too_large_even_alone_are_logged_once_per_request(
        limited: Server, caplog: pytest.LogCaptureFixture) -> None:
    """Real 1.6.7 with max-body-size = 300: a request of 30 small lines and 3 lines over
    300 bytes each is split; InfluxDB's own 413 for each long line alone drops it (it can
    never be stored there), with one ERROR for the request, not one per line."""
    run = f"big-{time.monotonic_ns()}"
    t = (time.time_ns() // 1_000_000_000 - 600) * 1_000_000_000
    small = [f"s9_big,run={run} v={i}i {t + i}" for i in range(30)]
    big = [f's9_big,run={run} v={100 + i}i,s="{"x" * 320}" {t + 100 + i}' for i in range(3)]
    lines = small[:10] + big[:1] + small[10:20] + big[1:] + small[20:]
    writer = InfluxWriter(limited.client("writer"), limited.database, 5000, wait=Clocked().wait)
    caplog.set_level(logging.INFO, logger=SINK_LOG)
    try:
        writer.write([("raw", ln) for ln in lines])
    finally:
        writer.close()
    with limited.client("admin") as admin:
        assert _count(admin, limited.database, run) == 30
    assert writer.stats.points == 30
    assert writer.stats.refused_requests == 3
    (error,) = _logged(caplog, logging.ERROR)
    assert "refused 3 lines of a write of 33 to policy raw as too large even alone" in error
    assert "(status 413: Request Entity Too Large)" in error
    assert "max-body-size" in error


# -- errors of a read of raw points back (item 1) ----------------------------------------------

def test_read_failures_as_influxdb_1_6_words_them() -> None:
    def kind(status: int, text: str, **kw: Any) -> ReadFailure:
        return read_failure(InfluxError(status, text, **kw))

    inside = {"influxdb": True}  # an error inside a 200 answer's results
    assert kind(200, "max-select-series limit exceeded: (3/2)", **inside) is ReadFailure.LIMIT
    assert kind(200, "query-timeout limit exceeded", **inside) is ReadFailure.LIMIT
    assert kind(200, "max-select-point limit exceeed: (10/1)", **inside) is ReadFailure.LIMIT
    assert kind(200, "max-concurrent-queries limit exceeded(1, 1)", **inside) \
        is ReadFailure.UNAVAILABLE
    assert kind(200, "query interrupted", **inside) is ReadFailure.UNAVAILABLE
    assert kind(200, "retention policy not found: nope", **inside) is ReadFailure.MISSING
    assert kind(200, "database not found: nodb", **inside) is ReadFailure.MISSING
    assert kind(403, '{"error":"error authorizing query: r not authorized to execute statement '
                     "'SELECT 1', requires READ on db\"}") is ReadFailure.DENIED
    assert kind(401, '{"error":"authorization failed"}') is ReadFailure.DENIED
    assert kind(400, '{"error":"error parsing query: found SELEC"}') is ReadFailure.QUERY
    assert kind(200, "answer is not JSON: <html>") is ReadFailure.NOT_INFLUXDB
    assert kind(302, "<html>Found</html>") is ReadFailure.NOT_INFLUXDB
    assert kind(404, "404 page not found\n", version="1.6.7~rc0") is ReadFailure.NOT_INFLUXDB
    assert kind(503, "busy") is ReadFailure.UNAVAILABLE


def test_a_busy_influxdb_is_waited_out_not_held() -> None:
    waits: list[float] = []
    writer = InfluxWriter(InfluxHTTP("http://127.0.0.1:1"), "db", 10,
                          wait=lambda d: waits.append(d) is not None)
    answers = iter([InfluxError(200, "max-concurrent-queries limit exceeded(1, 1)", influxdb=True)])

    def read() -> int:
        for exc in answers:
            raise exc
        return 3

    writer._retrying(read)
    assert len(waits) == 1
    assert writer.stats.rows_read == 3


def _refused(writer: InfluxWriter, q: str) -> ReadRefused:
    assert writer.reader is not None
    with pytest.raises(ReadRefused) as refused:
        writer._retrying(partial(_each_row, writer.reader, q, writer.database, lambda row: None))
    return refused.value


def test_reads_influxdb_1_6_cannot_answer_say_why_on_the_real_server(
        db_ready: StackInfo, limited: Server) -> None:
    """Real 1.6.7 answers, through the real client: a query it cannot parse (400), a
    retention policy that does not exist (in a 200), a read over max-select-series (in a
    200). Each was advised "grant READ"."""
    creds = db_ready.influx("reader")
    writer = InfluxWriter(InfluxHTTP("http://127.0.0.1:1"), db_ready.database, 10,
                          reader=InfluxHTTP(creds.url, creds.username, creds.password()),
                          reader_user=creds.username)
    try:
        bad = _refused(writer, 'SELEC * FROM "raw"."air_pm"')
        assert (bad.status, bad.kind) == (400, "query")
        assert "error parsing query" in bad.reason
        assert "a fault of the processor" in bad.advice
        gone = _refused(writer, 'SELECT * FROM "nope"."air_pm"')
        assert (gone.status, gone.kind) == (200, "missing")
        assert gone.reason == "retention policy not found: nope"
        assert "urbanpulse cloud init-db" in gone.advice
        assert "GRANT" not in bad.advice + gone.advice
    finally:
        writer.close()

    run = f"ms-{time.monotonic_ns()}"
    t = (time.time_ns() // 1_000_000_000 - 600) * 1_000_000_000
    with limited.client("admin") as admin:
        for i in range(3):  # one line a request: under max-body-size
            admin.write(f"s9_series,run={run},sensor=pm-{i} v={i}i {t}".encode(),
                        db=limited.database, rp="raw")
    writer = InfluxWriter(InfluxHTTP("http://127.0.0.1:1"), limited.database, 10,
                          reader=limited.client("reader"), reader_user="reader")
    try:
        over = _refused(writer, f"SELECT * FROM \"raw\".\"s9_series\" WHERE \"run\" = '{run}'")
    finally:
        writer.close()
    assert (over.status, over.kind) == (200, "limit")
    assert over.reason == "max-select-series limit exceeded: (3/2)"
    assert "raise [coordinator] max-select-series in influxdb.conf" in over.advice


def test_window_rebuilds_over_a_limit_are_held_and_logged_once_naming_the_setting(
        limited: Server, caplog: pytest.LogCaptureFixture) -> None:
    """Real 1.6.7 with max-select-series = 2: the rebuild of a node's windows of 3 sensors
    reads 3 series and is refused in a 200 answer. Held, logged once with the setting to
    raise, not with the READ grant."""
    site, node = "ls", f"n-{time.monotonic_ns()}"
    minute = 60 * 10**9
    t0 = (time.time_ns() // minute - 30) * minute
    with limited.client("admin") as admin:
        for i in range(3):
            admin.write(f"air_pm,site={site},node={node},sensor=pm-{i},kind=air.pm pm25={i}.0,"
                        f"seq={i}i {t0 + i}".encode(), db=limited.database, rp="raw")
    texts = [Recompute("agg_1m", "air_pm", site, node, f"pm-{i}", "air.pm", minute, t0).encode()
             for i in range(3)]
    writer = InfluxWriter(limited.client("writer"), limited.database, 100, wait=Clocked().wait,
                          reader=limited.client("reader"), reader_user="reader")
    caplog.set_level(logging.INFO, logger=SINK_LOG)
    try:
        refused = writer.rebuild_windows(texts, hold_refused=True)
        assert sorted(refused.windows) == sorted(texts)
        refused = writer.rebuild_windows(texts, hold_refused=True)  # tried again: not logged again
        assert sorted(refused.windows) == sorted(texts)
    finally:
        writer.close()
    (error,) = _logged(caplog, logging.ERROR)
    assert f"the raw points of the windows of site {site} node {node} (status 200: " \
           "max-select-series limit exceeded: (3/2)): a limit of InfluxDB's config" in error
    assert "[coordinator] max-select-series" in error
    assert "Held, not dropped" in error
    assert "GRANT" not in error
