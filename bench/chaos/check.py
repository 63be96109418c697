"""What the soak checks once everything is back and drained.

For each sensor of each node: the numbers the agent gave (its outbox's `seq` table) are
exactly the raw points stored, each once (no number missing, none stored at two stamps);
each stored point carries what the witness saw published under its number (stamp and
values); the 1-minute aggregates are those of the stored points. Per node: the outbox is
empty, the delivery ledger counts each reading once (expected = received - duplicates =
the numbers given, none missing), and no dead letter. A reading the witness saw twice
under one number with different contents is a numbering bug of the node.
"""

from __future__ import annotations

import statistics
import time
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

from bench.chaos.rig import SITE, Node, Rig
from urbanpulse.influx_http import InfluxHTTP

MINUTE_NS = 60_000_000_000
DB = "urbanpulse"
FIELDS = ("pm25", "pm10")


@dataclass
class SensorReport:
    node: str
    sensor: str
    numbered: int
    stored: int
    missing: list[int] = field(default_factory=list)
    doubled: list[int] = field(default_factory=list)  # numbers stored at two stamps or more
    beyond: list[int] = field(default_factory=list)  # stored numbers the node never gave
    wrong_values: list[str] = field(default_factory=list)
    witnessed: int = 0

    @property
    def clean(self) -> bool:
        return not (self.missing or self.doubled or self.beyond or self.wrong_values)

    def __str__(self) -> str:
        text = (f"{self.node}/{self.sensor}: numbered {self.numbered}, stored {self.stored}, "
                f"witnessed {self.witnessed}")
        for what in ("missing", "doubled", "beyond", "wrong_values"):
            items = getattr(self, what)
            if items:
                text += f"\n    {what} ({len(items)}): {items[:20]}"
        return text


@dataclass
class Findings:
    sensors: list[SensorReport] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    ledgers: dict[str, dict[str, int]] = field(default_factory=dict)

    @property
    def readings(self) -> int:
        return sum(s.numbered for s in self.sensors)

    @property
    def clean(self) -> bool:
        return not self.problems and all(s.clean for s in self.sensors)


def stored_points(reader: InfluxHTTP, node: str, sensor: str) -> list[dict[str, Any]]:
    return reader.query_points(
        f"SELECT seq, pm25, pm10 FROM raw.air_pm WHERE node = '{node}' AND sensor = '{sensor}'", db=DB)


def stored_seqs(reader: InfluxHTTP, node: str, sensor: str) -> list[int]:
    return sorted(int(r["seq"]) for r in stored_points(reader, node, sensor))


def drained(rig: Rig, reader: InfluxHTTP) -> list[str]:
    """What is not yet drained (empty once every number is stored once and outboxes are empty)."""
    waiting = []
    for node in rig.nodes:
        pending = node.pending()
        if pending:
            waiting.append(f"{node.name}: {pending} rows in the outbox")
        for sensor, n in node.numbered().items():
            seqs = stored_seqs(reader, node.name, sensor)
            if seqs != list(range(n)):
                waiting.append(f"{node.name}/{sensor}: {len(set(seqs))} of {n} stored"
                               f"{', doubles' if len(seqs) != len(set(seqs)) else ''}")
    return waiting


def check_sensor(reader: InfluxHTTP, node: Node, sensor: str, numbered: int,
                 witnessed: dict[int, set[tuple[int, tuple[float, ...]]]]) -> SensorReport:
    rows = stored_points(reader, node.name, sensor)
    by_seq: dict[int, list[dict[str, Any]]] = defaultdict(list)
    for r in rows:
        by_seq[int(r["seq"])].append(r)
    report = SensorReport(node.name, sensor, numbered, len(rows), witnessed=len(witnessed))
    report.missing = [s for s in range(numbered) if s not in by_seq]
    report.doubled = sorted(s for s, rs in by_seq.items() if len(rs) > 1)
    report.beyond = sorted(s for s in by_seq if not 0 <= s < numbered)
    for seq, seen in sorted(witnessed.items()):
        if len(seen) > 1:
            report.wrong_values.append(f"seq {seq} published with {len(seen)} contents: {sorted(seen)}")
            continue
        stored = by_seq.get(seq)
        if not stored:
            continue
        (ts, values), = seen
        got = (int(stored[0]["time"]) - seq % 1000, tuple(float(stored[0][f]) for f in FIELDS))
        if got != (ts, values):
            report.wrong_values.append(f"seq {seq}: published {(ts, values)}, stored {got}")
    return report


