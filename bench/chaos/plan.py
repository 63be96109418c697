"""The seeded schedule: pure, so a seed names one sequence of faults.

Each part is up or down. A step takes an up part down (how: by its kind) or brings a down
one back; at most `max_down` parts are down at once. The ingest child is a blip: killed
alone, `cloud run` restarts it by itself, so it is never "down" here.
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
}
RESTORE = {"kill": "start", "kill-main": "start", "term": "start", "term-kill": "start",
           "freeze": "thaw", "partition": "heal"}
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

    def __str__(self) -> str:
        grace = f" (SIGKILL after {self.grace_s:.2f} s)" if self.action == "term-kill" else ""
        return f"{self.at_s:7.2f}s {self.action:9} {self.part}{grace}"


def parts_for(agents: int) -> list[str]:
    nodes = [f"agent-{i}" for i in range(agents)]
    links = [f"link-agent-{i}" for i in range(agents)]
    return ["broker", "influxdb", "processor", INGEST, *nodes, "link-ingest", "link-influx", *links]


def make_plan(seed: int, duration_s: float, agents: int, *, max_down: int = 3,
              gap_s: tuple[float, float] = (0.3, 4.0)) -> list[Step]:
    """Steps within [0, duration_s); whatever is down at the end is not restored here (the
    soak restores everything before its drain)."""
    rng = random.Random(seed)
    parts = parts_for(agents)
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
                if "processor" not in down:
                    steps.append(Step(round(t, 2), part, "kill"))
            else:
                action = rng.choice(BREAKS[kind(part)])
                down[part] = action
                grace = round(rng.uniform(0.0, 2.0), 2) if action == "term-kill" else 0.0
                steps.append(Step(round(t, 2), part, action, grace))
        t += rng.uniform(*gap_s)
    return steps
