"""`python -m bench.faults.digest [--seeds 1 2 3 4] [--hours 12]`: a digest of every event
the fault bench (`python -m bench.faults.run`, its default options) raises, in order.

The same runs as `bench.faults.run` (faults planned on the default city, readings of the
bench city with paired air modules, supervised kiosks, self-tested doors, ticks every
60 s), but instead of matching the events to the ground truth it hashes each one as
raised: site, node, sensor, field, type, start, detection, value, detail, sequence number,
the simulated moment it was raised and the drift pair. Two versions of the rules that
print the same digest raised the same events in the same order: a check that a change
meant to make the rules cheaper changed no output.
"""

from __future__ import annotations

import argparse
import hashlib
import sys
from datetime import timedelta

from bench.faults.plan import plan_faults
from bench.faults.stream import Raised, stream, warm_drift
from cloud.detect.drift import CityDrift
from urbanpulse.simulate import City, Simulation
from urbanpulse.simulate.module_pairs import with_module_pairs
from urbanpulse.simulate.scenario import merge_events, plan_events
from urbanpulse.simulate.simulation import DEFAULT_START

ANOMALIES = 6  # as bench.faults.run


def raised_line(r: Raised) -> str:
    """One raised event as a line of text: every field of it, floats by repr."""
    ev = r.event
    return "|".join((r.site, r.node, ev.sensor, ev.field, str(ev.fault), ev.start.isoformat(),
                     ev.detected_at.isoformat(), repr(ev.value), ev.detail, repr(ev.seq),
                     repr(r.at_s), repr(r.pair)))


def seed_events(city: City, simulated: City, seed: int, hours: float = 12.0,
                tick_s: float = 60.0) -> list[Raised]:
    """Every event of one run of `bench.faults.run` (its `run_seed`), in the order raised."""
    planned, _ = plan_faults(city, seed, hours)
    anomalies = plan_events(city, seed, hours, anomalies=ANOMALIES)
    start = DEFAULT_START + timedelta(hours=6 * (seed - 1))
    sim = Simulation(simulated, seed=seed, start=start,
                     events=merge_events(anomalies, [p.event for p in planned]))
    drift = CityDrift()
    warm_drift(Simulation(simulated, seed=seed + 1000, start=start - timedelta(days=2),
                          events=()), drift)
    raised, _, _ = stream(sim, hours, tick_s, drift=drift)
    return raised


def digest(seeds: list[int], hours: float = 12.0) -> tuple[str, int]:
    """(sha256 of every event's line, events) over the runs of `seeds`."""
    city = City.load()
    simulated = with_module_pairs(city, 1.0)
    h = hashlib.sha256()
    count = 0
    for seed in seeds:
        for r in seed_events(city, simulated, seed, hours):
            h.update(raised_line(r).encode() + b"\n")
            count += 1
    return h.hexdigest(), count


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.faults.digest", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3, 4])
    parser.add_argument("--hours", type=float, default=12.0)
    parser.add_argument("--dump", help="also write every event's line to this file")
    args = parser.parse_args(argv)
    if args.dump:
        city = City.load()
        simulated = with_module_pairs(city, 1.0)
        with open(args.dump, "w", encoding="utf-8") as out:
            for seed in args.seeds:
                for r in seed_events(city, simulated, seed, args.hours):
                    out.write(raised_line(r) + "\n")
    value, count = digest(args.seeds, args.hours)
    print(f"{value} {count} events, seeds {' '.join(map(str, args.seeds))}, {args.hours:g} h")
    return 0


if __name__ == "__main__":
    sys.exit(main())
