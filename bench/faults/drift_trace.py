"""Bin by bin, what the pair drift rule saw of each drift of the fault bench's runs.

    python -m bench.faults.drift_trace [--seeds 5 6 7 8] [--hours 12] [--all]
                                       [--before 1.5] [--after 0.75]

For each drift of `bench.faults.run`'s runs (the same faults, anomalies, history and
paired city; the missed ones only, unless `--all`), the judged 15-min bins of its pair
(`cloud/detect/pair_drift.py`) from `--before` hours before the drift began to `--after`
hours after it ended: the pair's log ratio r, the same bin's ratio in the run simulated
again without that drift (the pair's own ratio; r less it is the drift's own part), the
usual ratio, the deviation d of the window ending there (`window_deviation`) and the
threshold. Then a summary: the largest d within the fault and its grace, the threshold
there, and that window's d taken apart: the drift's own part (the mean of r less the
pair's own ratio over its bins) and the pair's own departure from its usual ratio (the
mean of the pair's own ratio less the usual: the modules' wander, and the usual's lag
behind it, since it follows the pair with a delay).

A missed drift is then too small by its end (its own part under the threshold), or held
under it by the pair's own departure against it.
"""

from __future__ import annotations

import argparse
import math
import sys
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import timedelta

from bench.faults.drift_margin import bin_ratios, drift_field, pair_readings
from bench.faults.plan import GRACE_S
from bench.faults.run import ANOMALIES, run_seed
from cloud.detect.drift import CityDrift
from cloud.detect.pair_drift import (
    BIN_CLIP,
    PairDeviation,
    PairDrift,
    PairDriftSettings,
    PairKey,
    _Pair,
    window_deviation,
)
from urbanpulse.simulate import City, Simulation
from urbanpulse.simulate.module_pairs import with_module_pairs
from urbanpulse.simulate.scenario import merge_events, plan_events
from urbanpulse.simulate.simulation import DEFAULT_START


@dataclass(frozen=True, slots=True)
class Judged:
    """One bin of a pair as the rule judged it."""

    index: int  # the bin (epoch s / bin_s)
    ratio: float  # r: log(first module's median) - log(second's)
    usual: float
    d: float | None  # the window's deviation; None while the rule learns or the window is short
    limit: float  # the threshold d was judged against
    fired: bool  # the rule raised the pair's drift on this bin


class TracedPairDrift(PairDrift):
    """The pair rule, unchanged, keeping every judged bin of every pair (`trace`, keyed by
    station and field and the pair's first module)."""

    def __init__(self, settings: PairDriftSettings | None = None) -> None:
        super().__init__(settings)
        self.trace: dict[tuple[PairKey, str], list[Judged]] = defaultdict(list)

    def _ratio(self, key: PairKey, pair: _Pair, index: int, ratio: float
               ) -> PairDeviation | None:
        s = self.settings
        judging = pair.scaled >= s.learn_bins  # the rule's own state before this bin
        limit = max(s.shift, s.spread * pair.scale)
        found = super()._ratio(key, pair, index, ratio)
        window = [r for _, r in pair.recent]
        full = pair.learnt >= s.learn_bins and len(window) == s.smooth_bins
        d = window_deviation(window, pair.usual, BIN_CLIP * limit) if judging and full else None
        self.trace[(key, pair.modules[0])].append(
            Judged(index, ratio, pair.usual, d, limit, found is not None))
        return found


@dataclass(frozen=True, slots=True)
class Summary:
    """The window of a drift's largest d, its d taken apart: the drift's own part (its
    ratios less the pair's own) plus the pair's own departure (the pair's own ratios, as
    without the drift, less the usual ratio: its wander, and the usual's lag behind it).
    With a clipped bin the two add up to more than d."""

    peak: Judged | None  # the bin of the largest d (in the drift's sign) within the window
    own_part: float | None
    pair_departure: float | None


def summarise(rows: Sequence[Judged], alone: Mapping[int, float], first: int, last: int,
              sign: int, smooth_bins: int) -> Summary:
    """For the drift whose bins are `first`..`last` (its grace included), of sign `sign`:
    the window of the largest d there, taken apart (`alone`: the pair's ratios in the
    run without the drift)."""
    inside = [j for j in rows if first <= j.index <= last and j.d is not None]
    peak = max(inside, key=lambda j: (j.d or 0.0) * sign, default=None)
    if peak is None:
        return Summary(None, None, None)
    by_index = {j.index: j.ratio for j in rows}
    bins = [i for i in range(peak.index - smooth_bins + 1, peak.index + 1)
            if i in by_index and i in alone]
    if len(bins) < smooth_bins:
        return Summary(peak, None, None)
    part = sum(by_index[i] - alone[i] for i in bins) / smooth_bins
    return Summary(peak, part, sum(alone[i] for i in bins) / smooth_bins - peak.usual)


