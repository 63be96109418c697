"""What the soak checks once everything is back and drained.

For each sensor of each node: the numbers the agent gave (its outbox's `seq` table) are
exactly the raw points stored, each once (no number missing, none stored at two stamps),
but for the rows its outbox let go unconfirmed, which it counts (`outbox_evicted`: by
`max_rows`, or for room on a full disk, docs/delivery.md): a node may miss at most that many;
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
    evicted_ok: bool = False  # the node's missing numbers are within what its outbox counts evicted

    @property
    def clean(self) -> bool:
        return not ((self.missing and not self.evicted_ok) or self.doubled or self.beyond
                    or self.wrong_values)

    def __str__(self) -> str:
        text = (f"{self.node}/{self.sensor}: numbered {self.numbered}, stored {self.stored}, "
                f"witnessed {self.witnessed}")
        for what in ("missing", "doubled", "beyond", "wrong_values"):
            items = getattr(self, what)
            if items:
                label = "missing, within the evicted count" if what == "missing" and self.evicted_ok else what
                text += f"\n    {label} ({len(items)}): {items[:20]}"
        return text


@dataclass
class Findings:
    sensors: list[SensorReport] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    ledgers: dict[str, dict[str, int]] = field(default_factory=dict)
    evicted: dict[str, int] = field(default_factory=dict)  # node -> its outbox's evicted count

    @property
    def readings(self) -> int:
        return sum(s.numbered for s in self.sensors)

    @property
    def missing(self) -> int:
        return sum(len(s.missing) for s in self.sensors)

    @property
    def doubled(self) -> int:
        return sum(len(s.doubled) for s in self.sensors)

    @property
    def clean(self) -> bool:
        return not self.problems and all(s.clean for s in self.sensors)


def stored_points(reader: InfluxHTTP, node: str, sensor: str) -> list[dict[str, Any]]:
    return reader.query_points(
        f"SELECT seq, pm25, pm10 FROM raw.air_pm WHERE node = '{node}' AND sensor = '{sensor}'", db=DB)


def stored_seqs(reader: InfluxHTTP, node: str, sensor: str) -> list[int]:
    return sorted(int(r["seq"]) for r in stored_points(reader, node, sensor))


def drained(rig: Rig, reader: InfluxHTTP) -> tuple[list[str], int]:
    """What is not yet drained (empty once the outboxes are empty and every number is stored
    once, but at most as many as the node counts evicted), and how many points are stored."""
    waiting = []
    stored = 0
    for node in rig.nodes:
        pending = node.pending()
        if pending:
            waiting.append(f"{node.name}: {pending} rows in the outbox")
        short, evicted = [], node.evicted()
        for sensor, n in node.numbered().items():
            seqs = stored_seqs(reader, node.name, sensor)
            stored += len(seqs)
            unique = set(seqs)
            if len(seqs) != len(unique) or not unique <= set(range(n)) or len(unique) < n:
                short.append((f"{node.name}/{sensor}: {len(unique)} of {n} stored"
                              f"{', doubles' if len(seqs) != len(unique) else ''}",
                              n - len(unique & set(range(n))), len(seqs) != len(unique)))
        if sum(gap for _, gap, _ in short) > evicted or any(doubles for _, _, doubles in short):
            waiting.extend(text for text, _, _ in short)
    return waiting, stored


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
        evicted = findings.evicted[node.name] = node.evicted()
        reports = []
        for sensor, n in numbered.items():
            reports.append(check_sensor(reader, node, sensor, n, seen[(node.name, sensor)]))
            diff = minutes_match(reader, node.name, sensor)
            if diff:
                findings.problems.append(f"{node.name}/{sensor} minute aggregates: {diff}")
        # Rows the outbox let go unconfirmed (max_rows, or room on a full disk) are counted
        # there; the count may exceed what is missing (a row the cloud confirmed after its
        # eviction is taken back from it, but not one confirmed only through a resent copy:
        # docs/delivery.md, "The evicted count"), never fall short of it.
        lost = sum(len(r.missing) for r in reports)
        for r in reports:
            r.evicted_ok = lost <= evicted
        findings.sensors.extend(reports)
        pending = node.pending()
        if pending:
            findings.problems.append(f"{node.name}: {pending} rows left in the outbox")
        total = sum(numbered.values())
        counts = ledger(reader, node.name)
        findings.ledgers[node.name] = counts
        # the ledger sees the evicted numbers as missing: the gaps they leave
        if not (counts.get("expected") == total and counts.get("missing") == lost
                and counts.get("received", 0) - counts.get("duplicates", 0) == total - lost):
            findings.problems.append(f"{node.name} ledger {counts}, numbered {total}, missing {lost}")
    findings.problems.extend(f"dead letter: {d}" for d in dead_letters(reader))
    return findings
