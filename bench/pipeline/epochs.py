"""`python -m bench.pipeline.epochs`: what `flow.epoch_interval_s` costs and buys for a
running city, measured on a warm sample of it at its own pace.

The sample: every node of the simulated city `--copies` times (23 nodes x 100 = 2,300 by
default, the city's own mix; the real city is 2,160 copies, 49,680 nodes), a site holding
at most 100 copies of its nodes as in the at-pace runs (`bench.pipeline.atpace`). Each node's
state is first fed its node's 6 hours of readings and heartbeats through the node step
(`cloud.flow.NodeLogic`), as `bench.pipeline.node_state_size` does, once per base node;
a copy starts from its base node's state (unpickled when its first record arrives) and
goes on with the hours after, its stamps and receptions moved by up to 30 s (copy n by
n x 30 s / copies) so that the copies do not send in step.

Per epoch setting a run: a fresh state dir; the real processor dataflow
(`cloud.flow.build_flow`, recovery on, a fresh recovery store, the real journal source
reading a real journal) in a child process run by Bytewax's `cli_main` as `cloud run` runs
it, with InfluxDB and the MQTT alerts replaced by sinks that drop what they get (the
writer's CPU is not in the figures); this process appends the records to the journal at
their own pace (as the ingest would). With `--influx` the points go to a real InfluxDB
instead (started here on a free 127.0.0.1 port as `bench.pipeline.privstack` starts it,
its database and retention policies made by `cloud init-db`'s code) through the
processor's own writer: the writer's CPU is then in the processor's, and influxd's over the
same measured part is reported beside it (`influxd_cores`, `influxd_cpu_s_an_epoch_median`).
After the measured part the child is SIGKILLed just before an epoch's end (the most input
to replay), started again on the same store and journal, and given a SIGTERM once it has
caught up: the resume, the catch-up and the stop are timed. With `--stops drain,abort`
(flow.stop's two ways) it is started again after each stop but the last, caught up again
and stopped the next way: each stop's seconds from the SIGTERM to the exit, and the
`on_eof` calls and node snapshots after the SIGTERM.

A setting `EPOCH/N` (`--epochs 30/0,30/20`) runs with `flow.detector_checkpoint_every = N`
(the detectors' book, cloud/logic/detector_book.py; without `/N` the config's default). The
warm states go through the frozen store as a resumed state does (its closed windows and its
book); a warm state has no book yet, so its first snapshot pickles its detectors and its
next record writes their first checkpoint: every node's in the same epoch, once, in the
measured part (the `epoch` lines' per-epoch figures show it apart).
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import itertools
import json
import os
import pickle
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

from bench.edge.procfs import cpu_times
from bench.pipeline.atpace import DEFAULT_PER_SITE, copy_ids
from bench.pipeline.errors import PipelineBenchError
from bench.pipeline.node_state_size import HEARTBEAT_S, MESSAGE_S, START, messages
from bench.pipeline.privstack import PrivateStack, cloud_config
from bench.pipeline.workload import numbering_of
from cloud.config import STOP_MODES
from cloud.frozen_store import FrozenStore
from cloud.journal import Journal, JournalRecord, journal_path
from cloud.logic.node import NodeState
from cloud.logic.rollup import HOUR_NS
from urbanpulse.clock import from_epoch_ns, to_epoch_ns
from urbanpulse.simulate import City, Simulation
from urbanpulse.wire import Reading, data_topic, encode_batch, encode_status, status_topic

WARM_HOURS = 6.0
HORIZON_NS = 6 * 3600 * 10**9  # flow.aggregate_horizon_s's default
SPREAD_S = 30.0  # the copies' receptions spread over this much
PARTITION = "i0"
WINDOW_FROM_S = 10.0  # the measured part begins at the first epoch's end after this
NEW_EPOCH_GAP_S = 0.5  # a snapshot this long after the last one begins the next epoch's
CAUGHT_UP_LAG_S = 3.0
STARTUP_BUDGET_S = 300.0
STOP_BUDGET_S = 300.0
CATCHUP_BUDGET_S = 240.0
# The node step's parts timed apart (`_time_step_parts`): a record's decode, the node
# state's work on a data message and on a heartbeat, the ticks; the step's other work (the
# outputs' tuples, the drift inputs, the replay requests) is the step less these.
STEP_PARTS = ("decode", "data", "heartbeat", "tick")
# A node snapshot's parts, timed apart the same way: `NodeState.frozen_snapshot` (the
# detectors' book, the rows let go, the frozen store's flush) and, of it, `FrozenStore.flush`
# (a transaction of the store, synchronous FULL); the rest of the snapshot is its pickling.
SNAPSHOT_PARTS = ("frozen", "flush")
GC_PARTS = ("gc", "gc_full")  # the collector's CPU, s, and its full collections, counted


@dataclass(frozen=True)
class LiveRecord:
    at_s: float  # seconds after the live part's start it is due
    received_ns: int  # its reception, in the simulated time
    topic: str
    payload: bytes
    readings: int


def _base_of(key: str) -> str:
    site, node = key.split("/")
    return f"{site.rsplit('-g', 1)[0]}/{node.rsplit('-c', 1)[0]}"


def _copy_key(key: str, copy: int) -> tuple[str, str]:
    """Copy `copy` of a node, in a site of at most DEFAULT_PER_SITE copies of its base site, as
    the at-pace runs group them: every copy in one site made the site steps' work a message
    grow with the sample (a hospital of 150 OPD halls at 150 copies)."""
    site, node = key.split("/")
    return copy_ids(site, node, copy, DEFAULT_PER_SITE)


def _records(site: str, node: str, numbering: str, readings: list[Reading], shift_ns: int,
             since_ns: int, until_ns: int) -> list[tuple[int, str, bytes, int]]:
    """A node's messages and heartbeats received in [since_ns, until_ns) (before the
    shift), as node_state_size.records cuts them, stamped and received `shift_ns` later."""
    out: list[tuple[int, str, bytes, int]] = []
    for message in messages(readings):
        received = message[0].ts_ns + int(MESSAGE_S * 1e9) + 10_000_000
        if since_ns <= received < until_ns:
            moved = [Reading(r.sensor, r.kind, r.ts_ns + shift_ns, r.seq, r.values, r.flags)
                     for r in message]
            out.append((received + shift_ns, data_topic(site, node),
                        encode_batch(site, node, moved, numbering=numbering), len(message)))
    start = to_epoch_ns(START)
    beat = int(HEARTBEAT_S * 1e9)
    for b in range(max(1, (since_ns - start) // beat), (until_ns - start) // beat + 1):
        at_ns = start + b * beat
        if since_ns <= at_ns + 10_000_000 < until_ns:
            health = {"uptime_s": b * HEARTBEAT_S, "run_id": "run0001",
                      "clock": {"jumps": 0, "synchronised": True}}
            out.append((at_ns + 10_000_000 + shift_ns, status_topic(site, node),
                        encode_status("online", from_epoch_ns(at_ns + shift_ns), health), 0))
    return out


def make_city(copies: int, live_s: float, detect: bool = True, keys: list[str] | None = None,
              warm_hours: float = WARM_HOURS) -> tuple[dict[str, bytes], list[LiveRecord], int, int]:
    """(base node -> its state after `warm_hours` pickled, the copies' live records in order,
    the live part's start in simulated ns, the pickled bytes of the base states); `keys`:
    the base nodes (site/node), every node of the city by default."""
    from cloud.flow import NodeLogic

    city = City.load()
    keys = keys or [f"{n.site}/{n.node}" for n in city.nodes]
    by_key: dict[str, list[Reading]] = defaultdict(list)
    sim = Simulation(city, seed=1, start=START).readings(max_batch=2000)
    for nb in sim.advance(warm_hours * 3600 + live_s + SPREAD_S + 60):
        by_key[f"{nb.site}/{nb.node}"].extend(nb.readings)
    start = to_epoch_ns(START)
    sim0 = start + int(warm_hours * HOUR_NS)
    until = sim0 + int(live_s * 1e9)
    bases: dict[str, bytes] = {}
    live: list[LiveRecord] = []
    for key in keys:
        readings = sorted(by_key[key], key=lambda r: r.ts_ns)
        site, node = key.split("/")
        numbering = numbering_of(site, node)
        logic = NodeLogic(NodeState(HORIZON_NS, detect), 1 << 16)
        warm = sorted(_records(site, node, numbering, readings, 0, start, sim0))
        for offset, (received, topic, payload, _) in enumerate(warm):
            logic.on_batch([JournalRecord(PARTITION, offset, received, topic, payload)])
        bases[key] = pickle.dumps(logic.state, protocol=pickle.HIGHEST_PROTOCOL)
        for copy in range(copies):
            shift = int(copy * SPREAD_S / copies * 1e9)
            csite, cnode = _copy_key(key, copy)
            for received, topic, payload, n in _records(csite, cnode, numbering, readings, shift,
                                                         sim0 - shift, until - shift):
                live.append(LiveRecord((received - sim0) / 1e9, received, topic, payload, n))
    live.sort(key=lambda r: r.received_ns)
    return bases, live, sim0, sum(len(b) for b in bases.values())


# ---------------------------------------------------------------------------------------
# The processor child


class _Stats:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.records = 0
        self.max_received = 0
        self.lags: list[float] = []
        self.epochs: list[dict[str, Any]] = []
        self.last_snap = 0.0
        self.current: dict[str, Any] | None = None
        self.first_batch: float | None = None
        self.step_cpu = 0.0  # the node step's own CPU (its thread's), summed
        # of it, by part (STEP_PARTS), and of the node snapshots (SNAPSHOT_PARTS), summed;
        # the step's thread only ever adds to them
        self.parts = dict.fromkeys(STEP_PARTS + SNAPSHOT_PARTS, 0.0)
        # the cyclic collector's CPU (in whichever thread set it off) and its full passes
        self.parts.update(dict.fromkeys(GC_PARTS, 0.0))
        self._gc_started = 0.0

    def time_gc(self, phase: str, info: dict[str, int]) -> None:
        """A `gc.callbacks` entry: each collection's thread CPU added to `parts["gc"]`."""
        if phase == "start":
            self._gc_started = time.thread_time()
            return
        self.parts["gc"] += time.thread_time() - self._gc_started
        if info["generation"] == 2:
            self.parts["gc_full"] += 1


def _time_step_parts(cloud_flow: Any, parts: dict[str, float]) -> None:
    """Wraps the node step's parts in this process (the child) so that each adds its thread
    CPU to `parts`: `decode_record` as the step calls it, `NodeState.process` (a heartbeat's
    or a data message's), `NodeLogic._tick_at`; and a node snapshot's
    `NodeState.frozen_snapshot` and, within it, `FrozenStore.flush`. About 4 us of
    `thread_time` calls a record, against some 450 us of step."""

    def timed(fn: Any, part_of: Any) -> Any:
        """`fn`, its thread CPU added to `parts[part_of(*its arguments)]`."""
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            cpu = time.thread_time()
            try:
                return fn(*args, **kwargs)
            finally:
                parts[part_of(*args)] += time.thread_time() - cpu
        return wrapper

    cloud_flow.decode_record = timed(cloud_flow.decode_record, lambda *_: "decode")
    NodeState.process = timed(  # type: ignore[method-assign]
        NodeState.process, lambda _, data: "data" if data.status is None else "heartbeat")
    cloud_flow.NodeLogic._tick_at = timed(cloud_flow.NodeLogic._tick_at, lambda *_: "tick")
    NodeState.frozen_snapshot = timed(NodeState.frozen_snapshot, lambda *_: "frozen")  # type: ignore[method-assign]
    FrozenStore.flush = timed(FrozenStore.flush, lambda *_: "flush")  # type: ignore[method-assign]


def epoch_rounds(marks: list[dict[str, Any]], epoch: float) -> list[dict[str, Any]]:
    """The epochs' snapshot rounds, each as one mark. The child begins a round at a snapshot
    NEW_EPOCH_GAP_S after the one before, and a round can pause longer than that (its first
    snapshot alone, then the others after a pause: seen at 120 s epochs on 3,450 nodes, which
    split every round in two and took the CPU medians to half an epoch's). A mark that begins
    within half an epoch of the round before is part of it: its keys, bytes and snapshot CPU
    are added to that round's, which keeps its start (its CPU and counts at its first
    snapshot) and ends where the last part ends."""
    rounds: list[dict[str, Any]] = []
    for mark in marks:
        if rounds and mark["t"] - rounds[-1]["t"] < epoch / 2:
            into = rounds[-1]
            for name in ("keys", "bytes", "pickle_cpu", *SNAPSHOT_PARTS):
                if name in mark and name in into:
                    into[name] += mark[name]
            into["end"] = max(into.get("end", into["t"]), mark.get("end", mark["t"]))
        else:
            rounds.append(dict(mark))
    return rounds


def _snapshot_parts(marks: list[dict[str, Any]]) -> dict[str, float] | None:
    """The node snapshots' CPU an epoch by part, medians: their pickling, the frozen store's
    flush, and the rest of `frozen_snapshot` (None for marks kept before the parts were)."""
    if not marks or not all("flush" in m for m in marks):
        return None
    split = {"pickle": [m["pickle_cpu"] - m["frozen"] for m in marks],
             "frozen_but_flush": [m["frozen"] - m["flush"] for m in marks],
             "flush": [m["flush"] for m in marks]}
    return {name: round(statistics.median(v), 3) for name, v in split.items()}


def _process_cpu_s(pid: int | None) -> float | None:
    """Process `pid`'s CPU (user and system) in seconds so far, None without a pid."""
    return None if pid is None else cpu_times(pid).total_s


def _child(args: argparse.Namespace) -> int:
    from bytewax.recovery import RecoveryConfig
    from bytewax.run import cli_main

    from bench.pipeline.idle_loop import DropSink
    from cloud import flow as cloud_flow
    from cloud.cli import prepare_recovery_dir
    from cloud.config import parse_cloud_config
    from cloud.gc_policy import tune_for_streaming

    state_dir = Path(args.state_dir)
    bases: dict[str, bytes] = pickle.loads(Path(args.bases).read_bytes())
    # Every copy's warm state made before the dataflow starts (each one unpickled anew, so
    # the copies share nothing); on a resume the store holds them and none is made here.
    warm: dict[str, NodeState] = {}
    if not (state_dir / "recovery").exists():
        for key in bases:
            for copy in range(args.copies):
                site, node = _copy_key(key, copy)
                warm[f"{site}/{node}"] = pickle.loads(bases[key])
    stats = _Stats()
    _time_step_parts(cloud_flow, stats.parts)
    # the stop (flow.stop = args.stop), and what the node step does after it
    drain = cloud_flow.AbortStop() if args.stop == "abort" else threading.Event()
    after_stop = {"on_eof": 0, "snapshots": 0}
    wall0: list[float] = []
    out = open(args.stats, "a", buffering=1)  # noqa: SIM115 (closed at exit, or killed)

    def line(kind: str, **fields: Any) -> None:
        out.write(json.dumps({"kind": kind, "t": time.time(), **fields}) + "\n")

    class WarmLogic(cloud_flow.NodeLogic):
        def __init__(self, state: NodeState, *a: Any, **k: Any) -> None:
            super().__init__(state, *a, **k)
            self.fresh = len(state.seqs) == 0

        def on_batch(self, values: list[Any]) -> Any:
            if self.fresh:
                self.fresh = False
                key = cloud_flow.node_key(values[0])
                state = warm.pop(key, None)
                if state is None and _base_of(key) in bases:  # not snapshotted before a kill
                    state = pickle.loads(bases[_base_of(key)])
                if state is not None:
                    state.detect = self.state.detect
                    # as the builder gives a resumed state its store (the flow's, or None:
                    # the windows and hours the base state froze without one go into it)
                    # and its horizon
                    state.use_frozen_store(self.state._frozen_store)
                    state.set_horizon(state.horizon_ns)
                    self.state = state
            cpu = time.thread_time()
            result = super().on_batch(values)
            spent = time.thread_time() - cpu
            now = time.time()
            if not wall0:
                with contextlib.suppress(OSError, ValueError):  # not written yet
                    wall0.append(float((state_dir / "wall0").read_text()))
            with stats.lock:
                if stats.first_batch is None:
                    stats.first_batch = now
                stats.step_cpu += spent
                stats.records += len(values)
                for rec in values:
                    stats.max_received = max(stats.max_received, rec.received_ns)
                    if wall0:
                        stats.lags.append(now - wall0[0] - (rec.received_ns - args.sim0) / 1e9)
            return result

        def on_eof(self) -> Any:
            after_stop["on_eof"] += 1
            return super().on_eof()

        def snapshot(self) -> bytes:
            if drain.is_set():
                after_stop["snapshots"] += 1
            now = time.monotonic()
            before = {name: stats.parts[name] for name in SNAPSHOT_PARTS}
            cpu = time.thread_time()
            data: bytes = super().snapshot()
            spent = time.thread_time() - cpu
            with stats.lock:
                if stats.current is None or now - stats.last_snap > NEW_EPOCH_GAP_S:
                    if stats.current is not None:
                        stats.epochs.append(stats.current)
                    stats.current = {"t": time.time(), "cpu": time.process_time(),
                                     "influxd_cpu": _process_cpu_s(args.influxd_pid),
                                     "records": stats.records, "keys": 0,
                                     "bytes": 0, "pickle_cpu": 0.0, "step_cpu": stats.step_cpu,
                                     "parts": dict(stats.parts)}
                stats.current["keys"] += 1
                stats.current["bytes"] += len(data)
                stats.current["pickle_cpu"] += spent
                for name in SNAPSHOT_PARTS:
                    stats.current[name] = stats.current.get(name, 0.0) + stats.parts[name] - before[name]
                stats.current["end"] = time.time()
                stats.last_snap = time.monotonic()
            return data

    def sample() -> None:
        rdir = state_dir / "recovery"
        while True:
            time.sleep(1.0)
            size = sum(e.stat().st_size for e in os.scandir(rdir)) if rdir.exists() else 0
            with stats.lock:
                lags, stats.lags = stats.lags, []
                done, stats.epochs = stats.epochs, []
                # an epoch's snapshots over for a second: written out whole
                if stats.current is not None and time.monotonic() - stats.last_snap > 1.0:
                    done.append(stats.current)
                    stats.current = None
                records, newest, first = stats.records, stats.max_received, stats.first_batch
            for epoch in done:
                line("epoch", **epoch)
            rss = int(Path("/proc/self/statm").read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE")
            line("second", cpu=time.process_time(), influxd_cpu=_process_cpu_s(args.influxd_pid),
                 records=records, max_received=newest,
                 lag_max=max(lags, default=None), lag_p50=statistics.median(lags) if lags else None,
                 rss=rss, store=size, first_batch=first)

    # With --influx, the private stack's config (its InfluxDB for real, its broker unused:
    # the alerts are dropped); else one whose InfluxDB nobody reaches (the points dropped)
    base: dict[str, Any] = (json.loads(Path(args.cloud_config).read_text()) if args.cloud_config else {
        "mqtt": {"password_file": "p", "ca_file": "c"},
        "influx": {"url": "http://127.0.0.1:1", "database": "city", "password_file": "p"}})
    cfg = parse_cloud_config({
        **base,
        "flow": {"epoch_interval_s": args.epoch, "detect": True,
                 **({} if args.every is None else {"detector_checkpoint_every": args.every})},
        "state": {"dir": str(state_dir)}})
    def stop(*_: Any) -> None:
        drain.set()
        line("sigterm")

    signal.signal(signal.SIGTERM, stop)
    prepare_recovery_dir(cfg.recovery_dir, 1)
    tune_for_streaming()
    gc.callbacks.append(stats.time_gc)
    cloud_flow.NodeLogic = WarmLogic  # type: ignore[misc]
    threading.Thread(target=sample, daemon=True).start()
    line("started")
    sink = None if args.cloud_config else DropSink()  # None: the processor's InfluxDB writer
    cli_main(cloud_flow.build_flow(cfg, [PARTITION], sink=sink, alert_sink=DropSink(),  # type: ignore[no-untyped-call]
                                   drain=drain),
             workers_per_process=1, epoch_interval=timedelta(seconds=args.epoch),
             recovery_config=RecoveryConfig(str(cfg.recovery_dir), timedelta(0)))  # type: ignore[no-untyped-call]
    line("ended", **after_stop)
    out.close()
    return 0


# ---------------------------------------------------------------------------------------
# The driver


def _lines(path: Path) -> list[dict[str, Any]]:
    try:
        text = path.read_text()
    except FileNotFoundError:
        return []
    return [json.loads(s) for s in text.splitlines() if s.endswith("}")]


def _wait(path: Path, pred: Any, budget_s: float, proc: subprocess.Popen[bytes] | None = None
          ) -> dict[str, Any] | None:
    deadline = time.time() + budget_s
    while time.time() < deadline:
        for rec in _lines(path):
            if pred(rec):
                return rec
        if proc is not None and proc.poll() is not None:
            return None
        time.sleep(0.2)
    return None


class _Writer(threading.Thread):
    """Appends the live records to the journal at their own pace (as the ingest would)."""

    def __init__(self, journal: Journal, live: list[LiveRecord], wall0: float, until_s: float) -> None:
        super().__init__(name="journal-writer", daemon=True)
        self.journal, self.live, self.wall0, self.until_s = journal, live, wall0, until_s
        self.stopped = threading.Event()

    def run(self) -> None:
        i = 0
        while i < len(self.live) and not self.stopped.is_set():
            elapsed = time.time() - self.wall0
            if elapsed > self.until_s:
                break
            j = i
            while j < len(self.live) and self.live[j].at_s <= elapsed:
                j += 1
            for k in range(i, j):
                rec = self.live[k]
                self.journal.append([(rec.topic, rec.payload)], rec.received_ns)
            i = j
            if i < len(self.live):
                self.stopped.wait(min(0.05, max(0.0, self.live[i].at_s - elapsed)))


def _spawn(args: argparse.Namespace, state_dir: Path, bases: Path, stats: Path, epoch: float,
           sim0: int, stop: str = "drain", every: int | None = None) -> subprocess.Popen[bytes]:
    cmd = [sys.executable, "-m", "bench.pipeline.epochs", "--child", "--state-dir", str(state_dir),
           "--bases", str(bases), "--stats", str(stats), "--epoch", str(epoch), "--sim0", str(sim0),
           "--copies", str(args.copies), "--stop", stop,
           *([] if every is None else ["--every", str(every)]),
           *([] if args.cloud_config is None else ["--cloud-config", str(args.cloud_config),
                                                   "--influxd-pid", str(args.influxd_pid)])]
    log = open(state_dir / "child.log", "ab")  # noqa: SIM115 (the child holds it)
    return subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)


def run_setting(args: argparse.Namespace, epoch: float, bases: Path, live: list[LiveRecord],
                sim0: int, workdir: Path, every: int | None = None) -> dict[str, Any]:
    state_dir = workdir / (f"epoch-{epoch:g}" + ("" if every is None else f"-every-{every}"))
    state_dir.mkdir(parents=True)
    journal = Journal(journal_path(state_dir / "journal", PARTITION), PARTITION).open()
    stats1, stats2 = state_dir / "stats1.jsonl", state_dir / "stats2.jsonl"
    proc = _spawn(args, state_dir, bases, stats1, epoch, sim0, every=every)
    if _wait(stats1, lambda r: r["kind"] == "started", STARTUP_BUDGET_S, proc) is None:
        proc.kill()
        raise PipelineBenchError(f"epoch {epoch:g}: the processor did not start ({state_dir / 'child.log'})")
    wall0 = time.time()
    (state_dir / "wall0").write_text(repr(wall0))
    writer = _Writer(journal, live, wall0, args.live_s)
    writer.start()
    try:
        # the measured part, then a kill just before an epoch's end
        measure_until = wall0 + max(args.measure_s, epoch + 5)
        while time.time() < measure_until and proc.poll() is None:
            time.sleep(0.5)
        marks = epoch_rounds([r for r in _lines(stats1) if r["kind"] == "epoch"], epoch)
        marks = [r for r in marks if r["t"] - wall0 > 5]
        if proc.poll() is not None or not marks:
            raise PipelineBenchError(f"epoch {epoch:g}: no epoch written ({state_dir / 'child.log'})")
        if epoch >= 10:
            kill_at = marks[-1]["t"] + epoch - min(3.0, epoch / 4)
            while time.time() < kill_at:
                time.sleep(0.05)
        killed = time.time()
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        first = _lines(stats1)
        proc = _spawn(args, state_dir, bases, stats2, epoch, sim0, args.stops[0], every)
        spawned = time.time()
        started = _wait(stats2, lambda r: r["kind"] == "started", STARTUP_BUDGET_S, proc)
        batch = _wait(stats2, lambda r: r["kind"] == "second" and r["first_batch"], STARTUP_BUDGET_S, proc)

        def caught_up(since: float) -> Any:
            return lambda r: bool(
                r["kind"] == "second" and r["max_received"] > 0 and r["t"] > since
                and r["t"] - wall0 - (r["max_received"] - sim0) / 1e9 < CAUGHT_UP_LAG_S)

        caught = _wait(stats2, caught_up(killed), CATCHUP_BUDGET_S, proc)
        stops: list[dict[str, Any]] = []
        for n, mode in enumerate(args.stops):
            stats_n = stats2 if n == 0 else state_dir / f"stats-{n}-{mode}.jsonl"
            if n:  # started again from the last stop's store, caught up again
                proc = _spawn(args, state_dir, bases, stats_n, epoch, sim0, mode, every)
                respawned = time.time()
                if _wait(stats_n, caught_up(respawned), CATCHUP_BUDGET_S, proc) is None:
                    raise PipelineBenchError(f"epoch {epoch:g}: no catch-up before the {mode} stop "
                                             f"({state_dir / 'child.log'})")
            time.sleep(3.0)
            stopping = time.time()
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(STOP_BUDGET_S)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            stopped = time.time()
            ended = [r for r in _lines(stats_n) if r["kind"] == "ended"]
            stops.append({"stop": mode, "stop_s": round(stopped - stopping, 2), "clean": bool(ended),
                          "on_eof": ended[0]["on_eof"] if ended else None,
                          "snapshots_after_sigterm": ended[0]["snapshots"] if ended else None})
            if n == 0:
                first_stop = (stopping, stopped)
    finally:
        writer.stopped.set()
        writer.join()
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        journal.close()
    second = _lines(stats2)
    out = _summary(epoch, live, wall0, sim0, first, second, killed, spawned, started, batch, caught,
                   *first_stop, journal_path(state_dir / "journal", PARTITION))
    out["stops"] = stops
    out["detector_every"] = every
    return out


def _summary(epoch: float, live: list[LiveRecord], wall0: float, sim0: int, first: list[dict[str, Any]],
             second: list[dict[str, Any]], killed: float, spawned: float, started: dict[str, Any] | None,
             batch: dict[str, Any] | None, caught: dict[str, Any] | None, stopping: float,
             stopped: float, jpath: Path) -> dict[str, Any]:
    marks = epoch_rounds([r for r in first if r["kind"] == "epoch"], epoch)
    secs = [r for r in first if r["kind"] == "second"]
    # the window: from the first epoch's end after every copy had its first record (the
    # warm states unpickled) to the kill; its CPU from the epoch marks and the last second
    begin = next((m for m in marks if m["t"] - wall0 >= WINDOW_FROM_S), None)
    last = secs[-1] if secs else None
    out: dict[str, Any] = {"epoch_s": epoch}
    if begin is not None and last is not None and last["t"] > begin["t"]:
        span = last["t"] - begin["t"]
        # the records the node step took in (in the journal's order, the live list's)
        records = last["records"] - begin["records"]
        readings = sum(r.readings for r in live[begin["records"]:last["records"]])
        cpu = last["cpu"] - begin["cpu"]
        full = [m for m in marks if begin["t"] <= m["t"] < last["t"]]
        lags = [s for s in secs if s["t"] >= begin["t"] and s["lag_max"] is not None]
        per_epoch = [b["cpu"] - a["cpu"] for a, b in itertools.pairwise(full)]
        # of that, the node step's own (`NodeLogic.on_batch`, decode included) and the
        # node snapshots' (`pickle_cpu`: their pickling and the frozen store's part); the
        # rest is Bytewax's, the journal source's, the other steps' and the sinks'
        steps = [b["step_cpu"] - a["step_cpu"] for a, b in itertools.pairwise(full)]
        rest = [c - st - a["pickle_cpu"] for c, st, a in zip(per_epoch, steps, full[:-1], strict=True)]
        # the step by part (marks before the parts were kept have none: then left out)
        parts: dict[str, float] | None = None
        if full and all("parts" in m for m in full):
            split = {name: [b["parts"][name] - a["parts"][name] for a, b in itertools.pairwise(full)]
                     for name in STEP_PARTS}
            split["other"] = [st - sum(split[name][i] for name in STEP_PARTS) for i, st in enumerate(steps)]
            parts = {name: round(statistics.median(v), 3) for name, v in split.items() if v}
        collector: dict[str, float] = {}
        if full and all("gc" in m.get("parts", {}) for m in full):
            for name in GC_PARTS:
                per = [b["parts"][name] - a["parts"][name] for a, b in itertools.pairwise(full)]
                if per:
                    collector[f"{name}_an_epoch_median"] = round(statistics.median(per), 3)
                    collector[f"{name}_an_epoch_max"] = round(max(per), 3)
        out.update(
            window_s=round(span, 1), readings=readings, records=records,
            offered_records=sum(1 for r in live if begin["t"] - wall0 <= r.at_s < last["t"] - wall0),
            cores=round(cpu / span, 4), cpu_us_a_reading=round(cpu / max(readings, 1) * 1e6, 1),
            epochs=len(full),
            snapshot_keys_an_epoch=round(statistics.mean(m["keys"] for m in full), 1) if full else None,
            snapshot_mb_an_epoch=round(statistics.mean(m["bytes"] for m in full) / 1e6, 2) if full else None,
            # over the window: an epoch's snapshots may run into the next's (then counted as one)
            snapshot_mb_s=round(sum(m["bytes"] for m in full) / 1e6 / span, 3),
            snapshot_keys_s=round(sum(m["keys"] for m in full) / span, 2),
            pickle_cores=round(sum(m["pickle_cpu"] for m in full) / span, 4),
            pickle_cpu_s_an_epoch=round(statistics.mean(m["pickle_cpu"] for m in full), 3) if full else None,
            snapshot_wall_s_an_epoch=(round(statistics.mean(m["end"] - m["t"] for m in full), 3)
                                      if full else None),
            # the processor's CPU from one epoch's snapshots to the next's: the median leaves
            # out an epoch apart (the warm states' first checkpoints: see the module's doc)
            cpu_s_an_epoch_median=(round(statistics.median(per_epoch), 3) if per_epoch else None),
            cpu_s_an_epoch_max=round(max(per_epoch), 3) if per_epoch else None,
            step_cpu_s_an_epoch_median=(round(statistics.median(steps), 3) if steps else None),
            rest_cpu_s_an_epoch_median=(round(statistics.median(rest), 3) if rest else None),
            # the snapshots' as the step's and the rest's: from one epoch's marks to the next
            pickle_cpu_s_an_epoch_median=(round(statistics.median(a["pickle_cpu"] for a in full[:-1]), 3)
                                          if len(full) > 1 else None),
            step_parts_s_an_epoch_median=parts,
            **collector,
            snapshot_parts_s_an_epoch_median=_snapshot_parts(full[:-1]),
            **_influxd_cpu(begin, last, full, span),
            lag_p50_s=round(statistics.median(s["lag_p50"] for s in lags), 2) if lags else None,
            lag_max_s=round(max(s["lag_max"] for s in lags), 2) if lags else None,
            rss_mib_max=round(max(s["rss"] for s in secs) / 2**20),
            store_mb_max=round(max(s["store"] for s in secs) / 1e6, 1),
        )
    out["killed_at_s"] = round(killed - wall0, 1)
    out["input_since_last_epoch_s"] = round(killed - marks[-1]["t"], 1) if marks else None
    out["restart_to_dataflow_s"] = round(started["t"] - spawned, 1) if started else None
    out["restart_to_first_record_s"] = round(batch["first_batch"] - spawned, 1) if batch else None
    out["restart_to_caught_up_s"] = round(caught["t"] - spawned, 1) if caught else None
    secs2 = [r for r in second if r["kind"] == "second"]
    out["resumed_rss_mib_max"] = round(max(s["rss"] for s in secs2) / 2**20) if secs2 else None
    ended = [r for r in second if r["kind"] == "ended"]
    out["stop_s"] = round(stopped - stopping, 1)
    out["stop_clean"] = bool(ended)
    out["journal_mb"] = round(sum(p.stat().st_size for p in jpath.parent.iterdir()) / 1e6, 1)
    return out


def _influxd_cpu(begin: dict[str, Any], last: dict[str, Any], full: list[dict[str, Any]],
                 span: float) -> dict[str, float]:
    """influxd's CPU over the measured part, as the processor's is taken (`--influx`; marks
    without it, or from before it was sampled, give nothing)."""
    if begin.get("influxd_cpu") is None or last.get("influxd_cpu") is None:
        return {}
    out = {"influxd_cores": round((last["influxd_cpu"] - begin["influxd_cpu"]) / span, 4)}
    per_epoch = [b["influxd_cpu"] - a["influxd_cpu"] for a, b in itertools.pairwise(full)]
    if per_epoch:
        out["influxd_cpu_s_an_epoch_median"] = round(statistics.median(per_epoch), 3)
    return out


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.pipeline.epochs", description=__doc__)
    p.add_argument("--epochs", default="2,120,30,10,300",
                   help="flow.epoch_interval_s settings, in run order; EPOCH/N also sets "
                        "flow.detector_checkpoint_every to N")
    p.add_argument("--copies", type=int, default=100, help="copies of each of the city's 23 nodes")
    p.add_argument("--measure-s", type=float, default=150.0,
                   help="seconds before the kill is set up (at least an epoch + 5 s): the kill "
                        "comes at the end of the epoch then under way")
    p.add_argument("--stops", default="drain",
                   help="flow.stop's ways, comma-separated, repeats allowed (drain,abort,drain,"
                        "abort): after the catch-up the processor is stopped each way in turn, "
                        "started again in between")
    p.add_argument("--workdir", type=Path, default=None)
    p.add_argument("--out", type=Path, default=None, help="the results as JSON")
    p.add_argument("--influx", action="store_true",
                   help="write the points to a real InfluxDB (started here) through the "
                        "processor's writer, and report influxd's CPU beside the processor's")
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--state-dir", help=argparse.SUPPRESS)
    p.add_argument("--bases", help=argparse.SUPPRESS)
    p.add_argument("--stats", help=argparse.SUPPRESS)
    p.add_argument("--epoch", type=float, help=argparse.SUPPRESS)
    p.add_argument("--sim0", type=int, help=argparse.SUPPRESS)
    p.add_argument("--stop", default="drain", choices=STOP_MODES, help=argparse.SUPPRESS)
    p.add_argument("--every", type=int, default=None, help=argparse.SUPPRESS)
    p.add_argument("--cloud-config", default=None, help=argparse.SUPPRESS)
    p.add_argument("--influxd-pid", type=int, default=None, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        return _child(args)
    try:
        settings = [_setting(e) for e in args.epochs.split(",") if e]
    except ValueError as exc:
        print(f"bad --epochs: {exc}", file=sys.stderr)
        return 2
    epochs = [epoch for epoch, _ in settings]
    if any(every is not None and every < 0 for _, every in settings):
        print("--epochs: a detector_checkpoint_every (EPOCH/N) is at least 0", file=sys.stderr)
        return 2
    if args.copies < 1 or not epochs or min(epochs) < 0.05:
        print("--copies must be positive and each epoch at least 0.05 s", file=sys.stderr)
        return 2
    args.stops = [m for m in args.stops.split(",") if m]
    if not args.stops or set(args.stops) - set(STOP_MODES):
        print(f"--stops: some of {', '.join(STOP_MODES)}", file=sys.stderr)
        return 2
    # the longest run: its measured part, the kill before an epoch's end, the catch-ups, the stops
    args.live_s = max(max(args.measure_s, e + 5) + e for e in epochs) + CATCHUP_BUDGET_S * len(args.stops)
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="bench-epochs-"))
    workdir.mkdir(parents=True, exist_ok=True)
    made = time.monotonic()
    bases, live, sim0, pickled = make_city(args.copies, args.live_s)
    nodes = len(bases) * args.copies
    print(f"{nodes} warm nodes ({len(bases)} x {args.copies}), the base states {pickled / 1e3:,.0f} KB "
          f"pickled ({pickled / len(bases) / 1e3:.0f} KB a node); {len(live)} live records, "
          f"{sum(r.readings for r in live)} readings over {args.live_s:g} s; made in "
          f"{time.monotonic() - made:.0f} s", flush=True)
    bases_path = workdir / "bases.pickle"
    bases_path.write_bytes(pickle.dumps(bases))
    with _influx_stack(args, workdir) as stack:
        results = []
        for epoch, every in settings:
            result = run_setting(args, epoch, bases_path, live, sim0, workdir, every)
            result["nodes"] = nodes
            if stack is not None:  # (the settings write the same points: this is all of them)
                result["influx_raw_points"] = _raw_points(stack)
            result["load"] = os.getloadavg()[0]
            results.append(result)
            print(json.dumps(result), flush=True)
            if args.out:
                args.out.write_text(json.dumps(results, indent=1))
    return 0


