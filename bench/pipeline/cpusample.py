"""Where the processor's CPU goes, without py-spy: a stack sampler weighted by CPU time,
run inside `cloud run` through `bench/pipeline/cpusample_site/sitecustomize.py`.

    URBANPULSE_CPUSAMPLE_OUT=/tmp/cpu PYTHONPATH=bench/pipeline/cpusample_site:. \\
        python -m bench.pipeline.run --rates 50000 --duration 15 --detect off
    python -m bench.pipeline.cpusample /tmp/cpu.<pid> [/tmp/cpu.<pid>.0010]

Every `every_s` a thread reads every other thread's Python stack (`sys._current_frames()`)
and charges it the CPU time that thread used since the sample before (its own CPU clock,
`clock_gettime` on its Linux tid). The collector's CPU, timed by `gc.callbacks` in the
thread that collects, is charged to `GC` instead. The counts (CPU ns per stack) are written
every `dump_every_s` to OUT.<pid> and to a numbered copy OUT.<pid>.NNNN, so that the CPU of
a window (the case working, not the start-up) is the difference of two dumps. The sampler
costs about 1.5 µs per reading end to end, and the frame objects it makes add to the
collector's work (docs/throughput.md, "End to end, where the rest goes").

Biased where the worker's Python calls are short: the sampling thread needs the GIL to read
a stack, and gets it mostly while the worker is back in Bytewax's Rust loop between two of
our calls, so the CPU of calls shorter than the sampling interval is charged to that loop
("Bytewax (no Python frame of ours)", or "worker, other" under the epochs child). Fine for
the compressed benchmark's large messages; at the city's own pace use py-spy or cProfile
(docs/throughput.md, "Session 26")."""

from __future__ import annotations

import gc
import os
import sys
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

ENV_OUT = "URBANPULSE_CPUSAMPLE_OUT"
GC_STACK = "GC"
_CALLBACK = "Sampler._on_gc ("  # a sample taken in our own callback: its CPU is counted as GC next


def _thread_clock(native_id: int) -> int:
    """Linux's CPU clock of one thread: MAKE_THREAD_CPUCLOCK(tid, CPUCLOCK_SCHED)."""
    return ((~native_id) << 3) | 4 | 2


def _stack(frame: Any, thread: str) -> str:
    parts = []
    while frame is not None:
        code = frame.f_code
        parts.append(f"{code.co_qualname} ({os.path.basename(code.co_filename)}:{code.co_firstlineno})")
        frame = frame.f_back
    parts.append(f"thread:{thread}")
    return ";".join(reversed(parts))


