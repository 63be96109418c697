"""`python -m bench.detect.novelty_cpu --against OTHER/cloud/detect/novelty.py`: the context
novelty's CPU per value, this tree's against another version's, head to head in one run.

Every NAB file's values and their first differences (what the road-traffic profile's second
memory learns) go through a fresh `ContextNovelty` with the default settings, of each
version in turn, `--rounds` times (`time.process_time` around each series' loop); printed:
each round's µs per value, the least of each, and their ratio. The other version is loaded
from its file alone (it imports only `cloud.detect.compat`, taken from this tree), e.g. from
`git show REV:cloud/detect/novelty.py > /tmp/novelty_rev.py`.
"""

from __future__ import annotations

import argparse
import importlib.util
import time
from itertools import pairwise
from pathlib import Path
from types import ModuleType

import cloud.detect.novelty as this_tree
from bench.nab.corpus import corpus_or_say
from cloud.detect.detector import DetectorSettings


def _load(path: Path) -> ModuleType:
    spec = importlib.util.spec_from_file_location("novelty_against", path)
    if spec is None or spec.loader is None:
        raise SystemExit(f"cannot load {path}")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _seconds(module: ModuleType, series: list[list[float]]) -> float:
    s = DetectorSettings()
    spent = 0.0
    for values in series:
        update = module.ContextNovelty(s.levels, s.orders, s.learn, s.coarsen, s.memory_capacity).update
        start = time.process_time()
        for value in values:
            update(value)
        spent += time.process_time() - start
    return spent


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.detect.novelty_cpu", description=__doc__)
    parser.add_argument("--against", type=Path, required=True, help="another version's novelty.py")
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args(argv)
    corpus = corpus_or_say()
    if corpus is None:
        return 2
    series: list[list[float]] = []
    for f in corpus:
        values = list(f.values)
        series += [values, [0.0] + [b - a for a, b in pairwise(values)]]
    count = sum(len(values) for values in series)
    versions = {"against": _load(args.against), "this tree": this_tree}
    rounds: dict[str, list[float]] = {name: [] for name in versions}
    for _ in range(args.rounds):
        for name, module in versions.items():
            rounds[name].append(_seconds(module, series) / count * 1e6)
    for name, spent in rounds.items():
        print(f"  {name:>9}: {' '.join(f'{us:.3f}' for us in spent)} µs per value, least {min(spent):.3f}")
    print(f"  this tree / against (least): {min(rounds['this tree']) / min(rounds['against']):.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
