"""What a run measures while it goes: readings journaled, raw points in InfluxDB, progress
of the publishers, CPU of every process."""

from __future__ import annotations

import contextlib
import sqlite3
from bisect import bisect_right
from collections import Counter, defaultdict
from dataclasses import dataclass
from itertools import accumulate
from pathlib import Path

from bench.edge.errors import BenchError
from bench.edge.procfs import cpu_times, thread_cpu
from bench.pipeline.errors import PipelineBenchError
from bench.pipeline.workload import Message
from urbanpulse.influx_http import InfluxError, InfluxHTTP


class JournalCounter:
    """Readings in the journal files: rows per topic, turned into readings through the
    publish order (one node's messages reach the journal in the order it sent them)."""

    def __init__(self, journal_dir: Path, messages: list[Message]) -> None:
        self.journal_dir = journal_dir
        per_topic: dict[str, list[int]] = defaultdict(list)
        for m in messages:
            per_topic[m.topic].append(m.readings)
        self.prefix = {t: [0, *accumulate(counts)] for t, counts in per_topic.items()}

    def rows(self) -> Counter[str]:
        rows: Counter[str] = Counter()
        for path in sorted(self.journal_dir.glob("journal-*.sqlite3")):
            try:
                db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5)
                try:
                    for topic, n in db.execute("SELECT topic, COUNT(*) FROM entries GROUP BY topic"):
                        rows[topic] += n
                finally:
                    db.close()
            except sqlite3.OperationalError as exc:
                if "no such table" in str(exc):
                    continue
                raise PipelineBenchError(f"cannot count {path}: {exc}") from exc
        return rows

    def readings(self) -> tuple[int, int]:
        """(readings journaled, rows beyond the published ones, i.e. duplicates)."""
        total = extra = 0
        for topic, n in self.rows().items():
            prefix = self.prefix.get(topic, [0])
            total += prefix[min(n, len(prefix) - 1)]
            extra += max(0, n - (len(prefix) - 1))
        return total, extra


class InfluxCounter:
    def __init__(self, client: InfluxHTTP, database: str, measurements: list[str], first_ns: int,
                 last_ns: int) -> None:
        self.client = client
        self.database = database
        self.sources = ", ".join(f'"raw"."{m}"' for m in sorted(measurements))
        # Raw points sit up to 999 ns after their reading's time (cloud.logic.node.raw_time).
        self.where = f"time >= {first_ns} AND time <= {last_ns + 999}"

    def raw_points(self) -> Counter[str]:
        """Raw reading points per measurement (every one has the field seq)."""
        try:
            series = self.client.query(f'SELECT count("seq") FROM {self.sources} WHERE {self.where}',
                                       db=self.database)
        except InfluxError as exc:
            raise PipelineBenchError(f"counting raw points failed: {exc}") from exc
        return Counter({s["name"]: int(s["values"][0][1]) for s in series if s["values"]})

    def dead_letters(self) -> int:
        try:
            series = self.client.query('SELECT count("offset") FROM "raw"."dead_letter"', db=self.database)
        except InfluxError as exc:
            raise PipelineBenchError(f"counting dead letters failed: {exc}") from exc
        return sum(int(s["values"][0][1]) for s in series if s["values"])


def read_progress(path: Path) -> tuple[list[tuple[float, int, int]], bool]:
    """A publisher's progress lines: (monotonic time, readings sent, readings acked), done."""
    rows: list[tuple[float, int, int]] = []
    done = False
    if not path.exists():
        return rows, done
    for line in path.read_text().splitlines():
        if line == "done":
            done = True
            continue
        parts = line.split()
        if len(parts) == 3:
            rows.append((float(parts[0]), int(parts[1]), int(parts[2])))
    return rows, done


def merged_acks(progress: list[list[tuple[float, int, int]]]) -> list[tuple[float, int]]:
    """Readings acknowledged by the broker over all publishers, as a step curve."""
    events = sorted((t, i, acked) for i, rows in enumerate(progress) for t, _, acked in rows)
    latest = [0] * len(progress)
    out = []
    for t, i, acked in events:
        latest[i] = acked
        out.append((t, sum(latest)))
    return out


