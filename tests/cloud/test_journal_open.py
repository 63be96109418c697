"""Opening a journal reads its last record, not every record: the ingest opens its journal
before it subscribes, and the processor every journal before it reads, and a journal holds
up to flow.journal_retention_s of messages (a day by default: 12-31 GB at 1,000 readings/s,
docs/sizing.md). Before, the open looked for the largest received time over the whole
table, a full scan (0.6-1.4 s for 2 GB here, minutes for the design's load). SQLite's
progress handler counts the virtual machine's steps of the open (real journals in a
temporary directory)."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import pytest

from cloud import journal as journal_module
from cloud.journal import RECEIVED_STEP_NS, Journal, journal_path

ROWS = 50_000
T0 = 1_800_000_000 * 1_000_000_000


def _counting_connect(steps: list[int]) -> Any:
    real = sqlite3.connect

    def connect(*args: Any, **kwargs: Any) -> sqlite3.Connection:
        db = real(*args, **kwargs)

        def step() -> int:
            steps[0] += 1
            return 0

        db.set_progress_handler(step, 100)  # once per 100 steps
        return db

    return connect


def _fill(path: Path) -> None:
    journal = Journal(path, "i0").open()
    journal.append([("urbanpulse/v1/s/n/data", b"{}")] * ROWS, T0)
    journal.close()


@pytest.mark.parametrize("create", [True, False])
def test_an_open_reads_the_last_record_not_the_whole_journal(tmp_path: Path, create: bool,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    path = journal_path(tmp_path, "i0")
    _fill(path)
    steps = [0]
    monkeypatch.setattr(journal_module.sqlite3, "connect", _counting_connect(steps))
    journal = Journal(path, "i0").open(create=create)
    monkeypatch.undo()
    try:
        assert steps[0] < 50  # a full scan of the rows takes thousands
        assert journal._last_received_ns == T0 + (ROWS - 1) * RECEIVED_STEP_NS
    finally:
        journal.close()


def test_appends_after_a_reopen_go_on_after_the_last_stamp(tmp_path: Path) -> None:
    path = journal_path(tmp_path, "i0")
    _fill(path)
    journal = Journal(path, "i0").open()
    try:
        journal.append([("t", b"{}")], T0)  # the clock behind the journal's last stamp
        (last,) = journal.read(ROWS, 1)
        assert last.received_ns == T0 + ROWS * RECEIVED_STEP_NS
    finally:
        journal.close()


def test_an_emptied_journal_opens_with_no_last_stamp(tmp_path: Path) -> None:
    path = journal_path(tmp_path, "i0")
    _fill(path)
    journal = Journal(path, "i0").open()
    journal.trim(ROWS + 1, T0 + ROWS * RECEIVED_STEP_NS)
    journal.close()
    journal = Journal(path, "i0").open()
    try:
        assert journal._last_received_ns == 0
        assert journal.append([("t", b"{}")], T0) == ROWS + 1  # offsets never reused
    finally:
        journal.close()
