"""The Bytewax wiring, and only the wiring: the logic lives in cloud.logic.

journals (merged) ─▶ key by node ─▶ decode, node state ─┬─ points ────────────────────▶ InfluxDB
                                                         ├─ site updates ─▶ site ──────▶ InfluxDB
                                                         ├─ air readings ─▶ city drift ─▶ InfluxDB, MQTT
                                                         └─ alerts ────────────────────▶ MQTT
process start: one empty batch per worker ─────────────────────────────────────────────▶ InfluxDB

Each process's InfluxDB writer thread also writes the process's `processor` point
(cloud.health), fed by the journal partition of the same process.
"""

from __future__ import annotations

import logging
import pickle
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import bytewax.operators as op
from bytewax.dataflow import Dataflow
from bytewax.inputs import (
    AbortExecution,
    DynamicSource,
    FixedPartitionedSource,
    StatefulSourcePartition,
    StatelessSourcePartition,
)
from bytewax.outputs import (
    DynamicSink,
    FixedPartitionedSink,
    StatefulSinkPartition,
    StatelessSinkPartition,
)

from cloud.alerts import AlertPublisher, make_alert_publisher
from cloud.config import MAX_PROCESSES, CloudConfig
from cloud.errors import SinkError
from cloud.frozen_store import FrozenStore
from cloud.health import ProcessorHealth
from cloud.journal import Journal, MergedJournals, journal_files, journal_path
from cloud.logic.domain.city_drift import CITY, AirReading, CityAir, drift_inputs
from cloud.logic.domain.hospital import SiteUpdate
from cloud.logic.domain.hospital_site import HospitalSite
from cloud.logic.domain_replay import ReplaySpan, SpanKey, replay_requests, site_step
from cloud.logic.events import Alert
from cloud.logic.node import NodeState
from cloud.logic.records import Point, Record, RelayedReject, decode_record, expand_relays
from cloud.sink import InfluxWriter, make_writer, owed_entry, retry_advice
from cloud.snapshot_round import SnapshotRound
from cloud.stop_grace import EpochProgress
from urbanpulse.clock import Clock, SystemClock, from_epoch_ns, to_epoch_ns
from urbanpulse.influx_http import InfluxError

log = logging.getLogger("urbanpulse.cloud.flow")

# A source snapshot's key for a journal's id (`Journal.id`), beside its offset's
JOURNAL_ID = "#id"
# A source snapshot's key for the offsets the trim goes by (`JournalPartition.snapshot`)
TRIM_MARKS = "#trim"
MARKS_PER_RETENTION = 64  # offsets kept for the trim per flow.journal_retention_s
READ_BATCH = 50  # messages per source batch: bounds the latency of one step (50 x 500 readings)
IDLE_WAIT = timedelta(milliseconds=20)
TRIM_EVERY_S = 60.0
MAX_PENDING_POINTS = 200_000  # handed to the InfluxDB writer thread, not yet written
STATS_EVERY_S = 30.0  # how often the InfluxDB writer logs its counts
WAIT_STEP_S = 0.2  # how often a wait for the InfluxDB writer looks at the stop event
WRITE_MIN_SPACING_S = 0.1  # between the starts of two writes, but at an epoch's end
WRITE_NOW_POINTS = 5_000  # handed over, written without waiting for the spacing
CLOSE_JOIN_S = 10.0  # a write in flight when stopped ends within InfluxHTTP's timeout or is left
ABORT_JOIN_S = 1.0  # the same after an abort, whose points are written again after the restart
WAKE_SINK_EVERY_S = 5.0  # how often the sink partitions are handed an empty batch (ProcessStart)
MID_BATCH_REPORT_S = 60.0  # "Processor silent" waits 5 minutes: 5 chances
TICK = timedelta(seconds=30)  # how often time-based fault rules (silence) are checked
TICK_NS = int(TICK.total_seconds()) * 1_000_000_000
# A frozen window's row let go is deleted flow.backup_interval_s and this long after (at least
# 10 epochs), and FROZEN_GC_SNAPSHOTS snapshots of its node later (NodeState.frozen_snapshot)
FROZEN_GC_MARGIN_S = 120.0


class AbortStop(threading.Event):
    """A `drain` event (`build_flow`) for `flow.stop = "abort"`: once it is set, the sources
    raise Bytewax's AbortExecution instead of ending their input. Bytewax 0.21 then leaves
    the run at once, `cli_main` returning as after the end of the input: no `on_eof`, no
    last snapshot of every node, the epoch under way not committed (its records read again
    from the journal at the next start, as after a crash). `raised`: a source raised it."""

    def __init__(self) -> None:
        super().__init__()
        self.raised = False


def end_input_if_asked(drain: threading.Event) -> None:
    """A source's next batch, once the processor is asked to stop (`drain` set): raises
    StopIteration (the epoch under way is written and committed, after every key's `on_eof`
    and snapshot), or AbortExecution for an AbortStop."""
    if not drain.is_set():
        return
    if isinstance(drain, AbortStop):
        drain.raised = True
        raise AbortExecution
    raise StopIteration


