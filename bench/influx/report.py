"""Per-variant figures over the rounds: min, median and mean (total CPU over total points)."""

from __future__ import annotations

import json
import statistics
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

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
    paired: float | None  # median over rounds of this round's cost / base's in the same round
    peak_rss_mb: float | None  # influxd's VmHWM after the last round: its peak over the run
    rss_mb: float | None  # median over rounds of VmRSS once idle after the round
    anon_rss_mb: float | None  # the same for RssAnon (Go's heap, mostly)

    def vs(self, base: Summary) -> tuple[float, float]:
        """Median and mean relative to `base` (1.0: the same cost)."""
        return self.influxd_median / base.influxd_median, self.influxd_mean / base.influxd_mean


def _paired(runs: list[Sample], base: dict[int, Sample]) -> float | None:
    ratios = [s.influxd_per_100k / base[s.round].influxd_per_100k for s in runs
              if s.round in base and base[s.round].influxd_cpu_s > 0]
    return statistics.median(ratios) if ratios else None


def _mb(values: list[int | None], pick: Callable[[list[int]], float]) -> float | None:
    known = [v for v in values if v is not None]
    return pick(known) / 1024 if known else None


def summarise(samples: list[Sample]) -> list[Summary]:
    by_variant: dict[str, list[Sample]] = {}
    for s in samples:
        by_variant.setdefault(s.variant, []).append(s)
    base = {s.round: s for s in by_variant.get("base", [])}
    out = []
    for name, runs in by_variant.items():
        out.append(Summary(
            name, len(runs), runs[0].points,
            min(s.influxd_per_100k for s in runs),
            statistics.median(s.influxd_per_100k for s in runs),
            sum(s.influxd_cpu_s for s in runs) / sum(s.points for s in runs) * 100_000,
            statistics.median(s.client_per_100k for s in runs),
            statistics.median(s.rate for s in runs), _paired(runs, base),
            _mb([s.peak_rss_kb for s in runs], max),
            _mb([s.rss_kb for s in runs], statistics.median),
            _mb([s.anon_rss_kb for s in runs], statistics.median)))
    return out


def _fmt_mb(value: float | None) -> str:
    return "-" if value is None else f"{value:,.0f}"



def table(summaries: list[Summary]) -> str:
    base = next((s for s in summaries if s.variant == "base"), None)
    head = ("| variant | points/round | influxd CPU s per 100k points: min / median / mean "
            "| vs base: medians, means, paired | client CPU s per 100k | write rate points/s "
            "| influxd peak RSS MB (VmHWM) | RSS MB after a round, median (anon) |")
    rows = [head, "|" + "---|" * 8]
    for s in sorted(summaries, key=lambda s: (s.variant != "base", s.variant)):
        ratio = "" if base is None else "{:.2f}, {:.2f}".format(*s.vs(base))
        if s.paired is not None:
            ratio += f", {s.paired:.2f}"
        rows.append(f"| {s.variant} | {s.points:,} | {s.influxd_min:.3f} / {s.influxd_median:.3f} / "
                    f"{s.influxd_mean:.3f} | {ratio} | {s.client_median:.3f} | {s.rate_median:,.0f} "
                    f"| {_fmt_mb(s.peak_rss_mb)} | {_fmt_mb(s.rss_mb)} ({_fmt_mb(s.anon_rss_mb)}) |")
    return "\n".join(rows)


def rss_table(samples: list[Sample]) -> str:
    """influxd's memory per variant and round: peak so far (VmHWM) / resident once idle
    (VmRSS), MB; "-" where a sample has none."""
    rounds = sorted({s.round for s in samples})
    cells: dict[str, dict[int, str]] = {}
    for s in samples:
        peak = None if s.peak_rss_kb is None else s.peak_rss_kb / 1024
        now = None if s.rss_kb is None else s.rss_kb / 1024
        cells.setdefault(s.variant, {})[s.round] = f"{_fmt_mb(peak)} / {_fmt_mb(now)}"
    head = "| variant | " + " | ".join(f"round {r}: peak / RSS MB" for r in rounds) + " |"
    rows = [head, "|" + "---|" * (len(rounds) + 1)]
    for name in sorted(cells, key=lambda n: (n != "base", n)):
        rows.append(f"| {name} | " + " | ".join(cells[name].get(r, "") for r in rounds) + " |")
    return "\n".join(rows)


def main(argv: list[str]) -> int:
    """`python -m bench.influx.report SAMPLES.json`: the table of a run's --out file."""
    if len(argv) != 1:
        print("usage: python -m bench.influx.report SAMPLES.json", file=sys.stderr)
        return 2
    try:
        rows = json.loads(Path(argv[0]).read_text())
        samples = [Sample(**row) for row in rows]
    except (OSError, ValueError, TypeError) as exc:
        print(f"cannot read samples from {argv[0]}: {exc}", file=sys.stderr)
        return 1
    print(table(summarise(samples)))
    print()
    print(rss_table(samples))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
