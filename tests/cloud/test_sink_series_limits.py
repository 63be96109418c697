"""InfluxDB 1.x's series limits (`[data] max-values-per-tag`, `max-series-per-database`)
refuse the points of new series with a 400 "partial write", worded like a refusal of the
lines themselves. The writer dropped them for good (counted and logged): every reading of a
sensor added past the limit lost, at the city's target of 100,000 sensors right at the
default `max-values-per-tag`. They are an operator's limits, not the points' fault: the
write is held, as a denied write is, with what to raise, and goes on once InfluxDB takes
the new series (found by review). On a private InfluxDB 1.6.7 started with tight limits."""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path

import pytest

from cloud.config import parse_cloud_config
from cloud.initdb import init_db
from cloud.logic.records import RP_RAW
from cloud.sink import WriteFailure, make_writer, write_failure
from cloud.stack_config import cloud_config_for_stack
from urbanpulse.influx_http import InfluxError, InfluxHTTP
from urbanpulse.stack import influxd, lifecycle
from urbanpulse.stack.config import StackConfig
from urbanpulse.testing import wait_for

SINK_LOG = "urbanpulse.cloud.sink"


@pytest.fixture(params=["values-per-tag", "series-per-database"])
def limited(request: pytest.FixtureRequest, own_stack_config: StackConfig,
            monkeypatch: pytest.MonkeyPatch) -> tuple[str, StackConfig]:
    if request.param == "values-per-tag":
        monkeypatch.setattr(influxd, "MAX_VALUES_PER_TAG", 3)
    else:
        monkeypatch.setattr(influxd, "MAX_SERIES_PER_DATABASE", 3)
    return request.param, own_stack_config


def test_points_past_influxdbs_series_limits_are_held_not_dropped(
        limited: tuple[str, StackConfig], tmp_path: Path, caplog: pytest.LogCaptureFixture,
        monkeypatch: pytest.MonkeyPatch) -> None:
    which, config = limited
    info = lifecycle.up(config)
    creds = info.influx("admin")
    admin = InfluxHTTP(creds.url, creds.username, creds.password())
    init_db(admin, info.database, parse_cloud_config(
        {"mqtt": {"password_file": "x", "ca_file": "x"}, "influx": {"password_file": "x"}}).retention)
    writer = make_writer(parse_cloud_config(cloud_config_for_stack(info, tmp_path / "state")).influx)
    t = (time.time_ns() // 1_000_000_000 - 600) * 1_000_000_000
    # Three series, one request each: InfluxDB checks a request's new series against the
    # count before it, so the third reaches the limit of 3 and the next request is refused.
    for i in (1, 2, 3):
        writer.write([(RP_RAW, f"limits,sensor=s{i} v={i} {t + i}")])
    caplog.set_level(logging.INFO, logger=SINK_LOG)
    done = threading.Event()
    failed: list[BaseException] = []

    def write_more() -> None:
        try:
            writer.write([(RP_RAW, f"limits,sensor=s{i} v={i} {t + i}") for i in range(4, 7)])
        except BaseException as exc:  # noqa: BLE001 - reported by the test's thread
            failed.append(exc)
        finally:
            done.set()

    thread = threading.Thread(target=write_more, name="writer", daemon=True)
    thread.start()
    wait_for(lambda: writer.stats.denied >= 1 or done.is_set(), 30, "the write held or done")
    assert not done.is_set(), (failed, writer.stats)  # not dropped as refused lines
    assert writer.stats.refused_requests == 0
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1, errors
    assert f"max-{which}" in errors[0], errors[0]
    assert "influxdb_max_" in errors[0], errors[0]

    # The operator raises the limit and restarts InfluxDB; the held write goes on.
    monkeypatch.setattr(influxd, "MAX_VALUES_PER_TAG", 100_000)
    monkeypatch.setattr(influxd, "MAX_SERIES_PER_DATABASE", 1_000_000)
    lifecycle.down(config)
    lifecycle.up(config)
    assert done.wait(60), writer.stats
    assert not failed, failed
    rows = admin.query_points('SELECT "v" FROM "raw"."limits"', db=info.database)
    assert sorted(float(r["v"]) for r in rows) == [1, 2, 3, 4, 5, 6]  # type: ignore[arg-type]
    writer.close()
    admin.close()


def test_the_series_limits_answer_is_held_the_other_partial_writes_refuse_lines() -> None:
    headers = "1.6.7"
    tag = InfluxError(400, 'partial write: max-values-per-tag limit exceeded (4/3): '
                      'measurement="m" tag="sensor" value="s4" dropped=1', version=headers)
    series = InfluxError(400, "partial write: max-series-per-database limit exceeded: (3) "
                         "dropped=1", version=headers)
    conflict = InfluxError(400, 'partial write: field type conflict: input field "v" on '
                           'measurement "m" is type string, already exists as type float '
                           'dropped=1', version=headers)
    assert write_failure(tag) is WriteFailure.DENIED
    assert write_failure(series) is WriteFailure.DENIED
    assert write_failure(conflict) is WriteFailure.REJECTED