class JournalPartition(StatefulSourcePartition[Record, dict[str, Any]]):
    """Every journal, merged in received-time order (cloud.journal.MergedJournals), as one
    partition: one worker reads them all, and a node's messages leave it in the order the
    broker delivered them, whichever ingest journaled them. Its snapshot is the offset of
    the last record emitted from each journal, each journal's id, and the trim's marks.
    `health` hears of every batch. A gateway's relay leaves it as its messages, each as
    the record it would have been on its node's own topic (`expand_relays`): keyed by node
    after that, and the offsets stay those of the journal's records, so a resumed reader
    reads a relay whole or not at all, and expands it as before.

    The trim deletes records read in an epoch snapshotted `retention_s` ago (and received
    that long ago), so that a copy of the recovery store younger than that resumes at
    records still there. It goes by marks: the offsets of a snapshot every
    `retention_s / MARKS_PER_RETENTION` (at least TRIM_EVERY_S), kept in the snapshot with
    their age, so that a restart goes on from them. Before, they were the process's memory
    only: after each restart nothing was trimmed for `retention_s`, and a processor
    restarted more often than that (daily with the default retention, weekly with a week's)
    never trimmed its journals, which grew until the state disk was full."""

    def __init__(self, journals: MergedJournals, retention_s: int,
                 health: ProcessorHealth | None = None, drain: threading.Event | None = None,
                 clock: Clock | None = None, marks: Iterable[tuple[int, dict[str, int]]] = ()) -> None:
        """`marks`: from the snapshot resumed, as (their age in ns, offsets)."""
        self.journals = journals
        self.retention_s = retention_s
        self.health = health
        self.drain = drain or threading.Event()
        self.clock = clock or SystemClock()
        self._idle = False
        self._mark_every_s = max(TRIM_EVERY_S, retention_s / MARKS_PER_RETENTION)
        now = self.clock.monotonic()
        # (monotonic time taken, offsets), oldest first
        self._marks: list[tuple[float, dict[str, int]]] = [
            (now - max(0, age_ns) / 1e9, offsets) for age_ns, offsets in marks]
        self._next_trim = now + TRIM_EVERY_S

    def next_batch(self) -> Sequence[Record]:
        end_input_if_asked(self.drain)  # stopping
        records = self.journals.read(READ_BATCH)
        self._idle = self.journals.caught_up
        if self.health is not None:
            self.health.journal_read(records, self._idle, self.journals.backlog)
        if self.clock.monotonic() >= self._next_trim:
            self._trim()
        return expand_relays(records)

    def next_awake(self) -> datetime | None:
        return self.clock.now() + IDLE_WAIT if self._idle else None

    def snapshot(self) -> dict[str, Any]:
        offsets = self.journals.offsets()
        now = self.clock.monotonic()
        if not self._marks or now - self._marks[-1][0] >= self._mark_every_s:
            self._marks.append((now, offsets))
        marks = [(int((now - t) * 1e9), o) for t, o in self._marks]
        return offsets | {p + JOURNAL_ID: i for p, i in self.journals.ids().items()} | {TRIM_MARKS: marks}

    def _trim(self) -> None:
        # Only below offsets snapshotted so long ago that their epoch is surely committed.
        now = self.clock.monotonic()
        self._next_trim = now + TRIM_EVERY_S
        cutoff = now - self.retention_s
        old = [o for t, o in self._marks if t < cutoff]
        if old:
            self._marks = [(t, o) for t, o in self._marks if t >= cutoff]
            received_before = to_epoch_ns(self.clock.now()) - self.retention_s * 1_000_000_000
            self.journals.trim({p: offset + 1 for p, offset in old[-1].items()}, received_before)

    def close(self) -> None:
        self.journals.close()


class RetiredPartition(StatefulSourcePartition[Record, None]):
    """A name kept from the time each journal was a partition of its own, so that a
    recovery store written then still resumes (Bytewax refuses state for unknown
    partitions). Emits nothing; the merged partition reads its journal."""

    def __init__(self, drain: threading.Event | None = None) -> None:
        self.drain = drain or threading.Event()

    def next_batch(self) -> list[Record]:
        end_input_if_asked(self.drain)
        return []

    def next_awake(self) -> datetime | None:
        # Not longer: a partition's epoch advances only when it is woken, and every epoch
        # of the dataflow waits for it.
        return SystemClock().now() + IDLE_WAIT

    def snapshot(self) -> None:
        return None


class JournalSource(FixedPartitionedSource[Record, Any]):
    """The merged partition takes the first journal's name: a store from one ingest,
    which held that journal's offset as a plain int, resumes where it was. A store from
    several held the others' offsets under their own names; those journals are read again
    from their retained start (duplicates, which the node state drops and the sink
    overwrites).

    Besides the configured journals it reads every journal found in the directory and every
    one its snapshot names: after fewer ingests are configured (a scale-down), what the
    retired ones journaled is still read, and a journal that vanished stops the start."""

    def __init__(self, directory: Path, partitions: list[str], retention_s: int,
                 health: ProcessorHealth | None = None, drain: threading.Event | None = None,
                 clock: Clock | None = None) -> None:
        self.directory = directory
        self.partitions = partitions
        self.retention_s = retention_s
        self.health = health
        self.drain = drain
        self.clock = clock

    def list_parts(self) -> list[str]:
        return self._names(self._found())

    def build_part(self, step_id: str, for_part: str,
                   resume_state: dict[str, Any] | int | None) -> StatefulSourcePartition[Record, Any]:
        if for_part != self.partitions[0]:
            return RetiredPartition(self.drain)
        if isinstance(resume_state, int):
            resume_state = {for_part: resume_state}
        resume = resume_state or {}
        marks: list[tuple[int, dict[str, int]]] = resume.get(TRIM_MARKS, [])
        offsets = {p: n for p, n in resume.items() if p != TRIM_MARKS and not p.endswith(JOURNAL_ID)}
        names = self._names([*self._found(), *offsets])
        journals = [Journal(journal_path(self.directory, p), p).open(create=False) for p in names]
        for journal in journals:
            numbered = resume.get(journal.partition + JOURNAL_ID)
            if numbered is not None and journal.id not in (None, numbered) \
                    and offsets.get(journal.partition):
                # Its numbers started at 1 again: resumed after the old offset, its records
                # up to that number would be skipped (and trimmed) without a word.
                log.error("journal %s is not the one the recovery store read up to record %d "
                          "(deleted or replaced, and made anew by its ingest): read from its "
                          "start; what the old one held and the dataflow had not read is not "
                          "in it", journal.path, offsets[journal.partition])
                offsets[journal.partition] = 0
                # nor trimmed below the old one's offsets
                marks = [(age, {p: n for p, n in o.items() if p != journal.partition})
                         for age, o in marks]
        return JournalPartition(MergedJournals(journals, offsets, READ_BATCH), self.retention_s,
                                self.health, self.drain, self.clock, marks)

    def _found(self) -> list[str]:
        return [partition for partition, _ in journal_files(self.directory)]

    def _names(self, more: list[str]) -> list[str]:
        extra = sorted(set(more) - set(self.partitions), key=lambda p: (len(p), p))
        return [*self.partitions, *extra]


def node_key(rec: Record) -> str:
    """The node a record belongs to, from its topic alone (urbanpulse/v1/SITE/NODE/STREAM),
    so that records cross processes as received bytes and are decoded where the node's
    state lives. The same key as NodeData.key; a malformed topic gets some key all the
    same, and its dead letter comes from that key's step. A relay's refused part goes to
    the node it names (`RelayedReject.key`)."""
    if type(rec) is RelayedReject:
        return rec.key
    parts = rec.topic.split("/")
    return f"{parts[2]}/{parts[3]}" if len(parts) == 5 else ""


NodeOut = tuple[list[Point], list[SiteUpdate], list[Alert], list[AirReading]]