class Sampler:
    def __init__(self, out: Path, every_s: float = 0.002, dump_every_s: float = 1.0) -> None:
        self.out = out
        self.every_s = every_s
        self.dump_every_s = dump_every_s
        self.cpu_ns: Counter[str] = Counter()
        self._gc_ns: Counter[int] = Counter()  # native thread id -> collector CPU ns
        self._gc_start: dict[int, int] = {}
        self._dumps = 0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _on_gc(self, phase: str, info: dict[str, Any]) -> None:
        tid = threading.get_native_id()
        if phase == "start":
            self._gc_start[tid] = time.thread_time_ns()
        elif tid in self._gc_start:
            self._gc_ns[tid] += time.thread_time_ns() - self._gc_start.pop(tid)

    def start(self) -> None:
        gc.callbacks.append(self._on_gc)
        self._thread = threading.Thread(target=self._run, name="cpusample", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        if self._on_gc in gc.callbacks:
            gc.callbacks.remove(self._on_gc)
        self.dump()

    def sample(self, last_cpu: dict[int, int], last_gc: dict[int, int]) -> None:
        me = threading.get_ident()
        threads = {t.ident: t for t in threading.enumerate()}
        for ident, frame in sys._current_frames().items():
            thread = threads.get(ident)
            if ident == me or thread is None or thread.native_id is None:
                continue
            nid = thread.native_id
            try:
                cpu = time.clock_gettime_ns(_thread_clock(nid))
            except OSError:  # the thread ended meanwhile
                continue
            collected = self._gc_ns[nid]
            d_cpu = cpu - last_cpu.get(nid, cpu)
            d_gc = collected - last_gc.get(nid, collected)
            last_cpu[nid], last_gc[nid] = cpu, collected
            with self._lock:
                if d_gc:
                    self.cpu_ns[f"thread:{thread.name};{GC_STACK}"] += d_gc
                if d_cpu > d_gc:
                    self.cpu_ns[_stack(frame, thread.name)] += d_cpu - d_gc

    def dump(self) -> Path:
        with self._lock:
            text = "".join(f"{stack} {ns}\n" for stack, ns in self.cpu_ns.items())
        self._dumps += 1
        tmp = self.out.with_name(self.out.name + ".tmp")
        tmp.write_text(text)
        os.replace(tmp, self.out)
        copy = self.out.with_name(f"{self.out.name}.{self._dumps:04d}")
        copy.write_text(text)
        return copy

    def _run(self) -> None:
        last_cpu: dict[int, int] = {}
        last_gc: dict[int, int] = {}
        next_dump = time.monotonic() + self.dump_every_s
        while not self._stop.wait(self.every_s):
            self.sample(last_cpu, last_gc)
            if time.monotonic() >= next_dump:
                next_dump += self.dump_every_s
                self.dump()


def sampled(argv: str) -> bool:
    """Whether a process of this command line is sampled: `cloud run`, and the processor
    child of `bench.pipeline.epochs` (the dataflow run at the city's pace)."""
    return ("urbanpulse.cli" in argv and " cloud run" in argv) or \
        "bench.pipeline.epochs --child" in argv


def install_from_env() -> Sampler | None:
    """Starts a sampler in a `cloud run` process when URBANPULSE_CPUSAMPLE_OUT is set."""
    out = os.environ.get(ENV_OUT)
    if not out or not sampled(" ".join(getattr(sys, "orig_argv", sys.argv))):
        return None
    sampler = Sampler(Path(f"{out}.{os.getpid()}"))
    sampler.start()
    return sampler


# The innermost listed frame found in a worker stack names its part.
WORKER_PARTS: tuple[tuple[str, str], ...] = (
    ("JournalPartition.next_batch", "journal read"),
    ("decode_record", "decode"),
    ("NodeLogic.snapshot", "snapshots"),
    ("SiteLogic.snapshot", "snapshots"),
    ("DriftLogic.snapshot", "snapshots"),
    ("JournalPartition.snapshot", "snapshots"),
    ("InfluxPartition.snapshot", "snapshots"),
    ("SiteLogic.on_batch", "site step"),
    ("DriftLogic.on_batch", "city step (drift)"),
    ("NodeState.process", "node step: NodeState.process"),
    ("NodeLogic.on_batch", "node step: the rest of on_batch"),
    ("InfluxPartition.write_batch", "sink, worker side"),
    ("AlertPartition.write_batch", "alerts"),
)
WRITER_PARTS: tuple[tuple[str, str], ...] = (
    ("InfluxHTTP.write", "sink writer: HTTP request"),
    ("InfluxWriter._write_chunk", "sink writer: body"),
    ("InfluxWriter.write", "sink writer: grouping by policy"),
)


def part_of(stack: str) -> str:
    frames = stack.split(";")
    thread = frames[0].removeprefix("thread:")
    if frames[-1] == GC_STACK:
        return "GC"
    if any(f.startswith("_find_and_load") for f in frames):
        return "start-up (imports)"
    rules = WORKER_PARTS if thread == "MainThread" else WRITER_PARTS if thread == "influx-writer" else ()
    for frame in reversed(frames):
        for marker, label in rules:
            if frame.startswith(marker + " "):
                return label
    if thread == "MainThread":
        return "Bytewax (no Python frame of ours)" if frames[-1].startswith(("_run_dataflow ", "_child ")) \
            else "worker, other"
    if thread == "influx-writer":
        return "sink writer: the rest of its loop"
    return f"thread {thread}"


def load(path: Path, minus: Path | None = None) -> Counter[str]:
    """CPU ns per stack of a dump, less an earlier one's; our own callback's samples dropped."""
    stacks: Counter[str] = Counter()
    for sign, p in ((1, path), (-1, minus)):
        if p is None:
            continue
        for line in p.read_text().splitlines():
            stack, _, ns = line.rpartition(" ")
            if stack and ns.isdigit() and _CALLBACK not in stack.rsplit(";", 1)[-1]:
                stacks[stack] += sign * int(ns)
    return stacks


def parts(stacks: Counter[str]) -> Counter[str]:
    out: Counter[str] = Counter()
    for stack, ns in stacks.items():
        out[part_of(stack)] += ns
    return out


def main(argv: list[str]) -> int:
    if not 1 <= len(argv) <= 2:
        print(__doc__)
        return 2
    totals = parts(load(Path(argv[0]), Path(argv[1]) if len(argv) == 2 else None))
    total = sum(totals.values())
    print(f"{total / 1e9:.2f} s of CPU sampled")
    for name, ns in totals.most_common():
        print(f"{100 * ns / max(total, 1):5.1f} %  {ns / 1e9:7.2f} s  {name}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