def minutes_match(reader: InfluxHTTP, node: str, sensor: str) -> str | None:
    """None if the minute aggregates are those of the stored points, else what differs."""
    expected: dict[int, list[float]] = defaultdict(list)
    for r in stored_points(reader, node, sensor):
        seq, t = int(r["seq"]), int(r["time"])
        ts = t - seq % 1000
        expected[ts - ts % MINUTE_NS].append(float(r["pm25"]))
    got = {int(r["time"]): r for r in reader.query_points(
        f"SELECT * FROM agg_1m.air_pm WHERE node = '{node}' AND sensor = '{sensor}'", db=DB)}
    diffs = []
    for minute in sorted(expected.keys() | got.keys()):
        values = expected.get(minute, [])
        row = got.get(minute)
        if row is None or not values:
            diffs.append(f"minute {minute}: {len(values)} stored, aggregate {row and row['count']}")
            continue
        if (int(row["count"]) != len(values) or abs(row["pm25_mean"] - statistics.fmean(values)) > 1e-6
                or row["pm25_min"] != min(values) or row["pm25_max"] != max(values)):
            diffs.append(f"minute {minute}: {len(values)} stored (mean {statistics.fmean(values):.4f}), "
                         f"aggregate count {row['count']} mean {row['pm25_mean']:.4f}")
    return "; ".join(diffs[:5]) if diffs else None


def ledger(reader: InfluxHTTP, node: str) -> dict[str, int]:
    rows = reader.query_points(
        "SELECT sum(expected) AS expected, sum(received) AS received, sum(duplicates) AS duplicates, "
        f"sum(missing) AS missing, sum(restarts) AS restarts FROM agg_1h.ledger WHERE node = '{node}'",
        db=DB)
    if not rows:
        return {}
    return {k: int(v) for k, v in rows[0].items() if k != "time" and v is not None}


def dead_letters(reader: InfluxHTTP) -> list[str]:
    rows = reader.query_points(f"SELECT * FROM raw.dead_letter WHERE site = '{SITE}'", db=DB)
    return [f"{r.get('node')} {r.get('reason')}: {str(r.get('detail'))[:120]}" for r in rows]


def check(rig: Rig, reader: InfluxHTTP, settle_s: float = 60.0) -> Findings:
    """Looked at again until everything agrees or `settle_s` has passed (the aggregates and
    the ledger follow the raw points by an epoch or two): the last look is the finding."""
    seen: dict[tuple[str, str], dict[int, set[tuple[int, tuple[float, ...]]]]] = defaultdict(
        lambda: defaultdict(set))
    for node_name, r in rig.witnessed():
        seen[(node_name, r.sensor)][r.seq].add((r.ts_ns, tuple(float(r.values[f]) for f in FIELDS)))
    deadline = time.monotonic() + settle_s
    while True:
        findings = _look(rig, reader, seen)
        if findings.clean or time.monotonic() > deadline:
            return findings
        time.sleep(1.0)


def _look(rig: Rig, reader: InfluxHTTP,
          seen: dict[tuple[str, str], dict[int, set[tuple[int, tuple[float, ...]]]]]) -> Findings:
    findings = Findings()
    for node in rig.nodes:
        numbered = node.numbered()
        for sensor, n in numbered.items():
            findings.sensors.append(check_sensor(reader, node, sensor, n, seen[(node.name, sensor)]))
            diff = minutes_match(reader, node.name, sensor)
            if diff:
                findings.problems.append(f"{node.name}/{sensor} minute aggregates: {diff}")
        pending = node.pending()
        if pending:
            findings.problems.append(f"{node.name}: {pending} rows left in the outbox")
        total = sum(numbered.values())
        counts = ledger(reader, node.name)
        findings.ledgers[node.name] = counts
        if not (counts.get("expected") == total and counts.get("missing") == 0
                and counts.get("received", 0) - counts.get("duplicates", 0) == total):
            findings.problems.append(f"{node.name} ledger {counts}, numbered {total}")
    findings.problems.extend(f"dead letter: {d}" for d in dead_letters(reader))
    return findings
