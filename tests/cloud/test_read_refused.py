"""A read of raw points back that InfluxDB refuses for good (issue 6), on the session's real
InfluxDB with auth: a reader user that has WRITE but not READ on the database, the
least-privilege mistake an operator can make.

Before, the refusal (a 403) went up out of the sink, the epoch was not committed and the
processor exited, read the same epoch after its restart and asked again: a crash loop that
stopped all data. Now the processor goes on writing, holds the refused window rebuilds and
replay spans in its partition's snapshot (a crash loses none), tries them again at the
replay interval, logs each once, reports them in its `processor` point, and rebuilds them
once READ is granted. `cloud run` started with such a reader names the grant and runs on
(it used to stop, and its ingest with it).
"""

from __future__ import annotations

import logging
import socket
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from cloud.cli import main as cloud_main
from cloud.config import CloudInflux
from cloud.errors import InfluxAccessError, ReadRefused
from cloud.flow import InfluxPartition, held_windows_in, pack_windows, unpack_windows
from cloud.health import ProcessorHealth
from cloud.logic.domain.hospital_site import HospitalSite
from cloud.logic.domain_replay import ReplaySpan, replay_requests
from cloud.logic.node import NodeState
from cloud.logic.records import RP_RAW, Point
from cloud.sink import InfluxWriter, check_reader, make_writer
from cloud.stack_config import cloud_config_for_stack, to_toml
from tests.cloud.logic.test_domain_replay import HORIZON, backlog_after_fresh
from tests.cloud.test_domain_replay_influx import (
    _expected,
    _moved,
    _scenario,
    _stored,
    cloud_config_for_stack_influx,
)
from tests.conftest import CloudProcess
from urbanpulse.clock import SystemClock
from urbanpulse.influx_http import (
    InfluxCAFileError,
    InfluxError,
    InfluxHTTP,
    InfluxTLSError,
    InfluxUnavailable,
)
from urbanpulse.stack import StackInfo
from urbanpulse.stack.process import free_ports
from urbanpulse.testing import wait_for

SINK_LOG = "urbanpulse.cloud.sink"


# -- which errors are refused for good --------------------------------------------------

def test_4xx_and_errors_in_an_answer_are_refused_for_good_5xx_and_no_answer_can_pass() -> None:
    for status in (400, 401, 403, 404, 413, 200):  # 200: InfluxDB answered with an error
        assert not InfluxError(status, "x").retryable, status
    for status in (0, 500, 502, 503):
        assert InfluxError(status, "x").retryable, status
    assert InfluxUnavailable("http://h:1", "refused").retryable
    assert InfluxTLSError("https://h:1", "the system's CAs", "bad cert").retryable
    assert [s for s in (0, 200, 400, 401, 403, 404, 500) if InfluxError(s, "x").denied] == [401, 403]
    ca = InfluxCAFileError(Path("/none.pem"), "cannot be read")
    assert (ca.retryable, ca.denied) == (False, False)


def test_a_read_is_retried_while_it_can_pass_and_raises_read_refused_once_refused() -> None:
    waits: list[float] = []
    writer = InfluxWriter(_NoWrites(), "db", 10, wait=lambda d: waits.append(d) is not None)
    answers: Iterator[InfluxError] = iter([
        InfluxUnavailable("http://h:1", "connection refused"), InfluxError(503, "busy"),
        InfluxError(403, '{"error":"error authorizing query: u not authorized, requires READ on db"}'),
    ])

    def read() -> int:
        raise next(answers)

    with pytest.raises(ReadRefused) as refused:
        writer._retrying(read)
    assert len(waits) == 2  # the two that can pass were waited out
    assert refused.value.status == 403
    assert "requires READ on db" in refused.value.reason
    assert isinstance(refused.value.__cause__, InfluxError)


class _NoWrites:
    def write(self, lines: bytes, *, db: str, rp: str | None = None, precision: str = "ns") -> None:
        raise AssertionError("no write expected")


# -- on the real InfluxDB -----------------------------------------------------------------

