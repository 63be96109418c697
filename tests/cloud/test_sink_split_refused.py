"""A request InfluxDB refuses whole for a bad line must not lose its good lines (issue 6,
zero loss). InfluxDB 1.x answers such a request 400 "partial write" and stores its good
lines itself (tests/cloud/test_write_refused.py, on the real 1.6.7), but 2.x stores none of
a request with a line it cannot parse (400; its 422 "partial write" for a field type
conflict stores the rest), nor 3.x of one with any bad line on its v1 /write, which never
accepts a partial write (400 "parsing failed for write_lp endpoint", or "line protocol
parsing error" as Core 3.11 words it). The writer dropped such a request whole; it now
writes it again in halves until only the bad lines are refused. InfluxDB 3's /write
answers a body over its size limit 500 with its own words: split like a 413.

Neither 2.x nor 3.x can run here (Debian 12 ships 1.6.7), so stand-ins on 127.0.0.1
answer as their sources do (InfluxDB 2.x http/write_handler.go, http/legacy/
write_handler.go, http/points/points_parser.go; 3.x influxdb3_server/src/http.rs), with
2.x's headers and JSON errors, storing what those servers store."""

from __future__ import annotations

import json
import logging
import math
import re
import threading
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from cloud.errors import SinkError
from cloud.logic.records import RP_RAW
from cloud.sink import (
    InfluxWriter,
    WriteFailure,
    WriterUser,
    influxdb_verdict,
    stored_by_partial_write,
    too_large,
    whole_request_refused,
    write_failure,
)
from tests.cloud import influx_standin
from tests.cloud.influx_standin import Reply, Request, Responder, serving, v2_writer
from urbanpulse.influx_http import InfluxError, InfluxHTTP

SINK_LOG = "urbanpulse.cloud.sink"
V1 = "1.6.7~rc0"
V2_HEADERS = {"X-Influxdb-Build": "OSS", "X-Influxdb-Version": "v2.7.10"}
LINE = re.compile(r"(?P<m>[^, ]+)(?:,\S+)? (?P<fields>\S+) -?\d+")
TYPES = [("integer", re.compile(r"-?\d+i")), ("string", re.compile(r'"[^"]*"')),
         ("boolean", re.compile(r"t|f|true|false")),
         ("float", re.compile(r"-?\d+(\.\d*)?([eE][-+]?\d+)?"))]


def parse(line: str) -> tuple[str, dict[str, str]]:
    """A line's measurement and each field's type; ValueError with 2.x's words when it
    cannot be parsed (enough line protocol for the lines of these tests)."""
    found = LINE.fullmatch(line)
    if found is None:
        raise ValueError("invalid line format")
    types = {}
    for pair in found["fields"].split(","):
        name, _, value = pair.partition("=")
        if not value:
            raise ValueError("missing field value")
        kind = next((k for k, pattern in TYPES if pattern.fullmatch(value)), None)
        if kind is None:
            raise ValueError("invalid number")
        types[name] = kind
    return found["m"], types


@dataclass
class StandIn(influx_standin.StandIn):
    """Answers each write as `influxdb` does (204 until a test says which). `bodies`: every
    request's body; `stored`: the lines it stored, per bucket (database/rp), as the server
    it stands in for stores them."""

    influxdb: Responder = lambda request: Reply(204)
    stored: dict[str, list[str]] = field(default_factory=dict)
    schema: dict[tuple[str, str, str], str] = field(default_factory=dict)

    def answer(self, request: Request) -> Reply:
        return self.influxdb(request)

    def store(self, bucket: str, lines: list[str]) -> None:
        self.stored.setdefault(bucket, []).extend(lines)


@pytest.fixture
def stand_in() -> Iterator[StandIn]:
    with serving(StandIn()) as state:
        yield state