def _signed(x: float | None, digits: int = 3) -> str:
    return "-" if x is None else f"{x:+.{digits}f}"


def trace_seed(city: City, simulated: City, seed: int, hours: float, every: bool,
               before_h: float, after_h: float) -> list[str]:
    """The report's lines for the drifts of one seed's run."""
    pairs = TracedPairDrift()
    drift = CityDrift()
    drift.pairs = pairs
    result, *_ = run_seed(city, seed, hours, 60.0, simulated=simulated, drift=drift)
    anomalies = plan_events(city, seed, hours, anomalies=ANOMALIES)
    start = DEFAULT_START + timedelta(hours=6 * (seed - 1))
    planned = [o.planned.event for o in result.outcomes]
    bin_s = pairs.settings.bin_s
    t0 = start.timestamp()
    lines: list[str] = []
    for o in result.outcomes:
        e = o.planned.event
        if e.type != "drift" or e.site is None or e.node is None or e.sensor is None:
            continue
        found = bool(o.detections)
        if found and not every:
            continue
        name = drift_field(simulated, e.site, e.node, e.sensor)
        without = Simulation(simulated, seed=seed, start=start, events=merge_events(
            anomalies, [x for x in planned if x is not e]))
        alone = bin_ratios(*pair_readings(without, hours, e.site, e.node, e.sensor, name))
        rows = pairs.trace.get(((e.site, e.node, name), e.sensor), [])
        first = math.floor((t0 + e.start_s) / bin_s)
        last = math.floor((t0 + e.end_s + GRACE_S) / bin_s) - 1  # the last bin closed by then
        rate = e.params["pct_per_h"]
        sign = 1 if rate >= 0 else -1
        length = (e.end_s - e.start_s) / 3600
        summary = summarise(rows, alone, first, last, sign, pairs.settings.smooth_bins)
        lines.append(f"run {seed}: {e.site}/{e.node}/{e.sensor} ({name}) "
                     f"{e.start_s / 3600:.2f}-{e.end_s / 3600:.2f} h, {length:.2f} h at "
                     f"{rate:+g} %/h (x{1 + rate / 100 * length:.3f} at its end): "
                     f"{'found' if found else 'MISSED'}")
        lines.append("| bin (h) | r | r without the drift | usual | d | threshold | |")
        lines.append("|---|---|---|---|---|---|---|")
        lo = t0 + e.start_s - before_h * 3600
        hi = t0 + e.end_s + after_h * 3600
        for j in rows:
            if not lo <= j.index * bin_s <= hi:
                continue
            mark = "fault" if first <= j.index <= math.floor((t0 + e.end_s) / bin_s) else ""
            mark = "grace" if not mark and first <= j.index <= last else mark
            lines.append(f"| {(j.index * bin_s - t0) / 3600:.2f} | {j.ratio:+.3f} "
                         f"| {_signed(alone.get(j.index))} | {j.usual:+.3f} | {_signed(j.d)} "
                         f"| {j.limit:.3f} | {mark}{' FIRED' if j.fired else ''} |")
        p = summary.peak
        lines.append(
            ("no judged window within the fault" if p is None else
             f"largest d {p.d:+.3f} (threshold {p.limit:.3f}) in the window ending at "
             f"{(p.index * bin_s - t0) / 3600:.2f} h")
            + f": the drift's own part {_signed(summary.own_part)}, the pair's own "
              f"departure from its usual ratio {_signed(summary.pair_departure)}\n")
    return lines


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.faults.drift_trace",
                                     description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=[5, 6, 7, 8])
    parser.add_argument("--hours", type=float, default=12.0)
    parser.add_argument("--all", action="store_true", help="every drift, found ones too")
    parser.add_argument("--before", type=float, default=1.5,
                        help="hours of bins shown before a drift begins")
    parser.add_argument("--after", type=float, default=0.75,
                        help="hours of bins shown after a drift ends")
    args = parser.parse_args(argv)
    if args.hours < 4 or args.before < 0 or args.after < 0:
        parser.error("--hours must be at least 4, --before and --after not negative")
    city = City.load()
    simulated = with_module_pairs(city)
    for seed in args.seeds:
        print("\n".join(trace_seed(city, simulated, seed, args.hours, args.all,
                                   args.before, args.after)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