@pytest.fixture
def write_only_reader(db_ready: StackInfo, admin: InfluxHTTP, tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """A user with WRITE and no READ on the database, and its password file."""
    user = f"wo_{time.monotonic_ns()}"
    password = tmp_path / "wo.password"
    password.write_text("wo-secret\n")
    admin.query(f"CREATE USER {user} WITH PASSWORD 'wo-secret'; "
                f'GRANT WRITE ON "{db_ready.database}" TO {user}', post=True)
    yield user, password
    admin.query(f"DROP USER {user}", post=True)


def _influx(info: StackInfo, reader: tuple[str, Path]) -> CloudInflux:
    return replace(cloud_config_for_stack_influx(info), reader_username=reader[0],
                   reader_password_file=reader[1])


def _feed(part: InfluxPartition, suffix_shift: tuple[int, str]) -> int:
    """The backlog scenario's messages through the flow's steps into `part`, an epoch end
    every 5 messages; the raw points handed over."""
    shift, suffix = suffix_shift
    nodes: dict[str, NodeState] = {}
    sites: dict[str, HospitalSite] = {}
    raw = 0
    for i, data in enumerate(_moved(backlog_after_fresh(), shift, suffix)):
        state = nodes.setdefault(data.key, NodeState(HORIZON, detect=False))
        points: list[Point] = state.process(data)
        asks = replay_requests(data.site, data.node, state.domain.take_late())
        updates = state.take_site_updates()
        if updates:
            points += sites.setdefault(data.site, HospitalSite(HORIZON)).process(data.site, updates)
        raw += sum(1 for rp, _ in points if rp == RP_RAW)
        part.write_batch([points + asks])
        if i % 5 == 4:
            part.snapshot()
    return raw


def _raw_count(reader: InfluxHTTP, db: str, suffix: str) -> int:
    rows = reader.query_points(f'SELECT count("seq") FROM "{RP_RAW}"./.*/ WHERE "site" =~ /-{suffix}$/',
                               db=db)
    return sum(int(r["count"]) for r in rows)


def _counting_reads(writer: InfluxWriter, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The queries the writer's reader is asked (refused ones too)."""
    asked: list[str] = []
    assert writer.reader is not None
    results = writer.reader.results

    def counting(q: str, **kw: Any) -> Any:
        asked.append(q)
        return results(q, **kw)

    monkeypatch.setattr(writer.reader, "results", counting)
    return asked


def _refusals(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records
            if r.name == SINK_LOG and r.levelno == logging.ERROR and "refused the reader" in r.getMessage()]


def _processor_points(reader: InfluxHTTP, db: str, process: int) -> list[dict[str, Any]]:
    return reader.query_points(f'SELECT * FROM "raw"."processor" WHERE "process" = \'{process}\' '
                               "AND time > now() - 10m ORDER BY time", db=db)


def test_refused_reads_are_held_across_a_crash_the_rest_written_and_rebuilt_once_read_is_granted(
        db_ready: StackInfo, admin: InfluxHTTP, reader: InfluxHTTP,
        write_only_reader: tuple[str, Path], caplog: pytest.LogCaptureFixture,
        monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest) -> None:
    db = db_ready.database
    cfg = _influx(db_ready, write_only_reader)
    scenario = _scenario()
    suffix = scenario[1]
    caplog.set_level(logging.INFO, logger=SINK_LOG)

    # The processor as it ran: every message handed over, every epoch end passed.
    first = InfluxPartition(make_writer(cfg), replay_interval_s=0.2)
    request.addfinalizer(first.writer.close)
    request.addfinalizer(first.close)
    raw = _feed(first, scenario)
    held = first.snapshot()
    stats = first.writer.stats
    assert stats.refused_requests == 0
    assert _raw_count(reader, db, suffix) == raw > 0  # every raw point written
    assert stats.recomputed == stats.domain_replays == 0
    windows = sorted(held_windows_in(held))
    spans = [t for t in held if not t.startswith(InfluxPartition.HELD_WINDOW[:-1])]
    assert windows
    assert spans
    assert (stats.windows_refused, first.held_windows) == (len(windows), len(windows))
    # The snapshot (pickled at every epoch end) holds a sensor's windows of one width as
    # runs of starts, not one entry per window: a city's backlog while READ is revoked
    # would otherwise be tens of MB every 2 s.
    sensors = {tuple(t.split("|")[:7]) for t in windows}
    assert len([t for t in held if t.startswith("window")]) <= len(sensors) < len(windows)
    assert stats.spans_refused == len({t.rsplit("|", 2)[0] for t in spans}) > 0
    logged = _refusals(caplog)
    assert logged
    assert all("requires READ on" in m and write_only_reader[0] in m for m in logged)
    assert len(logged) == len(set(logged))  # once per span or node, not per retry

    # A crash: the next process resumes the snapshot and keeps what is still refused.
    caplog.clear()
    process = 900 + time.monotonic_ns() % 99
    health = ProcessorHealth(process, 0.2, SystemClock())
    second = InfluxPartition(make_writer(cfg), replay_interval_s=0.2, held_replays=held, health=health)
    request.addfinalizer(second.writer.close)
    request.addfinalizer(second.close)
    asked = _counting_reads(second.writer, monkeypatch)
    second.start()
    assert second.snapshot()
    assert asked
    tried = len(asked)
    wait_for(lambda: second.snapshot() and len(asked) > tried, 20, "a retry after the replay interval")
    kept = second.snapshot()
    assert held_windows_in(kept) == set(windows)
    assert {t.rsplit("|", 2)[0] for t in kept if "|" in t and not t.startswith("window")} \
        == {t.rsplit("|", 2)[0] for t in spans}
    logged = _refusals(caplog)
    assert len(logged) == len(set(logged)) == stats.spans_refused + len(
        {tuple(t.split("|")[2:4]) for t in windows})  # once per span and per node's windows
    refused_now = wait_for(lambda: [p for p in _processor_points(reader, db, process)
                                    if (p["domain_spans_refused"] or 0) > 0], 20,
                           "a processor point counting the refused spans")
    assert refused_now[-1]["windows_refused"] == len(windows)

    # READ granted: the held requests run at an epoch end after the interval.
    admin.query(f'GRANT READ ON "{db}" TO {write_only_reader[0]}', post=True)
    wait_for(lambda: not second.snapshot(), 30, "the held requests rebuilt once READ is granted")
    s2 = second.writer.stats
    assert (s2.spans_refused, s2.windows_refused, second.held_windows) == (0, 0, 0)
    assert s2.recomputed == len(windows)
    assert s2.domain_replays > 0
    assert any("again" in r.getMessage() for r in caplog.records if r.levelno == logging.INFO
               and r.name == SINK_LOG)
    wait_for(lambda: [p for p in _processor_points(reader, db, process)
                      if p["domain_spans_refused"] == 0 and p["windows_refused"] == 0
                      and p["domain_spans_replayed"] > 0], 20, "a processor point with nothing refused")
    shift = scenario[0]
    stored = _stored(reader, db, [f"bv-{suffix}", f"hk-{suffix}"])
    expected = _expected(shift, suffix)
    assert {k: stored.get(k) for k in expected if stored.get(k) != expected[k]} == {}


def test_a_refused_span_is_not_tried_again_within_one_flush_even_at_interval_0_or_close(
        db_ready: StackInfo, write_only_reader: tuple[str, Path], monkeypatch: pytest.MonkeyPatch,
        request: pytest.FixtureRequest) -> None:
    """replay_interval_s = 0 makes every held span due at every epoch end, and close makes
    every one due: a refused one is tried once per flush, so both return."""
    part = InfluxPartition(make_writer(_influx(db_ready, write_only_reader)), replay_interval_s=0)
    request.addfinalizer(part.writer.close)
    asked = _counting_reads(part.writer, monkeypatch)
    hour = (time.time_ns() // 3_600_000_000_000 - 5) * 3_600_000_000_000
    span = f"traffic|rz-{time.monotonic_ns()}|tl|{hour}|{hour + 3_600_000_000_000}"
    part.write_batch([[("__domain_replay__", span)]])
    assert part.snapshot() == [span]
    assert len(asked) == 1
    assert part.snapshot() == [span]
    assert len(asked) == 2
    part.close()
    assert len(asked) == 3
    assert part.held_replays == 1


# -- `cloud run`'s start-up step ----------------------------------------------------------

def _start(db_ready: StackInfo, tmp_path: Path, request: pytest.FixtureRequest,
           **reader: str) -> CloudProcess:
    config = cloud_config_for_stack(db_ready, tmp_path / "state", health_every_s=1.0)
    config["influx"] |= reader
    path = tmp_path / "cloud.toml"
    path.write_text(to_toml(config))
    cloud = CloudProcess(path, tmp_path / "cloud.log", ("--no-ingest",))
    request.addfinalizer(cloud.stop)
    cloud.start()
    return cloud


def _runs_and_writes(cloud: CloudProcess, admin: InfluxHTTP, db: str) -> None:
    """The refusal did not stop the run: the process starts its dataflow and writes its own
    `processor` point (one whose uptime is no older than this wait: not another test's)."""
    began = time.time_ns()
    wait_for(lambda: "processor 0 of 1 starting" in cloud.log(), 60, "the dataflow to start")
    wait_for(lambda: admin.query_points(
        f'SELECT "uptime_s" FROM "raw"."processor" WHERE time > {began} AND '
        f'"uptime_s" < {(time.time_ns() - began) / 1e9 + 5}', db=db), 60,
        "a processor point of this process")
    assert cloud.proc is not None
    assert cloud.proc.poll() is None
    cloud.stop()
    assert cloud.proc.returncode == 0, cloud.log()


@pytest.mark.slow
def test_cloud_run_with_a_reader_without_read_says_what_to_grant_and_runs(
        db_ready: StackInfo, write_only_reader: tuple[str, Path], admin: InfluxHTTP, tmp_path: Path,
        request: pytest.FixtureRequest) -> None:
    """Refused at start, the reader no longer stops `cloud run` (and its ingest): the
    rebuilds' reads are held and retried as when READ is lost at run time."""
    user, password = write_only_reader
    cloud = _start(db_ready, tmp_path, request, reader_username=user, reader_password_file=str(password))
    wait_for(lambda: f"read database '{db_ready.database}' (403" in cloud.log(), 60, "the refusal logged")
    assert f"the reader '{user}'" in cloud.log()
    assert f'GRANT READ ON "{db_ready.database}" TO "{user}"' in cloud.log()
    assert "Starting all the same" in cloud.log()
    _runs_and_writes(cloud, admin, db_ready.database)


@pytest.mark.slow
def test_cloud_run_with_a_reader_influxdb_does_not_know_names_its_password_file_and_runs(
        db_ready: StackInfo, admin: InfluxHTTP, tmp_path: Path, request: pytest.FixtureRequest) -> None:
    password = tmp_path / "wrong.password"
    password.write_text("not-the-password\n")
    cloud = _start(db_ready, tmp_path, request, reader_password_file=str(password))
    wait_for(lambda: "(401: authorization failed)" in cloud.log(), 60, "the refusal logged")
    assert str(password) in cloud.log()
    _runs_and_writes(cloud, admin, db_ready.database)


def test_for_a_reader_that_is_the_writer_too_the_check_names_grant_all_not_read(
        db_ready: StackInfo, write_only_reader: tuple[str, Path]) -> None:
    """In InfluxDB 1.x GRANT READ would replace the user's WRITE (checked on 1.6)."""
    user, password = write_only_reader
    cfg = replace(cloud_config_for_stack_influx(db_ready), username=user, password_file=password,
                  reader_username=user, reader_password_file=password)
    with pytest.raises(InfluxAccessError, match=f'GRANT ALL ON "{db_ready.database}" TO "{user}"'):
        check_reader(cfg)


def test_the_check_passes_for_the_reader_and_lets_an_unreachable_influxdb_start(
        db_ready: StackInfo, caplog: pytest.LogCaptureFixture) -> None:
    cfg = cloud_config_for_stack_influx(db_ready)
    check_reader(cfg)  # the stack's reader has READ: no error
    check_reader(replace(cfg, reader_password_file=None))  # no reader: nothing to check
    (port,) = free_ports(1)
    with caplog.at_level(logging.WARNING, logger=SINK_LOG):
        check_reader(replace(cfg, url=f"http://127.0.0.1:{port}"))
    assert "could not be checked at start-up" in caplog.text


def test_the_check_waits_for_a_hung_influxdb_no_longer_than_its_own_timeout(
        db_ready: StackInfo, caplog: pytest.LogCaptureFixture) -> None:
    """A server that takes the connection and never answers (influx.timeout_s is 30 s)."""
    with socket.create_server(("127.0.0.1", 0)) as hung, \
            caplog.at_level(logging.WARNING, logger=SINK_LOG):
        cfg = replace(cloud_config_for_stack_influx(db_ready),
                      url=f"http://127.0.0.1:{hung.getsockname()[1]}")
        began = time.monotonic()
        check_reader(cfg, timeout_s=0.5)
        took = time.monotonic() - began
    assert took < 5
    assert "timed out" in caplog.text


def test_cloud_recompute_with_a_reader_without_read_exits_3_with_influxdbs_reason(
        db_ready: StackInfo, write_only_reader: tuple[str, Path], tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    """The operator's command is no processor: it stops at once, saying why (no retries)."""
    user, password = write_only_reader
    config = cloud_config_for_stack(db_ready, tmp_path / "state")
    config["influx"] |= {"reader_username": user, "reader_password_file": str(password)}
    path = tmp_path / "cloud.toml"
    path.write_text(to_toml(config))
    assert cloud_main(["recompute", "--config", str(path), "--site", "rr-site"]) == 3
    err = capsys.readouterr().err
    assert "urbanpulse cloud recompute: reading raw points back: InfluxDB error 403" in err
    assert f"requires READ on {db_ready.database}" in err


def test_held_windows_are_snapshotted_as_runs_and_old_snapshots_still_load() -> None:
    minute, hour = 60 * 10**9, 3600 * 10**9
    t0 = 1_795_903_200 * 10**9
    head = "agg_1m|air_pm|hk|aq-1|pm-1|air.pm"
    texts = ({f"{head}|{minute}|{t0 + i * minute}" for i in (*range(300), *range(301, 400))}
             | {f"agg_1h|air_pm|hk|aq-1|pm-1|air.pm|{hour}|{t0 + i * hour}" for i in range(5)})
    packed = pack_windows(texts)
    assert sorted(packed) == sorted([
        f"windows|{head}|{minute}|{t0}x300,{t0 + 301 * minute}x99",
        f"windows|agg_1h|air_pm|hk|aq-1|pm-1|air.pm|{hour}|{t0}x5"])
    assert held_windows_in(packed) == texts
    assert {t for e in packed for t in unpack_windows(e)} == texts
    # a partition resumes either form: runs, and one window an entry (730f4e9's)
    span = ReplaySpan("traffic", "hk", "tl", t0, t0 + hour).encode()
    old = [f"window|{t}" for t in sorted(texts)[:3]]
    part = InfluxPartition(InfluxWriter(_NoWrites(), "city", 10), held_replays=[*packed, *old, span])
    assert part.held_windows == len(texts)
    assert part.held_replays == 1


def _waiting(thread: threading.Thread | None) -> bool:
    """Whether `thread` sits in a condition's wait."""
    assert thread is not None
    frame = sys._current_frames().get(thread.ident or -1)
    return frame is not None and frame.f_code.co_name == "wait"


def test_an_epoch_end_that_waits_while_held_replays_fall_due_wakes_the_writer(
        db_ready: StackInfo, admin: InfluxHTTP, write_only_reader: tuple[str, Path],
        request: pytest.FixtureRequest) -> None:
    """Found by a CI run, where the test above hung: the writer's wait has no deadline
    without a health point, and held replays fall due by time alone. An epoch end that
    was waiting for something else when their interval passed then waited for them, and
    the writer, which had looked before, slept on: both for ever (with health, until the
    next health point). White-box: the partition's clock is a fake, its held requests were
    last tried at 0, and the epoch end is made to wait by a replay marked under way."""
    cfg = _influx(db_ready, write_only_reader)
    first = InfluxPartition(make_writer(cfg), replay_interval_s=10.0)
    request.addfinalizer(first.writer.close)
    request.addfinalizer(first.close)
    _feed(first, _scenario())
    held = first.snapshot()  # refused: held
    assert held
    admin.query(f'GRANT READ ON "{db_ready.database}" TO {write_only_reader[0]}', post=True)
    now = [0.0]
    part = InfluxPartition(make_writer(cfg), replay_interval_s=10.0, held_replays=held,
                           monotonic=lambda: now[0])
    request.addfinalizer(part.writer.close)
    request.addfinalizer(part.close)
    with part._cond:
        part._last_replay = dict.fromkeys(part._replays, 0.0)
        part._windows_refused_at = 0.0
        part._replaying = True
    ended = threading.Event()
    epoch_end = threading.Thread(target=lambda: (part.snapshot(), ended.set()), daemon=True)
    epoch_end.start()  # its flush starts the writer, which finds nothing due and sleeps
    wait_for(lambda: part._thread is not None and _waiting(part._thread) and _waiting(epoch_end),
             10, "the epoch end waiting, the writer asleep")
    with part._cond:  # the interval passes, the replay under way ends: nobody is told
        now[0] = 100.0
        part._replaying = False
    wait_for(ended.is_set, 10, "the epoch end, once the writer ran the replays now due")
    assert (part.held_replays, part.held_windows) == (0, 0)