@contextlib.contextmanager
def _influx_stack(args: argparse.Namespace, workdir: Path) -> Iterator[PrivateStack | None]:
    """With `--influx`, a private stack (bench.pipeline.privstack) for the run: its InfluxDB's
    database made, the processor's config for it in `args.cloud_config` and influxd's pid in
    `args.influxd_pid` (the children's); else None."""
    args.cloud_config = args.influxd_pid = None
    if not args.influx:
        yield None
        return
    stack = PrivateStack.start(workdir / "stack", [])
    try:
        config = cloud_config(stack.info, workdir / "unused", detect=True)
        stack.init_database(config)
        args.cloud_config = workdir / "cloud.json"
        args.cloud_config.write_text(json.dumps({t: config[t] for t in ("mqtt", "influx", "retention")}))
        args.influxd_pid = stack.pids()["influxd"]
        yield stack
    finally:
        stack.stop()


def _raw_points(stack: PrivateStack) -> int:
    """The raw points in the stack's database (each a reading: the sink wrote them)."""
    with stack.reader() as reader:
        series = reader.query('SELECT count("seq") FROM "raw"./.*/', db=stack.info.database)
    return sum(int(row[1]) for s in series for row in s["values"])


def _setting(token: str) -> tuple[float, int | None]:
    """`EPOCH` or `EPOCH/N` (flow.detector_checkpoint_every)."""
    epoch, _, every = token.partition("/")
    return float(epoch), (int(every) if every else None)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
