"""One measured write of a point set to one influxd: the requests the sink would make, sent
one after another on one keep-alive connection, and influxd's CPU from its first request
until it is idle again (so the cache snapshots and compactions a write causes count)."""

from __future__ import annotations

import base64
import gzip
import http.client
import os
import time
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlencode, urlsplit

from bench.influx.errors import InfluxBenchError
from bench.influx.points import (
    AGGREGATE_RPS,
    PointSet,
    count_and_means,
    in_seconds,
    series_key,
    shifted,
    whole_seconds,
    without_seq,
)
from bench.influx.variants import Rewrite, Variant
from cloud.logic.records import RP_RAW

# What the processor hands its writer thread at once when it is behind (cloud.flow's
# InfluxPartition: whatever piled up), split by rp and cut in batch_lines (cloud.sink).
CALL_POINTS = 50_000
_TICK_S = 1.0 / os.sysconf("SC_CLK_TCK")
IDLE_WINDOW_S = 0.3
IDLE_CPU_S = 0.011  # at most one clock tick in the window
SETTLE_TIMEOUT_S = 20.0


def cpu_seconds(pid: int) -> float:
    """utime + stime of every thread of `pid` (/proc/<pid>/stat)."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError) as exc:
        raise InfluxBenchError(f"influxd (pid {pid}) is gone") from exc
    fields = raw[raw.rindex(")") + 2:].split()
    return (int(fields[11]) + int(fields[12])) * _TICK_S


@dataclass(frozen=True)
class Memory:
    """influxd's memory in kB (/proc/<pid>/status): peak resident set since it started
    (VmHWM), resident set now (VmRSS) and its anonymous part (RssAnon: mostly Go's heap; the
    rest of VmRSS is mapped TSM files and the binary)."""

    peak_rss_kb: int
    rss_kb: int
    anon_rss_kb: int


def memory(pid: int) -> Memory:
    try:
        raw = Path(f"/proc/{pid}/status").read_text()
    except (FileNotFoundError, ProcessLookupError) as exc:
        raise InfluxBenchError(f"influxd (pid {pid}) is gone") from exc
    fields: dict[str, int] = {}
    for line in raw.splitlines():
        key, _, value = line.partition(":")
        if key in ("VmHWM", "VmRSS", "RssAnon"):
            number, unit = value.split()
            if unit != "kB":
                raise InfluxBenchError(f"/proc/{pid}/status: {line!r} is not in kB")
            fields[key] = int(number)
    if len(fields) != 3:
        raise InfluxBenchError(f"/proc/{pid}/status lacks VmHWM, VmRSS or RssAnon")
    return Memory(fields["VmHWM"], fields["VmRSS"], fields["RssAnon"])


@dataclass(frozen=True)
class Request:
    rp: str
    precision: str
    lines: list[str]


def requests(points: PointSet, variant: Variant, shift_ns: int) -> list[Request]:
    """The variant's requests for `points`, stamped `shift_ns` later."""
    chosen = points.by_rp(variant.only_rp).points if variant.only_rp else points.points
    out: list[Request] = []
    for start in range(0, len(chosen), CALL_POINTS):
        by_rp: dict[str, list[str]] = defaultdict(list)
        for rp, line in chosen[start:start + CALL_POINTS]:
            if variant.rewrite is Rewrite.NO_SEQ and rp == RP_RAW:
                line = without_seq(line)
            elif variant.rewrite is Rewrite.COUNT_AND_MEANS and rp in AGGREGATE_RPS:
                line = count_and_means(line)
            by_rp[rp].append(shifted(line, shift_ns))
        for rp, lines in by_rp.items():
            for i in range(0, len(lines), variant.batch_lines):
                chunk = lines[i:i + variant.batch_lines]
                if variant.aggregates_in_seconds and rp in AGGREGATE_RPS and whole_seconds(chunk):
                    out.append(Request(rp, "s", [in_seconds(ln) for ln in chunk]))
                else:
                    out.append(Request(rp, "ns", chunk))
    return out


class Sender:
    """POST /write as InfluxHTTP.write does (same parameters and headers), optionally gzip'd."""

    def __init__(self, url: str, username: str, password: str, database: str) -> None:
        parts = urlsplit(url)
        if parts.hostname is None or parts.port is None:
            raise InfluxBenchError(f"bad InfluxDB url {url!r}")
        self._conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=60)
        token = base64.b64encode(f"{username}:{password}".encode()).decode()
        self._headers = {"Authorization": f"Basic {token}", "Content-Type": "text/plain; charset=utf-8"}
        self._database = database

    def write(self, request: Request, *, compress: bool, sort_by_series: bool) -> None:
        lines = sorted(request.lines, key=series_key) if sort_by_series else request.lines
        body = "\n".join(lines).encode()
        headers = self._headers
        if compress:
            body = gzip.compress(body, compresslevel=1)
            headers = {**headers, "Content-Encoding": "gzip"}
        target = "/write?" + urlencode({"db": self._database, "precision": request.precision,
                                        "rp": request.rp})
        try:
            self._conn.request("POST", target, body=body, headers=headers)
            response = self._conn.getresponse()
            answer = response.read()
        except (OSError, http.client.HTTPException) as exc:
            raise InfluxBenchError(f"writing to InfluxDB: {exc}") from exc
        if response.status != 204:
            raise InfluxBenchError(f"InfluxDB answered {response.status}: {answer[:500]!r}")

    def close(self) -> None:
        self._conn.close()


def settle(pid: int, timeout_s: float = SETTLE_TIMEOUT_S) -> float:
    """Wait until influxd uses at most a tick of CPU in IDLE_WINDOW_S; seconds waited."""
    start = time.monotonic()
    last = cpu_seconds(pid)
    while time.monotonic() - start < timeout_s:
        time.sleep(IDLE_WINDOW_S)  # a sampling interval, not a synchronisation
        now = cpu_seconds(pid)
        if now - last <= IDLE_CPU_S:
            return time.monotonic() - start
        last = now
    raise InfluxBenchError(f"influxd (pid {pid}) was still busy {timeout_s:.0f} s after the writes")


@dataclass(frozen=True)
class Sample:
    variant: str
    round: int
    points: int
    requests: int
    influxd_cpu_s: float  # first request until idle again
    client_cpu_s: float  # this thread: sorting, joining, encoding, gzip, sending
    write_s: float  # wall time of the requests
    # influxd's memory in kB once idle again (None in samples of runs before they were kept)
    peak_rss_kb: int | None = None  # VmHWM: the peak since the server started
    rss_kb: int | None = None  # VmRSS
    anon_rss_kb: int | None = None  # RssAnon

    @property
    def influxd_per_100k(self) -> float:
        return self.influxd_cpu_s / self.points * 100_000

    @property
    def client_per_100k(self) -> float:
        return self.client_cpu_s / self.points * 100_000

    @property
    def rate(self) -> float:
        return self.points / self.write_s


def write_once(sender: Sender, pid: int, reqs: list[Request], variant: Variant, round_no: int) -> Sample:
    cpu0 = cpu_seconds(pid)
    client0 = time.thread_time()
    wall0 = time.perf_counter()
    for req in reqs:
        sender.write(req, compress=variant.gzip, sort_by_series=variant.sort_by_series)
    write_s = time.perf_counter() - wall0
    client = time.thread_time() - client0
    settle(pid)
    cpu = cpu_seconds(pid) - cpu0
    mem = memory(pid)
    return Sample(variant.name, round_no, sum(len(r.lines) for r in reqs), len(reqs), cpu, client,
                  write_s, mem.peak_rss_kb, mem.rss_kb, mem.anon_rss_kb)