class NodeLogic(op.StatefulBatchLogic[Record, NodeOut, bytes]):
    def __init__(self, state: NodeState, dead_letter_max_bytes: int, drift: bool = False,
                 progress: EpochProgress | None = None, snapshot_round: SnapshotRound | None = None
                 ) -> None:
        self.state = state
        self.dead_letter_max_bytes = dead_letter_max_bytes
        self.drift = drift  # hand the air readings on to the city's drift step
        self.progress = progress or EpochProgress()  # a stop's wait for the last epoch
        # with a frozen store: the worker's last snapshot of an epoch flushes it (None: each)
        self.snapshot_round = snapshot_round

    def on_batch(self, values: list[Record]) -> tuple[list[NodeOut], bool]:
        if self.snapshot_round is not None:
            self.snapshot_round.woke(self)
        out: list[NodeOut] = []
        for rec in values:
            data, points = decode_record(rec, self.dead_letter_max_bytes)
            if data is not None:
                points.extend(self.state.process(data))
                late = self.state.domain.take_late()
                if late:  # domain windows to rebuild from the raw points, by the sink
                    points.extend(replay_requests(data.site, data.node, late))
                # The readings the node state took in: no duplicate, no refused sensor.
                measured = self.state.take_measured()
                air = drift_inputs(data.site, data.node, measured, data.received_ns) if self.drift else []
                out.append((points, self.state.take_site_updates(), self.state.take_alerts(), air))
            elif points:
                out.append((points, [], [], []))
            self._tick_at(rec.received_ns, out)
        return out, op.StatefulBatchLogic.RETAIN

    def _tick_at(self, received_ns: int, out: list[NodeOut]) -> None:
        """Time-based rules (a sensor gone silent while its node still talks) ride on the
        node's own traffic, every TICK of the time the ingest received it: not of the
        processor's clock, which runs on while the dataflow waits (InfluxDB down or refusing
        the writer) or catches up a backlog, when what arrived meanwhile is not read yet (a
        false silence for every fast sensor); and a replay of the journal ticks the same.
        Bytewax's own timer (`notify_at`, `on_notify`) is that processor's clock: it fires
        when the worker's wall clock passes the time asked for. It holds no epoch open
        (0.21's `stateful_batch` keeps each key's next time and wakes the step; its output
        goes on with the frontier), but it costs per key: a `notify_at` call for every key
        each time one is woken, a pass over every key's time at each wake of the step, and
        a snapshot of each key it wakes. A node silent as a whole is the heartbeat alert's
        job (node_status).
        The schedule is the node state's (`NodeState.next_tick_ns`), so in its snapshots: a
        processor restarted from one ticks the epochs it reads again as the run it resumes
        did, and raises the same events with the same stamps (no second SILENCE point)."""
        state = self.state
        next_tick = state.next_tick_ns
        if next_tick is None:
            state.next_tick_ns = received_ns + TICK_NS
        elif received_ns >= next_tick:
            state.next_tick_ns = received_ns + TICK_NS
            points = state.tick(from_epoch_ns(received_ns))
            alerts = state.take_alerts()
            if points or alerts:
                out.append((points, [], alerts, []))

    def on_eof(self) -> tuple[list[NodeOut], bool]:
        """The run ends (a stop with flow.stop = "drain"): Bytewax calls this on every key,
        then snapshots each. A stop by abort calls none."""
        self.progress.end_of_input()
        if self.snapshot_round is not None:
            self.snapshot_round.woke(self)
        return [], op.StatefulBatchLogic.RETAIN

    def snapshot(self) -> bytes:
        self.progress.tick()
        # The frozen windows' rows on disk before Bytewax has a snapshot that references
        # them: at the worker's last snapshot of the epoch (cloud/snapshot_round.py)
        rnd = self.snapshot_round
        self.state.frozen_snapshot(flush=rnd is None or rnd.snapshotted(self))
        return pickle.dumps(self.state, protocol=pickle.HIGHEST_PROTOCOL)


class DriftLogic(op.StatefulBatchLogic[list[AirReading], tuple[list[Point], list[Alert]], bytes]):
    def __init__(self, state: CityAir, progress: EpochProgress | None = None) -> None:
        self.state = state
        self.progress = progress or EpochProgress()

    def on_batch(self, values: list[list[AirReading]]
                 ) -> tuple[list[tuple[list[Point], list[Alert]]], bool]:
        return [self.state.process(r for batch in values for r in batch)], op.StatefulBatchLogic.RETAIN

    def snapshot(self) -> bytes:
        self.progress.tick()
        return pickle.dumps(self.state, protocol=pickle.HIGHEST_PROTOCOL)


class SiteLogic(op.StatefulBatchLogic[SiteUpdate, list[Point], bytes]):
    def __init__(self, state: HospitalSite, progress: EpochProgress | None = None) -> None:
        self.state = state
        self.progress = progress or EpochProgress()

    def on_batch(self, values: list[SiteUpdate]) -> tuple[list[list[Point]], bool]:
        return [site_step(self.state, values[0].site, values)], op.StatefulBatchLogic.RETAIN

    def snapshot(self) -> bytes:
        self.progress.tick()
        return pickle.dumps(self.state, protocol=pickle.HIGHEST_PROTOCOL)


