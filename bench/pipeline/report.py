"""The results as a Markdown table."""

from __future__ import annotations

from bench.pipeline.case import CaseResult

CPU_GROUPS = ("processor", "ingest", "mosquitto", "influxd", "publishers")
COLUMNS = ("offered/s", "detect", "readings", "broker/s", "journal/s", "InfluxDB/s",
           "InfluxDB/s while publishing", "lag p50 s", "lag max s", "drain s", "lost",
           "processor + ingest CPU µs/reading",
           "CPU cores: " + " / ".join(CPU_GROUPS), "processor peak RSS MiB",
           "state snapshots a 2 s epoch: KB (keys)", "state held at the end: KB (keys)")


def _num(value: float | None) -> str:
    return "-" if value is None else f"{value:,.0f}" if abs(value) >= 100 else f"{value:g}"


def cpu_per_reading_us(r: CaseResult) -> float | None:
    """CPU the processor and its ingest spent per reading written: on a shared machine this
    moves less than the rates do, as long as the processor is the bottleneck."""
    if not r.written_rate:
        return None
    return round((r.cpu_cores.get("processor", 0) + r.cpu_cores.get("ingest", 0)) / r.written_rate * 1e6, 1)


def _loss(r: CaseResult, lost: int) -> str:
    text = str(lost) if r.complete else f"backlog {lost}"
    return text + (f" ({r.error})" if r.error else "")


def markdown_table(results: list[CaseResult]) -> str:
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    for r in results:
        cpu = r.cpu_cores
        lost = r.points_expected - r.points_written
        lines.append("| " + " | ".join([
            _num(r.rate), "on" if r.detect else "off", _num(r.readings), _num(r.broker_rate),
            _num(r.journal_rate), _num(r.written_rate), _num(r.written_rate_while_publishing),
            _num(r.lag_p50_s), _num(r.lag_max_s), _num(r.drain_after_publish_s),
            _loss(r, lost),
            _num(cpu_per_reading_us(r)),
            " / ".join(f"{cpu.get(k, 0):.2f}" for k in CPU_GROUPS),
            _num(r.processor_rss_mib),
            f"{_num(r.snapshot_bytes_per_epoch / 1000)} ({_num(r.snapshot_keys_per_epoch)})",
            f"{_num(r.state_bytes_held / 1000)} ({_num(r.state_keys_held)})",
        ]) + " |")
    return "\n".join(lines)
