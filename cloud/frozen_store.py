"""Closed (frozen) windows kept out of the node state's snapshots.

A sensor's closed windows (`cloud.logic.rollup.SensorRollup.frozen`) are needed only when a
late reading reaches one, yet Bytewax pickled them into every snapshot of their node: about
a third of a node's snapshot bytes. With a store, a window is written here once, when it
freezes (or freezes again after a late reading thawed it), and the rollup holds only its
reference: a row id, never reused and never overwritten. A snapshot therefore names the
exact bytes each of its windows had when it was taken, whatever happened after it (a thaw,
a change, another freeze writes a new row), so Bytewax may resume any snapshot it kept.

The same file holds the closed hours of the nodes' air and traffic rollups
(cloud/logic/domain/air.py, traffic.py) and the checkpoints of their anomaly detectors
(cloud/logic/detector_book.py), under the same rules: written once, by id, before the snapshot that
references them; let go and deleted as a frozen window's row is.

Durability: rows are buffered as windows freeze and written in one transaction (SQLite WAL,
synchronous FULL, as Bytewax's own store) by `flush`, which the last node snapshot of a
worker's round at an epoch's end calls (`cloud.flow.NodeLogic.snapshot`,
cloud/snapshot_round.py: Bytewax takes the round's snapshots in one loop and has none of
them before it ends): a snapshot never reaches Bytewax before the rows it references are on
disk. A crash before a flush loses only rows that no snapshot references (their ids may be
given again).

Layout: one file per process of the cluster, `frozen-p<process id>.sqlite3`, inside the
recovery store's directory (Bytewax opens only its `part-*` files there): only that process
writes rows into it, so no two processes wait for one write lock, and its row ids carry the
process id in their high bits (`PART_SHIFT`), so a node whose key moved to another process at
a rescale still reads its windows from the file of the process that wrote them (every process
sees state.dir). Beside the partitions, a copy of the recovery store holds it, and `cloud
new-state` replaces it with the store.

Rows no snapshot references any more (a window thawed, or dropped past the horizon) are
deleted by the node that let them go, once Bytewax can no longer resume a snapshot that
references them (`cloud.logic.node.NodeState.frozen_snapshot`). A row found missing all the
same makes its window one that is rebuilt from the raw points (`SensorRollup.window`).
"""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
from array import array
from collections.abc import Callable, Iterable
from pathlib import Path

from cloud.errors import CloudError

log = logging.getLogger("urbanpulse.cloud.frozen_store")

PART_SHIFT = 48  # a row id: the writing process's id above these bits, its number below
MAX_PARTS = 1 << 14
LOST_ROW = 0  # a frozen window whose row was not found: its late readings are rebuilt (no id is 0)
BUSY_TIMEOUT_MS = 10_000
# Deletions alone are not worth a transaction (and its fsync) at each node's snapshot: they go
# with the next rows written, or once this many wait, or this long after the last commit.
DELETE_BATCH = 5_000
DELETE_EVERY_S = 10.0
# Rows found missing are logged one by one up to this many in a process, then at each power
# of two: a recovery store copied without these files would log a line per node or window.
LOST_LOGGED = 5


class FrozenStoreError(CloudError):
    pass


class FrozenRefs:
    """What a rollup that freezes its closed windows into a store keeps of it (a mixin, its
    `store` and `gone` set by `use_store`, never pickled): a closed window's state is its
    bytes, or with a store that writes the id of the row holding them."""

    store: FrozenStore | None
    gone: array[int] | None

    def use_store(self, store: FrozenStore | None, gone: array[int] | None) -> None:
        """Closed windows freeze into `store` (if it writes) and are read back from it; the
        ids of rows let go are appended to `gone`."""
        self.store = store
        self.gone = gone

    def frozen_state(self, state: bytes) -> bytes | int:
        """A closed window's pickled state as the rollup holds it: a row's id with a store
        that writes, else the bytes."""
        store = self.store
        return state if store is None or not store.writes else store.put(state)

    def fetch(self, ref: bytes | int) -> bytes | None:
        """The bytes a closed window holds or names; None if its row is not in the store
        (or no store is given)."""
        if type(ref) is bytes:
            return ref
        store = self.store
        return None if store is None or ref == LOST_ROW else store.get(int(ref))

    def let_go(self, ref: bytes | int) -> None:
        """A closed window's row is no longer held (opened again, or past the horizon)."""
        if type(ref) is int and ref != LOST_ROW and self.gone is not None:
            self.gone.append(ref)

    def opened(self, ref: bytes | int, what: str) -> bytes | None:
        """The state of a closed window a late reading opens again, its row let go; None if
        its row is not in the store (logged, once: the caller then holds the window lost,
        LOST_ROW, and its late readings are rebuilt from the raw points)."""
        state = self.fetch(ref)
        if state is None:
            if ref != LOST_ROW:
                note_lost(self.store, f"{what} (row {ref!r})",
                          "its late readings are rebuilt from the raw points")
            return None
        self.let_go(ref)
        return state


