"""The cloud's place of record between the broker and the dataflow.

The ingest appends each MQTT message here and commits (WAL, synchronous=FULL) before it
sends the PUBACK; the dataflow reads by offset and resumes from the offset in its
snapshot. One journal file per ingest instance; the dataflow reads them all, merged.
"""

from __future__ import annotations

import secrets
import sqlite3
from collections import deque
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import NamedTuple

from cloud.errors import JournalError
from urbanpulse.wire.relay import MAX_RELAY_MESSAGES

# Received times are made strictly increasing by at least this step, so that a record's
# received_ns plus a reading's index in it is a unique, replay-stable timestamp.
RECEIVED_STEP_NS = 4096


def received_steps(topic: str, payload: bytes) -> int:
    """How many RECEIVED_STEP_NS a record on `topic` takes of the journal's received times:
    one for a node's message; for a gateway's relay, one per item (its item k is taken as
    received at the relay's stamp + k steps, `records.expand_relay`), so that every relayed
    message has a reception of its own, as it would have had on its node's topic. The
    items are counted by their `"node"` keys, not parsed (the ingest's hot path): the
    string never occurs inside a relayed payload, whose quotes are escaped, nor in base64
    (a site or node id "node" counts twice: more than enough). Only an item without that
    key as such (none, or written with escapes) goes uncounted: its reception may then be
    a later record's too."""
    if topic.endswith("/relay"):
        return max(1, min(MAX_RELAY_MESSAGES, payload.count(b'"node"')))
    return 1


class JournalRecord(NamedTuple):
    """One journaled message (or one message of a relay, `records.expand_relay`). A named
    tuple, not a frozen dataclass: one is made per row read and per relayed message, and
    the dataclass's `__init__` cost several times the tuple's (docs/throughput.md,
    "Session 17")."""

    partition: str
    offset: int
    received_ns: int
    topic: str
    payload: bytes


def journal_path(directory: Path, partition: str) -> Path:
    return directory / f"journal-{partition}.sqlite3"


def journal_files(directory: Path) -> list[tuple[str, Path]]:
    """(partition, path) of every journal in `directory` (none if it does not exist), by name."""
    prefix, suffix = journal_path(directory, "*").name.split("*")
    return [(f.name[len(prefix):-len(suffix)], f) for f in sorted(directory.glob(f"{prefix}*{suffix}"))]


def partition_names(instances: int) -> list[str]:
    return [f"i{n}" for n in range(instances)]


