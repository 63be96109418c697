"""What an injected fault changes in its target's readings, against the same run without it.

A fault the rules miss is either one they could see and did not, or one that left
nothing to see. This tells the two apart: for every planned fault on the chosen target
classes (bed pads by default), the run of `bench.faults.run` (every fault and anomaly of
the seed) is simulated again without that one fault, and the target's readings stamped
within the fault are compared. It prints, per fault, the readings there, how many differ
from the run without the fault, and the value changes in each (a bed pad reports on a
change of state, so a change there is a patient leaving or lying down).

    python -m bench.faults.effect [--seeds 1 2 3 4 5 6 7 8] [--hours 12]
                                  [--classes bed_pad] [--types stuck spikes]
"""

from __future__ import annotations

import argparse
import itertools
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta

from bench.faults.plan import Planned, plan_faults
from bench.faults.run import ANOMALIES
from urbanpulse.simulate import City, Simulation
from urbanpulse.simulate.events import Event
from urbanpulse.simulate.module_pairs import with_module_pairs
from urbanpulse.simulate.scenario import merge_events, plan_events
from urbanpulse.simulate.simulation import DEFAULT_START

Values = tuple[tuple[str, float], ...]


@dataclass(frozen=True, slots=True)
class Effect:
    seed: int
    planned: Planned
    readings: int          # the target's readings stamped within the fault, with it
    readings_without: int  # the same, in the run without the fault
    differing: int         # readings (by position) whose values differ, plus the count gap
    changes: int           # value changes within the fault, with it
    changes_without: int   # the same, without it

    @property
    def visible(self) -> bool:
        return self.differing > 0


def _values(sim: Simulation, hours: float, target: tuple[str, str, str | None],
            start_s: float, end_s: float) -> list[Values]:
    site, node, sensor = target
    t0_ns = sim.timebase.start_ns
    lo, hi = t0_ns + int(start_s * 1e9), t0_ns + int(end_s * 1e9)
    out: list[Values] = []
    for batch in sim.readings(max_batch=1000).advance(hours * 3600.0):
        if batch.site != site or batch.node != node:
            continue
        out += [tuple(sorted(r.values.items())) for r in batch.readings
                if r.sensor == sensor and lo <= r.ts_ns <= hi]
    return out


def _changes(values: Sequence[Values]) -> int:
    return sum(1 for a, b in itertools.pairwise(values) if a != b)


def effects(city: City, seed: int, hours: float, classes: set[str], types: set[str],
            simulated: City | None = None) -> list[Effect]:
    """The effect of each chosen fault of the seed's run (`bench.faults.run.run_seed`'s
    faults, anomalies and start)."""
    planned, _ = plan_faults(city, seed, hours)
    anomalies = plan_events(city, seed, hours, anomalies=ANOMALIES)
    start = DEFAULT_START + timedelta(hours=6 * (seed - 1))
    simulated = simulated or city
    every: list[Event] = [p.event for p in planned]
    out: list[Effect] = []
    for p in planned:
        if p.target_class not in classes or p.event.type not in types:
            continue
        target = (p.event.site or "", p.event.node or "", p.event.sensor)
        others = [e for e in every if e is not p.event]
        span = (p.event.start_s, p.event.end_s)
        with_it = _values(Simulation(simulated, seed=seed, start=start,
                                     events=merge_events(anomalies, every)), hours, target, *span)
        without = _values(Simulation(simulated, seed=seed, start=start,
                                     events=merge_events(anomalies, others)), hours, target, *span)
        differing = sum(1 for a, b in zip(with_it, without, strict=False) if a != b)
        out.append(Effect(seed, p, len(with_it), len(without),
                          differing + abs(len(with_it) - len(without)),
                          _changes(with_it), _changes(without)))
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.faults.effect", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3, 4, 5, 6, 7, 8])
    parser.add_argument("--hours", type=float, default=12.0)
    parser.add_argument("--classes", nargs="+", default=["bed_pad"])
    parser.add_argument("--types", nargs="+", default=["stuck", "spikes"])
    args = parser.parse_args(argv)
    if args.hours < 4:
        parser.error("--hours must be at least 4 (the bench's runs are 12 h)")
    city = City.load()
    simulated = with_module_pairs(city, 1.0)
    found: list[Effect] = []
    print("| seed | fault | target | hours | readings with / without | differing "
          "| value changes with / without |")
    print("|---|---|---|---|---|---|---|")
    for seed in args.seeds:
        for e in effects(city, seed, args.hours, set(args.classes), set(args.types), simulated):
            ev = e.planned.event
            print(f"| {seed} | {ev.type} | {ev.site}/{ev.node}/{ev.sensor} "
                  f"| {ev.start_s / 3600:.2f}-{ev.end_s / 3600:.2f} "
                  f"| {e.readings} / {e.readings_without} | {e.differing} "
                  f"| {e.changes} / {e.changes_without} |")
            found.append(e)
    for kind in args.types:
        of_kind = [e for e in found if e.planned.event.type == kind]
        unseen = sum(not e.visible for e in of_kind)
        print(f"\n{kind}: {len(of_kind)} faults, {unseen} changed no reading within the fault")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
