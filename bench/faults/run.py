"""Precision, recall and detection delay of the fault rules on the simulator's faults.

    python -m bench.faults.run [--seeds 1 2 3 4] [--hours 12] [--tick 60] [--details]
                               [--unsupervised-kiosks] [--untested-doors]
                               [--single-modules] [--pair-variation 1] [--drift-pct 8]
                               [--pads]

For each seed: the default city from a start `6 h x (seed - 1)` after the default
Monday 00:00 (so the runs cover night and day), every fault type on every class of
target (`plan.py`), plus random anomalies (incidents, pollution spikes, surges) the
rules must not take for faults. The lightweight readings go through `FaultMonitor`
as the dataflow feeds it (`stream.py`), events are matched to the ground truth
(`match.py`), and one table per fault type is printed (and again without the
paraclinical departments' classes, comparable with figures from before they existed),
then recall per target class, then the false positives.

The bench city's air stations carry two modules of each air sensor (PurpleAir-style;
`urbanpulse/simulate/module_pairs.py`), `--single-modules` the default city's one. The
faults are planned on the default city either way (the second modules get none), so
every fault and anomaly is the same in both. Drift is matched twice: "station found"
(an event of the station's pair counts; the table) and "module named" (only an event
naming the drifting module itself).

The bench city's ward beds are analogue mats (edge/drivers/bed_mat, `City.with_mats`), the
hardware the fault rules can check: a passive pad stuck pressed or a spike behind its
closed contact changes no reading (docs/anomaly-detection.md, "Bed mats: stuck and spikes
seen"). `--pads` runs the default city's pads instead; the faults are the same either way.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import replace
from datetime import timedelta

from bench.faults.match import Row, RunResult, match, rows_by_class, rows_by_type
from bench.faults.plan import DEPARTMENT, DEPARTMENT_KIOSK, GRACE_S, plan_faults
from bench.faults.stream import stream, warm_drift
from cloud.detect.drift import CityDrift
from urbanpulse.simulate import City, Simulation
from urbanpulse.simulate.events import make_event
from urbanpulse.simulate.module_pairs import with_module_pairs
from urbanpulse.simulate.scenario import merge_events, plan_events
from urbanpulse.simulate.simulation import DEFAULT_START

ANOMALIES = 6


def run_seed(city: City, seed: int, hours: float, tick_s: float,
             supervised_kiosks: bool = True, tested_doors: bool = True,
             simulated: City | None = None, drift_pct: float | None = None,
             drift: CityDrift | None = None
             ) -> tuple[RunResult, RunResult, int, int, int]:
    """One run: faults planned on `city`, readings of `simulated` (`city` with more
    sensors, e.g. paired modules; `city` itself by default); drifts at `drift_pct` %/h
    instead of the default; the air readings through `drift` (a fresh `CityDrift` by
    default; one whose rules an analysis watches). The result matched with drift events
    of a pair counting for either module, then only those naming the module; readings,
    monitor updates, drifts raised in the run's clean history."""
    planned, missed = plan_faults(city, seed, hours)
    if missed:
        print(f"seed {seed}: no free slot for {', '.join(missed)}", file=sys.stderr)
    if drift_pct is not None:
        planned = [p if p.event.type != "drift" else replace(p, event=make_event(
            "drift", p.event.site, p.event.node, p.event.sensor, p.event.start_s,
            p.event.end_s, {"pct_per_h": drift_pct})) for p in planned]
    anomalies = plan_events(city, seed, hours, anomalies=ANOMALIES)
    start = DEFAULT_START + timedelta(hours=6 * (seed - 1))
    simulated = simulated or city
    sim = Simulation(simulated, seed=seed, start=start,
                     events=merge_events(anomalies, [p.event for p in planned]))
    drift = CityDrift() if drift is None else drift
    # Two clean days before the run, other weather (seed + 1000): the drift step's history.
    warm = warm_drift(Simulation(simulated, seed=seed + 1000,
                                 start=start - timedelta(days=2), events=()), drift)
    raised, readings, updates = stream(sim, hours, tick_s, drift=drift,
                                       supervised_kiosks=supervised_kiosks,
                                       tested_doors=tested_doors)
    return (match(seed, planned, raised), match(seed, planned, raised, module_named=True),
            readings, updates, len(warm))


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{x:.2f}"


def _minutes(delays: Sequence[float], q: float) -> str:
    if not delays:
        return "-"
    if len(delays) == 1:
        return f"{delays[0] / 60:.1f}"
    return f"{statistics.quantiles(delays, n=100, method='inclusive')[int(q) - 1] / 60:.1f}"