class Journal:
    def __init__(self, path: Path, partition: str) -> None:
        self.path = path
        self.partition = partition
        self._db: sqlite3.Connection | None = None
        self._last_received_ns = 0
        self._last_steps = 1  # received_steps of the last record
        # Made once with the file by its ingest: a resumed reader tells a journal made anew
        # (deleted or replaced, its numbers starting at 1 again) from the one its snapshot
        # numbered. None for a journal made before ids, until its ingest opens it.
        self.id: int | None = None

    def open(self, *, create: bool = True) -> Journal:
        """Open for appending (`create`: the ingest's side) or, with `create=False`, only a
        journal that exists: the reader's side, which must never stand an empty file in
        for a journal another process writes where this one cannot see it."""
        try:
            if create:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                target = str(self.path)
            else:
                target = self.path.absolute().as_uri() + "?mode=rw"
            db = sqlite3.connect(target, timeout=30, isolation_level=None, check_same_thread=False,
                                 uri=not create)
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=FULL")
            db.execute("CREATE TABLE IF NOT EXISTS entries (offset INTEGER PRIMARY KEY AUTOINCREMENT, "
                       "received_ns INTEGER NOT NULL, topic TEXT NOT NULL, payload BLOB NOT NULL)")
            # The last record's stamp is the largest (each append stamps after it): read
            # by the key, where MAX(received_ns) scanned the whole journal at every start.
            row = db.execute("SELECT received_ns, topic, payload FROM entries "
                             "ORDER BY offset DESC LIMIT 1").fetchone()
            self.id = _journal_id(db, create)
        except (OSError, sqlite3.Error) as exc:
            if not create and not self.path.exists():
                raise JournalError(
                    f"journal {self.path} does not exist: its ingest writes it where this process "
                    "cannot see it (every process of a cluster must share state.dir)") from exc
            raise JournalError(f"cannot open journal {self.path}: {exc}") from exc
        self._last_received_ns = row[0] if row else 0
        self._last_steps = received_steps(row[1], bytes(row[2])) if row else 1
        self._db = db
        return self

    @property
    def db(self) -> sqlite3.Connection:
        if self._db is None:
            raise JournalError("journal is not open")
        return self._db

    def append(self, messages: Sequence[tuple[str, bytes]], now_ns: int,
               arrived_ns: Sequence[int] | None = None) -> int:
        """Commit messages durably; returns the last offset written. Each is stamped with
        its arrival time if given, else `now_ns`, made strictly increasing, past the
        receptions of the relayed messages before it (`received_steps`)."""
        rows = []
        received, steps = self._last_received_ns, self._last_steps
        for i, (topic, payload) in enumerate(messages):
            stamp = now_ns if arrived_ns is None else arrived_ns[i]
            received = max(stamp, received + RECEIVED_STEP_NS * steps)
            steps = received_steps(topic, payload)
            rows.append((received, topic, payload))
        db = self.db
        try:
            db.execute("BEGIN IMMEDIATE")
            db.executemany("INSERT INTO entries (received_ns, topic, payload) VALUES (?, ?, ?)", rows)
            (last,) = db.execute("SELECT MAX(offset) FROM entries").fetchone()
            db.execute("COMMIT")
        except sqlite3.Error as exc:
            # A full disk (SQLITE_FULL) or an I/O error may leave the transaction open: the
            # caller retries the same messages, and its BEGIN must not find one.
            detail = str(exc)
            if db.in_transaction:
                try:
                    db.execute("ROLLBACK")
                except sqlite3.Error as again:
                    detail += f" (and the rollback failed: {again})"
            raise JournalError(f"journal append failed: {detail}") from exc
        self._last_received_ns, self._last_steps = received, steps
        return int(last)

    def read(self, after_offset: int, limit: int) -> list[JournalRecord]:
        try:
            cur = self.db.execute(
                "SELECT offset, received_ns, topic, payload FROM entries WHERE offset > ? "
                "ORDER BY offset LIMIT ?", (after_offset, limit))
            return [JournalRecord(self.partition, o, r, t, bytes(p)) for o, r, t, p in cur]
        except sqlite3.Error as exc:
            raise JournalError(f"journal read failed: {exc}") from exc

    def trim(self, below_offset: int, received_before_ns: int) -> int:
        """Delete records that are both consumed (offset below) and old enough."""
        try:
            cur = self.db.execute("DELETE FROM entries WHERE offset < ? AND received_ns < ?",
                                  (below_offset, received_before_ns))
            return cur.rowcount
        except sqlite3.Error as exc:
            raise JournalError(f"journal trim failed: {exc}") from exc

    def free_page_bytes(self) -> int:
        """Space free inside the file (pages a trim left), which an append uses first."""
        try:
            (free,) = self.db.execute("PRAGMA freelist_count").fetchone()
            (size,) = self.db.execute("PRAGMA page_size").fetchone()
        except sqlite3.Error as exc:
            raise JournalError(f"journal read failed: {exc}") from exc
        return int(free) * int(size)

    def first_kept(self) -> int:
        """The number of the oldest record held (of the next one, when none is): above 1
        once a trim has let records go."""
        try:
            (first,) = self.db.execute("SELECT MIN(offset) FROM entries").fetchone()
            if first is not None:
                return int(first)
            row = self.db.execute("SELECT seq FROM sqlite_sequence WHERE name = 'entries'").fetchone()
        except sqlite3.Error as exc:
            raise JournalError(f"journal read failed: {exc}") from exc
        return int(row[0]) + 1 if row else 1

    def topics(self) -> list[str]:
        """Every topic the journal holds records of (a scan of the whole journal)."""
        try:
            return [t for (t,) in self.db.execute("SELECT DISTINCT topic FROM entries")]
        except sqlite3.Error as exc:
            raise JournalError(f"journal read failed: {exc}") from exc

    def last_offset(self) -> int:
        (last,) = self.db.execute("SELECT MAX(offset) FROM entries").fetchone()
        return int(last or 0)

    def close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None


