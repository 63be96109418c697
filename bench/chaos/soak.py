"""A bounded chaos soak: `python -m bench.chaos.soak --seed N --minutes M`.

Runs the whole chain on real parts (bench/chaos/rig.py), applies the seeded schedule
(bench/chaos/plan.py: SIGKILLs, SIGTERMs and SIGSTOPs of the broker, InfluxDB, the
processor, its ingest child and the agents, and partitions of each link) for M minutes,
brings everything back, stops the sensors, waits for the drain and checks
(bench/chaos/check.py) that every reading the nodes numbered is stored exactly once with
the values it was published with. Prints the schedule as applied and what it found; exit
code 0 when clean, 1 when something was lost, doubled or wrong, 2 when the soak could not
run.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

from bench.chaos.check import Findings, check, drained, stored_seqs
from bench.chaos.errors import ChaosError
from bench.chaos.plan import RESTORE, Step, make_plan
from bench.chaos.rig import Rig, wait_until

WARMUP_READINGS = 20
STABLE_POLLS = 3


@dataclass
class Soak:
    seed: int
    minutes: float
    agents: int = 3
    sensors: int = 2
    period_s: float = 0.05
    max_down: int = 3
    detect: bool = False
    drain_s: float = 240.0
    gap_s: tuple[float, float] = (0.3, 4.0)  # between two steps
    ingest_instances: int | None = None  # the processor's flow.ingest_instances; None: one per process
    processes: int = 1  # 2 or more: the dataflow as a Bytewax cluster of that many processes
    disks: int = 0  # the first `disks` agents' state on a small tmpfs, filled and freed
    # [outbox] keys of those agents (e.g. {"max_rows": 2000}: evictions among the faults)
    disk_outbox: dict[str, object] = field(default_factory=dict)
    clocks: int = 0  # the first `clocks` agents on a wall clock the soak steps
    # the processor's [flow] keys; the journal kept a minute (the least it takes) so that
    # the trim of consumed records runs among the faults
    flow: dict[str, object] = field(default_factory=lambda: {"journal_retention_s": 60})
    plan: list[Step] | None = None  # a fixed schedule instead of the seed's
    # "disk-agent-i" -> what the full disk did to that agent (from its log): filled N times, ...
    disk_report: dict[str, dict[str, int]] = field(default_factory=dict)
    # "clock-agent-i" -> steps and corrections applied, jumps the agent logged
    clock_report: dict[str, dict[str, int]] = field(default_factory=dict)
    applied: list[str] = field(default_factory=list)

    def run(self, workdir: Path, out: TextIO | None = None) -> Findings:
        def say(text: str) -> None:
            print(text, file=out or sys.stdout, flush=True)

        plan = self.plan if self.plan is not None else make_plan(
            self.seed, self.minutes * 60, self.agents, max_down=self.max_down, gap_s=self.gap_s,
            processes=self.processes, disks=self.disks, clocks=self.clocks)
        span = plan[-1].at_s if plan else 0.0
        say(f"seed {self.seed}: {len(plan)} steps over {span:.0f} s, {self.agents} agents x "
            f"{self.sensors} sensors at {1 / self.period_s:g} readings/s"
            + (f", the processor a cluster of {self.processes}" if self.processes > 1 else "")
            + (f", {self.disks} on a small disk" if self.disks else "")
            + (f", {self.clocks} on a stepped clock" if self.clocks else "")
            + f"; workdir {workdir}")
        flow = {**self.flow, "ingest_instances": self.ingest_instances or self.processes}
        with Rig(workdir, self.agents, self.sensors, self.period_s, self.detect, flow,
                 processes=self.processes, disks=self.disks, outbox=dict(self.disk_outbox),
                 clocks=self.clocks) as rig:
            assert rig.stack is not None
            with rig.stack.reader() as reader:
                wait_until(lambda: all(len(stored_seqs(reader, n.name, s)) >= WARMUP_READINGS
                                       for n in rig.nodes for s in n.sensors),
                           120, "readings of every sensor stored before the chaos", every_s=0.5)
                start = time.monotonic()
                for step in plan:
                    _sleep_until(start + step.at_s, rig.supervise)
                    late = time.monotonic() - start - step.at_s
                    rig.apply(step)
                    self.applied.append(str(step))
                    say(f"  {step}" + (f"  (applied {late:.1f}s late)" if late > 0.5 else ""))
                for step in rig.restore_all():
                    self.applied.append(f"end: {step.action} {step.part}")
                    say(f"  end     {step.action:9} {step.part}")
                chaos_s = time.monotonic() - start
                for node in rig.nodes:
                    node.stop_sensors()
                say(f"chaos over after {chaos_s:.0f} s (ingest child killed {rig.ingest_kills} times); "
                    "sensors stopped, draining")
                drain_start = time.monotonic()
                last: list[str] = []
                # Drained: nothing waiting, at STABLE_POLLS polls in a row with the same
                # numbers given (the agents commit their last readings after the sensors stop)
                # and the same points stored (a node with evictions is not waited for whole).
                stable, given = 0, (-1, -1)
                while stable < STABLE_POLLS:
                    rig.supervise()
                    numbers = sum(sum(n.numbered().values()) for n in rig.nodes)
                    last, stored = drained(rig, reader)
                    stable = stable + 1 if not last and (numbers, stored) == given else 0
                    given = (numbers, stored)
                    if time.monotonic() - drain_start > self.drain_s:
                        break
                    time.sleep(1.0)
                say(f"drain: {'done' if not last else 'NOT done'} after "
                    f"{time.monotonic() - drain_start:.0f} s" + "".join(f"\n    {w}" for w in last))
                findings = check(rig, reader)
                self.disk_report = {part: _disk_report(rig, part) for part in rig.disks}
                self.clock_report = {f"clock-agent-{n.index}": {
                    "steps": rig.clock_steps.get(f"clock-agent-{n.index}", 0),
                    "jumps_logged": n.logged("wall clock jumped")}
                    for n in rig.nodes if n.offset_file is not None}
                for e in rig.self_exits:
                    say(f"  {e}")
                findings.problems.extend(f"{e}; its log ends:\n{rig.log_tail(e.part)}"
                                         for e in rig.unexpected_exits())
                strays = _strays(rig)
                if strays:
                    findings.problems.append(f"ingest processes left behind by a dead processor: {strays}")
        for s in findings.sensors:
            say(f"  {'ok  ' if s.clean else 'FAIL'} {s}")
        for part, report in (self.disk_report | self.clock_report).items():
            say(f"  {part}: {report}")
        for name, counts in findings.ledgers.items():
            say(f"  ledger {name}: {counts}, outbox evicted {findings.evicted.get(name, 0)}")
        for p in findings.problems:
            say(f"  FAIL {p}")
        faults = sum(1 for step in plan if step.action not in RESTORE.values())
        say(f"seed {self.seed}: {findings.readings} readings, {faults} faults, "
            f"{findings.missing} missing ({sum(findings.evicted.values())} counted evicted), "
            f"{findings.doubled} doubled: "
            + ("each stored exactly once with its values, or counted evicted" if findings.clean
               else "PROBLEMS FOUND"))
        return findings


# What the agent logs, once per episode, when its outbox cannot commit (the disk full), when
# it evicts outbox rows to make room for the readings it holds, and when it drops held ones.
DISK_EPISODES = {"commits_refused": "cannot commit readings to the outbox",
                 "evicted_for_room": "outbox rows evicted to make room",
                 "dropped": "readings dropped: the outbox cannot commit"}


def _disk_report(rig: Rig, part: str) -> dict[str, int]:
    node = rig.nodes[int(part.rsplit("-", 1)[1])]
    return {"filled": rig.disks[part].fills,
            **{what: node.logged(text) for what, text in DISK_EPISODES.items()}}


def _strays(rig: Rig, timeout_s: float = 30.0) -> list[int]:
    """Orphaned ingest children, after giving them time to notice and end."""
    deadline = time.monotonic() + timeout_s
    while (strays := rig.stray_ingests()) and time.monotonic() < deadline:
        time.sleep(0.5)
    return strays


def _sleep_until(when: float, meanwhile: Callable[[], None]) -> None:
    while (left := when - time.monotonic()) > 0:
        meanwhile()
        time.sleep(min(left, 0.05))




def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.chaos.soak", description=__doc__.split("\n\n")[0])
    p.add_argument("--seed", type=int, required=True)
    p.add_argument("--minutes", type=float, default=3.0)
    p.add_argument("--agents", type=int, default=3)
    p.add_argument("--sensors", type=int, default=2, help="SDS011s per agent")
    p.add_argument("--period", type=float, default=0.05, help="seconds between a sensor's readings")
    p.add_argument("--max-down", type=int, default=3, help="parts down at once, at most")
    p.add_argument("--detect", action="store_true", help="anomaly and fault detection on")
    p.add_argument("--gap", type=float, nargs=2, default=(0.3, 4.0), metavar=("MIN", "MAX"),
                   help="seconds between two steps, drawn uniformly")
    p.add_argument("--ingest-instances", type=int, default=None,
                   help="the processor's flow.ingest_instances (default: one per process)")
    p.add_argument("--disks", type=int, default=0,
                   help="the first N agents' state on a small tmpfs the soak fills and frees (root)")
    p.add_argument("--disk-max-rows", type=int, default=None,
                   help="outbox.max_rows of those agents (evictions, counted, among the faults)")
    p.add_argument("--clocks", type=int, default=0,
                   help="the first N agents on a wall clock the soak steps (bench/chaos/stepped_agent.py)")
    p.add_argument("--processes", type=int, default=1,
                   help="the dataflow as a Bytewax cluster of this many processes (flow.addresses)")
    p.add_argument("--epoch", type=float, default=2.0, help="the processor's flow.epoch_interval_s")
    p.add_argument("--journal-retention", type=int, default=60,
                   help="the processor's flow.journal_retention_s (60: trimmed during the soak)")
    p.add_argument("--workdir", type=Path,
                   help="kept afterwards (default: a temporary one, removed when clean)")
    args = p.parse_args(argv)
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix=f"chaos-{args.seed}-"))
    soak = Soak(args.seed, args.minutes, args.agents, args.sensors, args.period, args.max_down, args.detect,
                gap_s=tuple(args.gap), ingest_instances=args.ingest_instances, processes=args.processes,
                disks=args.disks, clocks=args.clocks,
                disk_outbox={} if args.disk_max_rows is None else {"max_rows": args.disk_max_rows},
                flow={"epoch_interval_s": args.epoch, "journal_retention_s": args.journal_retention})
    try:
        findings = soak.run(workdir)
    except ChaosError as exc:
        print(f"soak could not run: {exc}\n(workdir kept: {workdir})", file=sys.stderr)
        return 2
    if findings.clean and args.workdir is None:
        shutil.rmtree(workdir, ignore_errors=True)
    elif not findings.clean:
        print(f"workdir kept for the logs: {workdir}")
    return 0 if findings.clean else 1


if __name__ == "__main__":
    sys.exit(main())