def format_rows(rows: Sequence[Row], with_precision: bool = True) -> str:
    head = "| fault | injected | detected | recall |"
    head += " events TP / FP | precision |" if with_precision else ""
    head += " delay median (min) | delay p90 (min) |"
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for r in rows:
        line = f"| {r.name} | {r.injected} | {r.detected} | {_pct(r.recall)} |"
        if with_precision:
            line += f" {r.true_positives} / {r.false_positives} | {_pct(r.precision)} |"
        line += f" {_minutes(r.delays_s, 50)} | {_minutes(r.delays_s, 90)} |"
        lines.append(line)
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.faults.run", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3, 4])
    parser.add_argument("--hours", type=float, default=12.0)
    parser.add_argument("--tick", type=float, default=60.0, help="tick(now) cadence, s")
    parser.add_argument("--details", action="store_true",
                        help="list every missed fault and every false positive")
    parser.add_argument("--unsupervised-kiosks", action="store_true",
                        help="kiosks without a loopback pair or a ready line: their "
                             "heartbeats say nothing of their wiring")
    parser.add_argument("--untested-doors", action="store_true",
                        help="door counters without the beam self-test: their heartbeats "
                             "say nothing of a receiver stuck clear or a blocked beam")
    parser.add_argument("--single-modules", action="store_true",
                        help="one module per air sensor (the default city): no pair "
                             "ratio, drift only from the other stations")
    parser.add_argument("--pair-variation", type=float, default=1.0,
                        help="scale of the paired modules' response differences "
                             "(1 = the argued sizes)")
    parser.add_argument("--drift-pct", type=float, default=None,
                        help="the injected drifts' rate, %%/h (default 8; sign = direction)")
    parser.add_argument("--pads", action="store_true",
                        help="the ward beds on passive pads (the default city's) instead "
                             "of mats")
    args = parser.parse_args(argv)
    if args.hours < 4 or args.tick <= 0:
        parser.error("--hours must be at least 4 and --tick positive")
    if args.pair_variation < 0 or (args.drift_pct is not None
                                   and not -100 <= args.drift_pct <= 100):
        parser.error("--pair-variation must not be negative, --drift-pct within +-100")
    city = City.load()
    fitted = city if args.pads else city.with_mats()
    simulated = fitted if args.single_modules else with_module_pairs(fitted,
                                                                     args.pair_variation)
    began = time.perf_counter()
    results: list[RunResult] = []
    named: list[RunResult] = []
    readings = updates = warm = 0
    for seed in args.seeds:
        res, by_module, n, u, w = run_seed(city, seed, args.hours, args.tick,
                                           not args.unsupervised_kiosks,
                                           not args.untested_doors, simulated, args.drift_pct)
        results.append(res)
        named.append(by_module)
        readings += n
        updates += u
        warm += w
    spent = time.perf_counter() - began
    sensor_hours = sum(len(n.sensors) for n in simulated.nodes) * args.hours * len(args.seeds)
    print(f"{len(args.seeds)} runs x {args.hours:g} h of the default city (seeds "
          f"{' '.join(map(str, args.seeds))}), {readings} readings, {updates} monitor "
          f"updates, ticks every {args.tick:g} s, grace {GRACE_S / 60:g} min, kiosks "
          f"{'un' if args.unsupervised_kiosks else ''}supervised, doors "
          f"{'un' if args.untested_doors else 'self-'}tested, beds on "
          f"{'pads' if args.pads else 'mats'}, air modules "
          + ("single" if args.single_modules else
             f"paired (response differences x{args.pair_variation:g})")
          + (f", drifts {args.drift_pct:+g} %/h" if args.drift_pct is not None else "")
          + f"; {spent:.1f} s\n")
    print(format_rows(rows_by_type(results)))
    drift_named = [r for r in rows_by_type(named) if r.name == "drift"]
    print("\nDrift again, counting only events that name the drifting module (not the "
          "pair):\n")
    print(format_rows(drift_named))
    print("\nThe same without the paraclinical departments' nodes and kiosks (the classes "
          "measured before the departments existed; false positives all counted):\n")
    print(format_rows(rows_by_type(results, frozenset({DEPARTMENT, DEPARTMENT_KIOSK}))))
    print("\nRecall and delay per target class:\n")
    print(format_rows(rows_by_class(results), with_precision=False))
    fps = [r for res in results for r in res.false_positives]
    clean = [r for res in results for r in res.clean_false_positives]
    kinds = Counter(str(r.event.fault) for r in clean)
    print(f"\nFalse positives: {len(fps)} in all; on sensors with no injected fault "
          f"{len(clean)} in {sensor_hours:g} sensor-hours"
          + (f" ({', '.join(f'{k} {v}' for k, v in sorted(kinds.items()))})" if kinds else "")
          + f"; drifts in the two clean days before each run (the drift step's history) {warm}")
    if args.details:
        for res in results:
            for o in res.outcomes:
                if not o.detections:
                    e = o.planned.event
                    print(f"missed run {o.run}: {e.type} {e.site}/{e.node}/{e.sensor} "
                          f"{e.start_s / 3600:.2f}-{e.end_s / 3600:.2f} h {dict(e.params)}")
        for r in fps:
            print(f"false positive: {r.site}/{r.node}/{r.event.sensor}/{r.event.field} "
                  f"{r.event.fault} at {r.at_s / 3600:.2f} h: {r.event.detail}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
