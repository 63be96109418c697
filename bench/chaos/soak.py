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
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

from bench.chaos.check import Findings, check, drained, stored_seqs
from bench.chaos.errors import ChaosError
from bench.chaos.plan import Step, make_plan
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
    ingest_instances: int = 1
    # the processor's [flow] keys; the journal kept a minute (the least it takes) so that
    # the trim of consumed records runs among the faults
    flow: dict[str, object] = field(default_factory=lambda: {"journal_retention_s": 60})
    plan: list[Step] | None = None  # a fixed schedule instead of the seed's
    applied: list[str] = field(default_factory=list)

    def run(self, workdir: Path, out: TextIO | None = None) -> Findings:
        def say(text: str) -> None:
            print(text, file=out or sys.stdout, flush=True)

        plan = self.plan if self.plan is not None else make_plan(
            self.seed, self.minutes * 60, self.agents, max_down=self.max_down, gap_s=self.gap_s)
        span = plan[-1].at_s if plan else 0.0
        say(f"seed {self.seed}: {len(plan)} steps over {span:.0f} s, {self.agents} agents x "
            f"{self.sensors} sensors at {1 / self.period_s:g} readings/s; workdir {workdir}")
        flow = {**self.flow, "ingest_instances": self.ingest_instances}
        with Rig(workdir, self.agents, self.sensors, self.period_s, self.detect, flow) as rig:
            assert rig.stack is not None
            with rig.stack.reader() as reader:
                wait_until(lambda: all(len(stored_seqs(reader, n.name, s)) >= WARMUP_READINGS
                                       for n in rig.nodes for s in n.sensors),
                           120, "readings of every sensor stored before the chaos", every_s=0.5)
                start = time.monotonic()
                for step in plan:
                    _sleep_until(start + step.at_s)
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
                # numbers given (the agents commit their last readings after the sensors stop).
                stable, given = 0, -1
                while stable < STABLE_POLLS:
                    if not rig.processor_alive():
                        raise ChaosError(f"the processor exited:\n{rig.processor_log_tail()}")
                    now_given = sum(sum(n.numbered().values()) for n in rig.nodes)
                    last = drained(rig, reader)
                    stable = stable + 1 if not last and now_given == given else 0
                    given = now_given
                    if time.monotonic() - drain_start > self.drain_s:
                        break
                    time.sleep(1.0)
                say(f"drain: {'done' if not last else 'NOT done'} after "
                    f"{time.monotonic() - drain_start:.0f} s" + "".join(f"\n    {w}" for w in last))
                findings = check(rig, reader)
                strays = _strays(rig)
                if strays:
                    findings.problems.append(f"ingest processes left behind by a dead processor: {strays}")
        for s in findings.sensors:
            say(f"  {'ok  ' if s.clean else 'FAIL'} {s}")
        for name, counts in findings.ledgers.items():
            say(f"  ledger {name}: {counts}")
        for p in findings.problems:
            say(f"  FAIL {p}")
        say(f"seed {self.seed}: {findings.readings} readings, "
            + ("each stored exactly once with its values" if findings.clean else "PROBLEMS FOUND"))
        return findings


def _strays(rig: Rig, timeout_s: float = 30.0) -> list[int]:
    """Orphaned ingest children, after giving them time to notice and end."""
    deadline = time.monotonic() + timeout_s
    while (strays := rig.stray_ingests()) and time.monotonic() < deadline:
        time.sleep(0.5)
    return strays


def _sleep_until(when: float) -> None:
    while (left := when - time.monotonic()) > 0:
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
    p.add_argument("--ingest-instances", type=int, default=1, help="the processor's flow.ingest_instances")
    p.add_argument("--epoch", type=float, default=2.0, help="the processor's flow.epoch_interval_s")
    p.add_argument("--journal-retention", type=int, default=60,
                   help="the processor's flow.journal_retention_s (60: trimmed during the soak)")
    p.add_argument("--workdir", type=Path,
                   help="kept afterwards (default: a temporary one, removed when clean)")
    args = p.parse_args(argv)
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix=f"chaos-{args.seed}-"))
    soak = Soak(args.seed, args.minutes, args.agents, args.sensors, args.period, args.max_down, args.detect,
                gap_s=tuple(args.gap), ingest_instances=args.ingest_instances,
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