def influxdb_2(state: StandIn) -> Responder:
    """InfluxDB 2.7's write, at its v1 /write (db and rp through the DBRP mapping
    "<db>/<rp>") and its /api/v2/write (bucket): every line is parsed first, and a line it
    cannot parse refuses the whole request, 400 {"code": "invalid", "message": one
    "unable to parse '<line>': <why>" per such line}, storing none of it (its points parser
    returns no point with an error). A parsed request is written: a point whose field type
    conflicts with the bucket's is dropped and the others stored, 422 "failure writing
    points to database: partial write: field type conflict: ... dropped=N"."""
    def answer(request: Request) -> Reply:
        bucket = request.param("bucket") if request.path == "/api/v2/write" \
            else f"{request.param('db')}/{request.param('rp')}"
        lines = request.body.decode().split("\n")
        failed, parsed = [], []
        for line in lines:
            try:
                parsed.append((line, *parse(line)))
            except ValueError as exc:
                failed.append(f"unable to parse '{line}': {exc}")
        if failed:
            return _v2_error(400, "invalid", "\n".join(failed))
        kept, conflicts = [], []
        for line, measurement, types in parsed:
            clash = [(name, kind, state.schema[(bucket, measurement, name)])
                     for name, kind in types.items()
                     if state.schema.setdefault((bucket, measurement, name), kind) != kind]
            (conflicts if clash else kept).append((line, measurement, clash))
        state.store(bucket, [line for line, _, _ in kept])
        if conflicts:
            _, measurement, [(name, kind, was)] = conflicts[0]
            return _v2_error(422, "unprocessable entity", (
                f"failure writing points to database: partial write: field type conflict: input "
                f'field "{name}" on measurement "{measurement}" is type {kind}, already exists as '
                f"type {was} dropped={len(conflicts)}"))
        return Reply(204, headers=V2_HEADERS)
    return answer


def _v2_error(status: int, code: str, message: str) -> Reply:
    return Reply(status, json.dumps({"code": code, "message": message}).encode(),
                 {**V2_HEADERS, "X-Platform-Error-Code": code,
                  "Content-Type": "application/json; charset=utf-8"})


def influxdb_3_v1_write(state: StandIn, words: str) -> Responder:
    """InfluxDB 3 Core's v1 /write, which never accepts a partial write: its first bad line
    refuses the whole request, 400 {"error": `words`, "data": that line}, no X-Influxdb-*
    header (3.x puts those on /ping only), and nothing is stored."""
    def answer(request: Request) -> Reply:
        lines = request.body.decode().split("\n")
        for number, line in enumerate(lines, 1):
            try:
                parse(line)
            except ValueError as exc:
                data = {"original_line": line, "line_number": number, "error_message": str(exc)}
                return Reply(400, json.dumps({"error": words, "data": data}).encode(),
                             {"Content-Type": "application/json"})
        state.store(f"{request.param('db')}/{request.param('rp')}", lines)
        return Reply(204)
    return answer


def influxdb_3_size_limit(state: StandIn, limit: int) -> Responder:
    """InfluxDB 3's v1 /write with --max-http-request-size `limit`: a larger body is
    answered 500 "max request size (<limit> bytes) exceeded", plain text, nothing stored."""
    def answer(request: Request) -> Reply:
        if len(request.body) > limit:
            return Reply(500, f"max request size ({limit} bytes) exceeded".encode())
        state.store(f"{request.param('db')}/{request.param('rp')}",
                    request.body.decode().split("\n"))
        return Reply(204)
    return answer


def _v1_writer(url: str) -> InfluxWriter:
    return InfluxWriter(InfluxHTTP(url, "w", "pw"), "city", 5000, wait=lambda s: False,
                        user=WriterUser("w"))


def _logged(caplog: pytest.LogCaptureFixture, level: int) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == SINK_LOG and r.levelno == level]


def _lines(n: int, bad: list[int]) -> list[str]:
    return [f"s10_split,run=r seq={'' if i in bad else f'{i}i'} {1_000 + i}" for i in range(n)]


def _bound(n: int, k: int) -> int:
    """At most this many requests for a request of `n` lines with `k` bad ones: the request,
    and at each of the ⌈log2 n⌉ levels of halves the two halves of each part holding a bad
    line."""
    return 1 + 2 * k * math.ceil(math.log2(n))


