"""Journals of several ingest instances read as one stream in received-time order, so that a
node's messages, dealt out to the instances in turn by the broker, reach its state in the
order they were delivered (real SQLite journals in a temporary directory)."""

from __future__ import annotations

from pathlib import Path

from cloud.flow import JournalSource, RetiredPartition
from cloud.journal import RECEIVED_STEP_NS, Journal, JournalRecord, MergedJournals, journal_path

SECOND = 1_000_000_000


def _journals(tmp_path: Path, n: int) -> list[Journal]:
    return [Journal(journal_path(tmp_path, f"i{k}"), f"i{k}").open() for k in range(n)]


def _deal(journals: list[Journal], messages: int, t0: int = 1_800_000_000 * SECOND) -> list[str]:
    """Message k goes to journal k % n at time t0 + k s, as a shared subscription deals them."""
    topics = []
    for k in range(messages):
        topic = f"urbanpulse/v1/s/n/data#{k}"
        journals[k % len(journals)].append([(topic, b"{}")], t0 + k * SECOND)
        topics.append(topic)
    return topics


def _read_all(merged: MergedJournals, limit: int) -> list[JournalRecord]:
    out: list[JournalRecord] = []
    for _ in range(1000):
        got = merged.read(limit)
        out.extend(got)
        if merged.caught_up and not got:
            return out
    raise AssertionError("the merged reader never caught up")


def test_records_of_several_journals_come_out_in_received_order(tmp_path: Path) -> None:
    journals = _journals(tmp_path, 3)
    topics = _deal(journals, 40)
    merged = MergedJournals(_journals(tmp_path, 3), {}, batch=4)
    out = _read_all(merged, limit=5)
    assert [r.topic for r in out] == topics
    assert merged.offsets() == {"i0": 14, "i1": 13, "i2": 13}


def test_a_journal_read_ahead_to_its_batch_is_refilled_before_others_overtake_it(tmp_path: Path) -> None:
    early, late = _journals(tmp_path, 2)
    t0 = 1_800_000_000 * SECOND
    early.append([(f"e{k}", b"") for k in range(10)], t0)  # 10 records, 4 µs apart
    late.append([("l0", b"")], t0 + SECOND)
    merged = MergedJournals([early, late], {}, batch=3)
    first = merged.read(100)
    assert [r.topic for r in first] == ["e0", "e1", "e2"]  # stops where its read-ahead ends
    assert not merged.caught_up
    rest = _read_all(merged, 100)
    assert [r.topic for r in rest] == [f"e{k}" for k in range(3, 10)] + ["l0"]


def test_an_idle_journal_does_not_hold_back_the_others(tmp_path: Path) -> None:
    busy, idle = _journals(tmp_path, 2)
    busy.append([("a", b""), ("b", b"")], 1_800_000_000 * SECOND)
    merged = MergedJournals([busy, idle], {}, batch=50)
    assert [r.topic for r in merged.read(50)] == ["a", "b"]
    assert merged.caught_up


def test_a_reader_resumed_from_the_offsets_continues_without_loss_or_repeat(tmp_path: Path) -> None:
    journals = _journals(tmp_path, 2)
    topics = _deal(journals, 30)
    first = MergedJournals(_journals(tmp_path, 2), {}, batch=4)
    head = first.read(7)
    first.read(0)  # reads ahead again, emits nothing: the offsets must not move
    resumed = MergedJournals(_journals(tmp_path, 2), first.offsets(), batch=4)
    tail = _read_all(resumed, limit=6)
    assert [r.topic for r in head + tail] == topics


def test_trim_deletes_only_below_the_given_offsets(tmp_path: Path) -> None:
    journals = _journals(tmp_path, 2)
    _deal(journals, 10, t0=1_000 * SECOND)
    merged = MergedJournals(journals, {}, batch=50)
    merged.trim({"i0": 3}, received_before_ns=2_000 * SECOND)
    assert [r.offset for r in journals[0].read(0, 50)] == [3, 4, 5]
    assert len(journals[1].read(0, 50)) == 5


def test_append_stamps_each_message_with_its_arrival_kept_strictly_increasing(tmp_path: Path) -> None:
    [journal] = _journals(tmp_path, 1)
    t0 = 1_800_000_000 * SECOND
    journal.append([("a", b""), ("b", b""), ("c", b"")], t0 + 5 * SECOND, arrived_ns=[t0, t0, t0 + SECOND])
    stamps = [r.received_ns for r in journal.read(0, 10)]
    assert stamps == [t0, t0 + RECEIVED_STEP_NS, t0 + SECOND]


def test_a_store_from_per_journal_partitions_resumes_the_first_journal_at_its_offset(tmp_path: Path) -> None:
    journals = _journals(tmp_path, 2)
    topics = _deal(journals, 10)
    source = JournalSource(tmp_path, ["i0", "i1"], retention_s=3600)
    assert source.list_parts() == ["i0", "i1"]  # the old names stay known to Bytewax
    retired = source.build_part("journal", "i1", None)
    assert isinstance(retired, RetiredPartition)
    assert retired.next_batch() == []
    merged = source.build_part("journal", "i0", 3)  # the old snapshot: i0's offset as an int
    out: list[JournalRecord] = []
    for _ in range(100):
        out.extend(merged.next_batch())
        if len(out) >= 7:
            break
    # i0's first three records (messages 0, 2, 4) were consumed before; i1 starts over.
    assert [r.topic for r in out] == [t for k, t in enumerate(topics) if not (k % 2 == 0 and k < 6)]
    merged.close()
