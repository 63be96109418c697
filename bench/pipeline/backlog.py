"""`python -m bench.pipeline.backlog`: what a city-wide outage's backlog costs the processor.

Every node of the simulated city goes offline for H hours and then sends its backlog as the
edge does (bench.pipeline.outage); the same readings are also sent on time, for
comparison. Each case runs in a process of its own (its peak RSS is its own) against an
InfluxDB of its own on 127.0.0.1: the processor's logic (decode_record, NodeState,
HospitalSite, the replay requests) and its real sink (InfluxPartition, InfluxWriter with
the reader's credentials) in epochs of `--epoch-s` of wall time, each ended by the sink's
snapshot, as the dataflow runs them on one worker (no broker, journal or Bytewax).

Printed per case: readings absorbed per second of CPU (this process's, the sink's thread
included; InfluxDB's apart) and of wall time, the time spent at epoch ends (the replays
run there), replays and per-sensor windows rebuilt, raw-point queries and rows read, peak
RSS, and whether InfluxDB ends with the same aggregates as on time.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench.edge.procfs import cpu_times, memory
from bench.influx.server import Server
from bench.pipeline.errors import PipelineBenchError
from bench.pipeline.outage import OutagePlan, Sent, messages
from cloud.config import FlowSettings
from cloud.flow import InfluxPartition
from cloud.gc_policy import tune_for_streaming
from cloud.journal import JournalRecord
from cloud.logic.domain.hospital_site import HospitalSite
from cloud.logic.domain_replay import replay_requests, site_step
from cloud.logic.node import NodeState
from cloud.logic.records import RP_1H, RP_1M, Point, decode_record
from cloud.sink import InfluxWriter, SinkStats
from urbanpulse.influx_http import InfluxHTTP

HORIZON_NS = 6 * 3600 * 1_000_000_000  # flow.aggregate_horizon_s's default
BATCH_LINES = 5000  # influx.batch_lines's default
DEAD_LETTER_MAX_BYTES = 4096
TAGS = ("site", "node", "sensor", "kind")
SKIP_MEASUREMENTS = frozenset({"ledger"})  # counts late readings: differs by design
START = datetime(2026, 10, 1, tzinfo=UTC)
REPLAY_INTERVAL_S = FlowSettings.replay_interval_s  # flow.replay_interval_s's default


@dataclass
class CaseOutcome:
    mode: str
    outage_h: int
    readings: int
    messages: int
    nodes: int
    epochs: int = 0
    wall_s: float = 0.0
    cpu_s: float = 0.0
    influxd_cpu_s: float = 0.0
    epoch_end_wait_s: float = 0.0
    domain_replays: int = 0
    windows_rebuilt: int = 0
    reads: int = 0
    rows_read: int = 0
    points_written: int = 0
    rss_before_mib: float = 0.0
    peak_rss_mib: float = 0.0
    complete: bool = False
    aggregates: int = 0
    stats: dict[str, Any] = field(default_factory=dict)

    @property
    def per_cpu_s(self) -> float:
        return self.readings / self.cpu_s if self.cpu_s else 0.0

    @property
    def per_wall_s(self) -> float:
        return self.readings / self.wall_s if self.wall_s else 0.0

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "readings_per_cpu_s": round(self.per_cpu_s),
                "readings_per_wall_s": round(self.per_wall_s)}


class Feeder:
    """The dataflow's node and site steps, one worker, writing through `part`."""

    def __init__(self, part: InfluxPartition, epoch_s: float) -> None:
        self.part = part
        self.epoch_s = epoch_s
        self.nodes: dict[str, NodeState] = {}
        self.sites: dict[str, HospitalSite] = {}
        self.offset = 0
        self.epochs = 0
        self.epoch_end_wait_s = 0.0

    def feed(self, sent: list[Sent], deadline: float) -> bool:
        """Every message, an epoch ended every `epoch_s`; False if the deadline came first."""
        epoch_end = time.monotonic() + self.epoch_s
        for m in sent:
            self.offset += 1
            self.part.write_batch([self._step(JournalRecord("i0", self.offset, m.received_ns, m.topic,
                                                            m.payload))])
            now = time.monotonic()
            if now >= epoch_end:
                self._end_epoch()
                if time.monotonic() > deadline:
                    return False
                epoch_end = time.monotonic() + self.epoch_s
        self._end_epoch()
        return True

    def _step(self, rec: JournalRecord) -> list[Point]:
        data, points = decode_record(rec, DEAD_LETTER_MAX_BYTES)
        if data is None:
            return points
        state = self.nodes.get(data.key)
        if state is None:
            state = self.nodes[data.key] = NodeState(HORIZON_NS, detect=False)
        points.extend(state.process(data))
        late = state.domain.take_late()
        if late:
            points.extend(replay_requests(data.site, data.node, late))
        state.take_measured()
        state.take_alerts()
        updates = state.take_site_updates()
        if updates:
            site = self.sites.get(data.site)
            if site is None:
                site = self.sites[data.site] = HospitalSite(HORIZON_NS)
            points.extend(site_step(site, data.site, updates))
        return points

    def _end_epoch(self) -> None:
        started = time.monotonic()
        self.part.snapshot()
        self.epoch_end_wait_s += time.monotonic() - started
        self.epochs += 1