@pytest.mark.parametrize("api", ["v1", "v2"])
@pytest.mark.parametrize("bad", [[17], [3, 18, 36]], ids=["1 bad", "3 bad"])
def test_influxdb_2s_whole_request_refusal_loses_no_good_line(
        stand_in: StandIn, tmp_path: Path, caplog: pytest.LogCaptureFixture, api: str,
        bad: list[int]) -> None:
    """2.x answers a request of 40 lines with 1 (or 3) it cannot parse 400 and stores none
    of it: every good line is stored once, only the bad ones refused (counted, logged once
    for the request), within the bound of requests; through its v1 /write (InfluxHTTP, DBRP
    mapping) and its /api/v2/write (the official client). Before, the writer dropped all 40."""
    stand_in.influxdb = influxdb_2(stand_in)
    writer = _v1_writer(stand_in.url) if api == "v1" else v2_writer(stand_in.url, tmp_path, lambda s: False)
    lines = _lines(40, bad)
    caplog.set_level(logging.INFO, logger=SINK_LOG)
    try:
        writer.write([(RP_RAW, ln) for ln in lines])
    finally:
        writer.close()
    good = [ln for i, ln in enumerate(lines) if i not in bad]
    stored = Counter(stand_in.stored["city/raw"])
    assert sorted(stored) == sorted(good)
    assert set(stored.values()) == {1}  # each once
    assert len(stand_in.bodies) <= _bound(40, len(bad))
    s = writer.stats
    assert (s.points, s.refused_requests, s.denied, s.retries) == (40 - len(bad), len(bad), 0, 0)
    (error,) = _logged(caplog, logging.ERROR)  # once for the request
    assert error.startswith("InfluxDB refused lines of a write of 40 to policy raw for good "
                            "(status 400: unable to parse 's10_split,run=r seq= ")
    assert f"written again in halves ({len(stand_in.bodies)} requests" in error
    assert f"the {len(bad)} line{'s' if len(bad) > 1 else ''} it refused alone are not stored, " \
           "every other line is" in error
    assert not _logged(caplog, logging.WARNING)


def test_a_part_2x_writes_partially_is_not_split_further(
        stand_in: StandIn, caplog: pytest.LogCaptureFixture) -> None:
    """A request with a line 2.x cannot parse (400, none stored) and a field type conflict
    (2.x's 422 stores the rest of its request): the part holding only the conflict is
    written partially by 2.x, its good lines stored there and then, the conflict counted;
    the unparsable line is refused alone. Every good line stored once."""
    stand_in.influxdb = influxdb_2(stand_in)
    writer = _v1_writer(stand_in.url)
    caplog.set_level(logging.INFO, logger=SINK_LOG)
    writer.write([(RP_RAW, "s10_split,run=r seq=0i 999")])  # seq is an integer
    lines = _lines(16, [12])
    lines[3] = 's10_split,run=r seq="three" 1003'
    writer.write([(RP_RAW, ln) for ln in lines])
    writer.close()
    good = [ln for i, ln in enumerate(lines) if i not in (3, 12)]
    assert Counter(stand_in.stored["city/raw"]) == Counter(["s10_split,run=r seq=0i 999", *good])
    # `points` counts the 7 good lines 2.x stored of the part it wrote partially too (its
    # 422 says it dropped 1 of 8), not only those of the requests answered 204
    assert (writer.stats.points, writer.stats.refused_requests) == (1 + 14, 2)
    (error,) = _logged(caplog, logging.ERROR)
    assert "the 1 line it refused alone and those it names in 1 partial write of a part are " \
           "not stored, every other line is" in error


@pytest.mark.parametrize("words", ["parsing failed for write_lp endpoint",
                                   "line protocol parsing error"])
def test_influxdb_3s_v1_write_refusing_the_whole_request_loses_no_good_line(
        stand_in: StandIn, caplog: pytest.LogCaptureFixture, words: str) -> None:
    """3.x's v1 /write stores nothing of a request with a bad line (no partial write on its
    legacy APIs): its good lines are written in the halves, the 3 bad ones refused."""
    stand_in.influxdb = influxdb_3_v1_write(stand_in, words)
    writer = _v1_writer(stand_in.url)
    lines = _lines(30, [0, 14, 29])
    caplog.set_level(logging.INFO, logger=SINK_LOG)
    writer.write([(RP_RAW, ln) for ln in lines])
    writer.close()
    good = [ln for i, ln in enumerate(lines) if i not in (0, 14, 29)]
    assert Counter(stand_in.stored["city/raw"]) == Counter(good)
    assert len(stand_in.bodies) <= _bound(30, 3)
    assert (writer.stats.points, writer.stats.refused_requests) == (27, 3)
    (error,) = _logged(caplog, logging.ERROR)
    assert f"for good (status 400: {words})" in error
    assert "the 3 lines it refused alone are not stored" in error


