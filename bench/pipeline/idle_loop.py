"""`python -m bench.pipeline.idle_loop`: what Bytewax costs with nothing to do. An empty
dataflow (one source that never has input, `--maps` pass-through steps, a sink that drops
everything) runs `--seconds` on one worker, its source asking to be woken every `--wake-ms`;
it prints the process's CPU over that time.

Bytewax 0.21's worker loop parks for at most a millisecond (`step_or_park(Some(1 ms))` in
its `src/worker.rs`), whatever the sources' `next_awake` ask, so an idle worker wakes about
a thousand times a second: the floor under the processor's CPU that does not grow with the
nodes (docs/throughput.md, "Session 28"). Measured here, the floor should not move with
`--wake-ms` or `--maps`; if a Bytewax upgrade changes the loop, it will.
"""

from __future__ import annotations

import argparse
import sys
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import bytewax.operators as op
from bytewax.dataflow import Dataflow
from bytewax.inputs import DynamicSource, StatelessSourcePartition
from bytewax.outputs import DynamicSink, StatelessSinkPartition
from bytewax.run import cli_main


class _Idle(StatelessSourcePartition[Any]):
    def __init__(self, wake: timedelta, until: float) -> None:
        self._wake = wake
        self._until = until

    def next_batch(self) -> list[Any]:
        if time.monotonic() >= self._until:
            raise StopIteration
        return []

    def next_awake(self) -> datetime:
        return datetime.now(UTC) + self._wake


class _IdleSource(DynamicSource[Any]):
    def __init__(self, wake: timedelta, until: float) -> None:
        self._wake = wake
        self._until = until

    def build(self, step_id: str, worker_index: int, worker_count: int) -> _Idle:
        return _Idle(self._wake, self._until)


class DropPartition(StatelessSinkPartition[Any]):
    def write_batch(self, items: list[Any]) -> None:
        pass


class DropSink(DynamicSink[Any]):
    """Drops whatever reaches it (the benches' stand-in for InfluxDB and MQTT)."""

    def build(self, step_id: str, worker_index: int, worker_count: int) -> DropPartition:
        return DropPartition()


def idle_cores(seconds: float, wake_ms: float, maps: int) -> float:
    """The process's CPU an elapsed second while the empty dataflow runs."""
    until = time.monotonic() + seconds
    flow = Dataflow("idle")
    stream = op.input("in", flow, _IdleSource(timedelta(milliseconds=wake_ms), until))
    for i in range(maps):
        stream = op.map(f"map{i}", stream, lambda x: x)
    op.output("out", stream, DropSink())
    cpu, wall = time.process_time(), time.monotonic()
    cli_main(flow, workers_per_process=1)  # type: ignore[no-untyped-call]
    return (time.process_time() - cpu) / (time.monotonic() - wall)


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.pipeline.idle_loop", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seconds", type=float, default=30.0)
    p.add_argument("--wake-ms", type=float, default=20.0, help="the source's next_awake")
    p.add_argument("--maps", type=int, default=0, help="pass-through steps after the source")
    args = p.parse_args(argv)
    if args.seconds <= 0 or args.wake_ms <= 0 or args.maps < 0:
        print("--seconds and --wake-ms must be positive, --maps at least 0", file=sys.stderr)
        return 2
    cores = idle_cores(args.seconds, args.wake_ms, args.maps)
    print(f"an idle Bytewax worker, its source woken every {args.wake_ms:g} ms, {args.maps} maps: "
          f"{cores:.4f} cores ({cores * 30:.2f} s of CPU a 30 s epoch) over {args.seconds:g} s")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
