"""A journal deleted or replaced and made anew by its ingest numbers its records from 1
again: a processor resumed from its recovery store must read it from its start, not skip
(and later trim) its records up to the old offset without a word (found by review).
Real SQLite journals in a temporary directory, read through the dataflow's own source."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from cloud.flow import JOURNAL_ID, JournalSource
from cloud.journal import Journal, JournalRecord, journal_path

SECOND = 1_000_000_000


def _journal(directory: Path, messages: int, first_ns: int) -> Journal:
    journal = Journal(journal_path(directory, "i0"), "i0").open()
    journal.append([(f"urbanpulse/v1/s/n/data#{k}", b"{}") for k in range(messages)], first_ns)
    return journal


def _read_all(source: JournalSource, resume: dict[str, int] | None
              ) -> tuple[list[JournalRecord], dict[str, int]]:
    part = source.build_part("journal", "i0", resume)
    out: list[JournalRecord] = []
    for _ in range(100):
        batch = part.next_batch()
        if not batch:
            break
        out += batch
    state = part.snapshot()
    part.close()
    return out, state


def test_a_journal_made_anew_is_read_from_its_start(tmp_path: Path,
                                                    caplog: pytest.LogCaptureFixture) -> None:
    source = JournalSource(tmp_path, ["i0"], retention_s=3600)
    _journal(tmp_path, 5, SECOND).close()
    first, state = _read_all(source, None)
    assert [r.offset for r in first] == [1, 2, 3, 4, 5]
    assert state["i0"] == 5
    assert state["i0" + JOURNAL_ID] > 0

    # the same journal, more records: resumed after its offset, as before
    again = _journal(tmp_path, 2, 10 * SECOND)
    again.close()
    more, state = _read_all(source, state)
    assert [r.offset for r in more] == [6, 7]

    for path in tmp_path.glob("journal-i0.sqlite3*"):  # deleted; its ingest makes it anew
        path.unlink()
    _journal(tmp_path, 3, 20 * SECOND).close()
    with caplog.at_level(logging.ERROR, logger="urbanpulse.cloud.flow"):
        fresh, state = _read_all(source, state)
    assert [(r.offset, r.topic) for r in fresh] == [
        (1, "urbanpulse/v1/s/n/data#0"), (2, "urbanpulse/v1/s/n/data#1"), (3, "urbanpulse/v1/s/n/data#2")]
    assert "is not the one the recovery store read up to record 7" in caplog.text
    assert state["i0"] == 3


def test_a_store_from_before_journal_ids_resumes_after_its_offset(tmp_path: Path) -> None:
    source = JournalSource(tmp_path, ["i0"], retention_s=3600)
    _journal(tmp_path, 4, SECOND).close()
    records, state = _read_all(source, {"i0": 2})  # no id: taken on trust, as before
    assert [r.offset for r in records] == [3, 4]
    journal = Journal(journal_path(tmp_path, "i0"), "i0").open(create=False)
    assert state["i0" + JOURNAL_ID] == journal.id
    journal.close()