def test_influxdb_3s_500_for_a_body_over_its_size_limit_is_split_like_a_413(
        stand_in: StandIn, caplog: pytest.LogCaptureFixture) -> None:
    """3.x's /write answers a body over --max-http-request-size 500 "max request size (N
    bytes) exceeded" (its 413 is on /api/v2/write only): written in smaller requests, none
    dropped, not waited out as a 500 would be; a single line over it refused, logged once."""
    stand_in.influxdb = influxdb_3_size_limit(stand_in, 40)
    writer = _v1_writer(stand_in.url)
    lines = [f"m v={i} {i}" for i in range(20)]
    caplog.set_level(logging.INFO, logger=SINK_LOG)
    writer.write([(RP_RAW, ln) for ln in lines])
    assert stand_in.stored["city/raw"] == lines  # each once, in order
    assert (writer.stats.points, writer.stats.refused_requests, writer.stats.retries) == (20, 0, 0)
    (warning,) = _logged(caplog, logging.WARNING)
    assert "--max-http-request-size" in warning
    writer.write([(RP_RAW, "m v=1 1"), (RP_RAW, 'm s="' + "x" * 60 + '" 2')])
    writer.close()
    assert stand_in.stored["city/raw"][-1] == "m v=1 1"
    assert writer.stats.refused_requests == 1
    (error,) = _logged(caplog, logging.ERROR)
    assert "refused 1 lines of a write of 2 to policy raw as too large even alone (status 500: " \
           "max request size (40 bytes) exceeded)" in error


def test_the_rule() -> None:
    """Which refusals stored the rest of their request (not split) and which none of it."""
    v2 = "v2.7.10"
    partial_2x = ('failure writing points to database: partial write: field type conflict: '
                  'input field "v" on measurement "m" is type string, already exists as type '
                  'integer dropped=1')
    for exc, whole in [
        (InfluxError(400, '{"error":"partial write: field type conflict: ... dropped=1"}',
                     version=V1), False),
        (InfluxError(400, '{"error":"unable to parse \'m v=\': missing field value"}',
                     version=V1), False),  # 1.x: no line parsed, none to keep
        (InfluxError(400, '{"code":"invalid","message":"unable to parse \'m v=\': missing '
                          'field value"}', version=v2), True),
        (InfluxError(422, json.dumps({"code": "unprocessable entity", "message": partial_2x}),
                     version=v2), False),
        (InfluxError(400, '{"error":"partial write of line protocol occurred","data":[]}'), False),
        (InfluxError(422, '{"error":"partial write of line protocol occurred","data":[]}'), False),
        (InfluxError(400, '{"error":"parsing failed for write_lp endpoint","data":{}}'), True),
        (InfluxError(400, '{"error":"line protocol parsing error","data":{}}'), True),
    ]:
        assert write_failure(exc) is WriteFailure.REJECTED, exc
        assert whole_request_refused(exc) is whole, exc
    big = InfluxError(500, "max request size (10485760 bytes) exceeded")
    assert (influxdb_verdict(big), too_large(big), write_failure(big)) == \
        (True, True, WriteFailure.REJECTED)
    other = InfluxError(500, "max request size exceeded, or so")
    assert (influxdb_verdict(other), too_large(other), write_failure(other)) == \
        (False, False, WriteFailure.UNAVAILABLE)


# -- a long split: the stop, the health hook, what is counted (review of session 10) ---------

def _bad(line: str) -> bool:
    return "seq= " in line


def test_a_stop_during_a_split_is_seen_before_the_next_part(stand_in: StandIn) -> None:
    """400 lines 2.x refuses every one of: 799 requests. The stop set while the 20th is
    answered ends the write with SinkError before the 21st, as a wait does (the epoch is not
    committed: read again on restart). It went on to the 799th."""
    stop = threading.Event()
    refusing = influxdb_2(stand_in)

    def answer(request: Request) -> Reply:
        if len(stand_in.requests) == 20:
            stop.set()
        return refusing(request)

    stand_in.influxdb = answer
    writer = InfluxWriter(InfluxHTTP(stand_in.url, "w", "pw"), "city", 5000, stop=stop,
                          user=WriterUser("w"))
    try:
        with pytest.raises(SinkError, match="stopped while"):
            writer.write([(RP_RAW, ln) for ln in _lines(400, list(range(400)))])
    finally:
        writer.close()
    assert len(stand_in.bodies) == 20


