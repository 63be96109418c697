"""The `processor` point's `state_free_bytes`: state.dir's free space, looked at when the
point is made and only then. Its exact value comes from a fake statvfs (a real disk's free
space changes under the test); one test looks at a real directory too."""

from __future__ import annotations

import os
from datetime import UTC, datetime
from pathlib import Path

from cloud.config import parse_cloud_config
from cloud.flow import processor_health
from cloud.health import ProcessorHealth
from cloud.journal import JournalRecord
from cloud.sink import SinkStats
from urbanpulse.clock import FakeClock

T0 = datetime(2026, 11, 29, 8, 0, tzinfo=UTC)


class FakeStatVfs:
    def __init__(self, available_blocks: int, frsize: int = 4096) -> None:
        self.available_blocks = available_blocks
        self.frsize = frsize
        self.paths: list[Path] = []

    def __call__(self, path: Path) -> os.statvfs_result:
        self.paths.append(path)
        b = self.available_blocks
        # bfree above bavail: the root-reserved blocks are not the processor's to use.
        return os.statvfs_result((4096, self.frsize, 10**8, b + 5000, b, 10**6, 10**6, 10**6, 0, 255))


def _fields(text: str) -> dict[str, str]:
    return dict(f.split("=") for f in text.split(" ")[1].split(","))


def test_the_point_holds_the_state_disks_available_bytes_at_report_time_only(tmp_path: Path) -> None:
    disk = FakeStatVfs(available_blocks=250_000)
    health = ProcessorHealth(0, 10.0, FakeClock(T0), state_dir=tmp_path, statvfs=disk)
    health.journal_read([JournalRecord("i0", 1, 1, "urbanpulse/v1/s/n/data", b"{}")], True, lambda: 0)
    assert disk.paths == []  # the reader's batches do not look at the disk
    assert _fields(health.report(SinkStats(), 0)[1])["state_free_bytes"] == f"{250_000 * 4096}i"
    disk.available_blocks = 1000
    assert _fields(health.report(SinkStats(), 0)[1])["state_free_bytes"] == f"{1000 * 4096}i"
    assert disk.paths == [tmp_path, tmp_path]


def test_without_a_state_dir_or_with_one_gone_the_point_goes_without_the_field(tmp_path: Path) -> None:
    without = ProcessorHealth(0, 10.0, FakeClock(T0))
    assert "state_free_bytes" not in _fields(without.report(SinkStats(), 0)[1])
    gone = ProcessorHealth(0, 10.0, FakeClock(T0), state_dir=tmp_path / "missing")
    fields = _fields(gone.report(SinkStats(), 0)[1])
    assert "state_free_bytes" not in fields
    assert "uptime_s" in fields


def test_the_processor_reports_on_its_configured_state_dir(tmp_path: Path) -> None:
    cfg = parse_cloud_config({"mqtt": {"password_file": "p", "ca_file": "c"},
                              "influx": {"password_file": "p"}, "state": {"dir": str(tmp_path)}})
    health = processor_health(cfg, 2)
    assert health.state_dir == tmp_path
    free = int(_fields(health.report(SinkStats(), 0)[1])["state_free_bytes"].rstrip("i"))
    st = os.statvfs(tmp_path)
    assert abs(free - st.f_bavail * st.f_frsize) < 256 * 1024 * 1024  # what others write meanwhile
