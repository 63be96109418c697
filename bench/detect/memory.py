"""`python -m bench.detect.memory`: a detector's size in memory and its CPU per value on NAB.

    python -m bench.detect.memory [--settings default traffic] [--repeat 3] [--parts]

Each NAB file goes through a fresh detector of each named setting (`cloud.detect.profiles`,
every file under every setting); at its end the detector's object graph is walked
(`gc.get_referents`) and every object in it counted once by `sys.getsizeof` (an array.array,
a list, a dict with their buffers; a numpy array by its header and its bytes). Objects every
detector shares (reachable from the globals of `cloud.detect`'s modules: the settings, the
tail's -log table) are counted apart, once, and printed beside; the sizes are given without
them and with them. Printed: least, median and most in memory and pickled (`pickle.dumps`),
over all files and settings, and the largest under each setting; with `--parts`, the largest
detector attribute by attribute.

Then the CPU: `update()` over the whole corpus, each file through a fresh detector of the
setting its sensor kind gets (`bench.nab.run`'s `by-kind`), timed (`time.process_time`
around the loop of each file, CPU time), `--repeat` passes; printed per value, min and max. And a
digest of every score of every run but the timed passes after the first (float64 bytes, in
order), the same for two versions of the detector that score bit for bit the same, and one
of the sized detectors' pickles (the same for two that also snapshot the same bytes).

To compare two trees head to head, run this file by path with the tree first on the path:
`PYTHONPATH=/tmp/wt-x .venv/bin/python bench/detect/memory.py` against `PYTHONPATH=.`.
"""

from __future__ import annotations

import argparse
import gc
import hashlib
import pickle
import statistics
import sys
import time
import types
from collections.abc import Iterable
from datetime import UTC
from typing import Any

import numpy as np

from bench.nab.corpus import NabFile, corpus_or_say
from cloud.detect.detector import AnomalyDetector
from cloud.detect.profiles import detector_by_name
from urbanpulse.clock import to_epoch_ns

KIND_OF_CATEGORY = {"realTraffic": "traffic"}  # as bench.nab.run's by-kind
BY_KIND = "by-kind"
_CODE = (type, types.ModuleType, types.FunctionType, types.BuiltinFunctionType,
         types.CodeType, types.MethodType, types.WrapperDescriptorType,
         types.MethodDescriptorType, types.GetSetDescriptorType, types.MemberDescriptorType)


def _walk(roots: Iterable[Any], skip: set[int]) -> tuple[int, set[int]]:
    """Bytes of every object reachable from `roots` and not in `skip` (code not followed)."""
    seen: set[int] = set()
    total = 0
    stack = list(roots)
    while stack:
        obj = stack.pop()
        key = id(obj)
        if key in seen or key in skip or isinstance(obj, _CODE):
            continue
        seen.add(key)
        if isinstance(obj, np.ndarray):
            total += sys.getsizeof(obj) + (obj.nbytes if obj.base is not None else 0)
            continue
        total += sys.getsizeof(obj)
        stack.extend(gc.get_referents(obj))
    return total, seen


def shared_objects() -> tuple[int, set[int]]:
    """Bytes and ids of what every detector shares: reachable from cloud.detect's globals."""
    modules = [m for name, m in sys.modules.items() if name.startswith("cloud.detect")]
    return _walk((value for m in modules for value in vars(m).values()), set())


def deep_size(obj: Any, skip: set[int]) -> int:
    return _walk([obj], skip)[0]


def _stamps(f: NabFile) -> list[int]:
    return [to_epoch_ns(ts.replace(tzinfo=UTC)) for ts in f.timestamps]


def run(f: NabFile, stamps: list[int], name: str) -> tuple[AnomalyDetector, np.ndarray, float]:
    detector = detector_by_name(name)
    update = detector.update
    scores = np.empty(len(f.values))
    start = time.process_time()
    for i, (ts, value) in enumerate(zip(stamps, f.values, strict=True)):
        scores[i] = update(ts, value)
    return detector, scores, time.process_time() - start