def _journal_id(db: sqlite3.Connection, create: bool) -> int | None:
    if create:
        db.execute("CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL)")
        db.execute("INSERT OR IGNORE INTO meta VALUES ('id', ?)", (secrets.randbits(62) + 1,))
    elif not db.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'meta'"
                        ).fetchone():
        return None
    row = db.execute("SELECT value FROM meta WHERE key = 'id'").fetchone()
    return int(row[0]) if row else None


class MergedJournals:
    """Several journals read as one stream, in received-time order.

    With several ingest instances (an MQTT shared subscription) the broker deals a node's
    messages out to them in turn, so each journal holds every other message of a node.
    Read one journal after another, or each at its own pace, a node's messages reach its
    state out of order, hours of event time apart when a backlog is replayed, and older
    readings fall behind the aggregation horizon. Merged by the time the ingests stamped
    them, they come back in the order the broker delivered them (up to the ingests' commit
    interval and clock difference).

    Reads ahead at most `batch` records per journal; `offsets()` are those of the records
    returned so far, which is what a resumed reader starts after."""

    def __init__(self, journals: Sequence[Journal], offsets: Mapping[str, int], batch: int) -> None:
        self.journals = list(journals)
        self.batch = batch
        self._emitted = {j.partition: offsets.get(j.partition, 0) for j in self.journals}
        self._read = dict(self._emitted)
        self._ahead: dict[str, deque[JournalRecord]] = {j.partition: deque() for j in self.journals}
        self._more = {j.partition: True for j in self.journals}  # may hold more than read ahead

    def read(self, limit: int) -> list[JournalRecord]:
        for journal in self.journals:
            p = journal.partition
            ahead = self._ahead[p]
            if len(ahead) < self.batch:
                records = journal.read(self._read[p], self.batch)
                if records:
                    self._read[p] = records[-1].offset
                    ahead.extend(records)
                self._more[p] = len(records) == self.batch
        out: list[JournalRecord] = []
        while len(out) < limit:
            heads = [(q[0].received_ns, p) for p, q in self._ahead.items() if q]
            if not heads:
                break
            p = min(heads)[1]
            ahead = self._ahead[p]
            out.append(ahead.popleft())
            if not ahead and self._more[p]:
                break  # its next records are not read yet: they may come before the others'
        for rec in out:
            self._emitted[rec.partition] = rec.offset
        return out

    @property
    def caught_up(self) -> bool:
        """Nothing read ahead, and the last read of every journal found its end."""
        return not any(self._ahead.values()) and not any(self._more.values())

    def offsets(self) -> dict[str, int]:
        return dict(self._emitted)

    def ids(self) -> dict[str, int]:
        """The journals' ids (`Journal.id`), of those that have one."""
        return {j.partition: j.id for j in self.journals if j.id is not None}

    def backlog(self) -> int:
        """Records journaled and not yet returned by `read` (read ahead counts as not
        returned). One look at each journal's last offset: offsets are consecutive, as
        each journal has one writer and an append that fails rolls back whole."""
        try:
            return sum(max(0, j.last_offset() - self._emitted[j.partition]) for j in self.journals)
        except sqlite3.Error as exc:
            raise JournalError(f"journal read failed: {exc}") from exc

    def trim(self, below: Mapping[str, int], received_before_ns: int) -> None:
        for journal in self.journals:
            if journal.partition in below:
                journal.trim(below[journal.partition], received_before_ns)

    def close(self) -> None:
        for journal in self.journals:
            journal.close()
