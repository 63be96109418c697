"""The free-space floor (state.min_free_bytes): the ingest journals nothing while the state
disk has less free, and resumes by itself. The disk's free space comes from a fake statvfs
(filling a real disk to a floor is not possible here, and a tiny filesystem would need
mount privileges); the journal, the broker (the session's Mosquitto) and the ingest are
real."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from cloud.config import DEFAULT_MIN_FREE_BYTES, parse_cloud_config
from cloud.ingest import Ingest
from cloud.journal import Journal, journal_path
from cloud.state_disk import CHECK_EVERY_S, FreeSpaceFloor, free_bytes
from tests.cloud.ingest_parts import Node, batch_payload, cloud_mqtt, ingest_log, journal_rows, node_on_stack
from urbanpulse.clock import FakeClock
from urbanpulse.errors import ConfigError
from urbanpulse.stack import StackInfo
from urbanpulse.testing import wait_for

BASE: dict[str, Any] = {"mqtt": {"password_file": "p", "ca_file": "c"}, "influx": {"password_file": "p"}}
FRSIZE = 4096


@pytest.fixture
def node(stack: StackInfo, add_stack_node: Any, tmp_path: Path) -> Iterator[Node]:
    yield from node_on_stack(add_stack_node, tmp_path)


class FakeStatVfs:
    """A filesystem with `free` bytes available, counting the looks at it."""

    def __init__(self, free: int) -> None:
        self.free = free
        self.calls = 0

    def __call__(self, path: Path) -> os.statvfs_result:
        self.calls += 1
        blocks = self.free // FRSIZE
        return os.statvfs_result((FRSIZE, FRSIZE, 10**9, blocks, blocks, 10**6, 10**6, 10**6, 0, 255))


def test_min_free_bytes_defaults_to_a_gibibyte_and_is_validated_by_name() -> None:
    assert parse_cloud_config(BASE).state_min_free_bytes == DEFAULT_MIN_FREE_BYTES == 1 << 30
    assert parse_cloud_config({**BASE, "state": {"min_free_bytes": 0}}).state_min_free_bytes == 0
    for bad, why in ((-1, "must be >= 0"), (True, "must be int"), ("1G", "must be int"),
                     (1.5, "must be int")):
        with pytest.raises(ConfigError, match=rf"state\.min_free_bytes.*{why}"):
            parse_cloud_config({**BASE, "state": {"min_free_bytes": bad}})


def test_the_floor_looks_at_the_disk_at_most_once_a_second(tmp_path: Path) -> None:
    clock = FakeClock(datetime(2026, 11, 29, tzinfo=UTC))
    disk = FakeStatVfs(free=10 * FRSIZE)
    floor = FreeSpaceFloor(tmp_path, 20 * FRSIZE, clock, statvfs=disk)
    assert "40960 bytes free" in (floor.shortage() or "")
    disk.free = 30 * FRSIZE
    clock.advance(CHECK_EVERY_S / 2)
    assert floor.shortage() is not None
    assert disk.calls == 1
    clock.advance(CHECK_EVERY_S / 2)
    assert floor.shortage() is None
    assert disk.calls == 2


def test_a_floor_of_zero_never_looks(tmp_path: Path) -> None:
    disk = FakeStatVfs(free=0)
    floor = FreeSpaceFloor(tmp_path, 0, FakeClock(datetime(2026, 11, 29, tzinfo=UTC)), statvfs=disk)
    assert floor.shortage() is None
    assert disk.calls == 0


def test_pages_a_trim_freed_in_the_journal_count_as_room(tmp_path: Path) -> None:
    """The processor's trim frees pages inside the journal file, not on the disk: an ingest
    held by the floor must see them, or it would wait for space that never comes back."""
    clock = FakeClock(datetime(2026, 11, 29, tzinfo=UTC))
    journal = Journal(journal_path(tmp_path, "i0"), "i0").open()
    try:
        last = journal.append([("t", b"x" * 3000)] * 100, 1)
        floor = FreeSpaceFloor(tmp_path, 200_000, clock, journal.free_page_bytes, FakeStatVfs(free=0))
        assert floor.shortage() is not None
        journal.trim(last + 1, 1 << 62)  # every record consumed and old enough
        assert journal.free_page_bytes() >= 300_000
        clock.advance(CHECK_EVERY_S)
        assert floor.shortage() is None
    finally:
        journal.close()


def test_free_bytes_of_a_real_directory_is_what_statvfs_says_is_available(tmp_path: Path) -> None:
    st = os.statvfs(tmp_path)
    assert free_bytes(tmp_path) // st.f_frsize == pytest.approx(st.f_bavail, abs=1024)


@pytest.mark.stack
def test_the_ingest_holds_below_the_floor_and_resumes_above_it(
        stack: StackInfo, node: Node, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="urbanpulse.cloud.ingest")
    disk = FakeStatVfs(free=100 * FRSIZE)
    journal = Journal(journal_path(tmp_path / "state" / "journal", "i0"), "i0").open()
    ingest = Ingest(cloud_mqtt(stack, tmp_path, node.site), journal, min_free_bytes=1000 * FRSIZE,
                    statvfs=disk)
    ingest.start()
    try:
        assert ingest.wait_subscribed(10)
        node.publish(range(3))
        wait_for(lambda: ingest.stats.received == 3 and disk.calls >= 2, 20,
                 "the ingest holding what it received across two looks at the disk")
        disk.free = 200 * FRSIZE  # still below: the same episode
        calls = disk.calls
        wait_for(lambda: disk.calls >= calls + 2, 20, "two more looks")
        assert journal_rows(journal.path) == []
        assert node.acks() == []
        disk.free = 2000 * FRSIZE
        wait_for(lambda: len(journal_rows(journal.path)) >= 3, 20, "the held batches journaled")
        wait_for(lambda: len(node.acks()) >= 3, 10, "every batch acked")
    finally:
        ingest.stop()
        journal.close()
    expected = sorted(batch_payload(node.site, node.node, k) for k in range(3))
    assert sorted(journal_rows(journal.path)) == expected
    (held,) = ingest_log(caplog, logging.WARNING)
    assert "below state.min_free_bytes = 4096000" in held
    assert len([m for m in ingest_log(caplog, logging.INFO) if "journals again" in m]) == 1


def test_cloud_run_gives_its_ingest_the_configured_floor(tmp_path: Path) -> None:
    from cloud.cli import make_ingest

    password = tmp_path / "mqtt.password"
    password.write_text("not-used-here", encoding="utf-8")
    cfg = parse_cloud_config({**BASE, "mqtt": {"password_file": str(password), "tls": False},
                              "state": {"dir": str(tmp_path), "min_free_bytes": 12345}})
    cfg.journal_dir.mkdir(parents=True, exist_ok=True)
    ingest = make_ingest(cfg, "i0")  # nothing connects before start()
    try:
        assert ingest.floor.min_free_bytes == 12345
        assert ingest.floor.path == cfg.journal_dir
    finally:
        ingest.journal.close()