class InfluxPartition(StatefulSinkPartition[list[Point], list[str] | None]):
    """Writes on a thread of its own, so that the dataflow goes on processing while InfluxDB
    takes a batch in. Bytewax calls `snapshot` at the end of every epoch, before it commits
    the epoch: it returns only once everything handed over so far is written, so a
    committed epoch never has points still in flight (exactly once in effect, as with
    synchronous writes). `write_batch` blocks while `max_pending` points wait (InfluxDB
    slow or down), which holds the dataflow back and leaves the data in the journal.

    Domain replay requests (cloud.logic.domain_replay) are held until the epoch ends and
    run in `snapshot`, after every point of the epoch is written: Bytewax hands over the node
    step's points (with the requests) and the site step's in batches of its own choosing, and
    a site step's live hospital total of a replayed window handed over after the replay
    would otherwise be the last written. The requests of an epoch not committed are made
    again when its input is read again.

    The replays of one span (scope, site, node: `ReplaySpan.key`) run at most every
    `replay_interval_s`: a backlog drained over many epochs, and the live readings after it
    that write a replayed span's windows again, ask for the same span epoch after epoch, and
    each replay reads the span's raw points and their lookback. A request made sooner is
    held, in the partition's snapshot, so a crash loses none, and runs at the first epoch's
    end once the interval has passed; until then the live points it corrects stay written.

    A request whose raw points InfluxDB refused to read back for good (a 4xx: the reader
    lacks READ on the database, a bad query) is held the same way, in the snapshot, and
    tried again at the replay interval, at a later epoch's end than the one that was
    refused; everything else goes on being written. That holds for the domain spans and for
    the per-sensor windows a late reading asks to rebuild (cloud.logic.recompute): those
    are held too, in the snapshot as runs of a sensor's windows (`pack_windows`). The writer logs each
    refusal once; the `processor` point counts what is held (`domain_spans_refused`,
    `windows_refused`). Errors that can pass (InfluxDB down, a 5xx) are waited out as always.

    In a cluster (`replay_after_epochs` 1) a request waits for the end of the epoch after
    the one it came in. The processes write their points on their own, each before its own
    epoch end: a replay asked for by the site step of one process reads raw points that the
    node step of another wrote in the same epoch, and would read them before they are all
    written. One epoch later they are, as long as each process's writer keeps up: no
    process ends epoch N + 1 before every other has handed over its points of epoch N, and
    a writer writes what it is handed within seconds. Not guaranteed: a writer held back by
    a slow InfluxDB can still be writing epoch N's points then (Bytewax tells a sink of no
    other process's progress); the replay then misses what it had not written yet.

    Once `stop` is set (the processor is stopping) no wait goes on: `write_batch` and
    `snapshot` raise SinkError, so the epoch is not committed and its points are read
    from the journal again after the restart.

    With `health`, the writer thread also writes the process's `processor` point whenever
    it is due, between requests (cloud.health); `start` then starts the thread at once, so
    that the points come before any data does."""

    HELD_WINDOW = "window|"  # one held window rebuild (snapshots before runs; still read)
    HELD_WINDOWS = "windows|"  # a sensor's held rebuilds of one width, as runs (`pack_windows`)

    def __init__(self, writer: InfluxWriter, max_pending: int = MAX_PENDING_POINTS,
                 stop: threading.Event | None = None, health: ProcessorHealth | None = None,
                 replay_interval_s: float = 0.0, held_replays: list[str] | None = None,
                 replay_after_epochs: int = 0,
                 monotonic: Callable[[], float] = time.monotonic,
                 progress: EpochProgress | None = None, abort: AbortStop | None = None) -> None:
        self.writer = writer
        self.abort = abort  # the dataflow's stop by abort: `close` after it writes nothing more
        self.progress = progress or EpochProgress()  # each write done: a stop's wait goes on
        self._monotonic = monotonic  # when held replays and rebuilds are due
        self.replay_interval_s = replay_interval_s
        self.replay_after_epochs = replay_after_epochs
        self.max_pending = max_pending
        self.stop = stop or threading.Event()
        self.health = health
        self._health_failing = False
        self._cond = threading.Condition()
        self._queue: deque[tuple[int, list[Point]]] = deque()  # (flush count when handed over, points)
        self._pending = 0  # points queued or being written
        # domain replay requests held for the epoch's end (or their span's interval), by span
        self._replays: dict[SpanKey, set[str]] = {}
        self._last_replay: dict[SpanKey, float] = {}  # monotonic time a span's replay last began
        self._flushes = 0  # epoch ends (and closes) so far
        # Held after InfluxDB refused their reads: the flush in which each span was refused
        # (not tried again within it), the windows to rebuild, and when they were refused.
        self._refused: dict[SpanKey, int] = {}
        self._windows: set[str] = set()
        self._windows_refused_in = -1
        self._windows_refused_at = 0.0
        # a held replay request -> the flush counts when it was first and last handed over
        self._held_in: dict[str, tuple[int, int]] = {}
        held = held_replays or []
        # owed a rewrite since a write without an answer: the writer's (`InfluxWriter.owed`)
        self.writer.restore_owed([text for text in held if owed_entry(text)])
        self._hold([text for text in held if not owed_entry(text)])  # from committed epochs: ripe
        self._replaying = False  # the writer runs the held requests
        self._flush_all = False  # `close`: every held request is due, whatever its interval
        self._epoch_end = False  # `flush` waits: the held requests are due
        self._error: BaseException | None = None
        self._closing = False
        self._thread: threading.Thread | None = None
        self._next_stats = time.monotonic() + STATS_EVERY_S
        self._last_write = -WRITE_MIN_SPACING_S  # monotonic time the last write began

    def start(self) -> None:
        with self._cond:
            self._start_thread()

    @property
    def pending_points(self) -> int:
        """Points handed over and not yet written."""
        with self._cond:
            return self._pending

    def _start_thread(self) -> None:
        """Starts the writer thread unless it runs (the caller holds the condition)."""
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="influx-writer", daemon=True)
            self._thread.start()

    def write_batch(self, values: list[list[Point]]) -> None:
        points = [p for batch in values for p in batch]
        if not points:
            return
        with self._cond:
            self._start_thread()
            while self._pending >= self.max_pending and self._error is None:
                self._wait_step()
            self._raise_failure()
            self._queue.append((self._flushes, points))
            self._pending += len(points)
            self._cond.notify_all()

    def snapshot(self) -> list[str]:
        """Flushes; the requests still held: replays (their span replayed too recently, or
        refused) and window rebuilds InfluxDB refused (`pack_windows`: HELD_WINDOWS entries,
        one per sensor and width, whose consecutive windows are runs); and what the writer
        owes since a write InfluxDB did not answer (`InfluxWriter.owed`: the points to write
        again REWRITE_AFTER_S after it), so that a restart keeps that promise too."""
        self.flush()
        owed = self.writer.owed()
        with self._cond:
            return sorted([text for texts in self._replays.values() for text in texts]
                          + pack_windows(self._windows) + owed)

    @property
    def held_replays(self) -> int:
        """Replay requests held for a later epoch's end."""
        with self._cond:
            return sum(len(texts) for texts in self._replays.values())

    @property
    def held_windows(self) -> int:
        """Window rebuilds held because InfluxDB refused to read their raw points."""
        with self._cond:
            return len(self._windows)

    def flush(self, everything: bool = False) -> None:
        """Returns once every point handed over is written and the replays due have run
        (with `everything`, all the held ones)."""
        with self._cond:
            self._flushes += 1
            self._epoch_end = True
            self._flush_all = everything
            # held since a restart (a rewrite owed too): nothing may have started the thread
            if self._replays or self._windows or self.writer.seconds_to_rewrite() is not None:
                self._start_thread()
            self._cond.notify_all()
            try:
                while ((self._pending or self._due_keys() or self._windows_due() or self._replaying)
                       and self._error is None):
                    self._wait_step()
            finally:
                self._epoch_end = self._flush_all = False
            self._raise_failure()

    def _hold(self, requests: list[str], handed_in: int = -1) -> None:
        """Adds replay requests, or held window rebuilds (a snapshot's HELD_WINDOWS or
        HELD_WINDOW entries), to those held; `handed_in`: the flush count when they were
        handed over (the caller holds the condition)."""
        for text in requests:
            if text.startswith(self.HELD_WINDOWS):
                self._windows.update(unpack_windows(text))
            elif text.startswith(self.HELD_WINDOW):
                self._windows.add(text[len(self.HELD_WINDOW):])
            else:
                self._replays.setdefault(ReplaySpan.decode(text).key, set()).add(text)
                if self.replay_after_epochs:
                    first, _ = self._held_in.get(text, (handed_in, handed_in))
                    self._held_in[text] = (first, handed_in)

    def _ripe(self, text: str) -> bool:
        """A held request whose epoch is `replay_after_epochs` behind (the caller holds
        the condition)."""
        return (not self.replay_after_epochs or self._flush_all
                or self._held_in.get(text, (-1, -1))[0] + self.replay_after_epochs < self._flushes)

    def _take_ripe(self, key: SpanKey) -> set[str]:
        """A span's ripe requests, taken out of those held, except those asked for again
        since (the caller holds the condition): they run now and stay held for the epoch of
        their last request, so that a span asked for epoch after epoch runs at every
        interval, and once more after its last request."""
        texts = self._replays[key]
        ripe = {t for t in texts if self._ripe(t)}
        for t in ripe:
            _, last = self._held_in.pop(t, (-1, -1))
            if self._flush_all or last + self.replay_after_epochs < self._flushes:
                texts.discard(t)
            else:
                self._held_in[t] = (last, last)
        if not texts:
            del self._replays[key]
        return ripe

    def _hold_refused(self, windows: list[str], spans: list[str], tried: list[SpanKey],
                      now: float) -> None:
        """Holds the requests InfluxDB refused to read for (the texts of window rebuilds
        and of replay spans, as the writer hands them back): tried again at a later epoch's
        end, once the replay interval has passed. `tried`: the spans whose replays ran;
        those not refused again no longer count as refused (the caller holds the condition)."""
        again: set[SpanKey] = set()
        for text in spans:
            key = ReplaySpan.decode(text).key
            self._replays.setdefault(key, set()).add(text)
            self._refused[key] = self._flushes
            self._last_replay[key] = now
            again.add(key)
        for key in tried:
            if key not in again:
                self._refused.pop(key, None)
        if windows:
            self._windows.update(windows)
            self._windows_refused_in = self._flushes
            self._windows_refused_at = now
        self.writer.stats.spans_refused = len(self._refused)
        self.writer.stats.windows_refused = len(self._windows)

    def _due_keys(self) -> list[SpanKey]:
        """The held spans whose replays may run now (the caller holds the condition). A
        span refused in this epoch end's flush is not tried again within it."""
        fresh = [k for k, texts in self._replays.items() if self._refused.get(k, -1) < self._flushes
                 and any(self._ripe(t) for t in texts)]
        if self._flush_all or self.replay_interval_s <= 0:
            return fresh
        since = self._monotonic() - self.replay_interval_s
        last = self._last_replay
        return [k for k in fresh if last.get(k, since) <= since]

    def _windows_due(self) -> bool:
        """Held window rebuilds may be tried again now: not refused in this flush, and the
        interval has passed (the caller holds the condition)."""
        if not self._windows or self._windows_refused_in >= self._flushes:
            return False
        return (self._flush_all or self.replay_interval_s <= 0
                or self._monotonic() - self._windows_refused_at >= self.replay_interval_s)

    def close(self) -> None:
        # Left by an abort (flow.stop = "abort"): the epoch under way is not committed and
        # its records are read again at the next start, so what is handed over and not
        # written yet is dropped, the held requests wait in the committed snapshot (those
        # of that epoch are asked for again), and a write in flight is waited for only
        # briefly (InfluxDB down: it would retry for ever).
        aborted = self.abort is not None and self.abort.raised
        if not self.stop.is_set() and not aborted:
            self.flush(everything=True)
        with self._cond:
            self._closing = True
            if aborted:
                self._pending -= sum(len(points) for _, points in self._queue)
                self._queue.clear()
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join(ABORT_JOIN_S if aborted else CLOSE_JOIN_S)
        self._log_stats()
        if self._thread is None or not self._thread.is_alive():  # else a write is in flight on them
            self.writer.close()

    def _wait_step(self) -> None:
        """One bounded wait on the condition (held by the caller)."""
        if self.stop.is_set():
            raise SinkError(f"stopped with {self._pending} points not yet written to InfluxDB "
                            "(their epoch is not committed: they are read again on restart)")
        # What the writer waits for can become due by time alone (a held replay's interval
        # passing while an epoch end waits for it), and its own wait has no deadline but
        # the next health point (none in tests): woken at each step, it looks again. Without
        # this an epoch end waited up to health_every_s, and for ever without health.
        self._cond.notify_all()
        self._cond.wait(WAIT_STEP_S)

    def _log_stats(self) -> None:
        s = self.writer.stats
        log.info("InfluxDB writer: %d points in %d requests, %d windows rebuilt from raw points, "
                 "%d domain spans replayed, %d domain spans not replayed, %d retries, %d requests "
                 "refused, %d writes denied (%.0f s); held after InfluxDB refused their reads: "
                 "%d domain spans, %d windows",
                 s.points, s.requests, s.recomputed, s.domain_replays, s.domain_not_replayed,
                 s.retries, s.refused_requests, s.denied, s.denied_s, s.spans_refused, s.windows_refused)

    def _raise_failure(self) -> None:
        if self._error is not None:
            raise SinkError(f"the InfluxDB writer failed: {self._error}") from self._error

    def _run(self) -> None:
        try:
            self._serve()
        except Exception as exc:  # noqa: BLE001 - not swallowed: the dataflow's thread raises it
            with self._cond:
                self._error = exc
                self._cond.notify_all()

    def _serve(self) -> None:
        """Writes what is handed over until closed; whatever it raises (a write that cannot
        go on, or anything in a health report) ends it and is raised by the dataflow's
        thread at its next hand-over or flush, which would otherwise wait for ever."""
        while True:
            with self._cond:
                while (not self._queue and not self._closing and not self._report_due()
                       and not self._replays_due() and not self._rewrite_due()):
                    self._cond.wait(self._idle_wait())
                while not self._write_due():
                    self._cond.wait(self._last_write + WRITE_MIN_SPACING_S - self._monotonic())
                if not self._queue and self._closing:
                    return
                if self._queue:
                    self._last_write = self._monotonic()
                batch: list[Point] = []
                handed_in = 0
                while self._queue:  # whatever piled up goes out as one set of requests
                    handed_in, points = self._queue.popleft()
                    batch.extend(points)
                replays: list[str] = []
                tried: list[SpanKey] = []
                windows: list[str] = []
                if not batch and self._replays_due():
                    now = self._monotonic()
                    tried = self._due_keys()
                    for key in tried:
                        replays += self._take_ripe(key)
                        self._last_replay[key] = now
                    if self._windows_due():
                        windows = sorted(self._windows)
                        self._windows.clear()
                    self._replaying = True
                    self._forget_replayed(now)
            between = None if self.health is None else self._report_between_requests
            if batch:
                held: list[str] = []
                refused = self.writer.write(batch, between=between, defer_replays=held,
                                            hold_refused=True)
                if time.monotonic() >= self._next_stats:
                    self._next_stats = time.monotonic() + STATS_EVERY_S
                    self._log_stats()
                self.progress.tick()
                with self._cond:
                    self._hold(held, handed_in)
                    if refused:
                        self._hold_refused(refused.windows, [], [], self._monotonic())
                    self._pending -= len(batch)
                    self._cond.notify_all()
            if replays or windows:
                again = self.writer.rebuild_windows(windows, between, hold_refused=True)
                again.spans += self.writer.run_replays(replays, between, hold_refused=True).spans
                self.progress.tick()
                with self._cond:
                    self._hold_refused(again.windows, again.spans, tried, self._monotonic())
                    self._replaying = False
                    self._cond.notify_all()
            if self._rewrite_due():
                self.writer.rewrite(between)
            with self._cond:
                busy = bool(self._queue)  # batches back to back: as within one
            if busy and between is not None:
                between()
            else:
                self._report_if_due()

    def _rewrite_due(self) -> bool:
        """The points written since a write InfluxDB did not answer are due to be written
        again (`InfluxWriter.rewrite`): also while no data comes."""
        left = self.writer.seconds_to_rewrite()
        return left is not None and left <= 0

    def _idle_wait(self) -> float | None:
        """How long the idle writer waits at most: until the next health report or the
        rewrite after a write without an answer, whichever comes first."""
        waits = [w for w in (None if self.health is None else self.health.seconds_to_report(),
                             self.writer.seconds_to_rewrite()) if w is not None]
        return min(waits) if waits else None

    def _write_due(self) -> bool:
        """What is handed over goes out now: an epoch ends (or the partition closes), enough
        piled up, or the last write began WRITE_MIN_SPACING_S ago. Live, Bytewax hands the
        points over a few at a time; one request each cost InfluxDB and this thread more
        than the points (the caller holds the condition)."""
        return (not self._queue or self._epoch_end or self._closing or self.stop.is_set()
                or self._pending >= WRITE_NOW_POINTS
                or self._monotonic() - self._last_write >= WRITE_MIN_SPACING_S)

    def _report_if_due(self) -> None:
        if self._report_due():
            self._write_report()

    def _report_between_requests(self) -> None:
        """A batch may take minutes (a catch-up, many windows to rebuild), longer than
        "Processor silent" waits: reports go on between its requests too, but only every
        MID_BATCH_REPORT_S, so that a slow InfluxDB's time goes to the data."""
        assert self.health is not None
        if self.health.seconds_to_report(max(self.health.every_s, MID_BATCH_REPORT_S)) <= 0:
            self._write_report()

    def _replays_due(self) -> bool:
        """The epoch ended (`flush` waits), every point handed over is written, and held
        replays or refused window rebuilds are due (the caller holds the condition)."""
        return self._epoch_end and not self._queue and (bool(self._due_keys()) or self._windows_due())

    def _forget_replayed(self, now: float) -> None:
        """Spans replayed longer ago than the interval are due anyway: their times go."""
        old = [k for k, t in self._last_replay.items() if t <= now - self.replay_interval_s]
        for k in old:
            del self._last_replay[k]

    def _report_due(self) -> bool:
        return self.health is not None and self.health.seconds_to_report() <= 0

    def _write_report(self) -> None:
        """The `processor` point, written once: not retried, as the next one follows an
        interval later, and not through the writer's counts, which it reports."""
        assert self.health is not None
        with self._cond:
            pending = self._pending
        rp, text = self.health.report(self.writer.stats, pending)
        try:
            self.writer.client.write(text.encode(), db=self.writer.database, rp=rp)
        except InfluxError as exc:
            if not self._health_failing:
                log.warning("the processor's health point was not written (more may follow, "
                            "logged once until one is): %s%s", exc, retry_advice(exc, rp),
                            extra={"error": str(exc)})
            self._health_failing = True
            return
        self._health_failing = False


