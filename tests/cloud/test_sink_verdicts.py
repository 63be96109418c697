"""Which answers to a write are InfluxDB's verdict on its lines (issue 6, zero loss): only
those that show they are InfluxDB's beyond doubt, by its X-Influxdb-Version header (1.x on
every answer, 2.x since 2.0.9/2.1 on every answer) or by InfluxDB 3's own partial-write
error (3.x Core puts the header on /ping only). A JSON error alone is no proof: a proxy, an
API gateway or a WAF before InfluxDB answers {"error": ...} too, and its 400 made the
writer drop lines InfluxDB never saw.

Real servers: a small reverse proxy on 127.0.0.1 in front of the session's real InfluxDB
1.6.7 (it relays InfluxDB's answers with their headers, or answers a gateway's JSON 400
itself, or drops InfluxDB's headers as a misconfigured proxy does), and stand-ins on
127.0.0.1 for what cannot run here (3.x's and 2.x's answers, worded as their sources and
documented answers are)."""

from __future__ import annotations

import http.client
import json
import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from cloud.errors import InfluxAccessError
from cloud.logic.records import RP_RAW
from cloud.sink import (
    InfluxWriter,
    WriteFailure,
    WriterUser,
    check_writer,
    influxdb_verdict,
    write_failure,
)
from tests.cloud import influx_standin
from tests.cloud.influx_standin import Reply, Request, serving, v2_writer
from tests.cloud.test_domain_replay_influx import cloud_config_for_stack_influx
from urbanpulse.influx_http import InfluxError, InfluxHTTP
from urbanpulse.stack import StackInfo

SINK_LOG = "urbanpulse.cloud.sink"
GATEWAY_400 = b'{"error":"request blocked: body does not match the allowed content"}'
# InfluxDB 3 Core's answer to a write with a line it refuses (influxdb3_server/src/http.rs:
# Error::PartialLpWrite; 422 when the line would pass a schema limit), without any
# X-Influxdb-* header: the other lines are stored.
V3_PARTIAL = json.dumps({"error": "partial write of line protocol occurred", "data": [
    {"original_line": 'm v="x" 2', "line_number": 2,
     "error_message": "invalid column type for column 'v', expected iox::column_type::field::float, "
                      "got iox::column_type::field::string"}]}).encode()
# InfluxDB 2.7's error answer: {"code", "message"}, with its identity headers (2.x puts them
# on every answer since 2.0.9 and 2.1) and the platform's error code.
V2_HEADERS = {"X-Influxdb-Build": "OSS", "X-Influxdb-Version": "v2.7.10",
              "X-Platform-Error-Code": "invalid"}
V2_PARSE = b'{"code":"invalid","message":"unable to parse \'m v=\': missing field value"}'


@dataclass
class Clocked:
    """The writer's back-off on a fake clock; `then` runs once at `at` seconds (an operator
    fixing the proxy)."""

    at: float = 30.0
    then: Any = None
    now: float = 0.0

    def wait(self, delay: float) -> bool:
        self.now += delay
        if self.then is not None and self.now >= self.at:
            self.then()
            self.then = None
        return False


def _logged(caplog: pytest.LogCaptureFixture, level: int) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == SINK_LOG and r.levelno == level]


# -- a reverse proxy in front of the real InfluxDB ------------------------------------------

@dataclass
class Proxy(influx_standin.StandIn):
    """Relays each request to `upstream` (the real InfluxDB) and its answer back, headers
    included, unless `mode` says otherwise: "gateway" answers 400 GATEWAY_400 itself
    (application/json, no InfluxDB header; InfluxDB sees nothing), "strip" relays without
    InfluxDB's X-Influxdb-* headers. `relayed`: the bodies InfluxDB was sent; `answered`:
    the status of each answer."""

    upstream: str
    mode: str = "relay"
    relayed: list[bytes] = field(default_factory=list)
    answered: list[int] = field(default_factory=list)

    def answer(self, request: Request) -> Reply:
        passed = {k: v for k, v in request.headers if k.lower() in ("authorization", "content-type")}
        status, headers, data = self.forward(request.method, request.target, passed, request.body)
        self.answered.append(status)
        return Reply(status, data, headers)

    def forward(self, method: str, path: str, headers: dict[str, str],
                body: bytes) -> tuple[int, list[tuple[str, str]], bytes]:
        if self.mode == "gateway":
            return 400, [("Content-Type", "application/json")], GATEWAY_400
        self.relayed.append(body)
        target = urlsplit(self.upstream)
        conn = http.client.HTTPConnection(target.hostname or "127.0.0.1", target.port, timeout=10)
        try:
            conn.request(method, path, body=body, headers=headers)
            response = conn.getresponse()
            data = response.read()
            kept = [(k, v) for k, v in response.getheaders()
                    if k.lower() not in ("content-length", "connection", "transfer-encoding")
                    and not (self.mode == "strip" and k.lower().startswith("x-influxdb-"))]
            return response.status, kept, data
        finally:
            conn.close()


