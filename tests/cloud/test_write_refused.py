"""A write InfluxDB refuses the writer must lose nothing (issue 6, zero loss).

Before, any 4xx on a write was counted (`write_refused`), logged and its points dropped;
the epoch committed and the journal was trimmed a day later. So while the writer lacked
WRITE (in InfluxDB 1.x an operator's GRANT READ replaces WRITE), its password was changed
(401) or the database was gone (404), every point was lost for good. Now those are held
and tried again with the back-off of an outage (the dataflow waits, the journal keeps the
data), logged once with what to grant, and counted; `cloud run` started with such a
writer says so and runs on, its ingest journaling, until the grant lets the points through
(it used to stop with exit 2, and its ingest with it);
a writer. A write refused for its lines (400: a field type conflict, a line InfluxDB cannot
parse) is still dropped, counted and logged: InfluxDB 1.x keeps the request's good lines.

The behaviour of the real InfluxDB (1.6.7, checked here): a write of no line answers 204
and stores nothing when the user may write, 403 without WRITE, 401 for bad credentials,
404 when the database does not exist (before any user check); a request with a bad line
answers 400 "partial write" and stores its other lines.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from cloud.cli import main as cloud_main
from cloud.config import CloudInflux, parse_cloud_config
from cloud.errors import InfluxAccessError, SinkError
from cloud.flow import InfluxPartition
from cloud.health import ProcessorHealth
from cloud.initdb import init_db
from cloud.journal import Journal, journal_path
from cloud.logic.records import RP_1M, RP_RAW, Point
from cloud.sink import (
    DENIED_REMINDER_S,
    InfluxWriter,
    WriteFailure,
    WriterUser,
    check_writer,
    make_writer,
    write_failure,
    writer_user,
)
from cloud.stack_config import cloud_config_for_stack, to_toml
from tests.cloud.test_domain_replay_influx import cloud_config_for_stack_influx
from tests.conftest import CloudProcess
from tests.netfault import PartitionProxy
from urbanpulse.clock import SystemClock
from urbanpulse.influx_http import InfluxError, InfluxHTTP, InfluxTLSError, InfluxUnavailable
from urbanpulse.mqtt import close_client, connect_and_wait, make_client
from urbanpulse.stack import MqttCredentials, StackInfo
from urbanpulse.stack.process import free_ports
from urbanpulse.testing import wait_for
from urbanpulse.wire import Reading, data_topic, encode_batch

SINK_LOG = "urbanpulse.cloud.sink"
HOLD_S = 3.0  # how long the whole-process test keeps WRITE away
V = "1.6.7~rc0"  # the X-Influxdb-Version header InfluxDB 1.6.7 puts on every answer


# -- which write failures hold the points ---------------------------------------------------

def test_401_403_404_hold_the_points_influxdbs_400_413_422_refuse_the_lines_5xx_are_waited_out(
        ) -> None:
    kinds = {s: write_failure(InfluxError(s, "x", version=V))
             for s in (0, 200, 400, 401, 403, 404, 405, 413, 422, 500, 503)}
    assert kinds == {0: WriteFailure.UNAVAILABLE, 500: WriteFailure.UNAVAILABLE,
                     503: WriteFailure.UNAVAILABLE, 401: WriteFailure.DENIED,
                     403: WriteFailure.DENIED, 404: WriteFailure.DENIED,
                     200: WriteFailure.DENIED, 405: WriteFailure.DENIED,
                     400: WriteFailure.REJECTED, 413: WriteFailure.REJECTED,
                     422: WriteFailure.REJECTED}
    # the same statuses from something else (a proxy's page, or a JSON error without
    # InfluxDB's header: a gateway's, or InfluxDB's through a proxy that drops the header)
    # hold the points: tests/cloud/test_sink_verdicts.py
    for status in (200, 400, 413, 422):
        assert write_failure(InfluxError(status, "<html>...</html>")) is WriteFailure.DENIED
    assert write_failure(InfluxError(400, '{"error":"unable to parse"}')) is WriteFailure.DENIED
    assert write_failure(InfluxError(422, '{"code":"unprocessable entity","message":"x"}')) \
        is WriteFailure.DENIED
    assert write_failure(InfluxUnavailable("http://h:1", "refused")) is WriteFailure.UNAVAILABLE
    assert write_failure(InfluxTLSError("https://h:1", "the system's CAs", "bad")) \
        is WriteFailure.UNAVAILABLE


def test_the_advice_names_the_grant_the_password_file_or_init_db() -> None:
    writer = WriterUser("w", "influx.password_file (/etc/w.pw)")
    assert writer.advice(403, "city") == 'as an InfluxDB admin: GRANT WRITE ON "city" TO "w"'
    assert "influx.password_file (/etc/w.pw)" in writer.advice(401, "city")
    assert "urbanpulse cloud init-db" in writer.advice(404, "city")
    both = replace(writer, also_reader=True)
    assert both.advice(403, "city").startswith('as an InfluxDB admin: GRANT ALL ON "city" TO "w"')
    token = WriterUser(secret="influx.token_file (/t)", v2=True)
    assert token.who == "the token of influx.token_file (/t)"
    assert "write access to city/raw" in token.advice(403, "city", "raw")


# -- the writer, on a stand-in transport and a fake clock ----------------------------------

@dataclass
class Clocked:
    """A fake monotonic clock the writer's back-off waits advance."""

    now: float = 0.0
    waits: int = 0

    def wait(self, delay: float) -> bool:
        self.now += delay
        self.waits += 1
        return False


