"""`python -m bench.pipeline.flowonly`: the processor's real dataflow (`cloud.flow.build_flow`)
run in this process under Bytewax on the benchmark's workload, with the journal replaced by
an in-memory source and InfluxDB by a sink that keeps the points.

Between `bench.pipeline.stages` (the domain functions alone) and `bench.pipeline.run` (the
whole stack, whose CPU figures move 10-20 % from run to run on a shared machine), it gives
the CPU the dataflow itself costs per reading, Bytewax's per-item work included, without
sampling another process: changes to the flow's wiring are compared here, in one run.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any
from unittest import mock

from bytewax.testing import TestingSink, TestingSource, run_main

from bench.pipeline.stages import _records
from bench.pipeline.workload import generate
from cloud import flow as cloud_flow
from cloud.config import CloudConfig, parse_cloud_config
from cloud.gc_policy import tune_for_streaming
from cloud.journal import JournalRecord
from cloud.logic.records import Point


def _config(state_dir: Path, detect: bool) -> CloudConfig:
    return parse_cloud_config({
        "mqtt": {"password_file": "p", "ca_file": "c"},
        "influx": {"url": "http://127.0.0.1:1", "database": "city", "password_file": "p"},
        "flow": {"detect": detect},
        "state": {"dir": str(state_dir)}})


@contextmanager
def _journal_replaced_by(records: list[JournalRecord], batch: int) -> Iterator[None]:
    """`build_flow`'s journal source replaced by the records, `batch` at a time (what the
    journal reader hands Bytewax per poll: a few messages when live, up to its read batch
    when catching up)."""
    def source(*_args: Any, **_kwargs: Any) -> TestingSource[JournalRecord]:
        return TestingSource(records, batch_size=batch)

    with mock.patch.object(cloud_flow, "JournalSource", source):
        yield


def measure(records: list[JournalRecord], readings: int, detect: bool, batch: int
            ) -> tuple[dict[str, float], list[list[Point]]]:
    """CPU per reading of the run, and the point batches the sink was handed."""
    points: list[Any] = []
    alerts: list[Any] = []
    with tempfile.TemporaryDirectory() as tmp, _journal_replaced_by(records, batch):
        cfg = _config(Path(tmp), detect)
        drain = threading.Event()
        drain.set()  # the process-start input ends at once; the records' source ends when read
        built = cloud_flow.build_flow(cfg, ["i0"], sink=TestingSink(points),
                                      alert_sink=TestingSink(alerts), drain=drain)
        start = time.process_time()
        run_main(built, epoch_interval=timedelta(seconds=2))
        cpu = time.process_time() - start
    batches = [p for _, p in points if isinstance(p, list)]  # less the process start's marks
    written = sum(len(p) for p in batches)
    return ({"CPU µs per reading": cpu / readings * 1e6, "points per reading": written / readings,
             "items reaching the sink per message": len(points) / len(records)}, batches)


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.pipeline.flowonly", description=__doc__)
    p.add_argument("--readings", type=int, default=50_000)
    p.add_argument("--batch", type=int, default=500, help="readings a message (at most, with --live)")
    p.add_argument("--live", type=float, metavar="SECONDS",
                   help="cut messages as a live node does (see bench.pipeline.stages)")
    p.add_argument("--poll", type=int, default=10, help="messages the source hands Bytewax at a time")
    p.add_argument("--detect", choices=("on", "off"), default="off")
    args = p.parse_args(argv)
    workload = generate(args.readings, batch=args.batch, live_s=args.live)
    tune_for_streaming()  # as `cloud run` does
    records = _records(workload)
    print(f"{workload.readings} readings, {len(records)} messages "
          f"({workload.readings / len(records):.1f} readings a message), detect {args.detect}, "
          f"{args.poll} messages a poll")
    for name, value in measure(records, workload.readings, args.detect == "on", args.poll)[0].items():
        print(f"{value:10.2f}  {name}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
