"""The state the dataflow keeps per node: seen sequence numbers, open windows, the ledger."""

from __future__ import annotations

import bisect
import json
import logging
import math
import operator
import pickle
import zlib
from array import array
from dataclasses import dataclass, field, fields
from datetime import datetime
from typing import TYPE_CHECKING, Any

from cloud.detect import STATE_VERSION as DETECT_STATE_VERSION
from cloud.detect import AnomalyDetector
from cloud.detect.faults import AWAY_HEARTBEATS
from cloud.frozen_store import note_lost
from cloud.logic.detector_book import (
    DetectorBook,
    DetectorBookError,
    Journal,
    Place,
    checkpoint_row,
    detectors_of,
    let_go,
    load,
    log_of,
)
from cloud.logic.domain.hospital import SiteUpdate
from cloud.logic.domain.node import DomainNode
from cloud.logic.events import (
    Alert,
    NodeWatch,
    SensorWatch,
    check_readings,
    clock_rewrite,
    new_detector,
    watch_of,
    watch_state,
)
from cloud.logic.lines import field_key, field_keys, float_text, float_texts, series_head, string_field
from cloud.logic.recompute import RECOMPUTE, Recompute
from cloud.logic.records import RP_1H, RP_1M, RP_RAW, NodeData, Point, dead_letter_point
from cloud.logic.rollup import (
    CLOCK_UNSYNCED,
    HOUR_NS,
    INTERVAL_KINDS,
    MINUTE_NS,
    OUT_OF_WINDOWS,
    SensorRollup,
    Window,
    rollup_states,
    rollups_of,
)
from cloud.logic.seqs import (
    MAX_NUMBERINGS_BACK,
    NEWEST_UNKNOWN,
    SeqRanges,
    numberings_of,
    numberings_state,
)
from urbanpulse.wire import KINDS, Reading, field_range

if TYPE_CHECKING:
    from cloud.frozen_store import FrozenStore

log = logging.getLogger("urbanpulse.cloud.node")

LATE_AFTER_NS = 5 * MINUTE_NS
# A node's quiet (no message between two) noted for the silence rule's ticks from this long,
# at most QUIETS_KEPT of them between two ticks.
QUIET_MIN_NS = 1_000_000_000
QUIETS_KEPT = 32
KIND, HEAD, SEQS, MINUTE, HOURLY = range(5)  # a sensor's parts (NodeState._sensors)
# A node has tens of sensors; its state keeps each one it ever sent. Past this many, a
# reading of a new sensor is a dead letter, so a faulty node cannot grow the state forever.
MAX_SENSORS_PER_NODE = 4096
# InfluxDB's integers are int64; sequence numbers may reach 2^63 - 1, so a sensor's span
# in an hour (and the node's sum of spans) can exceed it: the ledger's counts stop there.
INT64_MAX = 2**63 - 1
OPEN = (-math.inf, math.inf)
# Ledger hours the state holds beyond the horizon (a backlog being received): at most this
# many, the oldest let go first; and the ranges of hours let go it remembers.
MAX_LEDGER_HOURS = 24 * 8
MAX_CLOSED_RANGES = 32
# How long a ledger hour older than the horizon stays with no message touching it: the
# horizon, and at least this, whatever the horizon is set to (a batch the cloud did not
# confirm is sent again up to 16 minutes later, a backlog drains at the node's pace, and
# the "Missing data" alert judges hours until 3 hours after their start).
LEDGER_IDLE_MIN_NS = 6 * HOUR_NS
# A frozen window's row let go (cloud/frozen_store.py) is deleted once the node has taken this
# many snapshots after the first that no longer held it, and the store's delay has passed:
# by then Bytewax has committed that snapshot's epoch and resumes none before it.
FROZEN_GC_SNAPSHOTS = 3
# kind -> field -> the contract's range (urbanpulse.wire.field_range), for the hot loop
_RANGES: dict[str, dict[str, tuple[float, float]]] = {}


def _ranges(kind: str) -> dict[str, tuple[float, float]]:
    spec = KINDS.get(kind)
    ranges = _RANGES[kind] = {name: field_range(kind, name) for name in (spec.fields if spec else ())}
    return ranges


@dataclass(slots=True)
class LedgerHour:
    """A node's delivery ledger of one hour (the hour of the readings' own stamps). A gap of
    a numbering's numbers counts in the hour of the first reading after it (the hour that
    received the number just above the gap), whichever hour the readings around it went
    to: an hour's `missing` is the sum of the gaps just below the runs of numbers it
    received (`NodeState._missing`), its `expected` what it received plus those."""
    received: int = 0
    duplicates: int = 0
    late: int = 0
    # a sensor's numbering (the sensor, or SeqRanges.span_key after a restart) -> the numbers
    # of it this hour received (fresh), as sorted, disjoint half-open [start, end) runs
    seq_ranges: dict[str, list[list[int]]] = field(default_factory=dict)
    restarts: int = 0  # sensors whose numbering started again in this hour
    touched_ns: int = 0  # when the last message with a reading of this hour was received
    # Missing numbers charged to this hour that its numberings' ranges no longer show as
    # gaps: a gap given up (SeqRanges.max_ranges), a numbering forgotten (MAX_NUMBERINGS_BACK).
    missing_kept: int = 0
    # `missing` as last written (-1: never, or pickled before it was kept): an hour a reading
    # of another hour changed is written again only if its counts moved.
    written_missing: int = -1

    def __setstate__(self, state: tuple[None, dict[str, Any]]) -> None:
        self.restarts = 0  # absent from hours pickled before it was kept
        self.touched_ns = 0
        self.missing_kept = 0
        self.written_missing = -1
        self.seq_ranges = {}
        for name, value in state[1].items():
            if name == "seq_span":  # pickled before the runs were kept: [min, max] a numbering
                # (NodeState.__setstate__ keeps of each the numbers its numbering received)
                self.seq_ranges = {key: [[low, high + 1]] for key, (low, high) in value.items()}
            elif name != "floor":  # the gap below min: its numbering's ranges tell it
                setattr(self, name, value)

    def field_text(self, missing: int) -> str:
        """The ledger point's fields as line protocol, with `missing` numbers charged to the
        hour. Every field each time, restarts too when 0: a rewrite of the hour replaces them
        all (InfluxDB keeps a field the new write lacks). Written directly, as `line` wrote
        the dict of them (every count an int): a live message writes its hour's ledger point
        (tests/cloud/logic/test_ledger_text.py keeps the dict's way)."""
        unique = self.received - self.duplicates
        missing = min(missing, INT64_MAX - unique)
        return (f"expected={unique + missing}i,received={self.received}i,"
                f"duplicates={self.duplicates}i,late={self.late}i,missing={missing}i,"
                f"restarts={self.restarts}i")


