"""bench.pipeline.cpusample: the CPU-weighted stack sampler charges a busy thread's CPU to
its stack and the collector's to GC; the attribution of stacks to parts on known input."""

from __future__ import annotations

import gc
import threading
import time
from collections import Counter
from pathlib import Path

from bench.pipeline.cpusample import GC_STACK, Sampler, load, main, part_of, parts, sampled

BUSY_CPU_S = 0.3
# A collection every 50 ms of the thread's CPU, none in its last 50 ms: the sampler charges
# a thread's GC time at its next sample and samples no thread that has ended. Counted in
# iterations (every 200,000) there were two at most here, and none on a busy machine where
# each iteration's clock read costs more CPU (failed once with two pytest-xdist workers).
# The youngest generation only: a full collection of a pytest process that has run many
# tests took up to 0.1 s, and ran the thread's CPU past BUSY_CPU_S.
GC_EVERY_S = 0.05


def _spin(started: threading.Event) -> None:
    started.set()
    now = time.thread_time()
    end, collect_at = now + BUSY_CPU_S, now + GC_EVERY_S
    while now < end:
        if now >= collect_at and now < end - GC_EVERY_S:
            gc.collect(0)
            collect_at = now + GC_EVERY_S
        now = time.thread_time()


def test_sampler_charges_a_busy_threads_cpu_to_its_stack_and_the_collector_to_gc(tmp_path: Path) -> None:
    sampler = Sampler(tmp_path / "cpu", every_s=0.002, dump_every_s=0.05)
    sampler.start()
    started = threading.Event()
    busy = threading.Thread(target=_spin, args=(started,), name="busy")
    busy.start()
    busy.join()
    sampler.stop()
    assert started.is_set()
    stacks = load(tmp_path / "cpu")
    spun = sum(ns for stack, ns in stacks.items() if stack.startswith("thread:busy;") and "_spin (" in stack)
    collected = stacks[f"thread:busy;{GC_STACK}"]
    # The CPU before the thread's first sample is not charged; the rest is, and no more.
    assert 0.3 * BUSY_CPU_S * 1e9 < spun + collected <= 1.2 * BUSY_CPU_S * 1e9
    assert collected > 0
    assert sorted(tmp_path.glob("cpu.0*"))  # the numbered copies, for a window's difference


def test_parts_of_known_stacks(tmp_path: Path) -> None:
    run = "thread:MainThread;<module> (cli.py:1);_run_dataflow (cli.py:414)"
    stacks = Counter({
        f"{run};NodeLogic.on_batch (flow.py:202);decode_record (records.py:94);x (records.py:140)": 3,
        f"{run};NodeLogic.on_batch (flow.py:202);NodeState.process (node.py:169);y (rollup.py:1)": 10,
        f"{run};NodeLogic.on_batch (flow.py:202)": 1,
        f"{run};NodeLogic.snapshot (flow.py:242)": 2,
        run: 4,
        "thread:influx-writer;InfluxPartition._serve (flow.py:544);InfluxWriter.write (sink.py:466);"
        "InfluxWriter._write_chunk (sink.py:631);InfluxHTTP.write (influx_http.py:354)": 5,
        "thread:influx-writer;InfluxPartition._serve (flow.py:544);InfluxWriter.write (sink.py:466)": 6,
        "thread:influx-writer;InfluxPartition._serve (flow.py:544)": 7,
        f"thread:MainThread;{GC_STACK}": 8,
        "thread:watch-i0;Thread.run (threading.py:971)": 9,
    })
    assert parts(stacks) == {
        "decode": 3, "node step: NodeState.process": 10, "node step: the rest of on_batch": 1,
        "snapshots": 2, "Bytewax (no Python frame of ours)": 4, "sink writer: HTTP request": 5,
        "sink writer: grouping by policy": 6, "sink writer: the rest of its loop": 7, "GC": 8,
        "thread watch-i0": 9}
    assert part_of("thread:MainThread;_find_and_load (<frozen importlib._bootstrap>:1165)") == \
        "start-up (imports)"
    # A window: a later dump less an earlier one; our own callback's samples dropped.
    callback = "thread:MainThread;x (a.py:1);Sampler._on_gc (cpusample.py:9)"
    (tmp_path / "late").write_text(f"{run} 50\n{callback} 7\n")
    (tmp_path / "early").write_text(f"{run} 20\n")
    assert load(tmp_path / "late", tmp_path / "early") == {run: 30}
    assert main([str(tmp_path / "late"), str(tmp_path / "early")]) == 0


def test_the_processes_it_samples() -> None:
    assert sampled("/v/bin/python -m urbanpulse.cli cloud run --config c.toml")
    assert sampled("/v/bin/python -m bench.pipeline.epochs --child --state-dir /s --epoch 30")
    assert not sampled("/v/bin/python -m urbanpulse.cli cloud ingest --config c.toml")
    assert not sampled("/v/bin/python -m bench.pipeline.epochs --copies 50")