class Answers:
    """A transport that fails with the given errors, in turn, then takes every write."""

    def __init__(self, *errors: InfluxError) -> None:
        self.errors = list(errors)
        self.attempts = 0
        self.written: list[bytes] = []

    def write(self, lines: bytes, *, db: str, rp: str | None = None, precision: str = "ns") -> None:
        self.attempts += 1
        if self.errors:
            raise self.errors.pop(0)
        self.written.append(lines)


def _denied(status: int) -> InfluxError:
    return InfluxError(status, {401: "authorization failed",
                                403: '"w" user is not authorized to write to database "city"',
                                404: 'database not found: "city"'}[status], version=V)


def _logged(caplog: pytest.LogCaptureFixture, level: int) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == SINK_LOG and r.levelno == level]


def test_a_denied_write_is_held_and_logged_once_per_status_with_a_reminder_then_written(
        caplog: pytest.LogCaptureFixture) -> None:
    clock = Clocked()
    # 404 a few times (the database dropped), then 403 long enough for a reminder.
    transport = Answers(*[_denied(404)] * 3, *[_denied(403)] * 120)
    writer = InfluxWriter(transport, "city", 5000, wait=clock.wait, user=WriterUser("w"),
                          monotonic=lambda: clock.now)
    caplog.set_level(logging.INFO, logger=SINK_LOG)
    writer.write([("raw", "m v=1 1"), ("raw", "m v=2 2")])
    assert transport.written == [b"m v=1 1\nm v=2 2"]  # held, then written once
    assert transport.attempts == 124
    s = writer.stats
    assert (s.points, s.requests, s.refused_requests, s.retries, s.denied) == (2, 1, 0, 0, 123)
    assert s.denied_s == pytest.approx(clock.now)  # from the first denial to the write
    assert clock.now > DENIED_REMINDER_S
    errors = _logged(caplog, logging.ERROR)
    assert len(errors) == 2  # once per status, not per retry
    assert "status 404" in errors[0]
    assert "urbanpulse cloud init-db" in errors[0]
    assert "the writer 'w' (influx.username)" in errors[1]
    assert "status 403" in errors[1]
    assert 'GRANT WRITE ON "city" TO "w"' in errors[1]
    assert all("held, not dropped" in m for m in errors)
    reminders = [m for m in _logged(caplog, logging.WARNING) if "still refuses" in m]
    assert 1 <= len(reminders) <= clock.now // DENIED_REMINDER_S
    (again,) = [m for m in _logged(caplog, logging.INFO) if "again" in m]
    assert f"after {clock.now:.1f} s refused" in again

    # A new episode logs again; its seconds add up.
    caplog.clear()
    before = s.denied_s
    transport.errors = [_denied(403)]
    writer.write([("raw", "m v=3 3")])
    assert len(_logged(caplog, logging.ERROR)) == 1
    assert s.denied == 124
    assert s.denied_s > before


def test_lines_refused_for_good_are_counted_and_logged_with_influxdbs_words_the_rest_goes_on(
        caplog: pytest.LogCaptureFixture) -> None:
    conflict = ('partial write: field type conflict: input field "v" on measurement "m" is '
                'type string, already exists as type float dropped=1')
    transport = Answers(InfluxError(400, conflict, version=V))
    writer = InfluxWriter(transport, "city", 1, wait=Clocked().wait)
    caplog.set_level(logging.INFO, logger=SINK_LOG)
    writer.write([("raw", 'm v="x" 1'), ("raw", "m v=2 2")])
    assert transport.attempts == 2  # not retried
    assert transport.written == [b"m v=2 2"]
    assert (writer.stats.refused_requests, writer.stats.denied, writer.stats.points) == (1, 0, 1)
    (error,) = _logged(caplog, logging.ERROR)
    assert "refused lines of a write of 1 to policy raw for good (status 400" in error
    assert conflict in error


