"""The sizing benchmark on real parts: a private influxd whose shards are compacted and
measured, the cloud journal and the edge's outbox (SQLite). Sizes depend on the data, so the
assertions are on what must hold whatever the machine: stored points are the distinct
series and times of what was written, every measured file holds its data, and a message
that carries one reading costs more per reading than one that carries hundreds."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.influx.points import PointSet, make_points, series_key, timestamp
from bench.pipeline.workload import generate
from bench.sizing import influx_disk, journal_disk, outbox_disk
from bench.sizing.errors import SizingError
from bench.sizing.files import disk_bytes
from bench.sizing.run import NOW, main
from cloud.logic.records import RP_1H, RP_1M, RP_RAW


@pytest.fixture(scope="module")
def points() -> PointSet:
    return make_points(4000, now=NOW)


def test_stored_points_are_the_distinct_series_and_times(points: PointSet) -> None:
    minute = [ln for rp, ln in points.points if rp == RP_1M]
    written, stored = influx_disk.stored_points(points, RP_1M)
    assert written == len(minute)
    # a window re-emitted as readings arrive is written again and stored once
    assert stored == len({(series_key(ln), timestamp(ln)) for ln in minute}) < written


def test_influx_shards_are_measured_once_compacted(points: PointSet, tmp_path: Path) -> None:
    disk = influx_disk.measure(points, tmp_path)
    assert disk.readings == points.readings
    assert [r.rp for r in disk.rps] == [RP_RAW, RP_1M, RP_1H]
    for r in disk.rps:
        assert r.shards >= 1, r
        assert r.tsm_files >= r.shards, r  # everything left the WAL for TSM files
        assert 0 < r.stored <= r.written
        assert r.bytes > 0
    assert disk.wal_bytes <= influx_disk.WAL_LEFT_BYTES
    assert disk.total_per_reading == pytest.approx(
        (sum(r.bytes for r in disk.rps) + disk.series_file_bytes) / points.readings)


def test_compaction_wait_gives_up_while_a_shard_keeps_changing(tmp_path: Path) -> None:
    data, wal = tmp_path / "data", tmp_path / "wal"
    data.mkdir()
    wal.mkdir()
    (data / "000001-01.tsm.tmp").write_bytes(b"x" * 4096)  # a compaction that never ends
    with pytest.raises(SizingError, match="still changed"):
        influx_disk.wait_compacted(data, wal, timeout_s=1.5)


def test_journal_costs_more_per_reading_in_messages_of_one(tmp_path: Path) -> None:
    one, many = (journal_disk.measure(generate(3000, batch=b, now=NOW), tmp_path / f"j{b}.sqlite3")
                 for b in (1, 500))
    assert one.readings_per_message == 1.0
    assert many.readings_per_message == pytest.approx(500, rel=0.05)
    assert one.bytes == disk_bytes(tmp_path / "j1.sqlite3")  # checkpointed: no WAL left beside it
    assert one.per_reading > 1.5 * many.per_reading


def test_outbox_holds_every_reading_and_counts_its_empty_size_apart(tmp_path: Path) -> None:
    workload = generate(3000, batch=1, now=NOW)
    nodes = outbox_disk.measure(workload, tmp_path)
    assert sum(n.readings for n in nodes) == workload.readings
    for n in nodes:
        assert 0 < n.empty_bytes < n.bytes
        assert 20 < n.per_reading < 1000, n  # a row: sensor, kind, stamps, JSON values
        assert n.hours_at_max_rows == pytest.approx(outbox_disk.MAX_ROWS / n.readings_per_hour)


def test_the_command_prints_every_part(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                      monkeypatch: pytest.MonkeyPatch) -> None:
    # The shards' sizes are sampled every 0.2 s, not 1 s: only the report's parts are checked
    # here; the wait for the compaction at its own pace is test_influx_shards_are_measured_once_compacted's.
    monkeypatch.setattr(influx_disk, "POLL_S", 0.2)
    assert main(["--readings", "2000", "--outbox-readings", "1000", "--workdir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    for text in ("InfluxDB: ", RP_RAW, RP_1M, RP_1H, "Cloud journal", "Node outbox"):
        assert text in out