@pytest.fixture
def proxy(db_ready: StackInfo) -> Iterator[Proxy]:
    with serving(Proxy(db_ready.influx("admin").url)) as state:
        yield state


@pytest.fixture
def admin(db_ready: StackInfo) -> Iterator[InfluxHTTP]:
    creds = db_ready.influx("admin")
    with InfluxHTTP(creds.url, creds.username, creds.password()) as client:
        yield client


def _stored(admin: InfluxHTTP, db: str, run: str) -> list[int]:
    rows = admin.query_points(f'SELECT "seq" FROM "{RP_RAW}"."s10_verdict" WHERE "run" = \'{run}\'',
                              db=db)
    return sorted(int(r["seq"]) for r in rows)


def _line(run: str, i: int, value: str | None = None) -> tuple[str, str]:
    """The point `i` of `run`, ten minutes ago; its field "seq" is `i` or `value`."""
    t = (time.time_ns() // 10**9 - 600) * 10**9
    return RP_RAW, f"s10_verdict,run={run} seq={value or f'{i}i'} {t + i}"


def _writer(db_ready: StackInfo, url: str, clock: Clocked, batch_lines: int = 5000) -> InfluxWriter:
    """The writer user of the stack, writing through `url`, on `clock`."""
    creds = db_ready.influx("writer")
    return InfluxWriter(InfluxHTTP(url, creds.username, creds.password()), db_ready.database,
                        batch_lines, wait=clock.wait, user=WriterUser(creds.username),
                        monotonic=lambda: clock.now)


def test_a_gateways_json_400_holds_the_lines_until_it_lets_them_through_to_influxdb(
        proxy: Proxy, db_ready: StackInfo, admin: InfluxHTTP,
        caplog: pytest.LogCaptureFixture) -> None:
    """A gateway before the real InfluxDB answers 400 {"error": ...} without InfluxDB's
    header: that was read as InfluxDB's JSON error refusing the lines, which were counted
    and dropped, though InfluxDB never saw them. Held now, logged once with what to check;
    once the gateway lets the writes through, InfluxDB stores every line, once."""
    proxy.mode = "gateway"
    clock = Clocked(then=lambda: setattr(proxy, "mode", "relay"))
    writer = _writer(db_ready, proxy.url, clock, batch_lines=4)
    run = f"gw-{time.monotonic_ns()}"
    caplog.set_level(logging.INFO, logger=SINK_LOG)
    try:
        writer.write([_line(run, i) for i in range(10)])
    finally:
        writer.close()
    assert _stored(admin, db_ready.database, run) == list(range(10))
    assert len(proxy.relayed) == 3  # 4 + 4 + 2 lines, each request once, after the fix
    s = writer.stats
    assert (s.points, s.refused_requests, s.retries) == (10, 0, 0)
    assert s.denied == proxy.answered.count(400) > 1
    assert s.denied_s == pytest.approx(clock.now)  # from the first 400 to the write
    (error,) = _logged(caplog, logging.ERROR)  # once, not per retry
    assert error.startswith("What answers at influx.url (no InfluxDB header) refuses the writer")
    assert "(status 400: request blocked" in error
    assert "X-Influxdb-Version" in error
    assert "check influx.url" in error
    assert "held, not dropped" in error
    assert "GRANT" not in error
    (again,) = [m for m in _logged(caplog, logging.INFO) if "again" in m]
    assert "the held points are written" in again


def test_influxdbs_own_400_through_the_proxy_still_refuses_only_the_bad_line(
        proxy: Proxy, db_ready: StackInfo, admin: InfluxHTTP,
        caplog: pytest.LogCaptureFixture) -> None:
    """The good path, on the real 1.6.7 behind the proxy: its 400 "partial write" (a field
    type conflict) comes with its headers, relayed: the bad line is refused, not sent
    again, the good ones stored by InfluxDB. While a proxy dropped InfluxDB's headers, the
    same 400 is no proof: held (InfluxDB 1.x already stored the good lines; writing them
    again only overwrites them with themselves), then refused once the headers pass."""
    run = f"own-{time.monotonic_ns()}"
    conflict = [_line(run, 2), _line(run, 3, '"three"'), _line(run, 4)]
    clock = Clocked()
    writer = _writer(db_ready, proxy.url, clock)
    caplog.set_level(logging.INFO, logger=SINK_LOG)
    try:
        writer.write([_line(run, 1)])  # the field's type: integer
        writer.write(conflict)
        assert writer.stats.refused_requests == 1
        assert len(proxy.relayed) == 2  # not sent again
        assert _stored(admin, db_ready.database, run) == [1, 2, 4]
        (refused,) = _logged(caplog, logging.ERROR)
        assert "refused lines of a write of 3 to policy raw for good (status 400: partial " \
               "write: field type conflict" in refused

        caplog.clear()
        proxy.mode = "strip"
        clock.at, clock.then = clock.now + 5.0, lambda: setattr(proxy, "mode", "relay")
        writer.write(conflict)
    finally:
        writer.close()
    assert proxy.answered[2:] == [400] * (len(proxy.answered) - 2)
    assert len(proxy.answered) > 3  # held while the headers were dropped
    assert writer.stats.refused_requests == 2  # once the headers pass, InfluxDB's verdict
    assert writer.stats.denied == len(proxy.answered) - 3
    assert _stored(admin, db_ready.database, run) == [1, 2, 4]
    errors = _logged(caplog, logging.ERROR)
    assert len(errors) == 2
    assert errors[0].startswith("What answers at influx.url (no InfluxDB header)")
    assert "a proxy drops InfluxDB's headers" in errors[0]
    assert "refused lines of a write of 3 to policy raw for good" in errors[1]


# -- InfluxDB 3's and 2.x's answers, on stand-ins ---------------------------------------------

@dataclass
class Answer:
    status: int
    body: bytes
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class StandIn(influx_standin.StandIn):
    """Answers each request with the next of `answers` (a body as application/json), then
    204. `bodies`: every request's."""

    answers: list[Answer] = field(default_factory=list)

    def answer(self, request: Request) -> Reply:
        answer = self.answers.pop(0) if self.answers else Answer(204, b"")
        ctype = [("Content-Type", "application/json")] if answer.body else []
        return Reply(answer.status, answer.body, [*answer.headers.items(), *ctype])


@pytest.fixture
def stand_in() -> Iterator[StandIn]:
    with serving(StandIn()) as state:
        yield state


def test_influxdb_3s_partial_write_refuses_its_lines_without_a_header(
        stand_in: StandIn, caplog: pytest.LogCaptureFixture) -> None:
    """3.x Core answers a write with a line it refuses 400 (422 past a schema limit) and its
    own JSON error, with no X-Influxdb-* header: that is its verdict, the lines are refused
    as on 1.x. Another JSON 400 without the header is not."""
    stand_in.answers = [Answer(400, V3_PARTIAL), Answer(422, V3_PARTIAL),
                        Answer(400, b'{"error":"invalid request"}')]
    clock = Clocked()
    writer = InfluxWriter(InfluxHTTP(stand_in.url), "city", 5000, wait=clock.wait,
                          user=WriterUser("w"), monotonic=lambda: clock.now)
    caplog.set_level(logging.INFO, logger=SINK_LOG)
    writer.write([(RP_RAW, "m v=1 1"), (RP_RAW, 'm v="x" 2')])
    writer.write([(RP_RAW, "m v=3 3")])
    writer.write([(RP_RAW, "m v=4 4")])
    writer.close()
    assert stand_in.bodies == [b'm v=1 1\nm v="x" 2', b"m v=3 3", b"m v=4 4", b"m v=4 4"]
    s = writer.stats
    assert (s.refused_requests, s.denied, s.points) == (2, 1, 1)
    errors = _logged(caplog, logging.ERROR)
    assert len(errors) == 3
    assert "for good (status 400: partial write of line protocol occurred)" in errors[0]
    assert "for good (status 422: partial write of line protocol occurred)" in errors[1]
    assert errors[2].startswith("What answers at influx.url (no InfluxDB header)")


def test_influxdb_2s_400_refuses_its_lines_a_gateways_json_without_the_header_is_held(
        stand_in: StandIn, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """The v2 API through the official client: 2.x's {"code","message"} error comes with
    its X-Influxdb-Version header, now passed on by the transport: refused. The same JSON
    from something without the header (a gateway in front of it) is held."""
    stand_in.answers = [Answer(400, V2_PARSE, V2_HEADERS), Answer(400, V2_PARSE)]
    writer = v2_writer(stand_in.url, tmp_path, Clocked().wait)
    caplog.set_level(logging.INFO, logger=SINK_LOG)
    writer.write([(RP_RAW, "m v= 1")])
    writer.write([(RP_RAW, "m v=2 2")])
    writer.close()
    assert stand_in.bodies == [b"m v= 1", b"m v=2 2", b"m v=2 2"]
    assert (writer.stats.refused_requests, writer.stats.denied, writer.stats.points) == (1, 1, 1)
    refused, held = _logged(caplog, logging.ERROR)
    assert "for good (status 400: unable to parse 'm v=': missing field value)" in refused
    assert held.startswith("What answers at influx.url (no InfluxDB header) refuses the token")


def test_the_rule(stand_in: StandIn) -> None:
    """`influxdb_verdict` and `write_failure` on the answers above, through the real client."""
    def answer(status: int, body: bytes, headers: dict[str, str] | None = None) -> InfluxError:
        stand_in.answers = [Answer(status, body, headers or {})]
        with InfluxHTTP(stand_in.url) as client, pytest.raises(InfluxError) as caught:
            client.write(b"m v=1 1", db="city")
        return caught.value

    v1 = {"X-Influxdb-Version": "1.6.7~rc0", "X-Influxdb-Build": "OSS"}
    for exc, verdict, failure in [
        (answer(400, b'{"error":"partial write: field type conflict"}', v1), True,
         WriteFailure.REJECTED),
        (answer(413, b'{"error":"Request Entity Too Large"}', v1), True, WriteFailure.REJECTED),
        (answer(400, V2_PARSE, V2_HEADERS), True, WriteFailure.REJECTED),
        (answer(400, V3_PARTIAL), True, WriteFailure.REJECTED),
        (answer(400, GATEWAY_400), False, WriteFailure.DENIED),
        (answer(422, b'{"code":"unprocessable entity","message":"x"}'), False, WriteFailure.DENIED),
        (answer(413, b'{"error":"Request Entity Too Large"}'), False, WriteFailure.DENIED),
        (answer(400, b"partial write of line protocol occurred"), False, WriteFailure.DENIED),
        (answer(503, GATEWAY_400), False, WriteFailure.UNAVAILABLE),
    ]:
        assert (influxdb_verdict(exc), write_failure(exc)) == (verdict, failure), exc


def test_the_writer_check_names_what_to_check_on_a_gateways_json_400(
        stand_in: StandIn, db_ready: StackInfo) -> None:
    """At start-up, the same answer is a refusal naming what to check (`cloud run` logs it
    at ERROR), not an error of InfluxDB's let by with a warning."""
    cfg = replace(cloud_config_for_stack_influx(db_ready), url=stand_in.url)
    stand_in.answers = [Answer(400, GATEWAY_400)]
    with pytest.raises(InfluxAccessError, match=r"what answers at .* \(no InfluxDB header\) "
                                                r"refuses") as stopped:
        check_writer(cfg)
    assert "X-Influxdb-Version" in str(stopped.value)
