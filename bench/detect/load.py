"""`python -m bench.detect.load`: what a detector loaded from its snapshot costs, against
the detector it was pickled from (as every detector of a city is loaded after a restart).

    python -m bench.detect.load [--settings default traffic] [--at 0.05 0.3 1.0] [--repeat 5]

Each NAB file goes through a fresh detector of each setting up to each split (a share of its
rows); the detector is pickled and loaded `--repeat` times. Printed per setting: the CPU of
one `pickle.loads` (`time.process_time`, the least of the repeats of each, then the median
and most over the files and splits), the size in memory (as `python -m bench.detect.memory`
counts it) of the most a loaded one holds and of the detector it was pickled from, on how
many it is larger and by at most how much, and on how many the loaded one pickles other
bytes; and on how many detectors pickling them made them larger (measured before and after
`pickle.dumps`), by at most how much. To compare two trees, run this file by path with the
tree first on the path (`PYTHONPATH=/tmp/wt-x .venv/bin/python bench/detect/load.py`
against `PYTHONPATH=.`).
"""

from __future__ import annotations

import argparse
import pickle
import statistics
import time
from datetime import UTC

from bench.detect.memory import deep_size, shared_objects
from bench.nab.corpus import corpus_or_say
from cloud.detect.profiles import detector_by_name
from urbanpulse.clock import to_epoch_ns


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.detect.load", description=__doc__)
    parser.add_argument("--settings", nargs="*", default=["default", "traffic"])
    parser.add_argument("--at", nargs="*", type=float, default=[0.05, 0.3, 1.0])
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args(argv)
    corpus = corpus_or_say()
    if corpus is None:
        return 2
    for name in args.settings:  # the caches detectors fill, before the shared part
        detector_by_name(name).update(0, 0.0)
    _, shared = shared_objects()
    for name in args.settings:
        cpu: list[float] = []
        most = (0, 0, "")
        larger, over, other_bytes = 0, 0, 0
        grew, grown = 0, 0
        for f in corpus:
            stamps = [to_epoch_ns(ts.replace(tzinfo=UTC)) for ts in f.timestamps]
            for at in args.at:
                k = int(len(stamps) * at)
                detector = detector_by_name(name)
                for ts, value in zip(stamps[:k], f.values[:k], strict=True):
                    detector.update(ts, value)
                made = deep_size(detector, shared)
                blob = pickle.dumps(detector)
                times = []
                for _ in range(args.repeat):
                    start = time.process_time()
                    loaded = pickle.loads(blob)
                    times.append(time.process_time() - start)
                cpu.append(min(times))
                fresh, size = deep_size(detector, shared), deep_size(loaded, shared)
                if fresh != made:
                    grew += 1
                    grown = max(grown, fresh - made)
                most = max(most, (size, fresh, f"{f.key} at {at:.0%}"))
                if size > fresh:
                    larger += 1
                    over = max(over, size - fresh)
                other_bytes += pickle.dumps(loaded) != blob
        print(f"{name}: {len(cpu)} detectors loaded, CPU per load median "
              f"{statistics.median(cpu) * 1e3:.2f} ms, most {max(cpu) * 1e3:.2f} ms")
        print(f"  most in memory once loaded: {most[0]:,} bytes ({most[2]}; pickled from one of"
              f" {most[1]:,}); larger than that one on {larger} (by at most {over:,} bytes);"
              f" pickled again to other bytes on {other_bytes}")
        print(f"  larger once pickled on {grew} of {len(cpu)} (by at most {grown:,} bytes)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