class SizeLimit:
    """Answers 413 to a body over `limit` bytes, as InfluxDB 1.6.7 does past its [http]
    max-body-size (checked by hand: "Request Entity Too Large", nothing of it stored)."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.written: list[bytes] = []
        self.refused = 0

    def write(self, lines: bytes, *, db: str, rp: str | None = None, precision: str = "ns") -> None:
        if len(lines) > self.limit:
            self.refused += 1
            raise InfluxError(413, '{"error":"Request Entity Too Large"}', version=V)
        self.written.append(lines)


def test_a_request_too_large_is_written_in_smaller_ones_none_dropped(
        caplog: pytest.LogCaptureFixture) -> None:
    transport = SizeLimit(40)
    writer = InfluxWriter(transport, "city", 5000, wait=Clocked().wait)
    lines = [f"m v={i} {i}" for i in range(20)]  # 8-9 bytes each
    caplog.set_level(logging.INFO, logger=SINK_LOG)
    writer.write([("raw", ln) for ln in lines])
    assert b"\n".join(transport.written).decode().split("\n") == lines  # each once, in order
    assert all(len(body) <= 40 for body in transport.written)
    assert transport.refused > 1
    assert (writer.stats.points, writer.stats.refused_requests) == (20, 0)
    (warning,) = _logged(caplog, logging.WARNING)  # once, not per split
    assert "lower influx.batch_lines" in warning
    # One line too large on its own: refused for good, the others of its request written.
    writer.write([("raw", "m v=1 1"), ("raw", "m s=\"" + "x" * 60 + "\" 2")])
    assert writer.stats.refused_requests == 1
    assert transport.written[-1] == b"m v=1 1"


def test_too_many_requests_and_a_request_timeout_are_waited_out_not_dropped() -> None:
    """429 (InfluxDB Cloud's and 2.x's rate limits, a proxy's limit_req) and 408 (a proxy
    that gave up waiting for the body) say nothing about the lines: the same request passes
    later. They were refused for good like a bad line, and their points dropped."""
    for status in (408, 429):
        assert InfluxError(status, "x").retryable
        assert write_failure(InfluxError(status, "x")) is WriteFailure.UNAVAILABLE
        transport = Answers(InfluxError(status, "Too Many Requests"), InfluxError(status, "again"))
        writer = InfluxWriter(transport, "city", 10, wait=Clocked().wait)
        writer.write([("raw", "m v=1 1"), ("raw", "m v=2 2")])
        assert transport.written == [b"m v=1 1\nm v=2 2"]
        assert (writer.stats.points, writer.stats.refused_requests, writer.stats.retries) == (2, 0, 2)


def test_a_redirected_write_is_held_until_influx_url_is_fixed_not_dropped(
        caplog: pytest.LogCaptureFixture) -> None:
    """A 3xx (a proxy moving http to https, a load balancer's redirect: InfluxHTTP follows
    none) means nothing took the request in: no line was looked at. It was refused for good
    like a bad line, every point dropped while the epochs committed."""
    for status in (301, 302, 307, 308):
        assert write_failure(InfluxError(status, "Moved")) is WriteFailure.DENIED
    transport = Answers(InfluxError(301, "<html>301 Moved Permanently</html>"))
    writer = InfluxWriter(transport, "city", 10, wait=Clocked().wait,
                          user=WriterUser("w", "influx.password_file (/etc/w.pw)"))
    caplog.set_level(logging.INFO, logger=SINK_LOG)
    writer.write([("raw", "m v=1 1")])
    assert transport.written == [b"m v=1 1"]
    assert (writer.stats.points, writer.stats.refused_requests, writer.stats.denied) == (1, 0, 1)
    (error,) = _logged(caplog, logging.ERROR)
    assert "influx.url" in error
    assert "GRANT" not in error


def test_a_stop_while_denied_ends_the_wait_with_a_sink_error() -> None:
    stop = threading.Event()
    stop.set()
    writer = InfluxWriter(Answers(_denied(403)), "city", 10, stop=stop)
    with pytest.raises(SinkError, match="stopped while InfluxDB refused the writer"):
        writer.write([("raw", "m v=1 1")])
    assert writer.stats.points == 0


def test_writer_user_from_the_config(tmp_path: Path) -> None:
    cfg = parse_cloud_config({"mqtt": {"password_file": "p", "ca_file": "c"},
                              "influx": {"password_file": "/etc/w.pw", "username": "w"}}).influx
    assert writer_user(cfg) == WriterUser("w", "influx.password_file (/etc/w.pw)")
    same = replace(cfg, reader_username="w", reader_password_file=Path("/etc/w.pw"))
    assert writer_user(same).also_reader
    v2 = replace(cfg, api="v2", token_file=Path("/etc/t"))
    assert writer_user(v2) == WriterUser(secret="influx.token_file (/etc/t)", v2=True)


# -- on the real InfluxDB --------------------------------------------------------------------

@dataclass
class Writer:
    """A writer user of the test's own, its password file, and how to make it able to write."""

    cfg: CloudInflux
    fix: Callable[[], None]
    status: int  # what InfluxDB answers its writes before the fix


