"""One measured run: a fresh private stack, the processor, publishers at one offered rate,
sampling until every reading is in InfluxDB or the drain time is over."""

from __future__ import annotations

import json
import shutil
import statistics
import subprocess
import sys
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from bench.pipeline.errors import PipelineBenchError
from bench.pipeline.observe import (
    CpuSample,
    InfluxCounter,
    JournalCounter,
    SnapshotCounter,
    child_pids,
    cpu_sample,
    merged_acks,
    reached_at,
    read_progress,
    rss_mib,
)
from bench.pipeline.privstack import PrivateStack, Processor, cloud_config
from bench.pipeline.workload import Scheduled, Workload, relayed, save, schedule
from urbanpulse.stack.process import free_ports

SAMPLE_EVERY_S = 1.0
CONNECT_BUDGET_S = 10.0


@dataclass(frozen=True)
class CaseSpec:
    rate: float
    duration_s: float
    detect: bool
    publishers: int = 2
    window: int = 100
    drain_s: float = 120.0
    flow: dict[str, Any] = field(default_factory=dict)
    profile: bool = False
    processes: int = 1  # a Bytewax cluster of this many processes on loopback
    # Each site's node messages due in a window of this many seconds go as one relay of the
    # site's gateway (workload.relayed), on its own user; None: each node publishes its own.
    relay_s: float | None = None


@dataclass
class CaseResult:
    rate: float
    detect: bool
    readings: int
    messages: int
    nodes: int
    batch: int
    publish_s: float = 0.0
    broker_rate: float = 0.0
    journal_rate: float = 0.0
    written_rate: float = 0.0
    written_rate_while_publishing: float = 0.0
    lag_p50_s: float | None = None
    lag_max_s: float | None = None
    drain_after_publish_s: float | None = None
    complete: bool = False
    journaled: int = 0
    journal_duplicate_rows: int = 0
    points_expected: int = 0
    points_written: int = 0
    missing_by_measurement: dict[str, int] = field(default_factory=dict)
    dead_letters: int = 0
    cpu_cores: dict[str, float] = field(default_factory=dict)
    processor_threads_cores: dict[str, float] = field(default_factory=dict)
    profile_file: str | None = None
    error: str | None = None
    relay_s: float | None = None
    node_messages: int = 0  # the nodes' messages (`messages` counts what the broker took: relays)
    processor_rss_mib: float = 0.0  # the processors' peak resident memory (VmHWM), summed
    # The node and site states' snapshots of an epoch (SnapshotCounter), median over the
    # epochs that wrote any, and every key's newest snapshot held at the end.
    snapshot_epochs: int = 0
    snapshot_keys_per_epoch: int = 0
    snapshot_bytes_per_epoch: int = 0
    snapshot_bytes_per_epoch_max: int = 0
    state_keys_held: int = 0
    state_bytes_held: int = 0
    # Each second: (s after the start, processor + ingest CPU s, readings journaled, raw
    # points written), to split a run into parts (a city warming up).
    timeline: list[tuple[float, float, int, int]] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def _cores(first: CpuSample, last: CpuSample) -> tuple[dict[str, float], dict[str, float]]:
    wall = max(last.t - first.t, 1e-9)
    procs = {k: round((last.process_s.get(k, 0.0) - v) / wall, 3) for k, v in first.process_s.items()}
    threads = {k: round((v - first.threads_s.get(k, 0.0)) / wall, 3) for k, v in last.threads_s.items()}
    busy = {k: v for k, v in sorted(threads.items(), key=lambda kv: -kv[1]) if v >= 0.01}
    return procs, busy


def _plan(spec: CaseSpec, workload: Workload) -> list[Scheduled]:
    plan = schedule(workload.messages, spec.rate)
    return plan if spec.relay_s is None else relayed(plan, spec.relay_s)


def _spawn_publishers(spec: CaseSpec, plan: list[Scheduled], stack: PrivateStack, workdir: Path,
                      start_at: float) -> list[tuple[subprocess.Popen[bytes], Path, Path]]:
    users = sorted(stack.nodes)
    groups = [users[i::spec.publishers] for i in range(spec.publishers)]
    out = []
    for i, group in enumerate(g for g in groups if g):
        members = set(group)
        mine = [(t, m) for t, m in plan if f"{m.site}.{m.node}" in members]
        wfile, progress, ready = (workdir / f"pub{i}.{ext}" for ext in ("pickle", "progress", "ready"))
        save(mine, wfile)
        broker = stack.info
        spec_file = workdir / f"pub{i}.json"
        spec_file.write_text(json.dumps({
            "broker": {"host": broker.mqtt_host, "port": broker.mqtt_port, "ca_file": str(broker.ca_file)},
            "nodes": {u: str(stack.nodes[u].password_file) for u in group},
            "workload": str(wfile), "start_at": start_at, "window": spec.window,
            "deadline_s": spec.duration_s * 3 + spec.drain_s, "progress": str(progress),
            "ready": str(ready)}))
        with (workdir / f"pub{i}.log").open("ab") as log:
            proc = subprocess.Popen([sys.executable, "-m", "bench.pipeline.publisher", str(spec_file)],
                                    stdout=log, stderr=subprocess.STDOUT)
        out.append((proc, progress, ready))
    return out


