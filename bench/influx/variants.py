"""What is tried: influxd settings (each its own server) and request shapes (how the sink
could write the same points). Each is a hypothesis measured against `base`: the project's
config (urbanpulse.stack.influxd) and the sink's requests (cloud.sink)."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum

from bench.influx.server import Settings
from cloud.logic.records import RP_1H, RP_1M, RP_RAW

SINK_BATCH_LINES = 5000  # cloud.config: influx.batch_lines' default


class Rewrite(Enum):
    NONE = "none"
    NO_SEQ = "no-seq"  # raw points without their seq field
    COUNT_AND_MEANS = "count-and-means"  # rollups without min, max and last


@dataclass(frozen=True)
class Variant:
    name: str
    what: str
    settings: Settings = field(default_factory=dict)
    env: dict[str, str] = field(default_factory=dict)
    batch_lines: int = SINK_BATCH_LINES
    gzip: bool = False
    sort_by_series: bool = False
    aggregates_in_seconds: bool = False
    only_rp: str | None = None
    rewrite: Rewrite = Rewrite.NONE


def _setting(name: str, section: str, key: str, value: str, what: str) -> Variant:
    return Variant(name, what, settings={section: {key: value}})


VARIANTS: tuple[Variant, ...] = (
    Variant("base", "the stack's config and environment (GOGC=200), the sink's requests "
            "(5,000 lines, ns, plain)"),
    _setting("wal-fsync-delay=100ms", "data", "wal-fsync-delay", '"100ms"',
             "WAL fsyncs batched over 100 ms"),
    _setting("max-concurrent-compactions=1", "data", "max-concurrent-compactions", "1",
             "one compaction at a time (default: half the cores)"),
    _setting("cache-snapshot-memory-size=100m", "data", "cache-snapshot-memory-size", "104857600",
             "snapshot the cache to TSM at 100 MB (default 25 MB)"),
    _setting("cache-snapshot-memory-size=5m", "data", "cache-snapshot-memory-size", "5242880",
             "snapshot the cache to TSM at 5 MB"),
    _setting("index-version=tsi1", "data", "index-version", '"tsi1"', "disk-based series index"),
    _setting("http log-enabled=false", "http", "log-enabled", "false", "no HTTP access log at all"),
    Variant("http write log on (ansible)", "every write request logged, as the Ansible template "
            "has it (log-enabled, suppress-write-log off, to stderr)",
            settings={"http": {"suppress-write-log": "false", "access-log-path": '""'}}),
    _setting("monitor store-enabled=true", "monitor", "store-enabled", "true",
             "influxd's own statistics stored every 10 s (the default)"),
    _setting("query-log-enabled=true", "data", "query-log-enabled", "true", "queries logged"),
    _setting("logging level=warn", "logging", "level", '"warn"', "log warnings only"),
    # Go's collector target, in the environment: a collection once the heap has grown by this
    # percentage over the live data. The stack's is 200 (base); it was Go's default before.
    Variant("GOGC=100", "Go's default: a collection twice as often as base", env={"GOGC": "100"}),
    Variant("GOGC=150", "a collection 1.5 times as often as base", env={"GOGC": "150"}),
    Variant("GOGC=300", "a collection two thirds as often as base", env={"GOGC": "300"}),
    Variant("batch 1000", "requests of 1,000 lines", batch_lines=1000),
    Variant("batch 20000", "requests of 20,000 lines", batch_lines=20_000),
    Variant("gzip", "Content-Encoding: gzip (level 1)", gzip=True),
    Variant("sorted by series", "each request's lines sorted by series", sort_by_series=True),
    Variant("aggregates precision=s", "aggregates stamped in seconds (raw needs ns)",
            aggregates_in_seconds=True),
    Variant("raw without seq", "raw points without the seq field", rewrite=Rewrite.NO_SEQ),
    Variant("rollups count+means", "rollups without min, max and last",
            rewrite=Rewrite.COUNT_AND_MEANS),
    Variant("only raw", "only the raw points (readings, events)", only_rp=RP_RAW),
    Variant("only agg_1m", "only the 1-minute aggregates", only_rp=RP_1M),
    Variant("only agg_1h", "only the hourly aggregates and ledger", only_rp=RP_1H),
)


def select(names: list[str] | None) -> list[Variant]:
    """The named variants (all if None), `base` always first."""
    if names is None:
        return list(VARIANTS)
    known = {v.name: v for v in VARIANTS}
    unknown = [n for n in names if n not in known]
    if unknown:
        raise ValueError(f"unknown variants {unknown}; known: {sorted(known)}")
    return [known["base"], *(known[n] for n in names if n != "base")]
