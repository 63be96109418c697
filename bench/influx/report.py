"""Per-variant figures over the rounds: min, median and mean (total CPU over total points)."""

from __future__ import annotations

import statistics
from dataclasses import dataclass

from bench.influx.measure import Sample


@dataclass(frozen=True)
class Summary:
    variant: str
    rounds: int
    points: int  # per round
    influxd_min: float  # CPU s per 100,000 points
    influxd_median: float
    influxd_mean: float
    client_median: float  # CPU s per 100,000 points
    rate_median: float  # points/s

    def vs(self, base: Summary) -> tuple[float, float]:
        """Median and mean relative to `base` (1.0: the same cost)."""
        return self.influxd_median / base.influxd_median, self.influxd_mean / base.influxd_mean


def summarise(samples: list[Sample]) -> list[Summary]:
    by_variant: dict[str, list[Sample]] = {}
    for s in samples:
        by_variant.setdefault(s.variant, []).append(s)
    out = []
    for name, runs in by_variant.items():
        out.append(Summary(
            name, len(runs), runs[0].points,
            min(s.influxd_per_100k for s in runs),
            statistics.median(s.influxd_per_100k for s in runs),
            sum(s.influxd_cpu_s for s in runs) / sum(s.points for s in runs) * 100_000,
            statistics.median(s.client_per_100k for s in runs),
            statistics.median(s.rate for s in runs)))
    return out


def table(summaries: list[Summary]) -> str:
    base = next((s for s in summaries if s.variant == "base"), None)
    head = ("| variant | points/round | influxd CPU s per 100k points: min / median / mean "
            "| vs base (median, mean) | client CPU s per 100k | write rate points/s |")
    rows = [head, "|" + "---|" * 6]
    for s in summaries:
        ratio = "" if base is None else "{:.2f}, {:.2f}".format(*s.vs(base))
        rows.append(f"| {s.variant} | {s.points:,} | {s.influxd_min:.3f} / {s.influxd_median:.3f} / "
                    f"{s.influxd_mean:.3f} | {ratio} | {s.client_median:.3f} | {s.rate_median:,.0f} |")
    return "\n".join(rows)