def _reset_peak_rss() -> bool:
    """Linux resets VmHWM to the current RSS on "5" written to clear_refs."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return False
    return True


def stored_aggregates(reader: InfluxHTTP, db: str, since_ns: int) -> dict[str, Any]:
    """Every 1-minute and 1-hour aggregate stamped at or after `since_ns`, by
    rp|measurement|tags|time (the ledger left out)."""
    names = [row["name"] for row in reader.query_points("SHOW MEASUREMENTS", db=db)]
    out: dict[str, Any] = {}
    for rp in (RP_1M, RP_1H):
        for name in names:
            if name in SKIP_MEASUREMENTS:
                continue
            for row in reader.query_points(f'SELECT * FROM "{rp}"."{name}" WHERE time >= {since_ns}', db=db):
                tags = "|".join(str(row.get(t) or "") for t in TAGS)
                fields = {k: v for k, v in row.items() if k not in TAGS and k != "time" and v is not None}
                out[f"{rp}|{name}|{tags}|{row['time']}"] = fields
    return out


def run_case(plan: OutagePlan, backlog: bool, epoch_s: float, home: Path, budget_s: float,
             aggregates_out: Path | None, replay_interval_s: float = REPLAY_INTERVAL_S) -> CaseOutcome:
    sent = messages(plan, backlog)
    outcome = CaseOutcome("backlog" if backlog else "on time", plan.outage_h, sent.measured_readings,
                          len(sent.measured), sent.nodes)
    server = Server(home, {}, {})
    server.start()
    writer = InfluxWriter(server.client("writer"), server.database, BATCH_LINES,
                          reader=server.client("reader"))
    part = InfluxPartition(writer, replay_interval_s=replay_interval_s)
    try:
        feeder = Feeder(part, epoch_s)
        if not feeder.feed(sent.warmup, time.monotonic() + budget_s):
            raise PipelineBenchError(f"the warm-up took longer than {budget_s} s")
        before = replace(writer.stats)
        feeder.epochs, feeder.epoch_end_wait_s = 0, 0.0
        outcome.rss_before_mib = memory(os.getpid()).rss_kb / 1024
        reset = _reset_peak_rss()
        assert server.pid is not None
        influxd0, cpu0, wall0 = cpu_times(server.pid), time.process_time(), time.monotonic()
        outcome.complete = feeder.feed(sent.measured, wall0 + budget_s)
        part.flush(everything=True)  # the replays still held: at the processor's next epoch ends
        outcome.wall_s = time.monotonic() - wall0
        outcome.cpu_s = time.process_time() - cpu0
        influxd1 = cpu_times(server.pid)
        outcome.influxd_cpu_s = (influxd1.user_s + influxd1.system_s) - (influxd0.user_s + influxd0.system_s)
        outcome.peak_rss_mib = memory(os.getpid()).hwm_kb / 1024 if reset else 0.0
        outcome.epochs, outcome.epoch_end_wait_s = feeder.epochs, feeder.epoch_end_wait_s
        _counts(outcome, before, writer.stats)
        if aggregates_out is not None:
            with server.client("reader") as reader:
                stored = stored_aggregates(reader, server.database, sent.outage_start_ns)
            outcome.aggregates = len(stored)
            aggregates_out.write_text(json.dumps(stored, sort_keys=True))
    finally:
        part.close()
        writer.close()
        server.stop()
    return outcome


def _counts(outcome: CaseOutcome, before: SinkStats, after: SinkStats) -> None:
    outcome.domain_replays = after.domain_replays - before.domain_replays
    outcome.windows_rebuilt = after.recomputed - before.recomputed
    outcome.reads = after.reads - before.reads
    outcome.rows_read = after.rows_read - before.rows_read
    outcome.points_written = after.points - before.points
    outcome.stats = asdict(after)


def compare(on_time: Path, backlog: Path) -> dict[str, int]:
    """Aggregates that differ, and those that differ by rounding only (counted apart): the
    per-sensor windows' sums are exact since session 13 and the domain rollups' use
    math.fsum, so the same readings give the same bits in any order and `rounding` should
    be 0; one that is not points at a sum that depends on the order of arrival."""
    a, b = json.loads(on_time.read_text()), json.loads(backlog.read_text())
    both = [k for k in a.keys() & b.keys() if a[k] != b[k]]
    differ = [k for k in both if not _close(a[k], b[k])]
    return {"differ": len(differ), "rounding": len(both) - len(differ),
            "only_on_time": len(a.keys() - b.keys()), "only_backlog": len(b.keys() - a.keys())}


def _close(x: dict[str, Any], y: dict[str, Any]) -> bool:
    def same(u: object, v: object) -> bool:
        if isinstance(u, int | float) and isinstance(v, int | float):
            return math.isclose(u, v, rel_tol=1e-12, abs_tol=1e-12)
        return u == v

    return x.keys() == y.keys() and all(same(x[k], y[k]) for k in x)


def table(rows: list[dict[str, Any]]) -> str:
    head = ("| outage | sent | readings | wall s | CPU s | readings/CPU s | readings/wall s | "
            "epoch-end wait s | domain replays | windows rebuilt | reads | rows read | "
            "influxd CPU s | peak RSS MiB | aggregates as on time |")
    out = [head, "|" + "---|" * head.count(" | ") + "---|"]
    for r in rows:
        same = r.get("same_as_on_time", "")
        out.append(f"| {r['outage_h']} h | {r['mode']} | {r['readings']} | {r['wall_s']:.1f} | "
                   f"{r['cpu_s']:.1f} | {r['readings_per_cpu_s']} | {r['readings_per_wall_s']} | "
                   f"{r['epoch_end_wait_s']:.1f} | {r['domain_replays']} | {r['windows_rebuilt']} | "
                   f"{r['reads']} | {r['rows_read']} | {r['influxd_cpu_s']:.1f} | "
                   f"{r['peak_rss_mib']:.0f} | {same} |")
    return "\n".join(out)


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m bench.pipeline.backlog", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--hours", default="2,8,24", help="outage lengths, comma-separated")
    p.add_argument("--replicas", type=int, default=1, help="copies of the default city (19 nodes each)")
    p.add_argument("--before-h", type=int, default=12, help="hours on time before the outage")
    p.add_argument("--after-h", type=int, default=1, help="hours on time after it")
    p.add_argument("--epoch-s", type=float, default=2.0, help="flow.epoch_interval_s")
    p.add_argument("--replay-interval-s", type=float, default=REPLAY_INTERVAL_S,
                   help="flow.replay_interval_s (0: every epoch's end, as before it was a setting)")
    p.add_argument("--modes", default="on-time,backlog", help="'on-time', 'backlog' or both")
    p.add_argument("--budget-s", type=float, default=900.0, help="a case stops after this long")
    p.add_argument("--workdir", type=Path, default=None, help="keep the InfluxDB homes here")
    p.add_argument("--out", type=Path, default=None, help="write the results as JSON")
    p.add_argument("--one", default=None, help=argparse.SUPPRESS)  # "H,backlog|on-time": one case
    return p


def _plan(args: argparse.Namespace, hours: int) -> OutagePlan:
    return OutagePlan(START, args.before_h, hours, args.after_h, replicas=args.replicas)


def main(argv: list[str]) -> int:
    args = _parser().parse_args(argv)
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="bench-backlog-"))
    workdir.mkdir(parents=True, exist_ok=True)
    if args.one is not None:  # a child: one case, its outcome as JSON on stdout
        # stopped (the parent's timeout, an operator): its InfluxDB is stopped on the way out
        signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))
        tune_for_streaming()  # as `cloud run` does
        hours, mode = args.one.split(",")
        name = f"h{hours}-{mode}"
        outcome = run_case(_plan(args, int(hours)), mode == "backlog", args.epoch_s, workdir / name,
                           args.budget_s, workdir / f"{name}.aggregates.json", args.replay_interval_s)
        print(json.dumps(outcome.to_json()))
        return 0
    try:
        hours = [int(h) for h in args.hours.split(",") if h]
    except ValueError as exc:
        print(f"bad --hours: {exc}", file=sys.stderr)
        return 2
    rows: list[dict[str, Any]] = []
    for h in hours:
        for mode in args.modes.split(","):
            cmd = [sys.executable, "-m", "bench.pipeline.backlog", "--one", f"{h},{mode}",
                   "--replicas", str(args.replicas), "--before-h", str(args.before_h),
                   "--after-h", str(args.after_h), "--epoch-s", str(args.epoch_s),
                   "--replay-interval-s", str(args.replay_interval_s),
                   "--budget-s", str(args.budget_s), "--workdir", str(workdir)]
            with subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) as child:
                try:
                    stdout, stderr = child.communicate(timeout=args.budget_s * 3 + 300)
                except subprocess.TimeoutExpired:
                    child.terminate()
                    stdout, stderr = child.communicate()
            done = subprocess.CompletedProcess(cmd, child.returncode, stdout, stderr)
            if done.returncode != 0:
                print(f"case {h} h {mode} failed:\n{done.stderr[-3000:]}", file=sys.stderr)
                return 1
            row = json.loads(done.stdout.strip().splitlines()[-1])
            if mode == "backlog" and (workdir / f"h{h}-on-time.aggregates.json").exists():
                diff = compare(workdir / f"h{h}-on-time.aggregates.json",
                               workdir / f"h{h}-backlog.aggregates.json")
                rounding = f" ({diff['rounding']} in the last digits)" if diff["rounding"] else ""
                row["same_as_on_time"] = ("yes" + rounding if not (diff["differ"] or diff["only_on_time"]
                                                                  or diff["only_backlog"]) else
                                          f"{diff['differ']} differ, {diff['only_on_time']} missing, "
                                          f"{diff['only_backlog']} extra{rounding}")
            rows.append(row)
            print(json.dumps(row), flush=True)
            if args.out:
                args.out.write_text(json.dumps(rows, indent=1))
    print(table(rows))
    return 0 if all(r["complete"] for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
