"""What the detectors' book (cloud/logic/detector_book.py) saves a node's snapshots: a few
simulated nodes fed hours of their own readings through the dataflow's node step
(`cloud.flow.NodeLogic`, as `bench.pipeline.node_state_size` feeds them), each snapshotted as
Bytewax snapshots it (`NodeLogic.snapshot`: the frozen store's rows written, then the state
pickled) every --epoch-s of reception in which it took a record, with a frozen store both
times, once with the detectors pickled into every snapshot
(`flow.detector_checkpoint_every = 0`, as before) and once with the book (--every), the order
alternating from node to node. Measured over the last --measure-hours (the detectors warm):
the bytes a snapshot hands Bytewax, the bytes of the store's rows written, the CPU of the
snapshots (the logs, the rows' flush, the pickle) and of the node step per record (the
journal of the values the detectors take, and the checkpoints, written at the record after
the snapshot that found one due); and what a resume of the last snapshot costs (the
checkpoint read and its logs replayed).

    python -m bench.pipeline.detector_book --hours 6 --epoch-s 30
"""

from __future__ import annotations

import argparse
import pickle
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from bench.pipeline.errors import PipelineBenchError
from bench.pipeline.node_state_size import NODES, _keys, collector_off, node_stream, records
from cloud.flow import NodeLogic
from cloud.frozen_store import FrozenStore
from cloud.logic.node import NodeState

HORIZON_NS = 6 * 3600 * 10**9  # flow.aggregate_horizon_s's default
MAX_DEAD_LETTER = 1 << 16


@dataclass
class Run:
    snapshots: int = 0
    snapshot_bytes: int = 0  # handed to Bytewax
    row_bytes: int = 0  # written to the store (its rows' states)
    snapshot_cpu_ns: int = 0
    records: int = 0
    step_cpu_ns: int = 0
    resume_cpu_ns: int = 0


class CountingStore(FrozenStore):
    """A frozen store that counts the bytes of the rows it is given (measured part only)."""

    counting = False
    given = 0

    def put(self, state: bytes) -> int:
        if self.counting:
            self.given += len(state)
        return super().put(state)


def run(key: str, hours: float, measure_hours: float, epoch_s: float, every: int,
        directory: Path) -> Run:
    """One node fed and snapshotted with a store in `directory` (an existing directory: else
    the store writes nothing, and the detectors stay in the snapshots whatever `every`)."""
    if not directory.is_dir():
        raise PipelineBenchError(f"{directory} is not a directory")
    readings = node_stream(key, hours)
    recs = list(records(key, readings, hours))
    store = CountingStore(directory, 0, 10**18, detector_every=every)
    state = NodeState(HORIZON_NS)
    state.use_frozen_store(store)
    logic = NodeLogic(state, MAX_DEAD_LETTER)
    epoch_ns = int(epoch_s * 1e9)
    measured_from = recs[0].received_ns + int((hours - measure_hours) * 3600e9)
    out = Run()
    epoch_end: int | None = None  # the end of the epoch the node was last touched in
    last = b""
    for rec in recs:
        if epoch_end is not None and rec.received_ns >= epoch_end:
            measuring = rec.received_ns >= measured_from
            start = time.process_time_ns()
            last = logic.snapshot()
            spent = time.process_time_ns() - start
            if measuring:
                out.snapshots += 1
                out.snapshot_bytes += len(last)
                out.snapshot_cpu_ns += spent
            epoch_end = None
        if epoch_end is None:
            epoch_end = rec.received_ns - rec.received_ns % epoch_ns + epoch_ns
        store.counting = rec.received_ns >= measured_from
        start = time.process_time_ns()
        logic.on_batch([rec])
        spent = time.process_time_ns() - start
        if rec.received_ns >= measured_from:
            out.records += 1
            out.step_cpu_ns += spent
    out.row_bytes = store.given
    store.close()
    resumed_store = FrozenStore(directory, 1, 10**18, detector_every=every)
    start = time.process_time_ns()
    resumed: NodeState = pickle.loads(last)
    resumed.use_frozen_store(resumed_store)
    out.resume_cpu_ns = time.process_time_ns() - start
    resumed_store.close()
    return out


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--hours", type=float, default=6.0)
    p.add_argument("--measure-hours", type=float, default=1.0,
                   help="the last hours of the stream, measured (the detectors warm)")
    p.add_argument("--nodes", default=",".join(NODES),
                   help="site/node,... or 'all': every node of the simulated city (its mix)")
    p.add_argument("--epoch-s", type=float, default=30.0,
                   help="a snapshot of the node each epoch of this in which it took a record")
    p.add_argument("--every", type=int, default=20,
                   help="flow.detector_checkpoint_every with the book (at least 1)")
    args = p.parse_args(argv)
    if not 0 < args.measure_hours <= args.hours:
        raise PipelineBenchError("--measure-hours must be positive and at most --hours")
    if not args.epoch_s > 0:
        raise PipelineBenchError("--epoch-s must be positive")
    if args.every < 1:
        raise PipelineBenchError("--every must be at least 1")
    with collector_off():
        _report(args)