def reached_at(curve: list[tuple[float, int]], value: int) -> float | None:
    """The first time a non-decreasing curve is at or above `value`."""
    values = [v for _, v in curve]
    i = bisect_right(values, value - 1)
    return curve[i][0] if i < len(curve) else None


def child_pids(pid: int) -> list[int]:
    """The direct children of `pid` (e.g. the ingest processes `cloud run` starts)."""
    out: list[int] = []
    try:
        tasks = list(Path(f"/proc/{pid}/task").iterdir())
    except OSError:
        return out
    for task in tasks:
        try:
            out.extend(int(c) for c in (task / "children").read_text().split())
        except OSError:
            continue  # the thread ended between listing and reading
    return sorted(set(out))


@dataclass
class CpuSample:
    t: float
    process_s: dict[str, float]
    threads_s: dict[str, float]


def cpu_sample(t: float, pids: dict[str, list[int]], threads_of: int | None,
               last_seen: dict[int, float]) -> CpuSample:
    """CPU seconds so far per named group of processes; a process that has ended counts
    with the last value read (`last_seen`, updated here)."""
    process_s: dict[str, float] = {}
    for name, group in pids.items():
        total = 0.0
        for pid in group:
            with contextlib.suppress(BenchError):
                last_seen[pid] = cpu_times(pid).total_s
            total += last_seen.get(pid, 0.0)
        process_s[name] = total
    threads: dict[str, float] = {}
    if threads_of is not None:
        try:
            per_thread = thread_cpu(threads_of)
        except (BenchError, FileNotFoundError):
            per_thread = {}
        for tid, times in per_thread.items():
            try:
                comm = Path(f"/proc/{threads_of}/task/{tid}/comm").read_text().strip()
            except OSError:
                comm = "?"
            threads[f"{comm}:{tid}"] = times.total_s
    return CpuSample(t, process_s, threads)


STATE_STEPS = ("urbanpulse.node_state", "urbanpulse.site_state")


class SnapshotCounter:
    """The node and site states' snapshots in the recovery store, per epoch: the most seen
    of each epoch (Bytewax deletes a key's older snapshot once a newer one is committed, so
    an epoch's rows are counted while they are the newest), and what the store holds at the
    end (every key's newest snapshot: the state's pickled size)."""

    def __init__(self, recovery_dir: Path) -> None:
        self.recovery_dir = recovery_dir
        self.per_epoch: dict[int, tuple[int, int]] = {}  # epoch -> (keys, bytes)

    def _query(self, sql: str) -> list[tuple[int, int, int]]:
        out: list[tuple[int, int, int]] = []
        for path in sorted(self.recovery_dir.glob("part-*.sqlite3")):
            try:
                db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5)
                try:
                    out += db.execute(sql, STATE_STEPS).fetchall()
                finally:
                    db.close()
            except sqlite3.OperationalError as exc:
                if "no such table" in str(exc) or "locked" in str(exc):
                    continue
                raise PipelineBenchError(f"cannot read {path}: {exc}") from exc
        return out

    def sample(self) -> None:
        rows = self._query("SELECT snap_epoch, COUNT(*), SUM(LENGTH(ser_change)) FROM snaps "
                           "WHERE step_id IN (?, ?) GROUP BY snap_epoch")
        for epoch, keys, size in rows:
            seen = self.per_epoch.get(epoch, (0, 0))
            self.per_epoch[epoch] = (max(seen[0], keys), max(seen[1], size or 0))

    def held(self) -> tuple[int, int]:
        """(keys, bytes) of the newest snapshots the store holds."""
        rows = self._query("SELECT 0, COUNT(*), SUM(LENGTH(ser_change)) FROM snaps WHERE step_id IN (?, ?)")
        return sum(r[1] for r in rows), sum(r[2] or 0 for r in rows)


def rss_mib(pid: int) -> tuple[float, float]:
    """(VmRSS, VmHWM) of a process in MiB; (0, 0) once it is gone."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return 0.0, 0.0
    kib = {line.split(":")[0]: int(line.split()[1]) for line in status.splitlines()
           if line.startswith(("VmRSS:", "VmHWM:"))}
    return kib.get("VmRSS", 0) / 1024, kib.get("VmHWM", 0) / 1024
