"""The journal trim goes on across processor restarts: it deletes records read in an epoch
snapshotted `journal_retention_s` ago, and which offsets those were is in the snapshot.
Before, it was in the process's memory only, so a processor restarted more often than the
retention (daily with the default day) never trimmed its journals, which grew until the
state disk was full (found by review). Real SQLite journals, read through the dataflow's
own source, on a FakeClock."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from cloud.flow import JournalSource
from cloud.journal import Journal, JournalRecord, journal_path
from urbanpulse.clock import FakeClock, to_epoch_ns

RETENTION_S = 3600


def _append(directory: Path, clock: FakeClock, messages: int) -> None:
    journal = Journal(journal_path(directory, "i0"), "i0").open()
    journal.append([(f"urbanpulse/v1/s/n/data#{k}", b"{}") for k in range(messages)],
                   to_epoch_ns(clock.now()))
    journal.close()


def _first_offset(directory: Path) -> int:
    journal = Journal(journal_path(directory, "i0"), "i0").open(create=False)
    try:
        return journal.read(0, 1)[0].offset
    finally:
        journal.close()


def _run(source: JournalSource, clock: FakeClock, resume: dict[str, Any] | None, minutes: int
         ) -> tuple[list[JournalRecord], dict[str, Any]]:
    """One processor run of `minutes`: a batch and a snapshot (an epoch) every 10 s."""
    part = source.build_part("journal", "i0", resume)
    out: list[JournalRecord] = []
    state: dict[str, Any] = {}
    for _ in range(minutes * 6):
        out += part.next_batch()
        state = part.snapshot()
        clock.advance(10)
    part.close()
    return out, state


def test_a_processor_restarted_more_often_than_the_retention_still_trims(tmp_path: Path) -> None:
    clock = FakeClock()
    source = JournalSource(tmp_path, ["i0"], retention_s=RETENTION_S, clock=clock)
    state: dict[str, Any] | None = None
    read: list[int] = []
    for _ in range(8):  # a restart every 50 minutes, 10 messages each run
        _append(tmp_path, clock, 10)
        out, state = _run(source, clock, state, minutes=50)
        read += [r.offset for r in out]
    assert read == list(range(1, 81))  # each once, in order
    # Read 100 minutes ago and before: past the retention (and the marks' spacing, 60 s).
    first = _first_offset(tmp_path)
    assert first > 50, f"records from {first} on still journaled after 400 minutes"
    # Nothing read within the retention is gone: the runs of the last 60 minutes.
    assert first <= 71


def test_a_journal_made_anew_is_not_trimmed_below_the_old_ones_offsets(tmp_path: Path) -> None:
    clock = FakeClock()
    source = JournalSource(tmp_path, ["i0"], retention_s=RETENTION_S, clock=clock)
    _append(tmp_path, clock, 2000)
    out, state = _run(source, clock, None, minutes=75)  # its first marks are past the retention
    assert len(out) == 2000
    for path in tmp_path.glob("journal-i0.sqlite3*"):  # deleted; its ingest makes it anew,
        path.unlink()
    _append(tmp_path, clock, 1000)  # and journals while the processor is down
    clock.advance(2 * RETENTION_S)
    fresh, _ = _run(source, clock, state, minutes=5)  # the trim runs a minute in, 300 read
    # Every record of the new journal read: none trimmed below the old one's offset (2000).
    assert [r.offset for r in fresh] == list(range(1, 1001))