def test_the_health_hook_is_called_after_each_request_of_a_split(stand_in: StandIn) -> None:
    """A split of 32 lines, every other one bad: `between` (the processor's health
    point, cloud.flow) is called after each request that ended a part, stored or refused
    for good, not once after the whole split, which may last minutes on a slow InfluxDB."""
    stand_in.influxdb = influxdb_2(stand_in)
    calls: list[int] = []
    writer = _v1_writer(stand_in.url)
    writer.write([(RP_RAW, ln) for ln in _lines(32, list(range(0, 32, 2)))],
                 between=lambda: calls.append(len(stand_in.bodies)))
    writer.close()
    parts = [body.decode().split("\n") for body in stand_in.bodies]
    ended = [i + 1 for i, lines in enumerate(parts) if len(lines) == 1 or not any(map(_bad, lines))]
    assert len(ended) == 32  # each line ends up alone: a part of two holds a bad line
    assert calls == ended


def test_the_requests_of_a_split_count_first_attempts_not_retries(
        stand_in: StandIn, caplog: pytest.LogCaptureFixture) -> None:
    """2.x busy (503) on every first try of a request of the split: each is tried again,
    and the ERROR counts the split's requests, not its tries."""
    refusing = influxdb_2(stand_in)
    tried: set[bytes] = set()

    def answer(request: Request) -> Reply:
        if request.body not in tried:
            tried.add(request.body)
            return Reply(503, b'{"code":"unavailable","message":"busy"}', V2_HEADERS)
        return refusing(request)

    stand_in.influxdb = answer
    writer = _v1_writer(stand_in.url)
    caplog.set_level(logging.INFO, logger=SINK_LOG)
    writer.write([(RP_RAW, ln) for ln in _lines(16, [5])])
    writer.close()
    requests = len(set(stand_in.bodies))
    assert len(stand_in.bodies) == 2 * requests
    assert writer.stats.retries == requests
    (error,) = _logged(caplog, logging.ERROR)
    assert f"written again in halves ({requests} requests;" in error


def test_the_lines_a_2x_partial_write_stored_are_counted_as_written(stand_in: StandIn) -> None:
    """2.x's 422 names how many points it dropped (dropped=N, and no line it could not parse:
    that is its 400, before any write): the others of the request are stored, and counted
    in `points` (the processor's points_written)."""
    stand_in.influxdb = influxdb_2(stand_in)
    writer = _v1_writer(stand_in.url)
    writer.write([(RP_RAW, "s10_split,run=r seq=0i 999")])
    lines = _lines(10, [])
    lines[2] = 's10_split,run=r seq="two" 1002'
    lines[7] = 's10_split,run=r seq="seven" 1007'
    writer.write([(RP_RAW, ln) for ln in lines])
    writer.close()
    assert len(stand_in.stored["city/raw"]) == 1 + 8
    assert (writer.stats.points, writer.stats.requests, writer.stats.refused_requests) == (9, 1, 1)


def test_how_many_lines_a_partial_write_stored() -> None:
    """Where InfluxDB's answer says so exactly: 2.x's 422 (dropped=N); 1.x's partial write
    of lines it could not parse only (each named, dropped=0). 1.x's dropped=N for a field
    type conflict or a retention policy does not count the lines that also failed to parse
    in that request (1.6.7: one conflict and one unparsable line answer dropped=1), and 3.x's
    partial write names its lines in a "data" the writer does not keep: not counted."""
    parse_only = ("partial write: unable to parse 'm v= 2': missing field value\n"
                  "unable to parse 'garbage': invalid field format dropped=0")
    conflict_2x = ('failure writing points to database: partial write: field type conflict: '
                   'input field "v" on measurement "m" is type string, already exists as type '
                   'integer dropped=2')
    for exc, lines, stored in [
        (InfluxError(400, json.dumps({"error": parse_only}), version=V1), 10, 8),
        (InfluxError(400, '{"error":"partial write: field type conflict: ... dropped=1"}',
                     version=V1), 10, None),
        (InfluxError(400, '{"error":"unable to parse \'m v=\': missing field value"}',
                     version=V1), 1, None),  # a line refused alone: none stored
        (InfluxError(422, json.dumps({"code": "unprocessable entity", "message": conflict_2x}),
                     version="v2.7.10"), 10, 8),
        (InfluxError(400, '{"error":"partial write of line protocol occurred","data":[]}'), 10,
         None),
    ]:
        assert stored_by_partial_write(exc, lines) == stored, exc