def _report(args: argparse.Namespace) -> None:
    totals = {0: Run(), args.every: Run()}
    print(f"snapshots every {args.epoch_s:g} s of reception, the last {args.measure_hours:g} h "
          f"of {args.hours:g} measured; detectors inline (every 0) -> book (every {args.every})")
    print(f"{'node':<26} {'KB/snapshot':>15} {'row KB/snapshot':>15} {'CPU µs/snapshot':>17} "
          f"{'step µs/record':>15} {'resume ms':>11}")
    keys = _keys(args.nodes)
    for n, key in enumerate(keys):
        results: dict[int, Run] = {}
        for every in ((0, args.every) if n % 2 == 0 else (args.every, 0)):
            with tempfile.TemporaryDirectory() as d:
                results[every] = run(key, args.hours, args.measure_hours, args.epoch_s, every,
                                     Path(d))
        cells = [_pair(results, args.every, lambda r: r.snapshot_bytes / r.snapshots / 1e3),
                 _pair(results, args.every, lambda r: r.row_bytes / r.snapshots / 1e3),
                 _pair(results, args.every, lambda r: r.snapshot_cpu_ns / r.snapshots / 1e3),
                 _pair(results, args.every, lambda r: r.step_cpu_ns / r.records / 1e3),
                 _pair(results, args.every, lambda r: r.resume_cpu_ns / 1e6)]
        print(f"{key:<26} " + " ".join(cells))
        for every, r in results.items():
            t = totals[every]
            for name in vars(r):
                setattr(t, name, getattr(t, name) + getattr(r, name))
    before, after = totals[0], totals[args.every]
    written = ((after.snapshot_bytes + after.row_bytes)
               / (before.snapshot_bytes + before.row_bytes))
    cpu = ((after.snapshot_cpu_ns + after.step_cpu_ns)
           / (before.snapshot_cpu_ns + before.step_cpu_ns))
    print(f"\nthe {len(keys)} nodes: bytes handed to Bytewax "
          f"{after.snapshot_bytes / before.snapshot_bytes:.3f}x, bytes written in all (Bytewax's "
          f"and the store's) {written:.3f}x, snapshot CPU "
          f"{after.snapshot_cpu_ns / before.snapshot_cpu_ns:.3f}x, node step CPU "
          f"{after.step_cpu_ns / before.step_cpu_ns:.3f}x, snapshot + step CPU {cpu:.3f}x; "
          f"a resume {after.resume_cpu_ns / before.resume_cpu_ns:.2f}x "
          f"({before.resume_cpu_ns / 1e6:.1f} -> {after.resume_cpu_ns / 1e6:.1f} ms CPU)")


def _pair(results: dict[int, Run], every: int, metric: Callable[[Run], float]) -> str:
    return f"{metric(results[0]):7.1f}->{metric(results[every]):<7.1f}"


if __name__ == "__main__":
    main()