# A ledger hour's values in its fields' order, as a node's snapshot holds them
_ledger_values = operator.attrgetter(*(f.name for f in fields(LedgerHour)))


def raw_time(r: Reading) -> int:
    """The raw point's timestamp: the reading's (microsecond precision on the wire) plus its
    sequence number mod 1000 in nanoseconds, so that two readings of one sensor in the same
    microsecond (kiosk events, a node whose clock stepped back) do not overwrite each other
    in InfluxDB, where series + timestamp is the identity. Deterministic, so a replay still
    overwrites itself."""
    return r.ts_ns - r.ts_ns % 1000 + r.seq % 1000


class NodeState:
    def __init__(self, horizon_ns: int, detect: bool = True) -> None:
        self.horizon_ns = horizon_ns
        self.detect = detect
        self.watch: dict[str, SensorWatch] = {}
        self.node_watch = NodeWatch()  # the rules on the node's heartbeats
        self.detect_version = DETECT_STATE_VERSION
        self.domain = DomainNode(horizon_ns)
        self.site_updates: list[SiteUpdate] = []
        self.alerts: list[Alert] = []
        self.measured: list[Reading] = []  # of the last message, for `take_measured` (not pickled)
        self.seqs: dict[str, SeqRanges] = {}
        self.kinds: dict[str, str] = {}
        self.minute: dict[str, SensorRollup] = {}
        self.hour: dict[str, SensorRollup] = {}
        self.ledger: dict[int, LedgerHour] = {}
        # Hours let go from `ledger` after they were written, as [first, last] hour starts:
        # a later reading of one is counted nowhere rather than written as the whole hour.
        self.ledger_closed: list[list[int]] = []
        # The cloud's reception (ns) of the node's newest message, and its quiets since the
        # last tick: (from, to) in µs, each longer than every later one (`FaultMonitor.tick`).
        self.heard_ns: int | None = None
        self.quiets: list[tuple[int, int]] = []
        # When the dataflow's node step ticks next, on the same clock (cloud.flow.NodeLogic):
        # kept in the snapshots, so a restart from one ticks as the run it resumes did.
        self.next_tick_ns: int | None = None
        # sensor -> [kind, series head, seq ranges, minute rollup, hour rollup]: a cache of
        # what the hot path needs per reading, looked up once (not pickled)
        self._sensors: dict[str, list[Any]] = {}
        # The newest stamp any window of the node holds (`_evict`), once known (not pickled)
        self._newest_ns: int | None = None
        # Snapshots taken with a frozen store, and the rows of frozen windows it let go, not
        # yet deleted: (when, at which snapshot, their ids as int64 bytes) (`frozen_snapshot`)
        self.snapshots = 0
        self.frozen_gone: list[tuple[int, int, bytes]] = []
        # The rows let go since the last snapshot, appended by the rollups (not pickled)
        self._gone: array[int] = array("q")
        self._frozen_store: FrozenStore | None = None
        # With a store, what makes the detectors (cloud/logic/detector_book.py), and whether
        # a checkpoint is due at the next record; the values they took since the last
        # snapshot, and the checkpoint's detectors by place (neither pickled)
        self.detector_book: DetectorBook | None = None
        self.detector_due = False
        self._journal: Journal | None = None
        self._book_at: dict[Place, AnomalyDetector] | None = None

    def __getstate__(self) -> dict[str, object]:
        state = self.__dict__.copy()
        state.pop("_sensors", None)
        state.pop("measured", None)
        state.pop("_newest_ns", None)
        state.pop("_gone", None)  # empty when a snapshot is taken (`frozen_snapshot`)
        state.pop("_frozen_store", None)
        state.pop("_journal", None)
        state.pop("_book_at", None)
        state["minute"] = rollup_states(self.minute)
        state["hour"] = rollup_states(self.hour)
        # Each hour as its values' tuple (since session 27): pickled as a slotted object it
        # cost a reduce and a dict of its slots' names each.
        state["ledger"] = {hour: _ledger_values(held) for hour, held in self.ledger.items()}
        state["seqs"] = numberings_state(self.seqs)
        # Pickled apart: a snapshot from another code version is dropped without being
        # unpickled, whatever its detectors' layout was.
        if "node_watch" in state:
            state["node_watch"] = pickle.dumps(state["node_watch"], protocol=pickle.HIGHEST_PROTOCOL)
        if "watch" in state:
            state["watch"] = self._pickled_watch(state)
        return state

    def _pickled_watch(self, state: dict[str, object]) -> bytes:
        """The sensors' watches, pickled as tuples (`events.watch_state`) without the
        detectors their book's checkpoint holds (their values since are in its logs: a
        snapshot just wrote them, `frozen_snapshot`); else with every detector, and no book."""
        at = self._book_at
        if self.detector_book is None or at is None or self._journal is None or self._journal:
            state["detector_book"] = None
            at = None
        return pickle.dumps(watch_state(self.watch, at), protocol=pickle.HIGHEST_PROTOCOL)

    def __setstate__(self, state: dict[str, object]) -> None:
        # Snapshots outlive code versions: attributes added since a snapshot was taken get
        # their defaults, so an upgrade resumes instead of crashing on old state.
        defaults = {"detect": True, "watch": {}, "ledger": {}, "site_updates": [], "alerts": [],
                    "ledger_closed": [], "heard_ns": None, "quiets": [], "next_tick_ns": None,
                    "snapshots": 0, "frozen_gone": [], "detector_book": None,
                    "detector_due": False}
        self.__dict__.update(defaults)
        self.__dict__.update(state)
        self.minute, self.hour = rollups_of(self.minute), rollups_of(self.hour)
        held_hours: dict[int, Any] = self.ledger  # (tuples since session 27, else objects)
        self.ledger = {hour: LedgerHour(*held) if type(held) is tuple else held
                       for hour, held in held_hours.items()}
        self.seqs = numberings_of(self.seqs)
        self._sensors = {}
        self.measured = []
        self._newest_ns = None
        self._gone = array("q")
        self._frozen_store = None
        self._journal = None
        self._book_at = None
        for sensor, seqs in self.seqs.items():
            # Pickled before the newest stamp was kept: the newest its windows hold, a lower
            # bound (a reading kept out of the windows may have been newer).
            if seqs.newest_ns == NEWEST_UNKNOWN:
                rollups = [r for r in (self.minute.get(sensor), self.hour.get(sensor)) if r]
                if rollups:
                    seqs.newest_ns = max(r.newest_ns for r in rollups)
        for held in self.ledger.values():
            if held.written_missing == -1:  # pickled with [min, max] a numbering: of those,
                for key, runs in held.seq_ranges.items():  # the numbers that came
                    numbers = self._numbers(key)
                    if numbers is not None:
                        held.seq_ranges[key] = _within(numbers, runs)
        if "domain" not in state:
            self.domain = DomainNode(self.horizon_ns)
        if state.get("detect_version") != DETECT_STATE_VERSION:
            self.watch = {}
            self.node_watch = NodeWatch()
            self.detect_version = DETECT_STATE_VERSION
            let_go(self.detector_book, self._gone)
            self.detector_book = None
            return
        if isinstance(self.watch, bytes):
            self.watch = watch_of(pickle.loads(self.watch))
        node_watch = state.get("node_watch")
        self.node_watch = pickle.loads(node_watch) if isinstance(node_watch, bytes) else NodeWatch()

    def use_frozen_store(self, store: FrozenStore | None) -> None:
        """The sensors' closed windows and the air and traffic rollups' closed hours freeze
        into `store` and are read back from it, and the detectors' book is read from it
        (given before anything else of a resumed state runs: `set_horizon` may freeze and
        drop)."""
        self._frozen_store = store
        for rollups in (self.minute, self.hour):
            for rollup in rollups.values():
                rollup.use_store(store, self._gone)
        self.domain.use_store(store, self._gone)
        self._resume_detectors(store)
        self._journal = {} if store is not None and store.detector_every > 0 else None

    def _resume_detectors(self, store: FrozenStore | None) -> None:
        """The detectors of a snapshot that holds their book, made from its checkpoint and
        logs; fresh ones if its row is missing or unreadable (logged)."""
        book = self.detector_book
        if book is None:
            return
        # (known once the node's first message came: a snapshot always has)
        name = f"{getattr(self, 'site', '?')}/{getattr(self, 'node', '?')}"
        try:
            detectors = None if store is None else load(book, store)
        except DetectorBookError as exc:
            log.error("the detectors of node %s could not be made from their rows (%s): they "
                      "start again fresh", name, exc)
            detectors = None
        else:
            if detectors is None:
                note_lost(store, f"the detectors' checkpoint of node {name} (row {book.checkpoint})",
                          "they start again fresh")
        if detectors is None:
            let_go(book, self._gone)
            self.detector_book = None
            self.detector_due = True
            for sensor, sw in self.watch.items():
                for name, fw in sw.fields.items():
                    if fw is not None and fw.detector is None:
                        fw.detector = new_detector(fw.faults.kind, name, sensor)
            return
        placed: dict[Place, AnomalyDetector] = {}
        for (sensor, name), detector in detectors.items():
            held = self.watch.get(sensor)
            fw = None if held is None else held.fields.get(name)
            if fw is not None and fw.detector is None:  # (one pickled whole is newer)
                fw.detector = placed[(sensor, name)] = detector
        # The book goes on: its logs are the values these detectors take next. (A
        # checkpoint pickled by an older version may have been narrowed to newer settings as
        # it loaded; every resume of it narrows it at the same point, before its logs.)
        self._book_at = placed

    def _book_phase(self, every: int) -> int:
        """Where in the cycle of `every` snapshots this node's checkpoint falls: the nodes of
        a process are touched at every epoch alike, and with one phase all of them would
        write theirs at the same epoch, every `every` epochs."""
        return zlib.crc32(f"{getattr(self, 'site', '')}/{getattr(self, 'node', '')}".encode()) % every

    def _detector_snapshot(self, store: FrozenStore) -> None:
        """This snapshot's part of the detectors' book (cloud/logic/detector_book.py): the
        values the checkpoint's detectors took since the last snapshot, logged; and whether
        a checkpoint is due at the next record."""
        every = store.detector_every if store.writes else 0
        if every <= 0:
            let_go(self.detector_book, self._gone)
            self.detector_book = None
            self._book_at = None
            self._journal = None
            self.detector_due = False
            return
        book, at = self.detector_book, self._book_at
        journal = self._journal
        if book is not None and at is not None and journal:
            logged = log_of(journal, at)
            if logged is not None:
                book.logs.append(logged)
        self._journal = {}
        detectors = detectors_of(self.watch)
        self.detector_due = bool(detectors) and (
            book is None or at is None
            or any(at.get(place) is not d for place, d in detectors.items())
            or len(book.logs) >= every or book.logged() * 4 > book.size
            or (bool(book.logs) and (self.snapshots + self._book_phase(every)) % every == 0))

    def _checkpoint_detectors(self, store: FrozenStore) -> None:
        """The checkpoint decided at the last snapshot: the detectors as they are, before
        the record that comes (its row written with the epoch's first snapshot)."""
        self.detector_due = False
        if not (store.detector_every > 0 and store.writes):
            return
        let_go(self.detector_book, self._gone)
        detectors = detectors_of(self.watch)
        if detectors:
            row = checkpoint_row(detectors)
            self.detector_book = DetectorBook(store.put(row), len(row))
            self._book_at = detectors
        else:
            self.detector_book = None
            self._book_at = None
        self._journal = {}

    def frozen_snapshot(self, flush: bool = True) -> None:
        """Called as the node's snapshot is taken, before it is pickled (NodeLogic.snapshot):
        the rows let go since the last snapshot are noted (those not written yet dropped at
        once), those let go long enough ago are deleted, and the store is flushed (unless
        `flush` is False: a later snapshot of the same round flushes it before Bytewax has
        any of them, cloud/snapshot_round.py), so that every row the snapshot references is
        on disk before Bytewax has the snapshot. A row let go is still held by the snapshots
        before the one that let it go, and Bytewax resumes the newest snapshot of a committed
        epoch (or, from a copy of the store, one up to flow.backup_interval_s older): the row
        is deleted once the node has taken FROZEN_GC_SNAPSHOTS more snapshots and the store's
        delay (that interval and a margin) has passed. A row found missing all the same costs
        a rebuild of its window from the raw points, not a wrong point
        (`SensorRollup.window`)."""
        store = self._frozen_store
        if store is None:
            return
        self.snapshots += 1
        self._detector_snapshot(store)
        self.domain.note_snapshot()
        gone, count = self.frozen_gone, self.snapshots
        now = store.clock()
        if self._gone:
            kept = store.retire(self._gone)
            del self._gone[:]
            if kept:
                gone.append((now, count, array("q", kept).tobytes()))
        due = 0
        for at, taken, _ in gone:
            if now - at < store.gc_delay_ns or count - taken < FROZEN_GC_SNAPSHOTS:
                break
            due += 1
        if due:
            for _, _, refs in gone[:due]:
                ids: array[int] = array("q")
                ids.frombytes(refs)
                store.discard(ids)
            del gone[:due]
        if flush:
            store.flush()

    def set_horizon(self, horizon_ns: int) -> None:
        """The aggregation horizon of this start (`flow.aggregate_horizon_s`) for a state
        resumed from a snapshot, which pickled the one it was made with: its per-sensor
        windows, domain rollups and ledger, and the rollups of sensors it adds later. Lowered,
        what lies beyond it is let go now, as a state made with it would have; raised, each
        rollup keeps the old floor until its newest has moved past it (`SensorRollup.
        set_horizon`, `cloud.logic.domain.common.Horizon`): readings before it stay too late
        (rebuilt from the raw points), as what they belong to was let go. The same horizon
        changes nothing."""
        lowered = horizon_ns < self.horizon_ns
        self.horizon_ns = horizon_ns
        for rollups in (self.minute, self.hour):
            for rollup in rollups.values():
                rollup.set_horizon(horizon_ns)
        self.domain.set_horizon(horizon_ns)
        if lowered and self.heard_ns is not None:  # the ledger's hours, as at the last message
            self._evict(self.heard_ns, [])

    def process(self, data: NodeData) -> list[Point]:
        if self.detector_due and self._frozen_store is not None:
            self._checkpoint_detectors(self._frozen_store)
        self._heard(data.received_ns)
        if data.status is not None:
            return self.heartbeat(data)
        out: list[Point] = []
        append = out.append
        # The windows this call touched, in first-touch order: a window marked with this
        # call's token is listed already.
        touched: list[tuple[str, str, Window]] = []
        touch = touched.append
        token = object()
        ledger_touched: set[int] = set()
        # Hours held whose gaps a reading of another hour may have changed: written again if
        # their counts moved
        ledger_moved: set[int] = set()
        measured: list[Reading] = []  # fresh readings within the contract's ranges
        checked: list[Reading] = []  # fresh readings for the detectors
        detect = self.detect
        site, node = data.site, data.node
        self.site, self.node = site, node
        received_ns, numbering = data.received_ns, data.numbering
        ledgers, sensors, kinds = self.ledger, self._sensors, self.kinds
        keys, texts = field_keys(), float_texts()
        ranges_of = _RANGES
        hour = -1
        refused = 0
        restarted: list[Point] = []  # the events the rules held when a numbering started again
        ledger = LedgerHour()  # replaced at the first reading
        runs_of = ledger.seq_ranges
        for r in data.readings:
            ts, sensor, kind, seq, flags = r.ts_ns, r.sensor, r.kind, r.seq, r.flags
            part = sensors.get(sensor)
            if part is None:
                if sensor not in self.seqs and len(self.seqs) >= MAX_SENSORS_PER_NODE:
                    refused += 1
                    append(_too_many_sensors(site, node, r, received_ns + refused))
                    continue
                part = self._sensor(site, node, sensor, kind)
            if ts - ts % HOUR_NS != hour:
                hour = ts - ts % HOUR_NS
                ledger = ledgers.get(hour)  # type: ignore[assignment]
                if ledger is None and self.ledger_closed and _closed(self.ledger_closed, hour):
                    ledger = LedgerHour()  # counted nowhere: its hour stays as written
                else:
                    if ledger is None:
                        ledger = ledgers[hour] = LedgerHour()
                    ledger.touched_ns = received_ns
                    ledger_touched.add(hour)
                runs_of = ledger.seq_ranges
            ledger.received += 1
            seqs = part[SEQS]
            old = False  # a reading of a numbering before the sensor's current one
            if numbering is not None and numbering != seqs.numbering:
                seqs, old = self._numbering(sensor, seqs, numbering, seq, ts, flags, ledger, restarted,
                                            received_ns)
            elif seqs.previous and (numbering is None or seqs.previous[-1].numbering == numbering):
                # unnamed, or a name the numbering before had too: the stamp tells which
                seqs = seqs.numbering_of(ts) if numbering is None else seqs.named(numbering, ts) or seqs
                old = seqs is not part[SEQS]
            ranges = seqs.ranges
            if ranges and seq == ranges[-1][1]:  # the next in order: SeqRanges.add, inlined
                ranges[-1][1] = seq + 1
                if seqs.newest_ns == NEWEST_UNKNOWN and CLOCK_UNSYNCED not in flags:
                    seqs.newest_ns = ts  # (an old snapshot's) the next in order is the newest
                    seqs.newest_seq = seq
            elif (not old and ts > seqs.newest_ns and seq <= seqs.newest_seq
                  and CLOCK_UNSYNCED not in flags):  # SeqRanges.starts_again, inlined
                self._restarted(sensor, seqs, seq, ts, ledger, numbering, restarted, received_ns)
            elif not seqs.add(seq):  # seen before, and stamped so: a redelivery
                ledger.duplicates += 1
                if seqs.given_up and seq < ranges[0][1]:
                    # Or a reading of a gap given up (SeqRanges), which no number tells from
                    # one: stored raw (a redelivery's point is written as it was), in no
                    # aggregate. Its kind's series, as below.
                    if part[KIND] != kind:
                        part = self._sensor(site, node, sensor, kind)
                    append(_raw_point(part[HEAD], r))
                continue
            elif seqs.last_given_up is not None:  # a gap given up to make room for it
                self._given_up(seqs, seqs.span_key or sensor, seq, ledger, ledger_moved)
            if ts > seqs.newest_ns and CLOCK_UNSYNCED not in flags:  # else its stamp may be far off
                seqs.newest_ns = ts
                seqs.newest_seq = seq
            span_key = seqs.span_key or sensor
            runs = runs_of.get(span_key)  # the numbers of the numbering the hour received
            if runs is None:
                runs_of[span_key] = [[seq, seq + 1]]
            elif runs[-1][1] == seq:
                runs[-1][1] = seq + 1
            else:
                _take(runs, seq)
            ranges = seqs.ranges  # (a restart above made new ones)
            # Not the highest: a gap filled? Of the hours held but its own (every one held,
            # for a reading of an hour let go: counted nowhere, but it came).
            if seq < ranges[-1][1] - 1 and (len(ledgers) > 1 or hour not in ledgers):
                self._gap_filled(span_key, ranges, seq, ledger, ledger_moved)
            if received_ns - ts > LATE_AFTER_NS:
                ledger.late += 1
            if part[KIND] != kind:  # a fresh reading of another kind: its series head
                part = self._sensor(site, node, sensor, kind)
            kinds[sensor] = kind
            values = r.values
            if len(values) == 1:  # float_fields(values), inlined; a bed pad sends one value
                ((k, v),) = values.items()
                text = f"{keys.get(k) or field_key(k)}={texts.get(v) or float_text(v)}"
            else:
                text = ",".join([f"{keys.get(k) or field_key(k)}={texts.get(v) or float_text(v)}"
                                 for k, v in values.items()])
            if flags:
                append((RP_RAW, f"{part[HEAD]} {text},seq={seq}i,flags={string_field(','.join(flags))} "
                                f"{ts - ts % 1000 + seq % 1000}"))  # raw_time(r), inlined
                if not OUT_OF_WINDOWS.isdisjoint(flags):
                    if detect and not old:
                        # Not judged, but the rules learn that its number came and when:
                        # not a missing reading, nor a silent sensor (events.check_readings).
                        checked.append(r)
                    continue
            else:
                append((RP_RAW, f"{part[HEAD]} {text},seq={seq}i {ts - ts % 1000 + seq % 1000}"))
            if detect and not old:  # the rules judge the sensor's numbering as it is now
                checked.append(r)  # the fault rules raise OUT_OF_RANGE; nothing else sees it
            bounds = ranges_of.get(kind) or _ranges(kind)  # outside_range(kind, values), inlined
            outside = False
            for k, v in values.items():
                low, high = bounds.get(k, OPEN)
                if not low <= v <= high:
                    outside = True
                    break
            if outside:
                continue
            measured.append(r)
            # A reading of an interval counts in the windows of its last instant (window_ts)
            at = ts - 1 if kind in INTERVAL_KINDS else ts
            minute = (part[MINUTE] or self._rollup(part, MINUTE, sensor)).window(at)
            hourly = (part[HOURLY] or self._rollup(part, HOURLY, sensor)).window(at)
            if minute is None or hourly is None:  # older than the horizon: rebuilt by the sink
                if minute is None:
                    append(self._recompute(site, node, sensor, kind, RP_1M, MINUTE_NS, at))
                else:
                    minute.add(ts, values, seq)
                    if minute.mark is not token:
                        minute.mark = token
                        touch((RP_1M, sensor, minute))
                if hourly is None:
                    append(self._recompute(site, node, sensor, kind, RP_1H, HOUR_NS, at))
                else:
                    hourly.add(ts, values, seq)
                    if hourly.mark is not token:
                        hourly.mark = token
                        touch((RP_1H, sensor, hourly))
                continue
            # Most minute windows get one reading: a new window keeps it as it came, and
            # is listed as touched (it is new).
            if minute.count == 0:
                minute.hold(ts, values, seq)
                minute.mark = token
                touch((RP_1M, sensor, minute))
            else:
                minute.add(ts, values, seq)
                if minute.mark is not token:
                    minute.mark = token
                    touch((RP_1M, sensor, minute))
            if hourly.count == 0:
                hourly.hold(ts, values, seq)
                hourly.mark = token
                touch((RP_1H, sensor, hourly))
            else:
                hourly.add(ts, values, seq)
                if hourly.mark is not token:
                    hourly.mark = token
                    touch((RP_1H, sensor, hourly))
        out.extend(restarted)
        if checked:  # the detectors' events, in reading order, after the raw points
            out.extend(check_readings(site, node, checked, self.watch, self.alerts, received_ns,
                                      self.node_watch.jumps, self._journal))
        rewrite = clock_rewrite(site, node, self.node_watch.jumps)
        if rewrite is not None:  # a clock jump seen by more sensors: its event's detail
            append(rewrite)
        for rp, sensor, window in touched:
            append((rp, f"{sensors[sensor][HEAD]} {window.field_text()} {window.start_ns}"))
        domain_points, updates = self.domain.process(site, node, measured)
        self.measured = measured
        out.extend(domain_points)
        self.site_updates.extend(updates)
        for hour in ledger_moved - ledger_touched:
            held = ledgers[hour]
            if self._missing(held) != held.written_missing:
                ledger_touched.add(hour)
        if ledger_touched:
            head = series_head("ledger", {"site": site, "node": node})
            for hour in sorted(ledger_touched) if len(ledger_touched) > 1 else ledger_touched:
                held = ledgers[hour]
                missing = held.written_missing = self._missing(held)
                append((RP_1H, f"{head} {held.field_text(missing)} {hour}"))
        self._evict(received_ns, measured)
        return out

    def _gap_filled(self, span_key: str, ranges: list[list[int]], seq: int, taken: LedgerHour,
                    moved: set[int]) -> None:
        """`seq` came (in the hour of `taken`) below its numbering's highest number (`ranges`
        with it): the gap it was in (or the numbers below all seen) is charged to the hour
        that received the number just above it, which now counts a shorter gap, or none (or
        one at all, if nothing below had come). That hour, if held (and another one), joins
        `moved` (those whose first to last run of the numbering holds that number: a few
        more may join, written again only if their counts moved)."""
        i = bisect.bisect_right(ranges, [seq, math.inf]) - 1
        end = ranges[i][1]
        if end > seq + 1:  # it joined the run above
            above = seq + 1
        elif i + 1 < len(ranges):
            above = ranges[i + 1][0]
        else:  # nothing above it
            return
        for hour, held in self.ledger.items():
            runs = held.seq_ranges.get(span_key)
            if runs is not None and held is not taken and runs[0][0] <= above <= runs[-1][0]:
                moved.add(hour)

    def _given_up(self, seqs: SeqRanges, span_key: str, seq: int, taken: LedgerHour,
                  moved: set[int]) -> None:
        """Adding `seq` (in the hour of `taken`) gave a gap up (SeqRanges.last_given_up): its
        numbers no longer show as missing in the ranges, and stay charged to the hour that
        received the number above it, if held."""
        assert seqs.last_given_up is not None
        above, size = seqs.last_given_up
        seqs.last_given_up = None
        if above == seq:
            taken.missing_kept += size
            return
        for hour, held in self.ledger.items():
            runs = held.seq_ranges.get(span_key)
            if runs is not None and _starts_run(runs, above):
                held.missing_kept += size
                moved.add(hour)  # (its count moved if nothing was below the gap)
                return

    def _numbers(self, span_key: str) -> list[list[int]] | None:
        """The numbers of the numbering `span_key` seen so far (SeqRanges.ranges), None for a
        numbering forgotten (or never kept: a late reading of a forgotten one)."""
        seqs = self.seqs.get(span_key)
        if seqs is not None and seqs.span_key is None:
            return seqs.ranges  # a sensor's first numbering, current
        sensor = span_key.partition("#")[0]
        seqs = self.seqs.get(sensor)
        if seqs is None:
            return None
        for numbering in (seqs, *seqs.previous):
            if (numbering.span_key or sensor) == span_key:
                return numbering.ranges
        return None

    def _missing(self, held: LedgerHour) -> int:
        """The numbers missing charged to the hour: of each numbering, the gaps just below
        the runs of numbers the hour received (a gap counts in the hour of the first
        reading after it), and those kept (`LedgerHour.missing_kept`)."""
        missing = held.missing_kept
        of_sensor = self.seqs
        for span_key, runs in held.seq_ranges.items():
            seqs = of_sensor.get(span_key)
            if seqs is not None and seqs.span_key is None:  # _numbers(span_key), its usual case
                numbers: list[list[int]] | None = seqs.ranges
            else:
                numbers = self._numbers(span_key)
            if numbers is not None and len(numbers) > 1:  # one run: no gap anywhere
                missing += _gaps_below(runs, numbers)
        return missing

    def _sensor(self, site: str, node: str, sensor: str, kind: str) -> list[Any]:
        """The sensor's parts for the hot path, made when first seen or when a fresh reading
        comes with another kind (the sequence numbers and rollups are the sensor's)."""
        seqs = self.seqs.get(sensor)
        if seqs is None:
            seqs = self.seqs[sensor] = SeqRanges()
        head = series_head(KINDS[kind].measurement,
                           {"site": site, "node": node, "sensor": sensor, "kind": kind})
        part = self._sensors[sensor] = [kind, head, seqs, self.minute.get(sensor), self.hour.get(sensor)]
        return part

    def _restarted(self, sensor: str, seqs: SeqRanges, seq: int | None, ts: int,
                   ledger: LedgerHour, numbering: str | None = None,
                   out: list[Point] | None = None, received_ns: int | None = None) -> None:
        """The sensor's numbering started again (a number seen before, stamped after every
        reading taken; or a numbering named anew). The old numbers are kept apart (the
        ledger's spans too: the new numbering's is named by the restart's stamp), and what
        the fault rules learnt from them is forgotten (they judge gaps and order by the
        numbers), not what they held: the clock jumps held until a heartbeat tells are
        kept, the sequence gaps held are raised, their points appended to `out`
        (`SensorWatch.restarted`)."""
        key = f"{sensor}#{ts}"
        taken = {seqs.span_key, *(p.span_key for p in seqs.previous)}
        if key in taken:  # two numberings begun at one stamp (a name given anew): kept apart
            key = f"{key}.{len(seqs.previous)}"
        if len(seqs.previous) == MAX_NUMBERINGS_BACK:
            # the oldest numbering is forgotten: the gaps it charged to hours held stay
            oldest = seqs.previous[0]
            numbers, span_key = oldest.ranges, oldest.span_key or sensor
            for held in self.ledger.values():
                runs = held.seq_ranges.get(span_key)
                if runs is not None and len(numbers) > 1:
                    held.missing_kept += _gaps_below(runs, numbers)
        seqs.restart(seq, key, numbering)
        ledger.restarts += 1
        watch = self.watch.get(sensor)
        if watch is not None:
            self.watch[sensor], points = watch.restarted(
                self.site, self.node, sensor, self.kinds.get(sensor, ""), self.alerts,
                self.node_watch.jumps, received_ns)
            if out is not None:
                out.extend(points)

    def _numbering(self, sensor: str, seqs: SeqRanges, numbering: str, seq: int, ts: int,
                   flags: tuple[str, ...], ledger: LedgerHour,
                   out: list[Point] | None = None, received_ns: int | None = None
                   ) -> tuple[SeqRanges, bool]:
        """The numbering a reading named `numbering` belongs to, the sensor's current one
        being named otherwise (or not at all), and whether it is an earlier one. A name
        kept from before is that numbering (of several of that name, the one its stamp
        falls in: SeqRanges.named); a name forgotten (SeqRanges.forgotten) is an earlier
        numbering whose numbers are gone, so its reading is taken as new; an unnamed current
        numbering takes the first name it is sent with (an agent that began to send names),
        unless the stamps say the numbering started again; any other name is a new
        numbering, started empty."""
        known = seqs.named(numbering, ts)
        if known is not None:
            return known, True
        if numbering in seqs.forgotten:
            return SeqRanges(seqs.max_ranges, f"{sensor}#{numbering}", numbering), True
        if seqs.numbering is None and (CLOCK_UNSYNCED in flags or not seqs.starts_again(seq, ts)):
            seqs.numbering = numbering
            return seqs, False
        self._restarted(sensor, seqs, None, ts, ledger, numbering, out, received_ns)
        return seqs, False

    def _rollup(self, part: list[Any], which: int, sensor: str) -> SensorRollup:
        """The sensor's rollup at one width, made at its first reading that counts."""
        rollups, width = (self.minute, MINUTE_NS) if which == MINUTE else (self.hour, HOUR_NS)
        rollup = part[which] = rollups[sensor] = SensorRollup(width, self.horizon_ns)
        if self._frozen_store is not None:
            rollup.use_store(self._frozen_store, self._gone)
        return rollup

    @staticmethod
    def _recompute(site: str, node: str, sensor: str, kind: str, rp: str, width: int, at: int
                   ) -> Point:
        """The rebuild of the window of width `width` holding the instant `at` (window_ts)."""
        return RECOMPUTE, Recompute(rp, KINDS[kind].measurement, site, node, sensor, kind, width,
                                    at - at % width).encode()

    def heartbeat(self, data: NodeData) -> list[Point]:
        """A status message's heartbeat: the events of the rules on heartbeats (alerts to
        take_alerts()); its `node_status` point is written by the caller."""
        if data.status is None or not self.detect:
            return []
        self.site, self.node = data.site, data.node
        out = self.node_watch.check(data.site, data.node, data.status, self.kinds, self.alerts,
                                    self.watch)
        rewrite = clock_rewrite(data.site, data.node, self.node_watch.jumps)
        if rewrite is not None:  # a clock jump counted by the node too: its event's detail
            out.append(rewrite)
        return out

    def tick(self, now: datetime) -> list[Point]:
        """Fault rules that need time to pass (silence); alerts go to take_alerts(). The
        node's quiets since the last tick go with it: a sensor is not silent while its node
        is, as a whole: for at least `AWAY_HEARTBEATS` of its heartbeat intervals (learnt from
        its heartbeats) and the sensor's limit; a shorter quiet is the node's usual spacing."""
        site, node = getattr(self, "site", ""), getattr(self, "node", "")
        out: list[Point] = []
        quiets, self.quiets = self.quiets, []
        away_s = AWAY_HEARTBEATS * self.node_watch.monitor.heartbeat_interval()
        for sensor, watch in self.watch.items():
            out.extend(watch.tick(site, node, sensor, self.kinds.get(sensor, ""), now, self.alerts,
                                  quiets, away_s))
        return out

    def _heard(self, received_ns: int) -> None:
        """A message of the node received at `received_ns`: the quiet before it noted if
        longer than a second and than every later one (`quiets`)."""
        last = self.heard_ns
        if last is None or received_ns > last:
            self.heard_ns = received_ns
        if last is None or received_ns - last < QUIET_MIN_NS:
            return
        quiet = (last // 1000, received_ns // 1000)
        quiets = self.quiets
        while quiets and quiets[-1][1] - quiets[-1][0] <= quiet[1] - quiet[0]:
            quiets.pop()
        if len(quiets) == QUIETS_KEPT:
            quiets.pop()
        quiets.append(quiet)

    def take_alerts(self) -> list[Alert]:
        alerts, self.alerts = self.alerts, []
        return alerts

    def take_measured(self) -> list[Reading]:
        """The last message's readings that entered the aggregates: fresh (no duplicate),
        of a sensor within the node's cap, within the contract's ranges, not warming up."""
        measured, self.measured = self.measured, []
        return measured

    def take_site_updates(self) -> list[SiteUpdate]:
        """What the per-hospital (site) step needs from this node since the last call."""
        updates, self.site_updates = self.site_updates, []
        return updates

    def _evict(self, received_ns: int, measured: list[Reading]) -> None:
        """Drops the windows and ledger hours past the horizon. A rollup changes only when a
        reading enters it (`measured`): the others were evicted as far as they go when they
        last took one, and their newest stamps are in `_newest_ns` already."""
        newest = self._newest_ns
        if newest is None:
            newest = max([r.newest_ns for rs in (self.minute, self.hour) for r in rs.values()],
                         default=0)
        minutes, hourly = self.minute, self.hour
        for sensor in {r.sensor for r in measured}:
            for r in (minutes[sensor], hourly[sensor]):
                r.evict()
                if r.newest_ns > newest:
                    newest = r.newest_ns
        self._newest_ns = newest
        # A ledger hour older than the horizon stays while messages with its readings keep
        # coming (a backlog sent in many messages), until none came for the horizon of
        # receive time (LEDGER_IDLE_MIN_NS at least); then it is let go, and remembered as
        # written. Past MAX_LEDGER_HOURS the oldest go whatever the horizon: a node none of
        # whose readings enters the windows (all clock_unsynced) has no newest to count back
        # from.
        floor = newest - self.horizon_ns - HOUR_NS
        idle = received_ns - max(self.horizon_ns, LEDGER_IDLE_MIN_NS)
        over = len(self.ledger) - MAX_LEDGER_HOURS
        hours = sorted(self.ledger)
        for i, hour in enumerate(hours):
            if i >= over and hour >= floor:
                break
            if i < over or self.ledger[hour].touched_ns < idle:
                del self.ledger[hour]
                _close(self.ledger_closed, hour)


def _take(runs: list[list[int]], seq: int) -> None:
    """Adds `seq`, not among them, to the sorted, disjoint half-open `runs`."""
    i = bisect.bisect_right(runs, [seq, math.inf]) - 1  # the last run starting before it
    joins_left = i >= 0 and runs[i][1] == seq
    joins_right = i + 1 < len(runs) and runs[i + 1][0] == seq + 1
    if joins_left and joins_right:
        runs[i][1] = runs[i + 1][1]
        del runs[i + 1]
    elif joins_left:
        runs[i][1] = seq + 1
    elif joins_right:
        runs[i + 1][0] = seq
    else:
        runs.insert(i + 1, [seq, seq + 1])


def _starts_run(runs: list[list[int]], seq: int) -> bool:
    i = bisect.bisect_right(runs, [seq, math.inf]) - 1
    return i >= 0 and runs[i][0] == seq


def _gaps_below(runs: list[list[int]], numbers: list[list[int]]) -> int:
    """The numbers missing just below each of `runs` (a ledger hour's, of one numbering)
    that starts a run of the numbering's `numbers` seen, but the first."""
    missing = 0
    for start, _ in runs:
        i = bisect.bisect_right(numbers, [start, math.inf]) - 1
        if i > 0 and numbers[i][0] == start:
            missing += start - numbers[i - 1][1]
    return missing


def _within(numbers: list[list[int]], runs: list[list[int]]) -> list[list[int]]:
    """The numbers of `numbers` within `runs` (both sorted, disjoint, half-open)."""
    out = []
    for low, high in runs:
        i = max(0, bisect.bisect_right(numbers, [low, math.inf]) - 1)
        for start, end in numbers[i:]:
            if start >= high:
                break
            if end > low:
                out.append([max(start, low), min(end, high)])
    return out


def _closed(ranges: list[list[int]], hour: int) -> bool:
    return any(lo <= hour <= hi for lo, hi in ranges)


def _close(ranges: list[list[int]], hour: int) -> None:
    """Adds `hour` to the sorted, merged `ranges` of hours let go (the oldest ranges are
    forgotten past MAX_CLOSED_RANGES)."""
    i = bisect.bisect_left(ranges, [hour, hour])
    before = ranges[i - 1] if i > 0 else None
    after = ranges[i] if i < len(ranges) else None
    if before is not None and before[1] + HOUR_NS >= hour:
        before[1] = max(before[1], hour)
        if after is not None and after[0] <= before[1] + HOUR_NS:
            before[1] = max(before[1], after[1])
            del ranges[i]
    elif after is not None and after[0] - HOUR_NS <= hour:
        after[0] = min(after[0], hour)
    else:
        ranges.insert(i, [hour, hour])
    del ranges[:-MAX_CLOSED_RANGES]


def _raw_point(head: str, r: Reading) -> Point:
    """A reading's raw point as `NodeState.process` writes it (there inlined)."""
    text = ",".join(f"{field_key(k)}={float_text(v)}" for k, v in r.values.items())
    flags = f",flags={string_field(','.join(r.flags))}" if r.flags else ""
    return RP_RAW, f"{head} {text},seq={r.seq}i{flags} {raw_time(r)}"


def _too_many_sensors(site: str, node: str, r: Reading, stamp_ns: int) -> Point:
    raw = json.dumps({"sensor": r.sensor, "kind": r.kind, "seq": r.seq, "ts_ns": r.ts_ns,
                      "values": dict(r.values)}).encode()
    return dead_letter_point(site, node, "too_many_sensors",
                             f"sensor {r.sensor!r}: the node already has {MAX_SENSORS_PER_NODE} "
                             "sensors", raw, 1000, stamp_ns)
