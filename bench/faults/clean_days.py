"""False drifts on clean days: the drift step fed days of the bench city without a fault.

    python -m bench.faults.clean_days [--seeds 2001 2002 2003] [--days 3]
                                      [--single-modules] [--pair-variation 1]

Each seed is its own weather from the default Monday 00:00; every air reading of the
bench city (two modules of each air sensor, as `run.py`; `--single-modules` the default
city's one) goes through one `CityDrift` in event-time order (`stream.warm_drift`).
Nothing is injected, so every drift raised is false. The seeds are not the bench's:
they are where the drift rules' false alarms are measured (docs/anomaly-detection.md).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from bench.faults.stream import warm_drift
from cloud.detect.drift import DRIFT_FIELDS, CityDrift, Drift
from urbanpulse.simulate import City, Simulation
from urbanpulse.simulate.module_pairs import SECOND, with_module_pairs
from urbanpulse.simulate.simulation import DEFAULT_START


def clean_drifts(city: City, seed: int, days: float) -> list[Drift]:
    """The drifts one `CityDrift` raises on `days` of `city` without a fault."""
    return warm_drift(Simulation(city, seed=seed, start=DEFAULT_START, events=()),
                      CityDrift(), days)


def pairs_of(city: City) -> int:
    """The modules of `city` that have a second one (`<id>` beside `<id>-b`)."""
    ids = {(n.site, n.node, s.id) for n in city.nodes for s in n.sensors
           if s.kind in DRIFT_FIELDS}
    return sum((site, node, sid + SECOND) in ids for site, node, sid in ids)


def describe(seed: int, drift: Drift) -> str:
    site, node, sensor = drift.series
    ev = drift.event
    return (f"seed {seed}: {site}/{node}/{sensor}/{ev.field} from {ev.start:%a %H:%M} UTC "
            f"raised {ev.detected_at:%a %H:%M}: {ev.detail}")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.faults.clean_days",
                                     description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=[2001, 2002, 2003])
    parser.add_argument("--days", type=float, default=3.0)
    parser.add_argument("--single-modules", action="store_true",
                        help="one module per air sensor (the default city)")
    parser.add_argument("--pair-variation", type=float, default=1.0,
                        help="scale of the paired modules' response differences")
    args = parser.parse_args(argv)
    if not args.days > 0 or args.pair_variation < 0:
        parser.error("--days must be positive and --pair-variation not negative")
    city = City.load()
    simulated = city if args.single_modules else with_module_pairs(city, args.pair_variation)
    found = [(seed, d) for seed in args.seeds for d in clean_drifts(simulated, seed, args.days)]
    pairs = pairs_of(simulated)
    print(f"{len(args.seeds)} seeds x {args.days:g} clean days, {pairs} module pairs "
          f"({pairs * args.days * len(args.seeds):g} pair-days): {len(found)} drifts raised "
          f"({sum(d.pair is not None for _, d in found)} by a pair)")
    for seed, d in found:
        print(describe(seed, d))
    return 0


if __name__ == "__main__":
    sys.exit(main())
