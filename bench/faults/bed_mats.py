"""The fault bench with analogue bed mats instead of bed pads (issue 7, edge/drivers/bed_mat).

    python -m bench.faults.bed_mats [--seeds 1 2 3 4] [--hours 12] [--tick 60] [--details]
                                    [--pads-too]

The default city (its air stations' modules paired, as `bench.faults.run`'s default) with
every ward's beds on mats (`Ward.mats`): the same faults planned on
the same beds as with pads (`bench.faults.run.run_seed`, the city's plan), the mats'
readings carrying load and motion (urbanpulse/simulate/bed_mat.py), and `fault` while a
cable is cut (the mats supervised by their bias, as the pads by their loopback). Prints the table per
fault type of the ward beds' class (`bed_pad`, as the plan names the beds' class), recall
per class, the table of the whole city, and the false positives on beds with no injected
fault. `--pads-too` runs the
pad city on the same seeds as well, for the comparison in one run.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections import Counter
from dataclasses import replace

from bench.faults.match import RunResult, rows_by_class, rows_by_type
from bench.faults.run import format_rows, run_seed
from bench.faults.stream import Raised
from urbanpulse.simulate import City
from urbanpulse.simulate.module_pairs import with_module_pairs

BED_CLASS = "bed_pad"


def _bed_ids(city: City) -> frozenset[tuple[str, str, str]]:
    return frozenset((h.site, w.node, bed) for h in city.hospitals for w in h.wards
                     for bed in w.bed_ids)


def _bed_only(results: list[RunResult], beds: frozenset[tuple[str, str, str]]
              ) -> list[RunResult]:
    """The outcomes and false positives of the beds alone."""
    def on_bed(r: Raised) -> bool:
        return (r.site, r.node, r.event.sensor) in beds

    return [replace(r, outcomes=[o for o in r.outcomes if o.planned.target_class == BED_CLASS],
                    false_positives=[f for f in r.false_positives if on_bed(f)],
                    clean_false_positives=[f for f in r.clean_false_positives if on_bed(f)])
            for r in results]


def _report(title: str, results: list[RunResult], beds_of: frozenset[tuple[str, str, str]],
            details: bool) -> None:
    beds = _bed_only(results, beds_of)
    print(f"\n## {title}\n")
    print(format_rows(rows_by_type(beds)))
    bed_class = [r for r in rows_by_class(results) if r.name.endswith(f"/ {BED_CLASS}")]
    print("\nPer target class (beds):\n")
    print(format_rows(bed_class, with_precision=False))
    print("\nThe whole city (every class; false positives all counted):\n")
    print(format_rows(rows_by_type(results)))
    clean = [f for r in beds for f in r.clean_false_positives]
    kinds = Counter(f"{f.event.field} {f.event.fault}" for f in clean)
    print(f"\nFalse positives on beds with no injected fault: {len(clean)}"
          + (f" ({', '.join(f'{k} {v}' for k, v in sorted(kinds.items()))})" if kinds else ""))
    if details:
        for r in beds:
            for o in r.outcomes:
                if not o.detections:
                    e = o.planned.event
                    print(f"missed run {o.run}: {e.type} {e.node}/{e.sensor} "
                          f"{e.start_s / 3600:.2f}-{e.end_s / 3600:.2f} h {dict(e.params)}")
            for f in r.false_positives:
                print(f"false positive: {f.node}/{f.event.sensor}/{f.event.field} "
                      f"{f.event.fault} at {f.at_s / 3600:.2f} h: {f.event.detail}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.faults.bed_mats", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3, 4])
    parser.add_argument("--hours", type=float, default=12.0)
    parser.add_argument("--tick", type=float, default=60.0, help="tick(now) cadence, s")
    parser.add_argument("--details", action="store_true",
                        help="list every missed bed fault and every false positive on a bed")
    parser.add_argument("--pads-too", action="store_true",
                        help="run the pad city on the same seeds too")
    args = parser.parse_args(argv)
    if args.hours < 4 or args.tick <= 0:
        parser.error("--hours must be at least 4 and --tick positive")
    city = City.load()
    # the air stations' paired modules, as bench.faults.run's default (the whole city's table)
    runs = [("mats", with_module_pairs(city.with_mats()))] + (
        [("pads", with_module_pairs(city))] if args.pads_too else [])
    for name, simulated in runs:
        began = time.perf_counter()
        results = [run_seed(city, seed, args.hours, args.tick, simulated=simulated)[0]
                   for seed in args.seeds]
        _report(f"Beds on {name}: {len(args.seeds)} runs x {args.hours:g} h (seeds "
                f"{' '.join(map(str, args.seeds))}), {time.perf_counter() - began:.0f} s",
                results, _bed_ids(city), args.details)
    return 0


if __name__ == "__main__":
    sys.exit(main())
