"""`python -m bench.faults.cost`: CPU per `FaultMonitor.update` on the calls the dataflow makes.

    python -m bench.faults.cost [--readings 100000] [--repeat 5]

The workload `python -m bench.pipeline.stages` times (`bench.pipeline.workload.generate`,
ending at a fixed moment) goes once through the node state with detection on
(`cloud.logic.node.NodeState.process`), and every call the dataflow makes to a
`FaultMonitor` is recorded, in order, with its arguments. The calls are then replayed on
fresh monitors, `--repeat` times, timed (CPU) as a whole: only the fault rules run, none of
the detectors or the node state around them, so their state is warmer in the caches than
in the dataflow (`bench.pipeline.stages` measures them in place). Printed: the calls by
method, the CPU µs per `update` (all calls of the replay, which are nearly all updates,
divided by the updates; min and max over the repeats), the same loop's own cost (a no-op in
place of each call), and a digest of every event the replay raised, the same for two
versions of the rules that raise the same events.
"""

from __future__ import annotations

import argparse
import gc
import hashlib
import sys
import time
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from bench.pipeline.workload import generate
from cloud.detect.faults import FaultEvent, FaultMonitor
from cloud.gc_policy import tune_for_streaming
from cloud.journal import JournalRecord
from cloud.logic.node import NodeState
from cloud.logic.records import decode_record

END = datetime(2024, 5, 1, 12, tzinfo=UTC)  # the workload's fixed end (as the tests')
HORIZON_NS = 6 * 3600 * 1_000_000_000
RECEIVED_STEP_NS = 10_000_000  # as bench.pipeline.stages
RECORDED = ("update", "unjudged", "stamped_before", "node_heartbeat", "tick", "agent_started")

# A recorded call: (monitor number, method name, positional args, keyword args).
Call = tuple[int, str, tuple[Any, ...], dict[str, Any]]


def record(readings: int) -> tuple[list[tuple[str, str, str]], list[Call]]:
    """The monitors the workload's node states made, as (kind, field, sensor) in the order
    made, and every call made to them, in order."""
    workload = generate(readings, now=END)
    received = workload.last_ts_ns
    monitors: list[tuple[str, str, str]] = []
    numbers: dict[int, int] = {}
    calls: list[Call] = []
    originals = {name: getattr(FaultMonitor, name) for name in RECORDED}
    original_init = FaultMonitor.__init__
    original_restarted = FaultMonitor.restarted

    def init(self: FaultMonitor, kind: str, field: str, sensor: str = "",
             settings: Any = None) -> None:
        original_init(self, kind, field, sensor, settings)
        if settings is not None:
            raise SystemExit("a monitor with its own settings: not replayable")
        numbers[id(self)] = len(monitors)
        monitors.append((kind, field, sensor))

    def recorder(name: str) -> Callable[..., Any]:
        method = originals[name]

        def call(self: FaultMonitor, *args: Any, **kwargs: Any) -> Any:
            calls.append((numbers[id(self)], name, args, kwargs))
            return method(self, *args, **kwargs)
        return call

    def restarted(self: FaultMonitor) -> Any:
        raise SystemExit("a numbering restarted: not replayable")

    try:
        FaultMonitor.__init__ = init  # type: ignore[method-assign]
        FaultMonitor.restarted = restarted  # type: ignore[method-assign]
        for name in RECORDED:
            setattr(FaultMonitor, name, recorder(name))
        states: dict[str, NodeState] = {}
        for i, message in enumerate(workload.messages):
            rec = JournalRecord("i0", i + 1, received + i * RECEIVED_STEP_NS, message.topic,
                                message.payload)
            data, _ = decode_record(rec, 4096)
            if data is None:
                continue
            state = states.get(data.key)
            if state is None:
                state = states[data.key] = NodeState(HORIZON_NS, detect=True)
            state.process(data)
            state.take_site_updates()
            state.take_alerts()
    finally:
        FaultMonitor.__init__ = original_init  # type: ignore[method-assign]
        FaultMonitor.restarted = original_restarted  # type: ignore[method-assign]
        for name, method in originals.items():
            setattr(FaultMonitor, name, method)
    return monitors, calls


def bound(monitors: list[tuple[str, str, str]], calls: list[Call]
          ) -> list[tuple[Callable[..., list[FaultEvent]], tuple[Any, ...], dict[str, Any]]]:
    """The calls on fresh monitors, each as (bound method, args, kwargs)."""
    fresh = [FaultMonitor(kind, field, sensor) for kind, field, sensor in monitors]
    return [(getattr(fresh[m], name), args, kwargs) for m, name, args, kwargs in calls]


def replay(todo: list[tuple[Callable[..., list[FaultEvent]], tuple[Any, ...], dict[str, Any]]]
           ) -> tuple[float, list[list[FaultEvent]]]:
    """CPU seconds of the calls, and what each returned."""
    out: list[list[FaultEvent]] = []
    keep = out.append
    start = time.process_time()
    for fn, args, kwargs in todo:
        keep(fn(*args, **kwargs))
    return time.process_time() - start, out


def _noop(*args: Any, **kwargs: Any) -> list[FaultEvent]:
    return []


def digest(results: list[list[FaultEvent]]) -> tuple[str, int]:
    """sha256 of every event (all its fields) in order, and their number."""
    h = hashlib.sha256()
    count = 0
    for events in results:
        for ev in events:
            h.update(repr(ev).encode() + b"\n")
            count += 1
    return h.hexdigest(), count


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.faults.cost", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--readings", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args(argv)
    monitors, calls = record(args.readings)
    tune_for_streaming()  # as `cloud run` does
    kinds = Counter(name for _, name, _, _ in calls)
    updates = kinds["update"]
    print(f"{args.readings} readings, {len(monitors)} monitors, calls: "
          + ", ".join(f"{name} {n}" for name, n in kinds.most_common()))
    times: list[float] = []
    loops: list[float] = []
    first: tuple[str, int] | None = None
    for _ in range(args.repeat):
        todo = bound(monitors, calls)
        gc.collect()
        spent, results = replay(todo)
        times.append(spent)
        got = digest(results)
        if first is None:
            first = got
        elif got != first:
            raise SystemExit("two replays raised different events")
        noop = [(_noop, a, k) for _, a, k in todo]
        loops.append(replay(noop)[0])
    assert first is not None
    per = [t / updates * 1e6 for t in times]
    loop = [t / updates * 1e6 for t in loops]
    print(f"{min(per):.3f} - {max(per):.3f} µs per update (all calls / updates), "
          f"of which the loop {min(loop):.3f} - {max(loop):.3f}")
    print(f"events {first[1]}, digest {first[0]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