def _kb(n: float) -> str:
    return f"{n / 1000:.1f}"


def _print_sizes(in_memory: list[int], pickled: list[int], top: tuple[int, int, str, str],
                 shared: int) -> None:
    least, median, most = in_memory[0], statistics.median(in_memory), in_memory[-1]
    print(f"  in memory (KB, least/median/most): {_kb(least)} / {_kb(median)} / {_kb(most)}"
          f"   with the shared objects ({_kb(shared)} KB): {_kb(least + shared)} / "
          f"{_kb(median + shared)} / {_kb(most + shared)}")
    print(f"  pickled   (KB, least/median/most): {_kb(pickled[0])} / "
          f"{_kb(statistics.median(pickled))} / {_kb(pickled[-1])}")
    print(f"  largest in memory: {top[3]} ({top[2]}), {_kb(top[0])} KB, pickled {_kb(top[1])} KB")


def _print_largest_by_setting(sizes: list[tuple[int, int, str, str]]) -> None:
    for name in sorted({s[2] for s in sizes}):
        size, pickled, _, key = max(s for s in sizes if s[2] == name)
        print(f"    {name}: {_kb(size)} KB ({key}), pickled {_kb(pickled)} KB")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.detect.memory", description=__doc__)
    parser.add_argument("--settings", nargs="*", default=["default", "traffic"],
                        help=f"the settings sized, or {BY_KIND!r} (none: the CPU only)")
    parser.add_argument("--repeat", type=int, default=3, help="timed passes over the corpus")
    parser.add_argument("--parts", action="store_true", help="the largest detector by attribute")
    args = parser.parse_args(argv)
    corpus = corpus_or_say()
    if corpus is None:
        return 2
    stamps = [_stamps(f) for f in corpus]
    digest = hashlib.sha256()
    states = hashlib.sha256()
    by_kind = [KIND_OF_CATEGORY.get(f.category, "default") for f in corpus]
    for name in {*by_kind, *args.settings} - {BY_KIND}:  # the caches detectors fill made first
        run(corpus[0], stamps[0], name)
    shared_bytes, shared = shared_objects()
    sizes: list[tuple[int, int, str, str]] = []  # (in memory, pickled, setting, file)
    largest: tuple[int, AnomalyDetector | None] = (-1, None)
    for setting in args.settings:
        for f, st, kind in zip(corpus, stamps, by_kind, strict=True):
            name = kind if setting == BY_KIND else setting
            detector, scores, _ = run(f, st, name)
            digest.update(scores.tobytes())
            size = deep_size(detector, shared)
            state = pickle.dumps(detector)
            states.update(state)
            sizes.append((size, len(state), name, f.key))
            if size > largest[0]:
                largest = (size, detector)
            del detector
    in_memory = sorted(s[0] for s in sizes)
    pickled = sorted(s[1] for s in sizes)
    print(f"{len(corpus)} NAB files x settings {args.settings}: {len(sizes)} detectors")
    if sizes:
        _print_sizes(in_memory, pickled, max(sizes), shared_bytes)
        _print_largest_by_setting(sizes)
    if args.parts and largest[1] is not None:
        detector = largest[1]
        for attr in sorted(vars(detector) if hasattr(detector, "__dict__") else ()):
            print(f"    {attr:<16} {_kb(deep_size(getattr(detector, attr), shared)):>8} KB")
    rows = sum(len(f.values) for f in corpus)
    passes: list[float] = []
    for i in range(args.repeat):
        spent = 0.0
        for f, st, name in zip(corpus, stamps, by_kind, strict=True):
            _, scores, seconds = run(f, st, name)
            spent += seconds
            if i == 0:
                digest.update(scores.tobytes())
        passes.append(spent)
    print(f"  update() by kind, {rows} values: {min(passes) / rows * 1e6:.2f} - "
          f"{max(passes) / rows * 1e6:.2f} µs per value over {args.repeat} passes")
    print(f"  scores digest: {digest.hexdigest()[:16]}, pickled states digest: "
          f"{states.hexdigest()[:16]}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
