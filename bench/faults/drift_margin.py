"""How far each injected drift moved its pair's ratio, against how far clean pairs move alone.

    python -m bench.faults.drift_margin [--seeds 5 6 7 8] [--hours 12]
                                        [--clean-seeds 2001 ... 2009] [--clean-days 3]

A drift of a paired module can be seen only in the ratio of the station's two modules,
and that ratio moves by itself too (the modules' wander and humidity response:
`urbanpulse/simulate/module_pairs.py`). This measures the two on the same scale,
without the drift rules' own settings:

* the pair's 15-min log ratio, each module's bin summed up by its median as
  `cloud/detect/pair_drift.py` does (at least its `min_readings`, no bin where one value
  holds more than half of the readings, values under its `log_floor` taken as it);
* its **rise**: the mean of 3 bins against the mean of 4 bins that end 2 to 3 h (8 to
  12 bins) before the last of the 3, the largest over the bins ending within the fault
  and its grace (in the drift's sign), or over a day (either sign, for a clean pair).

For each drift of `bench.faults.run`'s runs (the same faults, anomalies, start and paired
city): how long it lasted and its gain at its end, the rise of the pair's ratio, the
pair's own change over the same bins (the run simulated again without that drift),
whether the bench's drift rules found it, and on how many clean pair-days (clean
simulated days of the seeds `--clean-seeds`, where the drift rules' false drifts are
counted: `bench.faults.clean_days`) the pair's ratio rose as much by itself within one
day. A drift whose rise clean pairs reach on many days cannot be told from the pair's own
disagreement by any rule on their ratio without raising false drifts on those days.
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
from collections import Counter, defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import timedelta

from bench.faults.plan import GRACE_S
from bench.faults.run import ANOMALIES, run_seed
from cloud.detect.drift import DRIFT_FIELDS
from cloud.detect.pair_drift import PairDriftSettings
from urbanpulse.simulate import City, Simulation
from urbanpulse.simulate.events import Event
from urbanpulse.simulate.module_pairs import SECOND, with_module_pairs
from urbanpulse.simulate.scenario import merge_events, plan_events
from urbanpulse.simulate.simulation import DEFAULT_START

END_BINS = 3
BEFORE_BINS = 4
GAPS = range(8, 13)  # bins from the last of the 4 to the last of the 3: 2 to 3 h
_DAY_S = 86_400.0


@dataclass(frozen=True, slots=True)
class Rise:
    value: float  # mean of the 3 bins minus mean of the 4 before, signed
    last: int  # bin index of the last of the 3
    gap: int  # bins between the last of the 4 and the last of the 3


def bin_ratios(first: tuple[Sequence[int], Sequence[float]],
               second: tuple[Sequence[int], Sequence[float]],
               settings: PairDriftSettings | None = None) -> dict[int, float]:
    """Bin index (epoch ns / bin) -> log ratio of the two modules' bin medians, for the
    bins both modules sum up (pair_drift's rules: least readings, no stuck value)."""
    s = settings or PairDriftSettings()

    def medians(readings: tuple[Sequence[int], Sequence[float]]) -> dict[int, float]:
        bins: dict[int, list[float]] = defaultdict(list)
        for ts_ns, value in zip(*readings, strict=True):
            bins[math.floor(ts_ns / (s.bin_s * 1e9))].append(value)
        return {i: statistics.median(v) for i, v in bins.items()
                if len(v) >= s.min_readings and 2 * max(Counter(v).values()) <= len(v)}

    a, b = medians(first), medians(second)
    return {i: math.log(max(a[i], s.log_floor)) - math.log(max(b[i], s.log_floor))
            for i in sorted(a.keys() & b.keys())}


def change(ratios: Mapping[int, float], last: int, gap: int) -> float | None:
    """Mean of the 3 bins ending at `last` minus the mean of the 4 ending `gap` bins
    before it; None when one of them has no ratio."""
    end = [ratios.get(last - k) for k in range(END_BINS)]
    before = [ratios.get(last - gap - k) for k in range(BEFORE_BINS)]
    if any(r is None for r in end) or any(r is None for r in before):
        return None
    return (sum(r for r in end if r is not None) / END_BINS
            - sum(r for r in before if r is not None) / BEFORE_BINS)


def largest_rise(ratios: Mapping[int, float], first: int, last: int, sign: int = 0
                 ) -> Rise | None:
    """The largest change over the windows whose last bin lies in [first, last], in
    `sign`'s direction (+1, -1) or either (0, its size); None when no window is full."""
    best: Rise | None = None
    for end in range(first, last + 1):
        for gap in GAPS:
            c = change(ratios, end, gap)
            if c is None:
                continue
            value = c * sign if sign else abs(c)
            if best is None or value > best.value:
                best = Rise(value, end, gap)
    return best


_Readings = tuple[list[int], list[float]]  # stamps (epoch ns), values


def pair_readings(sim: Simulation, hours: float, site: str, node: str, sensor: str,
                   name: str) -> tuple[_Readings, _Readings]:
    """The readings of the module `sensor` and of its second module, field `name`."""

    def one(module: str) -> _Readings:
        t, values = sim.output(site, node, module).reports(0.0, hours * 3600.0)
        return sim.timebase.ts_ns(t).tolist(), [v[name] for v in values]

    return one(sensor), one(sensor + SECOND)


def drift_field(city: City, site: str, node: str, sensor: str) -> str:
    for n in city.nodes:
        if n.site == site and n.node == node:
            for s in n.sensors:
                if s.id == sensor:
                    return DRIFT_FIELDS[s.kind]
    raise KeyError(f"{site}/{node}/{sensor}")


@dataclass(frozen=True, slots=True)
class Margin:
    seed: int
    event: Event
    found: bool
    rise: Rise | None  # of the pair's ratio with the drift
    own: float | None  # the pair's change over the same bins without the drift


def drift_margins(city: City, simulated: City, seed: int, hours: float) -> list[Margin]:
    """Every drift of the seed's bench run, its rise and whether the bench found it."""
    result, *_ = run_seed(city, seed, hours, 60.0, simulated=simulated)
    anomalies = plan_events(city, seed, hours, anomalies=ANOMALIES)
    start = DEFAULT_START + timedelta(hours=6 * (seed - 1))
    every = [o.planned.event for o in result.outcomes]
    sim = Simulation(simulated, seed=seed, start=start, events=merge_events(anomalies, every))
    out: list[Margin] = []
    for o in result.outcomes:
        e = o.planned.event
        if e.type != "drift" or e.site is None or e.node is None or e.sensor is None:
            continue
        name = drift_field(simulated, e.site, e.node, e.sensor)
        without = Simulation(simulated, seed=seed, start=start, events=merge_events(
            anomalies, [x for x in every if x is not e]))
        ratios = bin_ratios(*pair_readings(sim, hours, e.site, e.node, e.sensor, name))
        alone = bin_ratios(*pair_readings(without, hours, e.site, e.node, e.sensor, name))
        bin_s = PairDriftSettings().bin_s
        t0 = sim.timebase.start_epoch_s
        first = math.floor((t0 + e.start_s) / bin_s)
        last = math.floor((t0 + e.end_s + GRACE_S) / bin_s) - 1  # the last bin closed by then
        sign = 1 if e.params["pct_per_h"] >= 0 else -1
        rise = largest_rise(ratios, first, last, sign)
        own = None if rise is None else change(alone, rise.last, rise.gap)
        out.append(Margin(seed, e, bool(o.detections), rise, None if own is None else own * sign))
    return out


def clean_rises(simulated: City, seed: int, days: float) -> list[float]:
    """Per pair and day of clean simulated days: the pair's largest rise, either sign."""
    sim = Simulation(simulated, seed=seed, start=DEFAULT_START, events=())
    t0 = sim.timebase.start_epoch_s
    bin_s = PairDriftSettings().bin_s
    out: list[float] = []
    for n in simulated.nodes:
        ids = {s.id for s in n.sensors}
        for s in n.sensors:
            if s.kind not in DRIFT_FIELDS or s.id + SECOND not in ids:
                continue
            ratios = bin_ratios(*pair_readings(sim, days * 24.0, n.site, n.node, s.id,
                                                DRIFT_FIELDS[s.kind]))
            for day in range(math.ceil(days)):
                first = math.ceil((t0 + day * _DAY_S) / bin_s)
                last = math.floor((t0 + min(days, day + 1) * _DAY_S) / bin_s) - 1
                rise = largest_rise(ratios, first, last)
                if rise is not None:
                    out.append(rise.value)
    return out


def _pct(log_ratio: float) -> str:
    return f"{math.expm1(log_ratio) * 100:+.0f} %"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.faults.drift_margin",
                                     description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=[5, 6, 7, 8])
    parser.add_argument("--hours", type=float, default=12.0)
    parser.add_argument("--clean-seeds", type=int, nargs="*", default=list(range(2001, 2010)))
    parser.add_argument("--clean-days", type=float, default=3.0)
    args = parser.parse_args(argv)
    if args.hours < 4 or not args.clean_days > 0:
        parser.error("--hours must be at least 4 and --clean-days positive")
    city = City.load()
    simulated = with_module_pairs(city)
    clean = sorted(r for seed in args.clean_seeds
                   for r in clean_rises(simulated, seed, args.clean_days))
    print(f"Clean pair-days: {len(clean)} (seeds {' '.join(map(str, args.clean_seeds))}, "
          f"{args.clean_days:g} days each); their largest 2-3 h rise of the pair's ratio: "
          + (f"median {statistics.median(clean):.3f}, largest {clean[-1]:.3f}"
             if clean else "none") + "\n")
    print("| run | drift | hours | gain at its end | rise of the ratio (log) | the pair's own "
          "change there | found | clean pair-days rising as much |")
    print("|---|---|---|---|---|---|---|---|")
    for seed in args.seeds:
        for m in drift_margins(city, simulated, seed, args.hours):
            e = m.event
            hours = (e.end_s - e.start_s) / 3600
            gain = math.log1p(e.params["pct_per_h"] / 100 * hours)
            rise = "-" if m.rise is None else f"{m.rise.value:.3f}"
            own = "-" if m.own is None else f"{m.own:+.3f}"
            reached = "-" if m.rise is None else str(sum(r >= m.rise.value for r in clean))
            print(f"| {seed} | {e.site}/{e.node}/{e.sensor} | {hours:.2f} | {_pct(gain)} "
                  f"| {rise} | {own} | {'yes' if m.found else 'MISSED'} | {reached} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