def _start_profiler(pid: int, seconds: float, path: Path) -> subprocess.Popen[bytes] | None:
    pyspy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    if not Path(pyspy).exists():
        return None
    return subprocess.Popen([pyspy, "record", "--pid", str(pid), "--duration", str(int(seconds)),
                             "--rate", "50", "--format", "raw", "--nonblocking", "--output", str(path)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def run_case(spec: CaseSpec, workload: Workload, workdir: Path) -> CaseResult:
    workdir.mkdir(parents=True, exist_ok=True)
    expected = sum(workload.expected_points.values())
    plan = _plan(spec, workload)
    published = [m for _, m in plan]
    result = CaseResult(spec.rate, spec.detect, workload.readings, len(published),
                        len(workload.nodes), max(m.readings for m in workload.messages),
                        points_expected=expected, relay_s=spec.relay_s,
                        node_messages=len(workload.messages))
    stack = PrivateStack.start(workdir / "home", sorted({(m.site, m.node) for m in published}))
    processors: list[Processor] = []
    publishers: list[tuple[subprocess.Popen[bytes], Path, Path]] = []
    try:
        config = cloud_config(stack.info, workdir / "state", detect=spec.detect, flow=spec.flow)
        stack.init_database(config)
        processors = _processors(spec, config, workdir)
        for processor in processors:
            processor.start()
        for processor in processors:
            processor.wait_subscribed()
        start_at = time.monotonic() + CONNECT_BUDGET_S
        publishers = _spawn_publishers(spec, plan, stack, workdir, start_at)
        while not all(ready.exists() for _, _, ready in publishers):
            if time.monotonic() > start_at or any(p.poll() is not None for p, _, _ in publishers):
                raise PipelineBenchError(f"publishers did not connect in {CONNECT_BUDGET_S} s; "
                                         f"see {workdir}/pub*.log")
            time.sleep(0.05)
        pids = {**{k: [v] for k, v in stack.pids().items()}, "processor": [p.pid for p in processors],
                "ingest": [c for p in processors for c in child_pids(p.pid)],
                "publishers": [p.pid for p, _, _ in publishers]}
        if len(processors) > 1:  # each process of the cluster on its own too
            pids.update({f"processor-p{n}": [p.pid] for n, p in enumerate(processors)})
        journal = JournalCounter(workdir / "state" / "journal", published)
        with stack.reader() as reader:
            influx = InfluxCounter(reader, stack.info.database, list(workload.expected_points),
                                   workload.first_ts_ns,
                                   workload.last_ts_ns)
            while time.monotonic() < start_at:
                time.sleep(0.01)
            samples = _sample(spec, result, processors, publishers, pids, journal, influx, start_at,
                              workdir)
            result.dead_letters = influx.dead_letters()
        _summarise(result, samples, publishers, start_at, workload, expected)
    except PipelineBenchError as exc:
        result.error = str(exc)
    finally:
        for proc, _, _ in publishers:
            if proc.poll() is None:
                proc.terminate()
                proc.wait(10)
        for processor in processors:
            processor.stop()
        stack.stop()
    return result


@dataclass
class Samples:
    journal: list[tuple[float, int]]
    written: list[tuple[float, int]]
    cpu: list[CpuSample]
    end: float
    last_points: Counter[str] = field(default_factory=Counter)


def _processors(spec: CaseSpec, config: dict[str, Any], workdir: Path) -> list[Processor]:
    if spec.processes == 1:
        return [Processor(config, workdir)]
    ports = free_ports(spec.processes)
    cluster = dict(config, flow={**config["flow"], "addresses": [f"127.0.0.1:{p}" for p in ports],
                                 "process_id": 0, "ingest_instances": spec.processes})
    return [Processor(cluster, workdir, name=f"cloud-p{pid}", extra_args=("--process-id", str(pid)))
            for pid in range(spec.processes)]


def _sample(spec: CaseSpec, result: CaseResult, processors: list[Processor],
            publishers: list[tuple[subprocess.Popen[bytes], Path, Path]], pids: dict[str, list[int]],
            journal: JournalCounter, influx: InfluxCounter, start_at: float, workdir: Path) -> Samples:
    profilers: list[subprocess.Popen[bytes]] = []
    if spec.profile:  # processor.pyspy.txt, then processor-p1.pyspy.txt... for a cluster
        files = [workdir / ("processor.pyspy.txt" if n == 0 else f"processor-p{n}.pyspy.txt")
                 for n in range(len(processors))]
        result.profile_file = str(files[0])
        profilers = [p for p in (_start_profiler(proc.pid, spec.duration_s, f)
                                 for proc, f in zip(processors, files, strict=True)) if p is not None]
        # ingest.pyspy.txt, ingest-1.pyspy.txt...: the ingests' own interpreters
        profilers += [p for p in (_start_profiler(pid, spec.duration_s,
                                                  workdir / ("ingest.pyspy.txt" if n == 0
                                                             else f"ingest-{n}.pyspy.txt"))
                                  for n, pid in enumerate(pids.get("ingest", []))) if p is not None]
    last_seen: dict[int, float] = {}
    snapshots = SnapshotCounter(workdir / "state" / "recovery")
    s = Samples([], [], [cpu_sample(start_at, pids, processors[0].pid, last_seen)], start_at)
    deadline = start_at + spec.duration_s + spec.drain_s
    try:
        while True:
            now = time.monotonic()
            journaled, dups = journal.readings()
            by_measurement = influx.raw_points()
            written = sum(by_measurement.values())
            t = time.monotonic()
            s.journal.append((t, journaled))
            s.written.append((t, written))
            s.cpu.append(cpu_sample(t, pids, processors[0].pid, last_seen))
            result.journaled, result.journal_duplicate_rows = journaled, dups
            result.points_written = written
            s.last_points = by_measurement
            snapshots.sample()
            result.processor_rss_mib = round(sum(rss_mib(p.pid)[1] for p in processors), 1)
            failed = [p for p, _, _ in publishers if p.poll() not in (None, 0)]
            if failed:
                raise PipelineBenchError(f"a publisher failed; see {workdir}/pub*.log")
            pubs_done = all(p.poll() == 0 for p, _, _ in publishers)
            if pubs_done and written >= result.points_expected and journaled >= result.readings:
                break
            for processor in processors:
                if processor.proc is not None and processor.proc.poll() is not None:
                    raise PipelineBenchError(f"the processor exited:\n{processor.log()[-3000:]}")
            if t > deadline:
                break
            time.sleep(max(0.0, SAMPLE_EVERY_S - (time.monotonic() - now)))
    finally:
        for profiler in profilers:
            try:
                profiler.wait(spec.duration_s + 30)
            except subprocess.TimeoutExpired:
                profiler.kill()
                profiler.wait(10)
    s.end = time.monotonic()
    _snapshot_figures(result, snapshots)
    return s


def _snapshot_figures(result: CaseResult, snapshots: SnapshotCounter) -> None:
    epochs = [v for v in snapshots.per_epoch.values() if v[0] > 0]
    if epochs:
        result.snapshot_epochs = len(epochs)
        result.snapshot_keys_per_epoch = round(statistics.median(k for k, _ in epochs))
        result.snapshot_bytes_per_epoch = round(statistics.median(b for _, b in epochs))
        result.snapshot_bytes_per_epoch_max = max(b for _, b in epochs)
    result.state_keys_held, result.state_bytes_held = snapshots.held()


def _summarise(result: CaseResult, s: Samples, publishers: list[tuple[subprocess.Popen[bytes], Path, Path]],
               start_at: float, workload: Workload, expected: int) -> None:
    result.missing_by_measurement = {m: n - s.last_points.get(m, 0)
                                     for m, n in workload.expected_points.items()
                                     if n != s.last_points.get(m, 0)}
    progress = [read_progress(path)[0] for _, path, _ in publishers]
    acks = merged_acks(progress)
    total = workload.readings
    acked_at = reached_at(acks, total)
    journal_at = reached_at(s.journal, total)
    written_at = reached_at(s.written, expected)
    last_ack = acks[-1][1] if acks else 0
    end = acked_at or s.end
    result.publish_s = round(end - start_at, 2)
    result.broker_rate = round(last_ack / max(end - start_at, 1e-9))
    result.journal_rate = round(s.journal[-1][1] / max((journal_at or s.end) - start_at, 1e-9))
    result.written_rate = round(s.written[-1][1] / max((written_at or s.end) - start_at, 1e-9))
    during = [w for t, w in s.written if t <= end]
    result.written_rate_while_publishing = round((during[-1] if during else 0) / max(end - start_at, 1e-9))
    result.complete = written_at is not None and journal_at is not None and acked_at is not None
    if written_at is not None and acked_at is not None:
        result.drain_after_publish_s = round(max(0.0, written_at - acked_at), 2)
    # A point written at t was acknowledged by the broker when the acks reached that count.
    scale = total / max(expected, 1)
    lags = []
    for t, w in s.written:
        if w <= 0:
            continue
        t_ack = reached_at(acks, int(w * scale))
        if t_ack is not None:
            lags.append(t - t_ack)
    if lags:
        result.lag_p50_s = round(statistics.median(lags), 2)
        result.lag_max_s = round(max(lags), 2)
    result.timeline = [(round(c.t - start_at, 2),
                        round(c.process_s.get("processor", 0.0) + c.process_s.get("ingest", 0.0), 3),
                        j, w)
                       for c, (_, j), (_, w) in zip(s.cpu[1:], s.journal, s.written, strict=True)]
    stop = next((c for c in s.cpu if written_at is not None and c.t >= written_at), s.cpu[-1])
    result.cpu_cores, result.processor_threads_cores = _cores(s.cpu[0], stop)