def note_lost(store: FrozenStore | None, what: str, then: str) -> None:
    """Logs that `what` was not found in `store` (or no store is in use), and `then` what
    follows; with a store, one by one up to LOST_LOGGED, then at each power of two, with the
    count so far (`FrozenStore.lost`)."""
    if store is None:
        log.warning("%s: no frozen store in use: %s", what, then)
        return
    store.lost += 1
    n = store.lost
    if n <= LOST_LOGGED or n & (n - 1) == 0:
        more = (f"; {n} rows missing in this process so far"
                f"{', further ones logged at each power of two' if n == LOST_LOGGED else ''}"
                if n >= LOST_LOGGED else "")
        log.warning("%s not found in the frozen store: %s%s", what, then, more)


def file_name(part: int) -> str:
    return f"frozen-p{part}.sqlite3"


def part_of(ref: int) -> int:
    return ref >> PART_SHIFT


class FrozenStore:
    """The frozen windows of the nodes this process holds (its workers share it: every
    call takes the store's lock). `writes` false: windows freeze inline in the snapshots
    as before (flow.frozen_store off), rows written before are still read and deleted; so
    too if `directory` does not exist when the first window freezes (the dataflow run with
    a recovery store elsewhere than the config's, as some tests do; logged).
    `gc_delay_ns`: how long a row let go is kept (`NodeState.frozen_snapshot`).
    `detector_every`: with it above 0, the nodes' detectors are rows here too, a checkpoint
    about every this many snapshots of a node (cloud/logic/detector_book.py)."""

    def __init__(self, directory: Path, part: int, gc_delay_ns: int, writes: bool = True,
                 clock: Callable[[], int] = time.time_ns, detector_every: int = 0) -> None:
        if not 0 <= part < MAX_PARTS:
            raise FrozenStoreError(f"frozen store: process id {part} out of [0, {MAX_PARTS})")
        self.directory = directory
        self.part = part
        self.gc_delay_ns = gc_delay_ns
        # A node's detectors written whole about every this many of its snapshots, which hold
        # the values they took since (cloud/logic/detector_book.py); 0: pickled in each
        self.detector_every = detector_every if writes else 0
        self._writes: bool | None = None if writes else False  # None: not looked at yet
        self.clock = clock
        self._lock = threading.Lock()
        self._conns: dict[int, sqlite3.Connection] = {}  # part -> its file, opened
        self._next = 0  # the next row id given (0: not opened yet)
        self._pending: dict[int, bytes] = {}  # rows given an id, not yet written
        self._deletes: dict[int, list[int]] = {}  # part -> ids to delete at the next flush
        self._waiting = 0  # ids in _deletes
        self._committed = time.monotonic()
        self.rows_written = 0
        self.rows_deleted = 0
        self.commits = 0  # transactions of this process's file
        self.lost = 0  # rows found missing (`note_lost`)

    @property
    def writes(self) -> bool:
        """Whether windows freeze into the store (else inline, in the snapshots)."""
        if self._writes is None:
            self._writes = self.directory.is_dir()
            if not self._writes:
                log.warning("frozen store: %s does not exist (no recovery store there): closed "
                            "windows stay in the snapshots", self.directory)
        return self._writes

    def put(self, state: bytes) -> int:
        """A new row for a window's frozen state; its id (written at the next `flush`)."""
        with self._lock:
            if not self._next:
                self._open_own()
            ref = self._next
            self._next += 1
            self._pending[ref] = state
            return ref

    def get(self, ref: int) -> bytes | None:
        """The state of row `ref`, None if no such row (deleted, or never written)."""
        with self._lock:
            state = self._pending.get(ref)
            if state is not None:
                return state
            conn = self._conn(part_of(ref))
            if conn is None:
                return None
            try:
                row = conn.execute("SELECT state FROM frozen WHERE id = ?", (ref,)).fetchone()
            except sqlite3.Error as exc:
                raise FrozenStoreError(f"frozen store {self._path(part_of(ref))}: {exc}") from exc
            return None if row is None else bytes(row[0])

    def retire(self, refs: Iterable[int]) -> list[int]:
        """Rows a node's state no longer references: those not yet written are dropped now
        (no snapshot can reference them); the others, returned, are deleted later (`discard`)."""
        kept = []
        with self._lock:
            for ref in refs:
                if self._pending.pop(ref, None) is None:
                    kept.append(ref)
        return kept

    def discard(self, refs: Iterable[int]) -> None:
        """Rows to delete at the next flush."""
        with self._lock:
            for ref in refs:
                if self._pending.pop(ref, None) is None:
                    self._deletes.setdefault(part_of(ref), []).append(ref)
                    self._waiting += 1

    def flush(self, force_deletes: bool = False) -> None:
        """Writes the rows given ids, durably, in one transaction of this process's file,
        with the deletions discarded so far (and one transaction in each other file a
        discarded row is in). Deletions alone wait for rows to write, DELETE_BATCH of them,
        DELETE_EVERY_S or `force_deletes`: a crash before they are written leaves those rows in
        the file for good (no snapshot names them any more), it never loses one."""
        with self._lock:
            if not self._pending and not (
                    self._waiting and (force_deletes or self._waiting >= DELETE_BATCH
                                       or time.monotonic() - self._committed >= DELETE_EVERY_S)):
                return
            pending, deletes = self._pending, self._deletes
            mine = deletes.pop(self.part, [])
            own = self._open_own() if pending else self._conn(self.part) if mine else None
            if own is not None:
                try:
                    with own:  # one transaction: committed, or rolled back on an error
                        own.executemany("INSERT INTO frozen (id, state) VALUES (?, ?)",
                                        pending.items())
                        own.executemany("DELETE FROM frozen WHERE id = ?", ((r,) for r in mine))
                        own.execute("INSERT OR REPLACE INTO meta (name, value) VALUES ('next', ?)",
                                    (self._next,))
                except sqlite3.Error as exc:
                    raise FrozenStoreError(f"frozen store {self._path(self.part)}: {exc}") from exc
                self.rows_written += len(pending)
                self.rows_deleted += len(mine)
                self.commits += 1
                self._pending = {}
            for part, refs in list(deletes.items()):
                conn = self._conn(part)
                if conn is not None:
                    try:
                        with conn:
                            conn.executemany("DELETE FROM frozen WHERE id = ?", ((r,) for r in refs))
                    except sqlite3.Error as exc:
                        raise FrozenStoreError(f"frozen store {self._path(part)}: {exc}") from exc
                    self.rows_deleted += len(refs)
                del deletes[part]
            self._waiting = 0
            self._committed = time.monotonic()

    def rows(self) -> int:
        """Rows in this process's file (for tests and the bench)."""
        with self._lock:
            own = self._conn(self.part)
            return 0 if own is None else int(own.execute("SELECT count(*) FROM frozen").fetchone()[0])

    def close(self) -> None:
        with self._lock:
            for conn in self._conns.values():
                conn.close()
            self._conns.clear()
            self._next = 0

    def _path(self, part: int) -> Path:
        return self.directory / file_name(part)

    def _open_own(self) -> sqlite3.Connection:
        """This process's file, made if new (the caller holds the lock)."""
        conn = self._conns.get(self.part)
        if conn is not None:
            return conn
        if not self.directory.is_dir():
            raise FrozenStoreError(f"frozen store: {self.directory} is not a directory (the "
                                   "recovery store's, made at the processor's start)")
        path = self._path(self.part)
        try:
            conn = self._connect(path)
            with conn:
                conn.execute("CREATE TABLE IF NOT EXISTS frozen (id INTEGER PRIMARY KEY, "
                             "state BLOB NOT NULL)")
                conn.execute("CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, "
                             "value INTEGER NOT NULL)")
            given = conn.execute("SELECT value FROM meta WHERE name = 'next'").fetchone()
            top = conn.execute("SELECT max(id) FROM frozen").fetchone()[0]
        except sqlite3.Error as exc:
            raise FrozenStoreError(f"frozen store {path}: {exc}") from exc
        base = (self.part << PART_SHIFT) + 1
        self._next = max(base, given[0] if given else 0, (top or 0) + 1)
        self._conns[self.part] = conn
        return conn

    def _conn(self, part: int) -> sqlite3.Connection | None:
        """The file of process `part`, None if there is none (the caller holds the lock)."""
        conn = self._conns.get(part)
        if conn is not None:
            return conn
        path = self._path(part)
        if not path.exists():
            return None
        if part == self.part:
            return self._open_own()
        try:
            conn = self._conns[part] = self._connect(path)
        except sqlite3.Error as exc:
            raise FrozenStoreError(f"frozen store {path}: {exc}") from exc
        return conn

    @staticmethod
    def _connect(path: Path) -> sqlite3.Connection:
        conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=FULL")
        conn.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
        # `with conn` opens its transaction implicitly only in the legacy mode: set it so
        conn.isolation_level = "DEFERRED"
        return conn
