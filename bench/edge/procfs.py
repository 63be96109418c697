"""CPU time and memory of a running process, read from /proc (Linux only, no psutil)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from bench.edge.errors import BenchError

_TICK_S = 1.0 / os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True, slots=True)
class CpuTimes:
    user_s: float
    system_s: float

    @property
    def total_s(self) -> float:
        return self.user_s + self.system_s


@dataclass(frozen=True, slots=True)
class Memory:
    rss_kb: int
    hwm_kb: int  # peak resident set size since the process started (VmHWM)
    anon_kb: int  # private heap and stacks (RssAnon)
    file_kb: int  # mapped files: the interpreter, shared libraries (RssFile; shareable)


def _stat_fields(path: Path) -> list[str]:
    try:
        raw = path.read_text()
    except (FileNotFoundError, ProcessLookupError) as exc:
        raise BenchError(f"{path}: the process is gone") from exc
    # The command name (field 2) is in parentheses and may hold spaces: split after it.
    return raw[raw.rindex(")") + 2:].split()


def cpu_times(pid: int) -> CpuTimes:
    """User and system CPU of every thread of `pid` (utime, stime of /proc/<pid>/stat)."""
    fields = _stat_fields(Path(f"/proc/{pid}/stat"))
    return CpuTimes(int(fields[11]) * _TICK_S, int(fields[12]) * _TICK_S)


def thread_cpu(pid: int) -> dict[int, CpuTimes]:
    """CPU of each thread of `pid`, by thread id (the main thread's id is `pid`)."""
    out: dict[int, CpuTimes] = {}
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            fields = _stat_fields(task / "stat")
        except BenchError:
            continue  # the thread ended between listing and reading
        out[int(task.name)] = CpuTimes(int(fields[11]) * _TICK_S, int(fields[12]) * _TICK_S)
    return out


_MEMORY_KEYS = ("VmRSS", "VmHWM", "RssAnon", "RssFile")


def memory(pid: int) -> Memory:
    path = Path(f"/proc/{pid}/status")
    try:
        lines = path.read_text().splitlines()
    except (FileNotFoundError, ProcessLookupError) as exc:
        raise BenchError(f"{path}: the process is gone") from exc
    values = {}
    for line in lines:
        key, _, rest = line.partition(":")
        if key in _MEMORY_KEYS:
            values[key] = int(rest.split()[0])
    if len(values) != len(_MEMORY_KEYS):
        raise BenchError(f"{path}: no {'/'.join(_MEMORY_KEYS)} (a zombie?)")
    return Memory(*(values[k] for k in _MEMORY_KEYS))
