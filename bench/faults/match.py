"""Matching raised fault events to the injected faults, and the scores.

An event detects a fault when
* it names the fault's target: the same site, node and sensor (for a clock jump,
  which hits a whole node, any sensor of that node). A drift found between a
  station's two modules names the pair: an event naming neither module names the
  fault's sensor when the sensor is one of the pair ("station found", the default);
  an event naming a module names only that one, and matching with `module_named`
  only such an event counts (the other stations told which module drifted);
* its type is one the fault can show as (`ACCEPTS`): a cut serial cable sends
  nothing, so SILENCE detects it; readings a node stamps before ones the cloud
  already has are dropped by the dataflow, so a clock set back looks like SILENCE;
  a loop held present is what a cut loop card looks like;
* the cloud raised it within [start, end + settle + GRACE_S] of the fault
  (`plan.window`; settle is the offset of a forward clock jump).
An event that detects a fault is a true positive; every other event is a false
positive, charged to the fault type its own type stands for (`CHARGED`).

Per fault type: recall = faults detected / injected; precision = true positives /
(true positives + false positives charged to it); the delay of a detected fault is
from its start to its first detecting event.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field

from bench.faults.plan import FAULT_TYPES, Planned, window
from bench.faults.stream import Raised
from cloud.detect import FaultType

ACCEPTS: dict[str, frozenset[FaultType]] = {
    "stuck": frozenset({FaultType.STUCK, FaultType.CUT_CABLE}),
    "silence": frozenset({FaultType.SILENCE}),
    "spikes": frozenset({FaultType.SPIKE}),
    "drift": frozenset({FaultType.DRIFT}),
    "cut_cable": frozenset({FaultType.CUT_CABLE, FaultType.SILENCE, FaultType.STUCK}),
    "clock_jump": frozenset({FaultType.CLOCK_JUMP, FaultType.SILENCE}),
}
CHARGED: dict[FaultType, str] = {
    FaultType.STUCK: "stuck",
    FaultType.SILENCE: "silence",
    FaultType.SPIKE: "spikes",
    FaultType.CUT_CABLE: "cut_cable",
    FaultType.CLOCK_JUMP: "clock_jump",
    FaultType.OUT_OF_RANGE: "out_of_range",
    FaultType.DRIFT: "drift",
}


@dataclass
class Outcome:
    """One injected fault and what detected it."""

    planned: Planned
    run: int
    detections: list[Raised] = field(default_factory=list)

    @property
    def delay_s(self) -> float | None:
        if not self.detections:
            return None
        return min(r.at_s for r in self.detections) - self.planned.event.start_s


@dataclass
class RunResult:
    outcomes: list[Outcome]
    false_positives: list[Raised]
    clean_false_positives: list[Raised]
    true_positives: Counter[str]


def _names(r: Raised, p: Planned, module_named: bool = False) -> bool:
    e = p.event
    if r.site != e.site or r.node != e.node:
        return False
    if e.sensor is None or e.sensor == r.event.sensor:
        return True
    # an event of the pair that names neither module (an event naming the other
    # module would have the good one swapped: no detection)
    return (not module_named and r.pair is not None and e.sensor in r.pair
            and r.event.sensor not in r.pair)


def match(run: int, planned: Sequence[Planned], raised: Sequence[Raised],
          module_named: bool = False) -> RunResult:
    outcomes = [Outcome(p, run) for p in planned]
    false_positives: list[Raised] = []
    clean: list[Raised] = []
    true_positives: Counter[str] = Counter()
    for r in raised:
        hit = None
        for o in outcomes:
            start, end = window(o.planned.event)
            if (_names(r, o.planned, module_named) and start <= r.at_s <= end
                    and r.event.fault in ACCEPTS[o.planned.event.type]):
                hit = o
                break
        if hit is not None:
            hit.detections.append(r)
            true_positives[hit.planned.event.type] += 1
            continue
        false_positives.append(r)
        if not any(_names(r, p) for p in planned):
            clean.append(r)
    return RunResult(outcomes, false_positives, clean, true_positives)


@dataclass(frozen=True, slots=True)
class Row:
    name: str
    injected: int
    detected: int
    true_positives: int
    false_positives: int
    delays_s: tuple[float, ...]

    @property
    def recall(self) -> float | None:
        return self.detected / self.injected if self.injected else None

    @property
    def precision(self) -> float | None:
        raised = self.true_positives + self.false_positives
        return self.true_positives / raised if raised else None


def rows_by_type(results: Sequence[RunResult], without: frozenset[str] = frozenset()
                 ) -> list[Row]:
    """One row per fault type; faults on the target classes in `without` left out (the
    false positives are all counted)."""
    outcomes: dict[str, list[Outcome]] = defaultdict(list)
    fps: Counter[str] = Counter()
    tps: Counter[str] = Counter()
    for res in results:
        for o in res.outcomes:
            if o.planned.target_class not in without:
                outcomes[o.planned.event.type].append(o)
                tps[o.planned.event.type] += len(o.detections)
        fps.update(CHARGED[r.event.fault] for r in res.false_positives)
    names = list(FAULT_TYPES) + sorted(set(fps) - set(FAULT_TYPES))
    return [_row(n, outcomes.get(n, []), tps[n], fps[n]) for n in names]


def rows_by_class(results: Sequence[RunResult]) -> list[Row]:
    """Recall and delay per (fault type, target class); false positives are not split."""
    outcomes: dict[tuple[str, str], list[Outcome]] = defaultdict(list)
    for res in results:
        for o in res.outcomes:
            outcomes[(o.planned.event.type, o.planned.target_class)].append(o)
    order = {t: i for i, t in enumerate(FAULT_TYPES)}
    keys = sorted(outcomes, key=lambda k: (order[k[0]], k[1]))
    return [_row(f"{t} / {c}", outcomes[(t, c)], sum(len(o.detections) for o in outcomes[(t, c)]),
                 0) for t, c in keys]


def _row(name: str, outcomes: list[Outcome], tp: int, fp: int) -> Row:
    delays = tuple(sorted(d for o in outcomes if (d := o.delay_s) is not None))
    return Row(name, len(outcomes), len(delays), tp, fp, delays)