def pack_windows(texts: Iterable[str]) -> list[str]:
    """Held window rebuilds (RECOMPUTE texts: rp|measurement|site|node|sensor|kind|width|start)
    as snapshot entries: HELD_WINDOWS + the text without its start + "|" + runs of starts
    ("<first>x<count>", comma-separated; a run's windows follow each other by the width). A
    node's backlog asks for every minute and hour of each sensor: a few entries a sensor,
    not one per window (a city's backlog held while READ is revoked was tens of MB pickled
    at every epoch end)."""
    by_head: dict[str, list[int]] = {}
    for text in texts:
        head, start = text.rsplit("|", 1)
        by_head.setdefault(head, []).append(int(start))
    out = []
    for head, starts in by_head.items():
        width = int(head.rsplit("|", 1)[1])
        starts.sort()
        runs: list[list[int]] = []
        for at in starts:
            if runs and at == runs[-1][0] + runs[-1][1] * width:
                runs[-1][1] += 1
            else:
                runs.append([at, 1])
        out.append(f"{InfluxPartition.HELD_WINDOWS}{head}|" + ",".join(f"{a}x{n}" for a, n in runs))
    return out


def unpack_windows(entry: str) -> list[str]:
    """The RECOMPUTE texts of a HELD_WINDOWS snapshot entry (`pack_windows`)."""
    head, runs = entry[len(InfluxPartition.HELD_WINDOWS):].rsplit("|", 1)
    width = int(head.rsplit("|", 1)[1])
    out = []
    for run in runs.split(","):
        first, count = (int(x) for x in run.split("x"))
        out += [f"{head}|{first + i * width}" for i in range(count)]
    return out


