"""`python -m bench.detect.road_upgrade`: road detectors made with the settings of before
session 17, loaded by today's code (which moves them to today's, `AnomalyDetector.narrow`),
against detectors made with today's settings, on every NAB file.

    python -m bench.detect.road_upgrade [--at 0.3 0.6 0.9] [--categories realTraffic ...]

For each file and each split (a share of its rows): a detector of the old road settings
and one of today's are fed the rows before it; the old one is pickled and loaded. Printed
per split: on how many files the loaded one holds the same tails, values' memory and
difference memory as today's (the difference memory: the same contexts in the same
order), and, fed the rows after, how many of its scores differ from today's (and how many
of them in the first `refractory` rows), the largest difference, the rows where one
reaches 0.80 and the other does not, and on how many files everything it holds is the same
at the end (the seasonal distances' ring aside: the same values, laid from another slot
when it was full). Then the size in memory at the end of
each file (as `python -m bench.detect.memory` counts it): the old detector, the same
loaded, and today's (made fresh, not loaded).
"""

from __future__ import annotations

import argparse
import pickle
from datetime import UTC
from typing import Any

from bench.detect.memory import deep_size, shared_objects
from bench.nab.corpus import load_corpus, nab_dir
from cloud.detect.detector import AnomalyDetector
from cloud.detect.profiles import ROAD_TRAFFIC, ROAD_TRAFFIC_BEFORE_17
from cloud.detect.tail import TailHistory
from urbanpulse.clock import to_epoch_ns

FIXED = 0.80
REFRACTORY = ROAD_TRAFFIC.refractory  # the rows whose scores the old last scores decide


def _tail(tail: TailHistory | None) -> Any:
    return None if tail is None else (bytes(tail._values), tail._next, len(tail))


def _parts(detector: AnomalyDetector, ring_layout: bool = True) -> dict[str, Any]:
    state = detector.__getstate__()
    out: dict[str, Any] = {k: pickle.dumps(v) for k, v in state.items()}
    for name in ("_value_tail", "_jump_tail", "_mean_tail"):
        out[name] = _tail(state[name])
    season = state["_season"].__getstate__()
    residuals = season.pop("_residuals")
    kept = None if residuals is None else sorted(residuals._values[: len(residuals)])
    out["_season"] = (pickle.dumps(season), _tail(residuals) if ring_layout else kept)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--at", type=float, nargs="+", default=[0.3, 0.6, 0.9])
    parser.add_argument("--categories", nargs="*", default=None)
    args = parser.parse_args(argv)
    files = load_corpus(nab_dir(), set(args.categories) if args.categories else None)
    AnomalyDetector(ROAD_TRAFFIC).update(0, 0.0)  # the caches detectors fill, before the shared part
    AnomalyDetector(ROAD_TRAFFIC_BEFORE_17).update(0, 0.0)
    _, shared = shared_objects()
    sizes: list[tuple[int, int, int, str]] = []
    for at in args.at:
        same = {"tails": 0, "values' memory": 0, "difference memory": 0, "all at the end": 0}
        differing = compared = early = 0
        forgot: list[str] = []
        largest = 0.0
        flips: list[str] = []
        for f in files:
            stamps = [to_epoch_ns(ts.replace(tzinfo=UTC)) for ts in f.timestamps]
            k = int(len(stamps) * at)
            old, today = AnomalyDetector(ROAD_TRAFFIC_BEFORE_17), AnomalyDetector(ROAD_TRAFFIC)
            for ts, v in zip(stamps[:k], f.values[:k], strict=True):
                old.update(ts, v)
                today.update(ts, v)
            loaded = pickle.loads(pickle.dumps(old))
            a, b = _parts(loaded), _parts(today)
            same["tails"] += all(a[n] == b[n] for n in ("_value_tail", "_jump_tail", "_mean_tail"))
            same["values' memory"] += a["_novelty"] == b["_novelty"]
            if a["_differences"] == b["_differences"]:
                same["difference memory"] += 1
            else:
                forgot.append(f.key)
            for i, (ts, v) in enumerate(zip(stamps[k:], f.values[k:], strict=True)):
                x, y = loaded.update(ts, v), today.update(ts, v)
                compared += 1
                if x != y:
                    differing += 1
                    early += i < REFRACTORY
                    largest = max(largest, abs(x - y))
                    if (x >= FIXED) != (y >= FIXED):
                        flips.append(f"{f.key} row {k + i}: {x:.3f} / {y:.3f}")
            same["all at the end"] += _parts(loaded, False) == _parts(today, False)
            if at == args.at[-1]:
                for ts, v in zip(stamps[k:], f.values[k:], strict=True):
                    old.update(ts, v)
                sizes.append((deep_size(old, shared), deep_size(loaded, shared),
                              deep_size(today, shared), f.key))
        print(f"split at {at:.0%} of each of {len(files)} files: the same as today's "
              + ", ".join(f"{n} {c}" for n, c in same.items()))
        print(f"  rows after: {differing} of {compared:,} scores differ (largest by {largest:.3f});"
              f" {early} of them in the first {REFRACTORY} rows; across {FIXED:.2f}: {len(flips)}"
              + "".join(f"\n    {x}" for x in flips))
        if forgot:
            print(f"  difference memory not today's: {', '.join(forgot)}")
    for label, i in (("old settings", 0), ("old, loaded", 1), ("today's", 2)):
        top = max(sizes, key=lambda row: row[i])
        print(f"in memory at the end, {label}: most {top[i]:,} bytes ({top[3]})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
