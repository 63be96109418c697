"""The processor's report on itself: one `processor` point per process every interval.

Two threads of one process feed it. The journal partition tells it, per batch, what it
read (`journal_read`); the InfluxDB writer thread asks for the point when it is due
(`report`) and writes it itself, so the report goes on while the dataflow is stuck, and
stops only when the process or its way to InfluxDB is gone ("Processor silent").

Read lag: the cloud's clock at the report minus the time up to which every journaled
record had been read. When the reader's last batch left nothing unread (it found every
journal's end, or no journal holds an offset beyond its own), that time is the batch's, and
the lag is the time since (hundredths of a second while it polls). While it is behind, it
is the receive time of the newest record read, every older one being read too (the journals
are merged in receive order): the newest read record's age. That bounds the oldest unread
record's age from above, by the gap between two records; it is chosen because the reader
holds it in every batch for free, where the oldest unread record would need a query into
the journal. Either way the age is taken on the report's clock, so a reader that stops
(a stuck dataflow) shows a lag that grows.

Ingest clocks: the journals of several ingests are merged by the stamps each ingest puts
on what it receives, so those ingests' clocks must agree (NTP). When the reader is caught
up, a record's age when read is the ingest's commit delay plus how far the reader's clock
is ahead of that ingest's; the least age of each journal over a minute, compared across
journals, says how far the ingests' clocks disagree (`IngestClocks`), logged at WARNING
past SKEW_WARN_S.

State disk: the bytes still free on state.dir's filesystem (journals, recovery store),
looked at when the point is made; the ingest stops taking messages below
state.min_free_bytes (cloud.state_disk).
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
from collections.abc import Callable, Sequence
from pathlib import Path

from cloud.journal import JournalRecord
from cloud.logic.lines import line
from cloud.logic.records import Point
from cloud.sink import SinkStats
from cloud.state_disk import StatVfs, free_bytes
from urbanpulse.clock import Clock, to_epoch_ns

MEASUREMENT = "processor"
POLICY = "raw"

log = logging.getLogger("urbanpulse.cloud.health")

# Ingests' clocks further apart than this are logged. A node's messages, dealt out to the
# ingests, are then read out of order by the difference: past the fault rules' gap grace
# (10 s) they raise false silences while a backlog is read, past a sensor's silence limit
# less its interval (20 s for a 10-s sensor) while live (tests/cloud/test_ingest_clocks.py).
SKEW_WARN_S = 2.0
SKEW_WINDOW_S = 60.0  # the least age of each journal's records is taken over this long
SKEW_MIN_SAMPLES = 5  # caught-up reads of a journal's records a window needs to count it


class IngestClocks:
    """How far the clocks of the ingests whose journals one reader merges disagree, from
    the age of the records it reads while caught up (each journal's newest then): the least
    age of each journal over a window of SKEW_WINDOW_S is its ingest's least commit delay
    plus the reader's clock less the ingest's, and the spread of those across journals is
    how far the ingests' clocks are apart (to the difference of the least delays, a few
    milliseconds). Logged once when it exceeds SKEW_WARN_S, and once when it is back under
    half that. Reads while behind say nothing (their ages are the backlog's)."""

    def __init__(self, warn_s: float = SKEW_WARN_S, window_s: float = SKEW_WINDOW_S) -> None:
        self.warn_s = warn_s
        self.window_s = window_s
        self.spread_s: float | None = None  # of the last window with two journals or more
        self._window_end: float | None = None
        self._least: dict[str, int] = {}  # journal -> least age seen in the window, ns
        self._samples: dict[str, int] = {}
        self._warned = False

    def read(self, records: Sequence[JournalRecord], caught_up: bool, now_ns: int,
             monotonic: float) -> None:
        if self._window_end is None:
            self._window_end = monotonic + self.window_s
        if caught_up and records:
            newest: dict[str, int] = {}
            for rec in records:
                newest[rec.partition] = max(newest.get(rec.partition, 0), rec.received_ns)
            for partition, stamp in newest.items():
                age = now_ns - stamp
                self._least[partition] = min(age, self._least.get(partition, age))
                self._samples[partition] = self._samples.get(partition, 0) + 1
        if monotonic >= self._window_end:
            self._close_window()
            self._window_end = monotonic + self.window_s

    def _close_window(self) -> None:
        least = {p: a for p, a in self._least.items() if self._samples[p] >= SKEW_MIN_SAMPLES}
        self._least, self._samples = {}, {}
        if len(least) < 2:
            return
        ahead = min(least, key=least.__getitem__)  # the youngest records: the clock furthest ahead
        behind = max(least, key=least.__getitem__)
        self.spread_s = (least[behind] - least[ahead]) / 1e9
        if self.spread_s > self.warn_s and not self._warned:
            self._warned = True
            log.warning("the ingests' clocks disagree by about %.1f s: journal %s's stamps run "
                        "ahead of journal %s's. The journals are merged by those stamps, so a "
                        "node's messages are read out of order by as much, and past a few seconds "
                        "the fault rules raise false silences; set the clocks of the ingests' "
                        "hosts by NTP (docs/cloud-config.md, \"Running a cluster\")",
                        self.spread_s, ahead, behind,
                        extra={"spread_s": round(self.spread_s, 3), "ahead": ahead, "behind": behind})
        elif self._warned and self.spread_s <= self.warn_s / 2:
            self._warned = False
            log.info("the ingests' clocks agree again (within %.2f s)", self.spread_s)


class ProcessorHealth:
    """Counters and gauges of one processor process, thread-safe; `clock` stamps the
    points and measures the lag, `every_s` is the reporting interval; with `state_dir`, the
    points say how much is free on its filesystem (looked at with `statvfs`)."""

    def __init__(self, process_id: int, every_s: float, clock: Clock, state_dir: Path | None = None,
                 statvfs: StatVfs = os.statvfs) -> None:
        if not every_s > 0:
            raise ValueError(f"every_s must be > 0, got {every_s!r}")
        self.process_id = process_id
        self.every_s = every_s
        self.clock = clock
        self.state_dir = state_dir
        self.statvfs = statvfs
        self._lock = threading.Lock()
        self._started_ns = to_epoch_ns(clock.now())
        self._next_report = clock.monotonic()  # the first report is due at once
        self._reading = False  # a journal partition reports here (one process of a cluster)
        self._records_read = 0
        self._read_up_to_ns = 0  # every record received before this has been read
        self._backlog = 0
        self.ingest_clocks = IngestClocks()

    def journal_read(self, records: Sequence[JournalRecord], caught_up: bool,
                     backlog: Callable[[], int]) -> None:
        """One batch of the journal partition: `records` in receive order, `caught_up`
        whether the read found every journal's end. `backlog` counts the records not yet
        read (a look at each journal's last offset); it is called only while behind."""
        pending = 0 if caught_up else backlog()
        newest = records[-1].received_ns if records else 0
        # Nothing pending: everything journaled so far is read, up to now.
        now_ns = to_epoch_ns(self.clock.now())
        up_to = now_ns if pending == 0 else newest
        self.ingest_clocks.read(records, caught_up, now_ns, self.clock.monotonic())
        with self._lock:
            self._reading = True
            self._records_read += len(records)
            self._read_up_to_ns = max(self._read_up_to_ns, up_to)
            self._backlog = pending

    def seconds_to_report(self, every_s: float | None = None) -> float:
        """How long until the next report is due (0 when it is); with `every_s`, when it
        would be due were the reports that far apart instead."""
        with self._lock:
            due = self._next_report if every_s is None else self._next_report - self.every_s + every_s
            return max(0.0, due - self.clock.monotonic())

    def report(self, stats: SinkStats, pending_points: int) -> Point:
        """The `processor` point for now, stamped by the cloud's clock; the next one is
        due an interval later. `stats`: the InfluxDB writer's counts; `pending_points`:
        handed to the writer and not yet written."""
        now_ns = to_epoch_ns(self.clock.now())
        fields: dict[str, float | int] = {
            "uptime_s": (now_ns - self._started_ns) / 1e9,
            "points_written": stats.points,
            "write_requests": stats.requests,
            "write_retries": stats.retries,
            "write_refused": stats.refused_requests,
            "write_denied": stats.denied,
            "write_denied_s": round(stats.denied_s, 3),
            "windows_rebuilt": stats.recomputed,
            "windows_not_rebuilt": stats.not_recomputed,
            "domain_spans_replayed": stats.domain_replays,
            "domain_spans_not_replayed": stats.domain_not_replayed,
            "domain_spans_refused": stats.spans_refused,
            "windows_refused": stats.windows_refused,
            "points_pending": pending_points,
        }
        if self.state_dir is not None:
            # A state.dir that cannot be looked at leaves the field out, not the point.
            with contextlib.suppress(OSError):
                fields["state_free_bytes"] = free_bytes(self.state_dir, self.statvfs)
        with self._lock:
            self._next_report = self.clock.monotonic() + self.every_s
            if self._reading:
                fields["records_read"] = self._records_read
                fields["journal_backlog"] = self._backlog
                fields["read_lag_s"] = max(0, now_ns - self._read_up_to_ns) / 1e9
        return POLICY, line(MEASUREMENT, {"process": str(self.process_id)}, fields, now_ns)