def held_windows_in(snapshot: Iterable[str]) -> set[str]:
    """The window rebuilds (RECOMPUTE texts) an InfluxPartition snapshot holds, in either
    form (HELD_WINDOWS runs, or HELD_WINDOW one by one)."""
    out: set[str] = set()
    for entry in snapshot:
        if entry.startswith(InfluxPartition.HELD_WINDOWS):
            out.update(unpack_windows(entry))
        elif entry.startswith(InfluxPartition.HELD_WINDOW):
            out.add(entry[len(InfluxPartition.HELD_WINDOW):])
    return out


class RetiredSinkPartition(StatefulSinkPartition[list[Point], list[str] | None]):
    """The name of a process id the cluster does not have now, kept so that a recovery
    store written by more processes resumes (Bytewax refuses state for unknown
    partitions). Nothing is routed to it but the process start's empty batch (`ProcessStart`),
    and it holds nothing: a retired partition whose snapshot holds requests (replays, window
    rebuilds) is built as an `InfluxPartition`, which runs them at the first epoch end
    (`InfluxSink.build_part`)."""

    def __init__(self, name: str, held_replays: list[str] | None = None) -> None:
        self.name = name
        self.held_replays = held_replays or None

    def write_batch(self, values: list[list[Point]]) -> None:
        if any(values):
            raise SinkError(f"points routed to {self.name}, a partition of no running process")

    def snapshot(self) -> list[str] | None:
        return self.held_replays


