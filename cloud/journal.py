"""The cloud's place of record between the broker and the dataflow.

The ingest appends each MQTT message here and commits (WAL, synchronous=FULL) before it
sends the PUBACK; the dataflow reads by offset and resumes from the offset in its
snapshot. One journal file per ingest instance; each is one source partition.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from cloud.errors import JournalError

# Received times are made strictly increasing by at least this step, so that a record's
# received_ns plus a reading's index in it is a unique, replay-stable timestamp.
RECEIVED_STEP_NS = 4096


@dataclass(frozen=True, slots=True)
class JournalRecord:
    partition: str
    offset: int
    received_ns: int
    topic: str
    payload: bytes


def journal_path(directory: Path, partition: str) -> Path:
    return directory / f"journal-{partition}.sqlite3"


def partition_names(instances: int) -> list[str]:
    return [f"i{n}" for n in range(instances)]


class Journal:
    def __init__(self, path: Path, partition: str) -> None:
        self.path = path
        self.partition = partition
        self._db: sqlite3.Connection | None = None
        self._last_received_ns = 0

    def open(self) -> Journal:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            db = sqlite3.connect(self.path, timeout=30, isolation_level=None, check_same_thread=False)
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=FULL")
            db.execute("CREATE TABLE IF NOT EXISTS entries (offset INTEGER PRIMARY KEY AUTOINCREMENT, "
                       "received_ns INTEGER NOT NULL, topic TEXT NOT NULL, payload BLOB NOT NULL)")
            row = db.execute("SELECT MAX(received_ns) FROM entries").fetchone()
        except (OSError, sqlite3.Error) as exc:
            raise JournalError(f"cannot open journal {self.path}: {exc}") from exc
        self._last_received_ns = row[0] or 0
        self._db = db
        return self

    @property
    def db(self) -> sqlite3.Connection:
        if self._db is None:
            raise JournalError("journal is not open")
        return self._db

    def append(self, messages: Sequence[tuple[str, bytes]], now_ns: int) -> int:
        """Commit messages durably; returns the last offset written."""
        rows = []
        received = self._last_received_ns
        for topic, payload in messages:
            received = max(now_ns, received + RECEIVED_STEP_NS)
            rows.append((received, topic, payload))
        try:
            db = self.db
            db.execute("BEGIN IMMEDIATE")
            db.executemany("INSERT INTO entries (received_ns, topic, payload) VALUES (?, ?, ?)", rows)
            (last,) = db.execute("SELECT MAX(offset) FROM entries").fetchone()
            db.execute("COMMIT")
        except sqlite3.Error as exc:
            raise JournalError(f"journal append failed: {exc}") from exc
        self._last_received_ns = received
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

    def last_offset(self) -> int:
        (last,) = self.db.execute("SELECT MAX(offset) FROM entries").fetchone()
        return int(last or 0)

    def close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None
