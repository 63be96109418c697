"""The seeded schedule: pure, so a seed names one sequence of faults.

Each part is up or down. A step takes an up part down (how: by its kind) or brings a down
one back; at most `max_down` parts are down at once. The ingest child is a blip: killed
alone, `cloud run` restarts it by itself, so it is never "down" here. A cluster's
processes are parts of their own ('processor-0', 'processor-1'), each broken alone; the
others' exits on losing it are the rig's to handle (a restart, as systemd does).
"""

from __future__ import annotations

import random
from dataclasses import dataclass

# how each part can be taken down, and what brings it back
# kill: SIGKILL; term: SIGTERM, waited for; term-kill: SIGTERM, then SIGKILL within 2 s
# (systemd's stop timeout cutting a clean stop short); freeze: SIGSTOP (a hung process,
# its sockets open); kill-main: the dataflow's process alone (as the OOM killer would),
# its ingest child left to notice (EOF on its stdin) and end by itself
BREAKS: dict[str, tuple[str, ...]] = {
    "broker": ("kill", "kill", "term", "freeze"),
    "influxdb": ("kill", "kill", "term", "freeze"),
    "processor": ("kill", "kill", "term", "term-kill", "kill-main", "freeze"),
    "agent": ("kill", "kill", "term", "term-kill", "freeze"),
    "link": ("partition",),
    "disk": ("fill",),  # a node's state disk (its outbox's) filled to the last block
    "clock": ("step",),  # a node's wall clock stepped (by CLOCK_STEPS_S), until NTP corrects it
}
RESTORE = {"kill": "start", "kill-main": "start", "term": "start", "term-kill": "start",
           "freeze": "thaw", "partition": "heal", "fill": "free", "step": "correct"}
# How far a node's wall clock is stepped: within the stamps the cloud takes (a day ahead at
# most, urbanpulse.wire's FUTURE_TOLERANCE) and the outbox's age limit (7 days); 8 h is past
# the processor's aggregate horizon (6 h), so that its windows are rebuilt from InfluxDB.
CLOCK_STEPS_S = (-8 * 3600.0, -3600.0, -120.0, 120.0, 3600.0, 8 * 3600.0)
INGEST = "ingest"


def kind(part: str) -> str:
    """'agent-1' -> 'agent', 'link-ingest' -> 'link'."""
    return part.split("-", 1)[0]


@dataclass(frozen=True)
class Step:
    at_s: float  # offset from the start of the chaos
    part: str
    action: str  # kill, kill-main, term, term-kill, freeze, partition; start, thaw, heal
    grace_s: float = 0.0  # term-kill: the SIGKILL this long after the SIGTERM
    step_s: float = 0.0  # step: the wall clock moved by this much

    def __str__(self) -> str:
        grace = f" (SIGKILL after {self.grace_s:.2f} s)" if self.action == "term-kill" else ""
        if self.action == "step":
            grace = f" (wall clock {self.step_s:+g} s)"
        return f"{self.at_s:7.2f}s {self.action:9} {self.part}{grace}"


def processor_parts(processes: int) -> list[str]:
    """'processor' alone, or one part per process of a cluster: 'processor-0', ..."""
    return ["processor"] if processes == 1 else [f"processor-{i}" for i in range(processes)]


def parts_for(agents: int, processes: int = 1, disks: int = 0, clocks: int = 0) -> list[str]:
    nodes = [f"agent-{i}" for i in range(agents)]
    links = [f"link-agent-{i}" for i in range(agents)]
    return ["broker", "influxdb", *processor_parts(processes), INGEST, *nodes, "link-ingest",
            "link-influx", *links, *(f"disk-agent-{i}" for i in range(disks)),
            *(f"clock-agent-{i}" for i in range(clocks))]


def make_plan(seed: int, duration_s: float, agents: int, *, max_down: int = 3,
              gap_s: tuple[float, float] = (0.3, 4.0), processes: int = 1, disks: int = 0,
              clocks: int = 0) -> list[Step]:
    """Steps within [0, duration_s); whatever is down at the end is not restored here (the
    soak restores everything before its drain)."""
    rng = random.Random(seed)
    parts = parts_for(agents, processes, disks, clocks)
    processors = processor_parts(processes)
    down: dict[str, str] = {}
    steps: list[Step] = []
    t = rng.uniform(*gap_s)
    while t < duration_s:
        restore = bool(down) and (len(down) >= max_down or rng.random() < 0.25 + 0.2 * len(down))
        if restore:
            part = rng.choice(sorted(down))
            steps.append(Step(round(t, 2), part, RESTORE[down.pop(part)]))
        else:
            part = rng.choice([p for p in parts if p not in down])
            if part == INGEST:
                if not all(p in down for p in processors):  # some process's ingest to kill
                    steps.append(Step(round(t, 2), part, "kill"))
            else:
                action = rng.choice(BREAKS[kind(part)])
                down[part] = action
                grace = round(rng.uniform(0.0, 2.0), 2) if action == "term-kill" else 0.0
                step = rng.choice(CLOCK_STEPS_S) if action == "step" else 0.0
                steps.append(Step(round(t, 2), part, action, grace, step))
        t += rng.uniform(*gap_s)
    return steps