class InfluxSink(FixedPartitionedSink[list[Point], list[str] | None]):
    """One partition per process, named after it: each process writes its own points (the
    `to_sink` key routes them to the local partition, so nothing crosses processes).

    Every process also lists the names of the process ids above the cluster's, up to
    MAX_PROCESSES: their partitions hold nothing, but a store written by a bigger cluster
    has snapshots under those names, and resuming it needs them (a scale-down)."""

    def __init__(self, cfg: CloudConfig, process_id: int, stop: threading.Event | None = None,
                 health: ProcessorHealth | None = None, progress: EpochProgress | None = None,
                 abort: AbortStop | None = None) -> None:
        self.cfg = cfg
        self.process_id = process_id
        self.processes = max(1, len(cfg.flow.addresses))
        self.stop = stop or threading.Event()
        self.health = health
        self.progress = progress
        self.abort = abort

    def list_parts(self) -> list[str]:
        return [sink_part(self.process_id), *retired_sink_parts(self.processes, self.process_id)]

    def part_fn(self, item_key: str) -> int:
        # Bytewax indexes the sorted names of every process's partitions with this:
        # influx-0000 .. influx-{MAX_PROCESSES - 1}, so k is the partition named k.
        return int(item_key.rsplit("-", 1)[1])

    def _writer(self) -> InfluxWriter:
        return make_writer(self.cfg.influx, self.stop, door_roles=self.cfg.flow.door_roles)

    def build_part(self, step_id: str, for_part: str,
                   resume_state: list[str] | None) -> InfluxPartition | RetiredSinkPartition:
        if for_part != sink_part(self.process_id):
            if not resume_state:
                return RetiredSinkPartition(for_part)
            # Requests a process the cluster no longer has held when it stopped: from
            # committed epochs, so they run at this process's first epoch end.
            log.info("running the requests held by a process the cluster no longer has",
                     extra={"partition": for_part, "held": len(resume_state)})
            return InfluxPartition(self._writer(), stop=self.stop,
                                   replay_interval_s=self.cfg.flow.replay_interval_s,
                                   held_replays=resume_state, progress=self.progress, abort=self.abort)
        part = InfluxPartition(self._writer(), stop=self.stop, health=self.health,
                               replay_interval_s=self.cfg.flow.replay_interval_s, held_replays=resume_state,
                               replay_after_epochs=1 if self.processes > 1 else 0,
                               progress=self.progress, abort=self.abort)
        if resume_state is not None:  # resumed: the run before may have died mid-request
            part.writer.owe_after_restart()
        if self.health is not None:
            part.start()
        return part


class ProcessStart(DynamicSource[tuple[str, list[Point]]]):
    """One empty batch of points from each worker as it starts, then the end, for this
    process's own InfluxDB partition, which Bytewax builds only when something is routed to
    it: its writer thread, and the `processor` reports it writes, then start with the
    process, not with its first data (a process of a cluster may hold no node).

    The cluster's first worker also sends one to each partition of a process id the cluster
    does not have (`retired`): Bytewax calls `snapshot` only on the sink partitions handed
    something in the epoch, and nothing else is routed to those, so the requests a retired
    partition's snapshot holds (`InfluxSink.build_part`) would run only at close and stay in
    the recovery store for ever. Woken once, it runs them at the first epoch end and its
    snapshot no longer holds them.

    Then the same again every `every_s` until `drain` is set: the held requests (a span
    replayed within its interval, a read InfluxDB refused) run at an epoch end, and a
    partition handed nothing has none, so without data coming (a quiet night, a process of
    a cluster holding no busy node) they would wait for the next data or a clean stop."""

    def __init__(self, local: str, retired: Iterable[str] = (), drain: threading.Event | None = None,
                 every_s: float = WAKE_SINK_EVERY_S,
                 monotonic: Callable[[], float] = time.monotonic) -> None:
        self.local = local
        self.retired = tuple(retired)
        self.drain = drain or threading.Event()
        self.every_s = every_s
        self.monotonic = monotonic

    def build(self, step_id: str, worker_index: int, worker_count: int) -> _EmptyBatches:
        return _EmptyBatches([self.local, *(self.retired if worker_index == 0 else ())], self.drain,
                             self.every_s, self.monotonic)


class _EmptyBatches(StatelessSourcePartition[tuple[str, list[Point]]]):
    def __init__(self, parts: list[str], drain: threading.Event, every_s: float,
                 monotonic: Callable[[], float]) -> None:
        self._parts = parts
        self._drain = drain
        self._every_s = every_s
        self._monotonic = monotonic
        self._next: float | None = None  # when the next batch is due; None: the start's

    def next_batch(self) -> list[tuple[str, list[Point]]]:
        now = self._monotonic()
        if self._next is not None:
            end_input_if_asked(self._drain)
            if now < self._next:
                return []
        self._next = now + self._every_s
        return [(part, []) for part in self._parts]

    def next_awake(self) -> datetime | None:
        # Not longer: a partition's epoch advances only when it is woken, and every epoch
        # of the dataflow waits for it.
        return SystemClock().now() + IDLE_WAIT


def sink_part(process_id: int) -> str:
    return f"influx-{process_id:04d}"  # zero-padded: Bytewax orders partitions by name


def retired_sink_parts(processes: int, process_id: int) -> list[str]:
    """The sink partitions of the process ids above the cluster's, up to MAX_PROCESSES."""
    return [sink_part(k) for k in range(processes, MAX_PROCESSES) if k != process_id]


