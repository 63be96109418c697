"""`python -m bench.pipeline.epoch_outputs`: whether Bytewax holds a stateful step's outputs
until the epoch ends. A source hands over one stamped item every 0.5 s for `--run-s`
seconds, through a `stateful_batch` step that passes it on, to a sink that notes how long
after its stamp it arrived; recovery on, the epoch `--epoch-s` long (longer than the run:
no epoch ends before the input does). Outputs held for the epoch would arrive seconds late.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import bytewax.operators as op
from bytewax.dataflow import Dataflow
from bytewax.inputs import FixedPartitionedSource, StatefulSourcePartition
from bytewax.outputs import DynamicSink, StatelessSinkPartition
from bytewax.recovery import RecoveryConfig, init_db_dir
from bytewax.run import cli_main

EVERY_S = 0.5

Item = tuple[str, float]


class _Ticks(StatefulSourcePartition[Item, int]):
    def __init__(self, run_s: float) -> None:
        self.n = 0
        self.end = time.monotonic() + run_s

    def next_batch(self) -> list[Item]:
        if time.monotonic() >= self.end:
            raise StopIteration
        self.n += 1
        return [(f"k{self.n % 3}", time.monotonic())]

    def next_awake(self) -> datetime:
        return datetime.now(UTC) + timedelta(seconds=EVERY_S)

    def snapshot(self) -> int:
        return self.n


class _Source(FixedPartitionedSource[Item, int]):
    def __init__(self, run_s: float) -> None:
        self.run_s = run_s

    def list_parts(self) -> list[str]:
        return ["p"]

    def build_part(self, step_id: str, for_part: str, resume_state: int | None) -> _Ticks:
        return _Ticks(self.run_s)


class _Pass(op.StatefulBatchLogic[float, float, None]):
    def on_batch(self, values: list[float]) -> tuple[list[float], bool]:
        return values, op.StatefulBatchLogic.RETAIN

    def snapshot(self) -> None:
        return None


class _Delays(StatelessSinkPartition[Item]):
    def __init__(self, out: list[float]) -> None:
        self.out = out

    def write_batch(self, items: list[Item]) -> None:
        now = time.monotonic()
        self.out.extend(now - stamp for _, stamp in items)


class _Sink(DynamicSink[Item]):
    def __init__(self, out: list[float]) -> None:
        self.out = out

    def build(self, step_id: str, worker_index: int, worker_count: int) -> _Delays:
        return _Delays(self.out)


def delays(epoch_s: float, run_s: float) -> list[float]:
    """Seconds from each item's stamp to the sink."""
    out: list[float] = []
    flow = Dataflow("epoch_outputs")
    passed = op.stateful_batch("pass", op.input("ticks", flow, _Source(run_s)), lambda _: _Pass())
    op.output("delays", passed, _Sink(out))
    with tempfile.TemporaryDirectory() as tmp:
        init_db_dir(Path(tmp), 1)  # type: ignore[no-untyped-call]
        cli_main(flow, epoch_interval=timedelta(seconds=epoch_s),  # type: ignore[no-untyped-call]
                 recovery_config=RecoveryConfig(tmp))  # type: ignore[no-untyped-call]
    return out


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.pipeline.epoch_outputs", description=__doc__)
    p.add_argument("--epoch-s", type=float, default=30.0)
    p.add_argument("--run-s", type=float, default=10.0)
    args = p.parse_args(argv)
    got = delays(args.epoch_s, args.run_s)
    if not got:
        print("nothing reached the sink", file=sys.stderr)
        return 1
    print(f"epoch {args.epoch_s:g} s, {len(got)} items over {args.run_s:g} s: from the source to the "
          f"sink median {statistics.median(got) * 1e3:.2f} ms, max {max(got) * 1e3:.2f} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