@pytest.fixture
def read_only_user(db_ready: StackInfo, admin: InfluxHTTP, tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """A user with READ and no WRITE on the database (what a GRANT READ to the writer leaves
    in InfluxDB 1.x), and its password file."""
    user = f"ro_{time.monotonic_ns()}"
    password = tmp_path / "ro.password"
    password.write_text("ro-secret\n")
    admin.query(f"CREATE USER {user} WITH PASSWORD 'ro-secret'; "
                f'GRANT READ ON "{db_ready.database}" TO {user}', post=True)
    yield user, password
    admin.query(f"DROP USER {user}", post=True)


def _writer_for(case: str, db_ready: StackInfo, admin: InfluxHTTP, tmp_path: Path,
                request: pytest.FixtureRequest) -> Writer:
    base = cloud_config_for_stack_influx(db_ready)
    user = f"w{case}_{time.monotonic_ns()}"
    password = tmp_path / f"{user}.password"
    password.write_text("w-secret\n")
    request.addfinalizer(lambda: admin.query(f"DROP USER {user}", post=True))
    cfg = replace(base, username=user, password_file=password)
    if case == "403":  # READ only: the writer after an operator's GRANT READ
        admin.query(f"CREATE USER {user} WITH PASSWORD 'w-secret'; "
                    f'GRANT READ ON "{db_ready.database}" TO {user}', post=True)
        return Writer(cfg, lambda: admin.query(f'GRANT WRITE ON "{db_ready.database}" TO {user}',
                                               post=True), 403)
    if case == "401":  # its password changed in InfluxDB, not in the file
        admin.query(f"CREATE USER {user} WITH PASSWORD 'old-secret'; "
                    f'GRANT WRITE ON "{db_ready.database}" TO {user}', post=True)
        return Writer(cfg, lambda: admin.query(f"SET PASSWORD FOR {user} = 'w-secret'", post=True), 401)
    # "404": the database dropped by mistake; init-db makes it again. An admin user of the
    # test's own writes: a GRANT needs the database to exist.
    db = f"s9_{time.monotonic_ns()}"
    admin.query(f"CREATE USER {user} WITH PASSWORD 'w-secret' WITH ALL PRIVILEGES", post=True)
    request.addfinalizer(lambda: admin.query(f'DROP DATABASE "{db}"', post=True))
    retention = parse_cloud_config({"mqtt": {"password_file": "x", "ca_file": "x"},
                                    "influx": {"password_file": "x"}}).retention
    return Writer(replace(cfg, database=db), lambda: init_db(admin, db, retention) and None, 404)


def _points(run: str, batches: int, per_batch: int) -> list[list[Point]]:
    """Raw and 1-minute points of a measurement of the test's own, stamped a minute apart."""
    t0 = (time.time_ns() // 60_000_000_000 - batches * per_batch - 10) * 60_000_000_000
    out: list[list[Point]] = []
    for b in range(batches):
        batch: list[Point] = []
        for k in range(per_batch):
            i = b * per_batch + k
            batch.append((RP_RAW, f"s9_written,run={run} seq={i}i {t0 + i * 60_000_000_000}"))
            batch.append((RP_1M, f"s9_written,run={run} count={i}i {t0 + i * 60_000_000_000}"))
        out.append(batch)
    return out


def _stored(admin: InfluxHTTP, db: str, run: str, rp: str, field: str) -> list[int]:
    rows = admin.query_points(f'SELECT "{field}" FROM "{rp}"."s9_written" WHERE "run" = \'{run}\'',
                              db=db)
    return sorted(int(r[field]) for r in rows)


@pytest.mark.parametrize("case", ["403", "401", "404"])
def test_writes_denied_are_held_and_every_point_is_written_exactly_once_after_the_fix(
        case: str, db_ready: StackInfo, admin: InfluxHTTP, tmp_path: Path,
        caplog: pytest.LogCaptureFixture, request: pytest.FixtureRequest) -> None:
    writer_case = _writer_for(case, db_ready, admin, tmp_path, request)
    cfg = writer_case.cfg
    run = f"{case}-{time.monotonic_ns()}"
    caplog.set_level(logging.INFO, logger=SINK_LOG)
    process = 800 + time.monotonic_ns() % 99
    part = InfluxPartition(make_writer(cfg), max_pending=30,
                           health=ProcessorHealth(process, 0.2, SystemClock()))
    request.addfinalizer(part.writer.close)
    request.addfinalizer(part.close)
    part.start()
    batches = _points(run, batches=6, per_batch=10)  # 20 points a batch, 120 in all

    # The dataflow's thread: hands the batches over, an epoch end every second batch.
    fed: list[int] = []
    failed: list[BaseException] = []

    def feed() -> None:
        try:
            for n, batch in enumerate(batches):
                part.write_batch([batch])
                fed.append(n)
                if n % 2 == 1:
                    part.snapshot()
        except BaseException as exc:  # noqa: BLE001 - reported by the test's thread
            failed.append(exc)

    feeder = threading.Thread(target=feed, name="feeder", daemon=True)
    feeder.start()
    stats = part.writer.stats
    wait_for(lambda: stats.denied >= 4, 30, "several denied attempts")
    # Held back: the first epoch does not end, the bound stops the hand-over.
    assert len(fed) <= 2
    assert feeder.is_alive()
    assert stats.points == stats.refused_requests == 0
    errors = _logged(caplog, logging.ERROR)
    assert len(errors) == 1, errors  # once, not per retry
    assert f"(status {writer_case.status}:" in errors[0]
    assert {"403": f'GRANT WRITE ON "{cfg.database}" TO "{cfg.username}"',
            "401": str(cfg.password_file), "404": "init-db"}[case] in errors[0]
    assert f"the writer '{cfg.username}'" in errors[0]

    writer_case.fix()
    feeder.join(60)
    assert not feeder.is_alive()
    assert not failed, failed
    part.snapshot()
    expected = list(range(60))
    assert _stored(admin, cfg.database, run, RP_RAW, "seq") == expected
    assert _stored(admin, cfg.database, run, RP_1M, "count") == expected
    assert stats.points == 120  # each point written once, none dropped
    assert stats.refused_requests == 0
    assert len(_logged(caplog, logging.ERROR)) == 1
    assert any("takes the writer" in m and "again" in m for m in _logged(caplog, logging.INFO))
    # The first processor point after the fix says writes were held.
    shown = wait_for(lambda: [p for p in admin.query_points(
        f'SELECT * FROM "raw"."processor" WHERE "process" = \'{process}\' AND time > now() - 10m',
        db=cfg.database) if (p.get("write_denied") or 0) > 0], 20, "a processor point after the fix")
    assert shown[0]["write_denied_s"] > 0


def test_a_bad_line_is_refused_for_good_and_influxdb_keeps_the_good_lines_of_its_request(
        db_ready: StackInfo, admin: InfluxHTTP, caplog: pytest.LogCaptureFixture) -> None:
    """400 "partial write" on 1.6.7: the good lines are stored, the bad ones dropped (a field
    type conflict, a line that cannot be parsed); the writer counts the request once and
    does not send it again."""
    writer = make_writer(cloud_config_for_stack_influx(db_ready))
    attempts: list[bytes] = []
    write = writer.client.write

    def counting(lines: bytes, **kw: Any) -> None:
        attempts.append(lines)
        write(lines, **kw)

    writer.client.write = counting  # type: ignore[method-assign]
    run = f"pw-{time.monotonic_ns()}"
    t = (time.time_ns() // 1_000_000_000 - 600) * 1_000_000_000
    caplog.set_level(logging.INFO, logger=SINK_LOG)
    try:
        writer.write([(RP_RAW, f"s9_written,run={run} seq=1i {t}")])
        writer.write([(RP_RAW, f"s9_written,run={run} seq=2i {t + 1}"),
                      (RP_RAW, f's9_written,run={run} seq="two" {t + 2}'),  # type conflict
                      (RP_RAW, f"s9_written,run={run} seq= {t + 3}"),  # no value: unparsable
                      (RP_RAW, f"s9_written,run={run} seq=4i {t + 4}")])
    finally:
        writer.close()
    assert len(attempts) == 2
    assert _stored(admin, db_ready.database, run, RP_RAW, "seq") == [1, 2, 4]
    assert (writer.stats.refused_requests, writer.stats.denied, writer.stats.retries) == (1, 0, 0)
    (error,) = _logged(caplog, logging.ERROR)
    assert "refused lines of a write of 4 to policy raw for good (status 400: partial write" in error


# -- the start-up check of the writer ---------------------------------------------------------

def _run(config: dict[str, Any], tmp_path: Path, cmd: str = "run", *args: str
         ) -> subprocess.CompletedProcess[str]:
    path = tmp_path / "cloud.toml"
    path.write_text(to_toml(config))
    return subprocess.run([sys.executable, "-m", "urbanpulse.cli", "cloud", cmd, "--config", str(path),
                           *args], capture_output=True, text=True, timeout=60, env={**os.environ})


@pytest.mark.stack
@pytest.mark.slow
def test_cloud_run_with_a_writer_without_write_says_what_to_grant_and_ingests_until_granted(
        db_ready: StackInfo, read_only_user: tuple[str, Path], admin: InfluxHTTP,
        add_stack_node: Callable[[str, str], MqttCredentials], tmp_path: Path,
        request: pytest.FixtureRequest) -> None:
    """A start-up refusal no longer stops `cloud run` (exit 2 stopped the ingest as well, and
    the broker queues for it only up to `max_queued_messages`): it logs what to grant, the
    ingest takes and journals what the nodes publish, and the GRANT lets it all through
    without a restart. Real broker, real InfluxDB, real `cloud run` with its ingest."""
    user, password = read_only_user
    site, node = "hn-wstart", f"aq-{time.monotonic_ns() % 10**9}"
    creds = add_stack_node(site, node)
    state = tmp_path / "state"
    cloud = start_cloud_for_site(db_ready, state, site, request,
                                 {"username": user, "password_file": str(password)})
    wait_for(lambda: f"refuses the writer '{user}' (influx.username) writes to database "
             f"'{db_ready.database}' (403:" in cloud.log(), 60, "the refusal logged")
    assert f'GRANT WRITE ON "{db_ready.database}" TO "{user}"' in cloud.log()
    assert "Starting all the same" in cloud.log()
    wait_for(lambda: "ingest subscribed" in cloud.log(), 30, "the ingest to subscribe")

    t0 = (time.time_ns() // 3_600_000_000_000 - 2) * 3_600_000_000_000
    _publish_as_node(creds, _journal_batches(site, node, 0, 10, t0))
    journal = state / "journal"
    wait_for(lambda: _journaled_data(journal) == 10, 30, "the ingest to journal every message")
    assert cloud.proc is not None
    assert cloud.proc.poll() is None
    assert _raw_pm(admin, node) == []  # held: nothing could be written

    admin.query(f'GRANT WRITE ON "{db_ready.database}" TO {user}', post=True)
    wait_for(lambda: _raw_pm(admin, node) == list(range(100)), 90, "every reading stored once")
    cloud.stop()
    assert cloud.proc.returncode == 0, cloud.log()


def start_cloud_for_site(db_ready: StackInfo, state: Path, site: str, request: pytest.FixtureRequest,
                         influx: dict[str, str], **flow: Any) -> CloudProcess:
    """`cloud run` (with its ingest) on the session stack, taking only `site`'s topics in a
    shared group and session of its own, `influx` overriding its [influx] settings, `flow`
    its [flow] ones; stopped at the test's end."""
    config = cloud_config_for_stack(db_ready, state, **flow)
    config["influx"] |= influx
    config["mqtt"] |= {"node_filter": f"urbanpulse/v1/{site}/+",
                       "shared_group": f"g-{site}-{state.parent.name[-20:]}".replace("_", "-"),
                       "client_id": f"ingest-{site}-{state.parent.name[-20:]}"}
    path = state.parent / "cloud.toml"
    path.write_text(to_toml(config))
    cloud = CloudProcess(path, state.parent / "cloud.log")
    request.addfinalizer(cloud.stop)
    cloud.start()
    return cloud


@contextlib.contextmanager
def cloud_behind_proxy(db_ready: StackInfo, state: Path, site: str, request: pytest.FixtureRequest,
                       **flow: Any) -> Iterator[tuple[CloudProcess, PartitionProxy]]:
    """`start_cloud_for_site` writing to InfluxDB through a PartitionProxy (to cut or silence
    it), returned once its dataflow runs and its ingest has subscribed; the proxy closes
    when the block ends (InfluxDB gone: the writer's connection cut, a new one refused)."""
    url = urlsplit(db_ready.influx("writer").url)
    assert url.hostname is not None
    assert url.port is not None
    with PartitionProxy(url.hostname, url.port) as influx:
        cloud = start_cloud_for_site(db_ready, state, site, request,
                                     {"url": f"http://127.0.0.1:{influx.port}"}, **flow)
        wait_for(lambda: "starting: journals" in cloud.log(), 60, "the dataflow to start")
        wait_for(lambda: "ingest subscribed" in cloud.log(), 30, "the ingest to subscribe")
        yield cloud, influx


def _publish_as_node(creds: MqttCredentials, messages: list[tuple[str, bytes]]) -> None:
    client = make_client(f"pub-{time.monotonic_ns()}", creds, clean_start=True)
    connect_and_wait(client)
    try:
        for topic, payload in messages:
            client.publish(topic, payload, qos=1).wait_for_publish(10)
    finally:
        close_client(client)


def _journaled_data(journal_dir: Path) -> int:
    """Data messages in the ingest's journals under `journal_dir` (0 before it made any)."""
    count = 0
    for path in journal_dir.glob("journal-*.sqlite3"):
        with contextlib.closing(sqlite3.connect(path)) as db:
            count += db.execute("SELECT COUNT(*) FROM entries WHERE topic LIKE '%/data'").fetchone()[0]
    return count


def test_cloud_recompute_with_a_writer_without_write_exits_2_at_once(
        db_ready: StackInfo, read_only_user: tuple[str, Path], tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    user, password = read_only_user
    config = cloud_config_for_stack(db_ready, tmp_path / "state")
    config["influx"] |= {"username": user, "password_file": str(password)}
    path = tmp_path / "cloud.toml"
    path.write_text(to_toml(config))
    began = time.monotonic()
    assert cloud_main(["recompute", "--config", str(path), "--site", "wr-site"]) == 2
    assert time.monotonic() - began < 30  # not after --give-up-after (120 s)
    assert f'GRANT WRITE ON "{db_ready.database}" TO "{user}"' in capsys.readouterr().err


def test_the_writer_check_names_grant_all_for_a_writer_that_is_the_reader_too(
        db_ready: StackInfo, read_only_user: tuple[str, Path]) -> None:
    user, password = read_only_user
    cfg = replace(cloud_config_for_stack_influx(db_ready), username=user, password_file=password,
                  reader_username=user, reader_password_file=password)
    with pytest.raises(InfluxAccessError, match=f'GRANT ALL ON "{db_ready.database}" TO "{user}"'):
        check_writer(cfg)


def test_the_writer_check_names_the_password_file_and_init_db(
        db_ready: StackInfo, tmp_path: Path) -> None:
    cfg = cloud_config_for_stack_influx(db_ready)
    wrong = tmp_path / "wrong.password"
    wrong.write_text("not-the-password\n")
    with pytest.raises(InfluxAccessError, match=r"\(401: authorization failed\)") as denied:
        check_writer(replace(cfg, password_file=wrong))
    assert f"influx.password_file ({wrong})" in str(denied.value)
    with pytest.raises(InfluxAccessError, match=r"\(404: database not found.*init-db"):
        check_writer(replace(cfg, database=f"missing_{time.monotonic_ns()}"))


def test_the_writer_check_writes_nothing_and_lets_an_unreachable_influxdb_start(
        db_ready: StackInfo, admin: InfluxHTTP, caplog: pytest.LogCaptureFixture) -> None:
    cfg = cloud_config_for_stack_influx(db_ready)
    db = f"s9_empty_{time.monotonic_ns()}"
    admin.query(f'CREATE DATABASE "{db}"; CREATE RETENTION POLICY "raw" ON "{db}" DURATION 1d '
                "REPLICATION 1 DEFAULT", post=True)
    try:
        check_writer(replace(cfg, username=db_ready.influx("admin").username,
                             password_file=db_ready.influx("admin").password_file, database=db))
        assert admin.query("SHOW MEASUREMENTS", db=db) == []  # the check left no point
    finally:
        admin.query(f'DROP DATABASE "{db}"', post=True)
    check_writer(cfg)  # the stack's writer may write: no error
    check_writer(replace(cfg, api="v2", token_file=Path("/nonexistent")))  # v2: not checked
    (port,) = free_ports(1)
    with caplog.at_level(logging.WARNING, logger=SINK_LOG):
        check_writer(replace(cfg, url=f"http://127.0.0.1:{port}"))
    assert "the writer's rights could not be checked at start-up" in caplog.text


class _V1OnTwo(BaseHTTPRequestHandler):
    """InfluxDB 2.x's v1 /write, as its legacy write handler answers a request: the DBRP
    mapping of (db, rp) and the token's write permission on its bucket are checked first
    (404, 403), then the body, which must hold points (400 "writing requires points")."""

    status = 400
    body = b'{"code":"invalid","message":"writing requires points"}'

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.send_response(self.status)
        self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(self.body)))
        self.end_headers()
        self.wfile.write(self.body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


def test_the_writer_check_passes_on_influxdb_2_whose_v1_write_wants_points(
        db_ready: StackInfo, caplog: pytest.LogCaptureFixture) -> None:
    """A healthy 2.x deployment (v1 API, DBRP mappings) answers the check's write of no line
    with 400 "writing requires points", after it found the bucket and the write right: no
    refusal, and no warning at every start that the writer's rights could not be checked."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _V1OnTwo)
    thread = threading.Thread(target=server.serve_forever, args=(0.01,), daemon=True)
    thread.start()
    try:
        cfg = replace(cloud_config_for_stack_influx(db_ready),
                      url=f"http://127.0.0.1:{server.server_address[1]}")
        with caplog.at_level(logging.WARNING, logger=SINK_LOG):
            check_writer(cfg)
        assert _logged(caplog, logging.WARNING) == []
        # the same server denying the write is still a refusal
        _V1OnTwo.status = 403
        _V1OnTwo.body = b'{"code":"forbidden","message":"insufficient permissions for write"}'
        with pytest.raises(InfluxAccessError, match="insufficient permissions for write"):
            check_writer(cfg)
    finally:
        _V1OnTwo.status, _V1OnTwo.body = 400, b'{"code":"invalid","message":"writing requires points"}'
        server.shutdown()
        server.server_close()


# -- the whole processor: WRITE taken away while it runs, then given back ---------------------

def _journal_batches(site: str, node: str, start_seq: int, records: int, t0_ns: int
                     ) -> list[tuple[str, bytes]]:
    """`records` messages of 10 PM readings each (one sensor), numbered on from `start_seq`."""
    out = []
    for k in range(records):
        readings = [Reading("pm-1", "air.pm", t0_ns + (start_seq + k * 10 + i) * 1_000_000_000,
                            start_seq + k * 10 + i, {"pm25": 10.0 + i, "pm10": 20.0 + i})
                    for i in range(10)]
        out.append((data_topic(site, node), encode_batch(site, node, readings)))
    return out


def _raw_pm(admin: InfluxHTTP, node: str) -> list[int]:
    rows = admin.query_points(f"SELECT \"seq\" FROM \"raw\".\"air_pm\" WHERE \"node\" = '{node}'",
                              db="urbanpulse")
    return sorted(int(r["seq"]) for r in rows)


@pytest.mark.slow
def test_cloud_run_holds_its_writes_while_write_is_revoked_and_writes_each_reading_once_after(
        db_ready: StackInfo, admin: InfluxHTTP, tmp_path: Path, request: pytest.FixtureRequest) -> None:
    """The operator's slip the issue names: `GRANT READ` to the processor's writer, which in
    InfluxDB 1.x replaces its WRITE. Readings journaled meanwhile wait; GRANT WRITE again and
    every one is stored once. Real `cloud run` (its journal filled the way the ingest fills
    it), real InfluxDB."""
    user = f"wp_{time.monotonic_ns()}"
    password = tmp_path / "wp.password"
    password.write_text("wp-secret\n")
    admin.query(f"CREATE USER {user} WITH PASSWORD 'wp-secret'; "
                f'GRANT WRITE ON "{db_ready.database}" TO {user}', post=True)
    request.addfinalizer(lambda: admin.query(f"DROP USER {user}", post=True))
    site, node = "hn-wdenied", f"aq-{time.monotonic_ns() % 10**9}"
    state = tmp_path / "state"
    config = cloud_config_for_stack(db_ready, state, health_every_s=1.0)
    config["influx"] |= {"username": user, "password_file": str(password)}
    path = tmp_path / "cloud.toml"
    path.write_text(to_toml(config))
    cloud = CloudProcess(path, tmp_path / "cloud.log", ("--no-ingest",))
    request.addfinalizer(cloud.stop)
    journal = Journal(journal_path(state / "journal", "i0"), "i0").open()
    request.addfinalizer(journal.close)
    t0 = (time.time_ns() // 3_600_000_000_000 - 2) * 3_600_000_000_000
    journal.append(_journal_batches(site, node, 0, 20, t0), time.time_ns())
    cloud.start()
    wait_for(lambda: len(_raw_pm(admin, node)) == 200, 90, "the first 200 readings stored")

    admin.query(f'GRANT READ ON "{db_ready.database}" TO {user}', post=True)  # WRITE gone
    journal.append(_journal_batches(site, node, 200, 30, t0), time.time_ns())
    refusal = f"ERROR urbanpulse.cloud.sink InfluxDB refuses the writer '{user}'"
    wait_for(lambda: refusal in cloud.log(), 60, "the refusal logged")
    assert f'GRANT WRITE ON "{db_ready.database}" TO "{user}"' in cloud.log()
    assert cloud.proc is not None
    # A hold, asserted throughout HOLD_S (several retries): the process runs and waits,
    # nothing more is stored, and, below, nothing is dropped.
    until = time.monotonic() + HOLD_S
    while time.monotonic() < until:
        assert cloud.proc.poll() is None
        assert len(_raw_pm(admin, node)) == 200
        time.sleep(0.2)  # the hold's length is what is tested, not a synchronisation

    admin.query(f'GRANT WRITE ON "{db_ready.database}" TO {user}', post=True)
    wait_for(lambda: _raw_pm(admin, node) == list(range(500)), 90, "every reading stored once")
    assert cloud.log().count(refusal) == 1  # not once per retry
    # Logged once InfluxDB's answer is back, which can be just after the points are readable.
    (again,) = wait_for(lambda: re.findall(r"writes again, after ([0-9.]+) s refused", cloud.log()),
                        10, "the writes-again line")
    assert float(again) >= HOLD_S
    denied = wait_for(lambda: [r for r in admin.query_points(
        'SELECT "write_denied", "write_refused" FROM "raw"."processor" WHERE "process" = \'0\' '
        "AND time > now() - 5m", db="urbanpulse") if (r["write_denied"] or 0) > 0], 30,
        "a processor point counting the denied writes")
    assert denied[-1]["write_refused"] == 0
    cloud.stop()
    assert cloud.proc.returncode == 0, cloud.log()


def test_a_write_to_a_missing_retention_policy_is_waited_out_with_the_init_db_advice(
        db_ready: StackInfo, caplog: pytest.LogCaptureFixture) -> None:
    """InfluxDB 1.6 answers a write to a policy the database lacks with 500 "retention
    policy not found": retried like an outage (the points wait), and the warning says what
    to do instead of only "retrying"."""
    stop = threading.Event()
    stop.set()  # the first wait ends the write: one request to the real InfluxDB
    writer = make_writer(cloud_config_for_stack_influx(db_ready), stop)
    caplog.set_level(logging.INFO, logger=SINK_LOG)
    try:
        with pytest.raises(SinkError, match="stopped while InfluxDB was unavailable"):
            writer.write([("no_such_policy", "m v=1 1")])
    finally:
        writer.close()
    (warning,) = _logged(caplog, logging.WARNING)
    assert "retention policy not found" in warning
    assert "'no_such_policy' is missing" in warning
    assert "urbanpulse cloud init-db" in warning
    assert writer.stats.points == 0


def test_the_writer_check_names_init_db_when_the_policies_are_missing(
        db_ready: StackInfo, admin: InfluxHTTP, caplog: pytest.LogCaptureFixture) -> None:
    """A processor started before `cloud init-db` (found by the docs walk): the warning
    said only "retention policy not found: raw"."""
    cfg = cloud_config_for_stack_influx(db_ready)
    db = f"s11_no_policies_{time.monotonic_ns()}"
    admin.query(f'CREATE DATABASE "{db}"', post=True)
    try:
        with caplog.at_level(logging.WARNING, logger=SINK_LOG):
            check_writer(replace(cfg, username=db_ready.influx("admin").username,
                                 password_file=db_ready.influx("admin").password_file, database=db))
    finally:
        admin.query(f'DROP DATABASE "{db}"', post=True)
    assert "retention policy not found: raw" in caplog.text
    assert "create the policies with urbanpulse cloud init-db" in caplog.text