class AlertPartition(StatelessSinkPartition[list[Alert]]):
    def __init__(self, publisher: AlertPublisher) -> None:
        self.publisher = publisher

    def write_batch(self, items: list[list[Alert]]) -> None:
        self.publisher.publish([a for alerts in items for a in alerts])

    def close(self) -> None:
        self.publisher.stop()


class AlertSink(DynamicSink[list[Alert]]):
    def __init__(self, cfg: CloudConfig) -> None:
        self.cfg = cfg

    def build(self, step_id: str, worker_index: int, worker_count: int) -> AlertPartition:
        client_id = f"{self.cfg.mqtt.client_id}-alerts-{self.cfg.flow.process_id or 0}-{worker_index}"
        return AlertPartition(make_alert_publisher(self.cfg.mqtt, client_id))


def processor_health(cfg: CloudConfig, process_id: int) -> ProcessorHealth:
    """What a processor process reports on itself, on the system clock, state.dir's disk
    included."""
    return ProcessorHealth(process_id, cfg.flow.health_every_s, SystemClock(), cfg.state_dir)


def frozen_store(cfg: CloudConfig, process_id: int) -> FrozenStore:
    """The store of the frozen windows of the nodes this process holds, in its recovery
    store's directory (cloud/frozen_store.py); with flow.frozen_store off, it only reads
    (and deletes) the rows written before."""
    delay_s = cfg.flow.backup_interval_s + max(FROZEN_GC_MARGIN_S, 10 * cfg.flow.epoch_interval_s)
    return FrozenStore(cfg.recovery_dir, process_id, int(delay_s * 1e9), writes=cfg.flow.frozen_store,
                       detector_every=cfg.flow.detector_checkpoint_every)


def build_flow(cfg: CloudConfig, partitions: list[str], sink: Any = None,
               alert_sink: Any = None, process_id: int = 0,
               stop: threading.Event | None = None, health: ProcessorHealth | None = None,
               drain: threading.Event | None = None,
               progress: EpochProgress | None = None) -> Dataflow:
    """`drain`: set when the processor is asked to stop; the journal source ends, so that
    the epoch under way is written and committed and the run ends cleanly; an AbortStop
    (flow.stop = "abort") makes the sources leave the run instead, that epoch not committed.
    `stop`: set when it must stop now; ends the sink's waits for InfluxDB.
    `progress`: counts the end of the input reaching the node step, the state snapshots
    taken and the InfluxDB writes done, which a stop's wait for the last epoch goes by
    (cloud/stop_grace.py).
    `health`: what the journal reader and the InfluxDB writer of this process report on
    (made here, on the system clock, unless given)."""
    if health is None:
        health = processor_health(cfg, process_id)
    horizon_ns = cfg.flow.aggregate_horizon_s * 1_000_000_000
    max_dl = cfg.flow.dead_letter_max_bytes
    flow = Dataflow("urbanpulse")
    records = op.input("journal", flow,
                       JournalSource(cfg.journal_dir, partitions, cfg.flow.journal_retention_s, health,
                                     drain))
    keyed = op.key_on("by_node", records, node_key)
    # (without recovery nothing is snapshotted: the windows freeze as bytes in the state)
    frozen = frozen_store(cfg, process_id) if cfg.flow.recovery else None
    snapshot_round = SnapshotRound() if frozen is not None else None

    def builder(resume: bytes | None) -> NodeLogic:
        state = pickle.loads(resume) if resume is not None else NodeState(horizon_ns, cfg.flow.detect)
        state.use_frozen_store(frozen)
        # The settings of this start, for a node the store knows too (they are pickled with
        # the state): switched off, a known node went on raising events and alerts; a
        # changed horizon reached only nodes new to the store.
        state.detect = cfg.flow.detect
        state.set_horizon(horizon_ns)
        # not pickled: a changed role reaches the held door hours at the node's next message
        state.domain.set_door_roles(cfg.flow.door_roles)
        return NodeLogic(state, max_dl, drift=cfg.flow.detect, progress=progress,
                         snapshot_round=snapshot_round)

    processed = op.stateful_batch("node_state", keyed, builder)
    node_points = op.map("node_points", processed, lambda kv: kv[1][0])
    site_updates = op.flat_map("site_updates", processed, lambda kv: kv[1][1])
    by_site = op.key_on("by_site", site_updates, lambda u: u.site)

    def site_builder(resume: bytes | None) -> SiteLogic:
        state: HospitalSite = pickle.loads(resume) if resume is not None else HospitalSite(horizon_ns)
        state.set_horizon(horizon_ns)
        return SiteLogic(state, progress)

    site_points = op.map("site_points", op.stateful_batch("site_state", by_site, site_builder),
                         lambda kv: kv[1])
    points = op.merge("points", node_points, site_points)
    alerts = op.filter_map("alerts", processed, lambda kv: kv[1][2] or None)
    if cfg.flow.detect:  # cross-station drift: every air sensor of the city in one step
        air = op.key_on("by_city", op.filter_map("air_readings", processed, lambda kv: kv[1][3] or None),
                        lambda _: CITY)

        def drift_builder(resume: bytes | None) -> DriftLogic:
            city = pickle.loads(resume) if resume is not None else CityAir()
            city.use_pair_suffix(cfg.flow.drift_pair_suffix)
            t = cfg.drift
            city.use_thresholds(pair_shift=t.pair_shift, pair_spread=t.pair_spread, cross_k=t.cross_k,
                                cross_h=t.cross_h, cross_min_others=t.cross_min_others)
            return DriftLogic(city, progress)

        drifts = op.stateful_batch("city_drift", air, drift_builder)
        points = op.merge("with_drift_points", points,
                          op.filter_map("drift_points", drifts, lambda kv: kv[1][0] or None))
        alerts = op.merge("with_drift_alerts", alerts,
                          op.filter_map("drift_alerts", drifts, lambda kv: kv[1][1] or None))
    op.output("mqtt_alerts", alerts, alert_sink if alert_sink is not None else AlertSink(cfg))
    local = sink_part(process_id)
    retired = retired_sink_parts(max(1, len(cfg.flow.addresses)), process_id)
    to_sink = op.merge("with_process_start", op.key_on("to_sink", points, lambda _: local),
                       op.input("process_start", flow, ProcessStart(local, retired, drain)))
    op.output("influx", to_sink,
              sink if sink is not None else InfluxSink(cfg, process_id, stop, health, progress,
                                                       drain if isinstance(drain, AbortStop) else None))
    return flow
