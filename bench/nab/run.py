"""Run our streaming detector over the NAB data and score it as NAB does.

    python -m bench.nab.run [--detector NAME] [--fixed-threshold X] [--write DIR]

By default (`--detector by-kind`) each file gets the detector its sensor kind would get
in the dataflow: NAB's realTraffic files are road sensors, scored with the `traffic`
settings of `traffic.loop`; every other category with the `default` settings. One
threshold is still tuned over the whole corpus, as NAB does. `--detector NAME` runs
one named detector on every file.

Prints, per profile, the score at NAB's corpus-optimal threshold (tuned with the
labels, as every published NAB figure is) and at a fixed threshold chosen without
labels, overall and per category, beside the published detectors; then the cost per
value and the largest pickled detector state.
"""

from __future__ import annotations

import argparse
import csv
import pickle
import sys
import time
from collections import defaultdict
from datetime import UTC
from pathlib import Path

import numpy as np

from bench.nab.corpus import NabFile, corpus_or_say
from bench.nab.published import PUBLISHED
from bench.nab.scoring import PROFILES, normalised, score_file, sweep
from cloud.detect.profiles import detector_by_name
from urbanpulse.clock import to_epoch_ns

BY_KIND = "by-kind"
# NAB category -> the detector of the sensor kind it stands for (others: "default").
KIND_OF_CATEGORY = {"realTraffic": "traffic"}


def detector_for(f: NabFile, choice: str) -> str:
    """The detector name a file is scored with under `--detector choice`."""
    if choice == BY_KIND:
        return KIND_OF_CATEGORY.get(f.category, "default")
    return choice


def run_detector(f: NabFile, detector_name: str) -> tuple[np.ndarray, float, int]:
    """Scores of one file, seconds spent in update(), and the final pickled state size."""
    detector = detector_by_name(detector_for(f, detector_name))
    stamps = [to_epoch_ns(ts.replace(tzinfo=UTC)) for ts in f.timestamps]
    scores = np.empty(len(f.values))
    start = time.perf_counter()
    for i, (ts, value) in enumerate(zip(stamps, f.values, strict=True)):
        scores[i] = detector.update(ts, value)
    spent = time.perf_counter() - start
    return scores, spent, len(pickle.dumps(detector))


def score_table(
    corpus: list[NabFile], scores: list[np.ndarray], threshold: float | None
) -> dict[str, dict[str, tuple[float, float, int, int, int]]]:
    """profile -> group -> (NAB score, threshold, windows hit, windows, FP rows)."""
    table: dict[str, dict[str, tuple[float, float, int, int, int]]] = {}
    for name, profile in PROFILES.items():
        pairs = [(f.labels, s) for f, s in zip(corpus, scores, strict=True)]
        th = sweep(pairs, profile)[0] if threshold is None else threshold
        groups: dict[str, list[float]] = defaultdict(lambda: [0.0, 0, 0, 0])
        for f, s in zip(corpus, scores, strict=True):
            fs = score_file(f.labels, s, th, profile)
            for group in ("all", f.category):
                g = groups[group]
                g[0] += fs.raw
                g[1] += len(f.labels.windows)
                g[2] += fs.detected_windows
                g[3] += fs.fp
        table[name] = {
            group: (
                normalised(raw, int(nw), profile) if nw else float("nan"),
                th,
                int(hit),
                int(nw),
                int(fp),
            )
            for group, (raw, nw, hit, fp) in sorted(groups.items())
        }
    return table


def _print_table(title: str, table: dict[str, dict[str, tuple[float, float, int, int, int]]]) -> None:
    print(f"\n{title}")
    names = list(PROFILES)
    print(f"  {'files':<24}" + "".join(f"{n:>20}" for n in names) + "   windows hit, FP rows (std)")
    for group in table["standard"]:
        cells = "".join(f"{table[n][group][0]:>20.1f}" for n in names)
        _, _, hit, nw, fp = table["standard"][group]
        print(f"  {group:<24}{cells}   {hit}/{nw}, {fp}")
    print("  thresholds: " + ", ".join(f"{n} {table[n]['all'][1]:.4f}" for n in names))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.nab.run", description=__doc__)
    parser.add_argument(
        "--detector",
        default=BY_KIND,
        help=f"a detector name, or {BY_KIND!r}: realTraffic with 'traffic', the rest 'default'",
    )
    parser.add_argument(
        "--fixed-threshold",
        type=float,
        default=None,
        help="the label-free threshold to report (default: the detector's own threshold)",
    )
    parser.add_argument("--write", type=Path, help="write each file's scores into this folder")
    args = parser.parse_args(argv)
    corpus = corpus_or_say()
    if corpus is None:
        return 2
    scores: list[np.ndarray] = []
    spent = 0.0
    biggest = 0
    for f in corpus:
        s, seconds, size = run_detector(f, args.detector)
        scores.append(s)
        spent += seconds
        biggest = max(biggest, size)
        if args.write:
            out = args.write / f.key
            out.parent.mkdir(parents=True, exist_ok=True)
            with out.open("w", newline="") as fh:
                w = csv.writer(fh, lineterminator="\n")
                w.writerow(["timestamp", "value", "anomaly_score"])
                for ts, v, a in zip(f.timestamps, f.values, s, strict=True):
                    w.writerow([ts.isoformat(sep=" "), v, repr(float(a))])
    rows = sum(len(f.values) for f in corpus)
    fixed = args.fixed_threshold
    if fixed is None:
        names = {detector_for(f, args.detector) for f in corpus}
        thresholds = {detector_by_name(name).threshold for name in names}
        if len(thresholds) != 1:
            print(f"detectors {sorted(names)} differ in threshold: give --fixed-threshold",
                  file=sys.stderr)
            return 2
        fixed = thresholds.pop()

    print(f"NAB v1.1 scoring, {len(corpus)} files, {rows} rows, "
          f"{sum(len(f.labels.windows) for f in corpus)} windows, detector {args.detector!r}")
    tuned = score_table(corpus, scores, None)
    _print_table("Threshold tuned as NAB does (corpus sweep with the labels, per profile):", tuned)
    _print_table(f"Fixed threshold {fixed} chosen without labels:", score_table(corpus, scores, fixed))

    print("\nPublished detectors on the same files (standard / low FP / low FN):")
    print(f"  {'detector':<22}{'all provided files':>22}{'realTraffic':>22}")
    ours_all = [tuned[n]["all"][0] for n in PROFILES]
    ours_traffic = [tuned[n]["realTraffic"][0] for n in PROFILES]
    lines = [(name, list(a), list(t)) for name, (a, t) in PUBLISHED.items()]
    lines.append(("urbanpulse (this)", ours_all, ours_traffic))
    for name, a, t in sorted(lines, key=lambda x: -x[1][0]):
        fa = " / ".join(f"{x:.1f}" for x in a)
        ft = " / ".join(f"{x:.1f}" for x in t)
        print(f"  {name:<22}{fa:>22}{ft:>22}")
    print(f"\ncost: {spent / rows * 1e6:.1f} us per value (update() only, one core); "
          f"largest pickled detector state: {biggest} bytes")
    return 0


if __name__ == "__main__":
    sys.exit(main())
