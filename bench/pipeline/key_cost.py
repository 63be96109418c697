"""`python -m bench.pipeline.key_cost`: what Bytewax itself costs a key an epoch, apart from
our node step and its pickling. A dataflow with recovery on (a real SQLite recovery store)
hands each of `--keys` keys one item an epoch; its stateful step does nothing with it and
snapshots a prepared bytes object of `--snapshot-bytes` (no pickling of ours); the process's
CPU an epoch, less that of the same run with no key, over the keys, is Bytewax's per-key
work: routing by key, the step's call, the snapshot's serialisation and its SQLite write,
the epoch's commit.

The processor's per-node "rest" is about 0.3-0.4 ms an epoch on the warm city sample
(docs/throughput.md, "Session 28"); this tells how much of it a node costs Bytewax alone,
and so what grouping nodes under fewer keys could save.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import bytewax.operators as op
from bytewax.dataflow import Dataflow
from bytewax.inputs import DynamicSource, StatelessSourcePartition
from bytewax.recovery import RecoveryConfig, init_db_dir
from bytewax.run import cli_main

from bench.pipeline.idle_loop import DropSink


class _Each(StatelessSourcePartition[str]):
    """Every key once an epoch, `epochs` times, then the end."""

    def __init__(self, keys: list[str], epoch: timedelta, epochs: int) -> None:
        self._keys = keys
        self._epoch = epoch
        self._left = epochs
        self._due = datetime.now(UTC)

    def next_batch(self) -> list[str]:
        now = datetime.now(UTC)
        if now < self._due:
            return []
        if self._left == 0:
            raise StopIteration
        self._left -= 1
        self._due = now + self._epoch
        return self._keys

    def next_awake(self) -> datetime:
        return self._due


class _EachSource(DynamicSource[str]):
    def __init__(self, keys: list[str], epoch: timedelta, epochs: int) -> None:
        self._args = (keys, epoch, epochs)

    def build(self, step_id: str, worker_index: int, worker_count: int) -> _Each:
        return _Each(*self._args)


class _Holds(op.StatefulBatchLogic[str, str, bytes]):
    def __init__(self, snapshot: bytes) -> None:
        self._snapshot = snapshot

    def on_batch(self, values: list[str]) -> tuple[list[str], bool]:
        return [], op.StatefulBatchLogic.RETAIN

    def snapshot(self) -> bytes:
        return self._snapshot


def run_cpu(keys: int, snapshot_bytes: int, epoch_s: float, epochs: int, store: Path) -> float:
    """The process's CPU seconds for `epochs` epochs of `keys` keys, each snapshotted once an
    epoch, on a fresh recovery store under `store`."""
    store.mkdir(parents=True)
    init_db_dir(store, 1)  # type: ignore[no-untyped-call]
    payload = bytes(snapshot_bytes)
    flow = Dataflow("key_cost")
    items = op.input("in", flow, _EachSource([f"k{i}" for i in range(keys)],
                                            timedelta(seconds=epoch_s), epochs))
    held = op.stateful_batch("held", op.key_on("key", items, lambda k: k),
                             lambda _resume: _Holds(payload))
    op.output("out", held, DropSink())
    cpu = time.process_time()
    recovery = RecoveryConfig(str(store))  # type: ignore[no-untyped-call]
    cli_main(flow, workers_per_process=1, epoch_interval=timedelta(seconds=epoch_s),  # type: ignore[no-untyped-call]
             recovery_config=recovery)
    return time.process_time() - cpu


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.pipeline.key_cost", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--keys", type=int, default=2000)
    p.add_argument("--snapshot-bytes", type=int, default=36_000,
                   help="each key's snapshot (the warm sample's nodes: about 36 KB)")
    p.add_argument("--epoch-s", type=float, default=1.0)
    p.add_argument("--epochs", type=int, default=10)
    args = p.parse_args(argv)
    if args.keys < 1 or args.snapshot_bytes < 0 or args.epoch_s <= 0 or args.epochs < 1:
        print("--keys and --epochs at least 1, --epoch-s positive, --snapshot-bytes at least 0",
              file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="bench-key-cost-") as tmp:
        base = run_cpu(0, 0, args.epoch_s, args.epochs, Path(tmp) / "none")
        cpu = run_cpu(args.keys, args.snapshot_bytes, args.epoch_s, args.epochs, Path(tmp) / "keys")
    per_key_ms = (cpu - base) / args.keys / args.epochs * 1e3
    print(f"{args.keys} keys x {args.epochs} epochs of {args.epoch_s:g} s, {args.snapshot_bytes} B "
          f"snapshots: {cpu:.2f} s CPU against {base:.2f} s with no key: "
          f"{per_key_ms:.3f} ms a key an epoch")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
