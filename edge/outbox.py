"""The durable outbox: every reading is committed here before anything else happens to it,
and leaves only when the broker has acknowledged the message that carried it.

SQLite in WAL mode with synchronous=FULL: a commit survives SIGKILL and power loss.
Sequence numbers are assigned in the same transaction as the insert, so they continue
across restarts and never repeat.

Drivers that count (door totals, ticket numbers) keep their state in `driver_state`,
written in the same transaction as the readings it produced: after a crash the state and
the readings agree, so nothing is counted twice or lost between them.

The outbox names its numbering (`numbering`: 16 random hex digits, made with the outbox and
sent with every batch): a node that lost its state numbers from 0 again under a new name,
so the cloud never takes its readings for ones it has seen.

Eviction (when the outbox is full by count, or rows are older than max_age): the oldest
rows go first, and the number evicted is kept in `meta` and reported in the heartbeat, so
the cloud's delivery ledger can tell "missing" from "not yet arrived". Age is judged by
the commit stamps only where the clock was synchronised (`evict_aged`).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import secrets
import sqlite3
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple, TypeVar
from urllib.parse import quote

from edge.clock_sync import CLOCK_UNSYNCED
from edge.drivers.base import Sample
from edge.errors import OutboxError, OutboxInUseError
from urbanpulse.clock import to_epoch_ns
from urbanpulse.wire import Reading

log = logging.getLogger("urbanpulse.edge.outbox")
T = TypeVar("T")

# The reserve (`reserve_bytes`, a file beside the outbox): room held back on the state
# disk for what makes room. On a disk filled to the last block, SQLite cannot delete a
# row (a deletion writes to the WAL file, and a checkpoint may have to grow the database
# file first), nor open the outbox after a clean stop (it makes its shared-memory file):
# then the reserve is given up and the operation tried again. A deletion gives up all of
# it but RESERVE_OPEN_BYTES, which only an opening gives up: a node whose reserve went to
# a deletion, stopped while the disk stays full, opens its outbox at the next start. It
# is made again once the disk has RESERVE_REMAKE_FACTOR times its size free (looked at
# every RESERVE_CHECK_S); with less room than that, its opening's part alone, once the
# disk has RESERVE_REMAKE_FACTOR times that free (a node upgraded from an agent that made
# none, on a disk with under 24 MiB free). A clean stop on a disk whose reserve is gone
# makes the opening's part again out of the room the stop frees (SQLite's WAL and
# shared-memory files, deleted by the last connection's close), up to RESERVE_OPEN_BYTES.
RESERVE_SUFFIX = ".reserve"
RESERVE_REMAKE_FACTOR = 3
RESERVE_CHECK_S = 60.0
RESERVE_MIN_ROOM = 1024 * 1024  # what "room again" means for an outbox without a reserve
# The opening's part: SQLite's shared-memory file (32 KiB) and a WAL file's first frames
RESERVE_OPEN_BYTES = 256 * 1024
RESERVE_OPEN_MIN_BYTES = 64 * 1024  # less, made at a clean stop, would not open the outbox
# Under this much free on the state disk, the WAL file is checkpointed after every write
# (`_after_write`): SQLite does it by itself only past 1000 pages (4 MiB) of WAL, and a
# WAL file that fills the disk's room first holds frames the database file must grow
# for, so that neither a checkpoint nor any write can be made any more (an outbox from
# before the reserve, or one whose reserve is given up, has nothing to give up then).
WAL_ROOM_BYTES = 8 * 1024 * 1024

# Rows a transaction of the age eviction deletes at most (Outbox.evict_through): its WAL
# file holds every page it changes until a checkpoint (140 MiB for 2,000,000 rows in
# one), which a card with less room refuses, and the agent's loop waits for it.
AGE_EVICT_BATCH = 20_000

_SCHEMA = """
CREATE TABLE IF NOT EXISTS outbox (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    sensor TEXT NOT NULL,
    kind TEXT NOT NULL,
    ts_ns INTEGER NOT NULL,
    seq INTEGER NOT NULL,
    body TEXT NOT NULL,
    created_ns INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS seq (sensor TEXT PRIMARY KEY, next INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS driver_state (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""
# A row whose reading is flagged clock_unsynced (its body is [values, flags]): its commit
# stamp was read from a clock that was not synchronised.
_UNSYNCED = f"(instr(json_extract(body, '$[1]'), '\"{CLOCK_UNSYNCED}\"') > 0)"


@dataclass(frozen=True, slots=True)
class OutboxRow:
    id: int
    created_ns: int
    reading: Reading


class Waiting(NamedTuple):
    """Outbox.waiting's answer."""
    rows: int  # created since
    oldest_ns: int
    newest_ns: int
    first_id: int | None
    top_id: int | None


@dataclass(frozen=True, slots=True)
class OutboxStats:
    depth: int
    oldest_created_ns: int | None
    evicted: int


class Outbox:
    """Thread-safe; one connection per thread (SQLite WAL lets them read and write at once)."""

    def __init__(self, path: Path, *, max_rows: int = 2_000_000, reserve_bytes: int = 0) -> None:
        self.path = path
        self.max_rows = max_rows
        self.reserve_bytes = reserve_bytes
        self.reserve_path = path.with_name(path.name + RESERVE_SUFFIX)
        self.reserves_given_up = 0
        # While the disk is full: the id span the outbox is held at (evict_oldest), or None
        self._held_rows: int | None = None
        self._reserve_checked_at: float | None = None  # time.monotonic()
        self._low_room = False  # under WAL_ROOM_BYTES free when last looked
        self._reserve_lock = threading.Lock()
        self._local = threading.local()
        self._write_lock = threading.Lock()

    def open(self) -> Outbox:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._drop_half_made_reserve()
        try:
            self._with_room(self._set_up, keep=0)
        except OutboxError as exc:
            # SQLite says "disk I/O error" when it cannot make the shared-memory file:
            # read as a failing card, where freeing room is what is needed
            note = _full_note(self.path)
            if not note:
                raise
            raise OutboxError(f"{exc}{note}") from exc.__cause__
        self.keep_reserve()
        return self

    def _set_up(self) -> None:
        db = self._db()
        try:
            db.executescript(_SCHEMA)
            # An outbox made before names were kept gets one now: it names the numbers
            # that continue.
            db.execute("INSERT OR IGNORE INTO meta (key, value) VALUES ('numbering', ?)",
                       (secrets.randbits(63),))
        except sqlite3.Error as exc:
            raise OutboxError(f"cannot set up the outbox {self.path}: {exc}") from exc

    def keep_reserve(self) -> None:
        """When the disk has room to spare (RESERVE_REMAKE_FACTOR times the reserve, or
        RESERVE_MIN_ROOM without one): lets the outbox grow again if evict_oldest held it,
        and makes the reserve if it is missing or smaller (with less room, only its
        opening's part, RESERVE_OPEN_BYTES, where there is RESERVE_REMAKE_FACTOR times
        that). At most once per RESERVE_CHECK_S. Never raises: a node without its reserve
        runs on."""
        now = time.monotonic()
        if (not self.reserve_bytes and self._held_rows is None) or (
                self._reserve_checked_at is not None
                and now - self._reserve_checked_at < RESERVE_CHECK_S):
            return
        self._reserve_checked_at = now
        with self._reserve_lock:
            try:
                st = os.statvfs(self.path.parent)
            except OSError:
                return
            free = st.f_bavail * st.f_frsize
            self._low_room = free < WAL_ROOM_BYTES
            if free >= RESERVE_REMAKE_FACTOR * max(self.reserve_bytes, RESERVE_MIN_ROOM) \
                    and self._held_rows is not None:
                log.info("the state disk has room again: the outbox may grow again")
                self._held_rows = None
            for size in (self.reserve_bytes, min(self.reserve_bytes, RESERVE_OPEN_BYTES)):
                if size and free >= RESERVE_REMAKE_FACTOR * size:
                    self._make_reserve(size)
                    return

    def _make_reserve(self, size: int) -> None:
        """Makes the reserve `size` bytes long, unless it is that long already (the
        reserve lock held). Blocks taken (fallocate), not a sparse file; through a
        temporary file, so that a reserve is whole or not there."""
        try:
            if self.reserve_path.stat().st_size >= size:
                return
        except FileNotFoundError:
            pass
        except OSError:
            return
        tmp = self._reserve_tmp()
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            try:
                os.posix_fallocate(fd, 0, size)
                os.fsync(fd)
            finally:
                os.close(fd)
            os.replace(tmp, self.reserve_path)
        except OSError as exc:
            tmp.unlink(missing_ok=True)
            log.warning("cannot make the outbox's reserve on the state disk",
                        extra={"path": str(self.reserve_path), "error": str(exc)})

    def _reserve_tmp(self) -> Path:
        return self.reserve_path.with_name(self.reserve_path.name + ".tmp")

    def _drop_half_made_reserve(self) -> None:
        """Deletes the reserve's temporary file, left by an agent killed while it made
        the reserve: otherwise its blocks were lost to the disk for good (neither given up
        for room, nor counted as the reserve, which was then not made again on a disk
        with under three times its size free)."""
        with self._reserve_lock:
            tmp = self._reserve_tmp()
            try:
                tmp.unlink()
            except FileNotFoundError:
                return
            except OSError as exc:
                log.warning("cannot delete a reserve left half made", extra={
                    "path": str(tmp), "error": str(exc)})
                return
        log.info("deleted a reserve left half made by a stop while it was made",
                 extra={"path": str(tmp)})

    def _give_up_reserve(self, exc: BaseException | None, keep: int) -> bool:
        """After `exc`, an SQLite error: if it says the disk is full (a write refused, or
        the shared-memory file not made) and the reserve is longer than `keep` bytes,
        shortens it to that (deletes it at 0); True if it did (the operation is worth
        trying again)."""
        if not self.reserve_bytes or not isinstance(exc, sqlite3.Error):
            return False
        code = getattr(exc, "sqlite_errorcode", 0) & 0xFF
        if code not in (sqlite3.SQLITE_FULL, sqlite3.SQLITE_IOERR):
            return False
        with self._reserve_lock:
            try:
                size = self.reserve_path.stat().st_size
                if size <= keep:
                    return False
                if keep:
                    os.truncate(self.reserve_path, keep)
                else:
                    self.reserve_path.unlink()
            except OSError:
                return False
        self.reserves_given_up += 1
        self._reserve_checked_at = time.monotonic()
        log.error("the state disk is full: the outbox's reserve given up to make room; free "
                  "room on the disk", extra={"reserve_bytes": size - keep,
                                             "reserve_kept_bytes": keep, "error": str(exc)})
        return True

    def _checkpoint(self, exc: BaseException | None) -> bool:
        """After `exc`, an SQLite error: if it says the disk is full, checkpoints the WAL
        file and truncates it; True if that worked (the operation is worth trying again,
        at once: it puts frames in the WAL file again, which is how `read_stats` tells a
        running agent from a stopped one). TRUNCATE, not RESTART: the room the WAL file
        gives back is what an outbox that must grow (commits before acks) grows into.
        SQLite checkpoints by itself only past 1000 pages (4 MiB) of WAL: on a disk with
        less room than that the WAL fills up and no write (a commit, an ack) goes through
        until one is made, where its frames only rewrite pages the database file has
        (deleted rows' pages are reused). Fails (False) where the database file must grow
        first, a disk full to the last block: then the reserve is what makes room."""
        if not isinstance(exc, sqlite3.Error) or \
                getattr(exc, "sqlite_errorcode", 0) & 0xFF != sqlite3.SQLITE_FULL:
            return False
        self._low_room = True
        try:
            db = self._db()
            with self._write_lock:
                busy, frames, done = db.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
        except (sqlite3.Error, OutboxError):
            return False
        return not busy and frames == done

    def _with_room(self, op: Callable[[], T], *, keep: int | None = RESERVE_OPEN_BYTES) -> T:
        """`op`, tried again each time it failed for a full disk and a remedy made room:
        a checkpoint of the WAL first, then (unless `keep` is None) giving up the reserve
        but `keep` bytes of it."""
        remedies: list[Callable[[BaseException | None], bool]] = [self._checkpoint]
        if keep is not None:
            remedies.append(lambda exc: self._give_up_reserve(exc, keep))
        while True:
            try:
                return op()
            except OutboxError as exc:
                while remedies:
                    if remedies.pop(0)(exc.__cause__):
                        break
                else:
                    raise

    def numbering(self) -> str:
        """The name of this outbox's sequence numbering (urbanpulse.wire's `numbering`)."""
        row = self._db().execute("SELECT value FROM meta WHERE key = 'numbering'").fetchone()
        if row is None:
            raise OutboxError(f"the outbox {self.path} is not open (it has no numbering)")
        return f"{int(row[0]):016x}"

    def _db(self) -> sqlite3.Connection:
        db: sqlite3.Connection | None = getattr(self._local, "db", None)
        if db is None:
            try:
                db = sqlite3.connect(self.path, timeout=30, isolation_level=None,
                                     check_same_thread=True)
            except sqlite3.Error as exc:
                raise OutboxError(f"cannot open the outbox {self.path}: {exc}") from exc
            try:
                db.execute("PRAGMA journal_mode=WAL")
                db.execute("PRAGMA synchronous=FULL")
                db.execute("PRAGMA cache_size=-256")  # KiB: the outbox is read in id order
            except sqlite3.Error as exc:
                db.close()
                raise OutboxError(f"cannot open the outbox {self.path}: {exc}") from exc
            self._local.db = db
        return db

    def close(self, *, last: bool = True) -> None:
        """Closes the calling thread's connection. `last`: the outbox's last one (the
        agent's, at its stop), whose close deletes SQLite's WAL and shared-memory files;
        another thread's (the publisher's) must close its own first, or that room stays
        taken."""
        db = getattr(self._local, "db", None)
        if db is not None:
            db.close()
            self._local.db = None
            if last:
                self._keep_opening_room()

    def _keep_opening_room(self) -> None:
        """After a close, where the reserve is gone (given up on a full disk): its
        opening's part made again, out of the room the close freed (the last connection's
        deletes SQLite's WAL and shared-memory files), before the logs take it. Otherwise
        the next start, on a disk that stayed full, could not make the shared-memory file
        and exited 3. Never raises."""
        if not self.reserve_bytes:
            return
        with self._reserve_lock:
            try:
                if self.reserve_path.exists():
                    return
                st = os.statvfs(self.path.parent)
            except OSError:
                return
            free = st.f_bavail * st.f_frsize
            size = min(self.reserve_bytes, RESERVE_OPEN_BYTES, free - free % (st.f_frsize or 1))
            if size >= RESERVE_OPEN_MIN_BYTES:
                self._make_reserve(size)

    def append(self, samples: Sequence[Sample], now_ns: int,
               states: Mapping[str, str] | None = None) -> list[Reading]:
        """Assign sequence numbers and commit the samples, and the drivers' `states`
        (key -> text) in the same transaction; returns the samples as readings."""
        if not samples and not states:
            return []
        self.keep_reserve()
        # Not the reserve: it is for deletions, which make room; given up for a commit it
        # would be used up by the outbox's growth.
        return self._with_room(lambda: self._append(samples, now_ns, states), keep=None)

    def _append(self, samples: Sequence[Sample], now_ns: int,
                states: Mapping[str, str] | None) -> list[Reading]:
        db = self._db()
        readings: list[Reading] = []
        with self._write_lock:
            try:
                db.execute("BEGIN IMMEDIATE")
                next_seq: dict[str, int] = {}
                for s in samples:
                    if s.sensor not in next_seq:
                        row = db.execute("SELECT next FROM seq WHERE sensor = ?", (s.sensor,)).fetchone()
                        next_seq[s.sensor] = row[0] if row else 0
                    seq = next_seq[s.sensor]
                    next_seq[s.sensor] = seq + 1
                    readings.append(Reading(s.sensor, s.kind, to_epoch_ns(s.ts), seq, dict(s.values),
                                            tuple(s.flags)))
                db.executemany("INSERT OR REPLACE INTO seq (sensor, next) VALUES (?, ?)",
                               list(next_seq.items()))
                db.executemany(
                    "INSERT INTO outbox (sensor, kind, ts_ns, seq, body, created_ns) "
                    "VALUES (?, ?, ?, ?, ?, ?)",
                    [(r.sensor, r.kind, r.ts_ns, r.seq,
                      json.dumps([r.values, list(r.flags)], separators=(",", ":")), now_ns)
                     for r in readings],
                )
                if states:
                    db.executemany("INSERT OR REPLACE INTO driver_state (key, value) VALUES (?, ?)",
                                   list(states.items()))
                self._evict_over_count(db)
                db.execute("COMMIT")
            except sqlite3.Error as exc:
                self._rollback(db)
                raise OutboxError(f"outbox append failed: {exc}") from exc
            self._after_write(db)
        return readings

    def load_state(self, key: str) -> str | None:
        """A driver's state as last committed with its readings; None if it never had one."""
        try:
            row = self._db().execute("SELECT value FROM driver_state WHERE key = ?", (key,)).fetchone()
        except sqlite3.Error as exc:
            raise OutboxError(f"cannot read driver state {key!r}: {exc}") from exc
        return None if row is None else str(row[0])

    def _evict_over_count(self, db: sqlite3.Connection) -> None:
        # The id span bounds the depth from above and costs two index look-ups, not a scan.
        (top,) = db.execute("SELECT MAX(id) FROM outbox").fetchone()
        if top is None:
            return
        floor = top - (self.max_rows if self._held_rows is None
                       else min(self.max_rows, self._held_rows))
        (excess,) = db.execute("SELECT COUNT(*) FROM outbox WHERE id <= ?", (floor,)).fetchone() \
            if db.execute("SELECT MIN(id) FROM outbox").fetchone()[0] <= floor else (0,)
        if excess > 0:
            db.execute("DELETE FROM outbox WHERE id <= ?", (floor,))
            self._add_evicted(db, excess)

    def _add_evicted(self, db: sqlite3.Connection, n: int) -> None:
        db.execute("INSERT INTO meta (key, value) VALUES ('evicted', ?) "
                   "ON CONFLICT(key) DO UPDATE SET value = value + excluded.value", (n,))

    def evict_aged(self, cut_ns: int) -> int:
        """Evicts the rows committed before `cut_ns` (max_age), as far as their commit
        stamps can tell (`aged_through`), AGE_EVICT_BATCH rows a transaction; counted as
        evicted. The agent calls aged_through and evict_through itself, a batch per flush
        interval: this is all of it at once."""
        through = self.aged_through(cut_ns)
        total = 0
        while through is not None:
            n, done = self.evict_through(through)
            total += n
            if done:
                break
        return total

    def aged_through(self, cut_ns: int) -> int | None:
        """The last row the age eviction takes at `cut_ns`, or None. A stamp made while the
        clock was not synchronised (the reading flagged clock_unsynced: a node that booted
        on a stale clock) says nothing of its row's age, but the rows are in commit order.
        So what goes is the prefix of rows up to the last one committed on a synchronised
        clock before `cut_ns` whose good predecessors all were too: a flagged row goes
        only if such a row was committed after it, and no row behind one a good clock says
        is young goes. Index walks from either end, no scan of the whole outbox when
        little is old. Rows below it stay old as time goes on (later rows get higher ids):
        it holds until they are evicted, at a later cut too."""
        db = self._db()
        try:
            row = db.execute(f"SELECT id FROM outbox WHERE created_ns >= ? AND NOT {_UNSYNCED} "
                             "ORDER BY id LIMIT 1", (cut_ns,)).fetchone()
            young = None if row is None else int(row[0])
            row = db.execute(f"SELECT id FROM outbox WHERE id < ? AND NOT {_UNSYNCED} "
                             "ORDER BY id DESC LIMIT 1",
                             (young if young is not None else 2**63 - 1,)).fetchone()
        except sqlite3.Error as exc:
            raise OutboxError(f"outbox eviction by age failed: {exc}") from exc
        return None if row is None else int(row[0])

    def evict_through(self, through_id: int, limit: int = AGE_EVICT_BATCH) -> tuple[int, bool]:
        """Evicts the oldest rows up to `through_id` (aged_through's), at most `limit` of
        them, in one transaction; counted as evicted. Returns how many, and whether none
        is left up to `through_id`."""
        return self._with_room(lambda: self._evict_through(through_id, limit))

    def _evict_through(self, through_id: int, limit: int) -> tuple[int, bool]:
        db = self._db()
        with self._write_lock:
            try:
                db.execute("BEGIN IMMEDIATE")
                row = db.execute("SELECT id FROM outbox WHERE id <= ? ORDER BY id LIMIT 1 "
                                 "OFFSET ?", (through_id, limit - 1)).fetchone()
                bound = through_id if row is None else int(row[0])
                n = db.execute("DELETE FROM outbox WHERE id <= ?", (bound,)).rowcount
                if n:
                    self._add_evicted(db, n)
                db.execute("COMMIT")
            except sqlite3.Error as exc:
                self._rollback(db)
                raise OutboxError(f"outbox eviction by age failed: {exc}") from exc
            self._after_write(db)
        return int(n), bound == through_id

    def evict_oldest(self, n: int) -> int:
        """Evicts the `n` oldest rows (counted as evicted), as max_rows does: room for newer
        ones where the disk has none. From then on, until the disk has room again
        (`keep_reserve`), the outbox is held at the size it had before (its id span): each
        commit evicts as many of the oldest rows as it adds. The database file then stops
        growing, and its checkpoints need no room the full disk does not have; otherwise
        the room made would be used up at once and the next eviction could not be
        written."""
        return self._evict("DELETE FROM outbox WHERE id IN (SELECT id FROM outbox ORDER BY id "
                           "LIMIT ?)", n, hold=True)

    def _evict(self, sql: str, arg: int, *, hold: bool = False) -> int:
        return self._with_room(lambda: self._delete(sql, arg, hold))

    def _delete(self, sql: str, arg: int, hold: bool = False) -> int:
        db = self._db()
        with self._write_lock:
            try:
                db.execute("BEGIN IMMEDIATE")
                if hold:
                    low, top = db.execute("SELECT MIN(id), MAX(id) FROM outbox").fetchone()
                    if top is not None:
                        span = int(top) - int(low) + 1
                        self._held_rows = span if self._held_rows is None \
                            else min(self._held_rows, span)
                n = db.execute(sql, (arg,)).rowcount
                if n:
                    self._add_evicted(db, n)
                db.execute("COMMIT")
            except sqlite3.Error as exc:
                self._rollback(db)
                raise OutboxError(f"outbox eviction failed: {exc}") from exc
            self._after_write(db)
        return int(n)

    def _after_write(self, db: sqlite3.Connection) -> None:
        """On a disk with little room (`WAL_ROOM_BYTES`), a checkpoint after each write
        (the write lock held): the database file grows only as the outbox does, and the
        next write starts the WAL file again from its beginning, in the room it has.
        RESTART, not TRUNCATE: a WAL file left empty is how `read_stats` knows the agent
        stopped cleanly. One that cannot be made (the disk full to the last block) is
        left to the next write's failure (`_checkpoint`, the reserve)."""
        if self._low_room:
            with contextlib.suppress(sqlite3.Error):
                db.execute("PRAGMA wal_checkpoint(RESTART)").fetchone()

    @staticmethod
    def _rollback(db: sqlite3.Connection) -> None:
        """Ends a failed transaction (SQLite may have rolled it back itself), so that the
        connection's next BEGIN works and the write lock is not kept."""
        if db.in_transaction:
            try:
                db.execute("ROLLBACK")
            except sqlite3.Error as exc:
                raise OutboxError(f"outbox rollback failed: {exc}") from exc

    def fetch(self, limit: int, *, after_id: int = 0, through_id: int | None = None,
              created_since_ns: int | None = None) -> list[OutboxRow]:
        """Rows in id order, after `after_id` (and up to `through_id`), optionally
        restricted by creation time."""
        sql = "SELECT id, sensor, kind, ts_ns, seq, body, created_ns FROM outbox WHERE id > ?"
        args: list[int] = [after_id]
        if through_id is not None:
            sql += " AND id <= ?"
            args.append(through_id)
        if created_since_ns is not None:
            sql += " AND created_ns >= ?"
            args.append(created_since_ns)
        sql += " ORDER BY id LIMIT ?"
        args.append(limit)
        rows = []
        for rid, sensor, kind, ts_ns, seq, body, created_ns in self._db().execute(sql, args):
            values, flags = json.loads(body)
            rows.append(OutboxRow(rid, created_ns, Reading(sensor, kind, ts_ns, seq, values, tuple(flags))))
        return rows

    def stamps(self, limit: int, *, after_id: int = 0) -> list[tuple[int, int]]:
        """(id, created_ns) of the rows after `after_id`, in id order: what the publisher's
        backlog pass looks at before it reads rows (no bodies decoded)."""
        return [(int(rid), int(created)) for rid, created in self._db().execute(
            "SELECT id, created_ns FROM outbox WHERE id > ? ORDER BY id LIMIT ?",
            (after_id, limit))]

    def waiting(self, after_id: int, created_since_ns: int) -> Waiting:
        """How many rows after `after_id` were created since then, the oldest's and the
        newest's times (the newest can be the one that came first: the clock stepped back),
        the first one's id, and the outbox's highest id, in one snapshot: every row after
        `after_id` below the first (all of them, up to the highest id, when none was
        created since) was created before `created_since_ns`."""
        count, oldest, newest, first, top = self._db().execute(
            "SELECT COUNT(*), MIN(created_ns), MAX(created_ns), MIN(id), "
            "(SELECT MAX(id) FROM outbox) FROM outbox WHERE id > ? AND created_ns >= ?",
            (after_id, created_since_ns)).fetchone()
        return Waiting(int(count), int(oldest or 0), int(newest or 0),
                       None if first is None else int(first), None if top is None else int(top))

    def ack(self, ids: Sequence[int], *, confirmed: bool = False) -> int:
        """Deletes the rows; returns how many were still there. `confirmed`: the cloud
        confirmed them (the batch that carried them, in no other copy), so those no longer
        there were evicted on their way (an eviction takes the oldest rows, which the
        backlog pass is sending) and reached it: they are taken back from the evicted
        count, in the same transaction, which then counts only rows the cloud never
        confirmed."""
        if not ids:
            return 0
        return self._with_room(lambda: self._ack(ids, confirmed))

    def _ack(self, ids: Sequence[int], confirmed: bool) -> int:
        db = self._db()
        with self._write_lock:
            try:
                db.execute("BEGIN IMMEDIATE")
                deleted = db.executemany("DELETE FROM outbox WHERE id = ?",
                                         [(i,) for i in ids]).rowcount
                if confirmed and deleted < len(ids):
                    db.execute("UPDATE meta SET value = MAX(0, value - ?) WHERE key = 'evicted'",
                               (len(ids) - deleted,))
                db.execute("COMMIT")
            except sqlite3.Error as exc:
                self._rollback(db)
                raise OutboxError(f"outbox ack failed: {exc}") from exc
            self._after_write(db)
        return int(deleted)

    def stats(self) -> OutboxStats:
        return _stats(self._db())

    def next_seq(self, sensor: str) -> int:
        row = self._db().execute("SELECT next FROM seq WHERE sensor = ?", (sensor,)).fetchone()
        return int(row[0]) if row else 0


def _stats(db: sqlite3.Connection) -> OutboxStats:
    # An agent making its outbox commits the schema's tables one by one: a reader in between
    # sees some or none of them, and nothing in them yet.
    tables = {name for (name,) in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    if "outbox" not in tables:
        return OutboxStats(0, None, 0)
    depth, oldest = db.execute("SELECT COUNT(*), MIN(created_ns) FROM outbox").fetchone()
    row = (db.execute("SELECT value FROM meta WHERE key = 'evicted'").fetchone()
           if "meta" in tables else None)
    return OutboxStats(depth, oldest, row[0] if row else 0)


def read_stats(path: Path) -> OutboxStats:
    """The stats of the outbox at `path`, read without writing anything to its disk (for
    `urbanpulse edge status`, beside a running or a stopped agent; the reserve is left
    alone). With nothing in the WAL file (a clean stop deletes it; the agent's first
    commit makes frames) the database file holds every committed row, and is read as
    immutable: no shared-memory file to make, which on a full disk SQLite cannot size.
    Otherwise (a running agent, or one killed) through the WAL, read-only. OutboxError
    says why it cannot be read (and that the disk is full, when it is)."""
    return _read_only(path, _stats)


def read_states(path: Path) -> dict[str, str]:
    """The drivers' saved state in the outbox at `path` (key -> text, in key order), as
    last committed, read as `read_stats` reads (`urbanpulse edge driver-state`): beside a
    running agent, what its drivers staged since its last commit is not in it yet. None
    in an outbox made before drivers kept state there."""
    return _read_only(path, _states)


def _read_only(path: Path, op: Callable[[sqlite3.Connection], T]) -> T:
    wal = path.with_name(path.name + "-wal")
    try:
        in_wal = wal.stat().st_size > 0
    except FileNotFoundError:
        in_wal = False
    except OSError as exc:
        raise OutboxError(f"cannot read the outbox {path}: {exc.strerror or exc}") from exc
    uri = f"file:{quote(str(path.absolute()))}?mode=ro" + ("" if in_wal else "&immutable=1")
    try:
        db = sqlite3.connect(uri, uri=True, timeout=5)
        try:
            return op(db)
        finally:
            db.close()
    except sqlite3.Error as exc:
        raise OutboxError(f"cannot read the outbox {path}: {exc}{_full_note(path)}") from exc


def _states(db: sqlite3.Connection) -> dict[str, str]:
    if db.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'driver_state'"
                  ).fetchone() is None:
        return {}
    return {str(k): str(v) for k, v in db.execute("SELECT key, value FROM driver_state ORDER BY key")}


# How long `clear_states` waits for the lock on the outbox: a reader (`edge status`) holds
# it for a moment; an agent from its start to its stop.
IN_USE_WAIT_S = 2.0


def clear_states(path: Path, which: Callable[[str], bool], *,
                 wait_s: float = IN_USE_WAIT_S) -> dict[str, str]:
    """Deletes the drivers' saved state whose keys `which` selects from the outbox at
    `path`, in one transaction, and returns it (key -> text); the readings, their sequence
    numbers and the rest are left as they are. Only with the agent stopped: the connection
    asks SQLite for the exclusive lock on the database file (locking_mode EXCLUSIVE,
    taken at the first read, as a WAL database then has no shared-memory file), which the
    shared lock of every open connection refuses, and the agent holds one from its start
    to its stop: OutboxInUseError after `wait_s`. Held until the deletion is committed, so
    an agent started meanwhile waits for it. The file is never made here."""
    uri = f"file:{quote(str(path.absolute()))}?mode=rw"
    try:
        db = sqlite3.connect(uri, uri=True, timeout=wait_s, isolation_level=None)
    except sqlite3.Error as exc:
        raise OutboxError(f"cannot open the outbox {path}: {exc}") from exc
    try:
        try:
            db.execute("PRAGMA locking_mode=EXCLUSIVE")
            db.execute("PRAGMA synchronous=FULL")
            db.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as exc:
            if getattr(exc, "sqlite_errorcode", 0) & 0xFF == sqlite3.SQLITE_BUSY:
                raise OutboxInUseError(
                    f"the outbox {path} is held open by another process: the edge agent is "
                    "running (it would write its drivers' state again at its next commit); "
                    "stop it first (systemctl stop urbanpulse-edge)") from exc
            raise OutboxError(f"cannot open the outbox {path}: {exc}{_full_note(path)}") from exc
        try:
            chosen = {k: v for k, v in _states(db).items() if which(k)}
            db.executemany("DELETE FROM driver_state WHERE key = ?", [(k,) for k in chosen])
            db.execute("COMMIT")
        except sqlite3.Error as exc:
            Outbox._rollback(db)
            raise OutboxError(f"cannot clear driver state in the outbox {path}: "
                              f"{exc}{_full_note(path)}") from exc
    finally:
        db.close()
    return chosen


def _full_note(path: Path) -> str:
    """What to add to an error about the outbox at `path` when its disk is full."""
    try:
        st = os.statvfs(path.parent)
    except OSError:
        return ""
    return f" (the disk of {path.parent} is full: free room there)" if st.f_bavail == 0 else ""
