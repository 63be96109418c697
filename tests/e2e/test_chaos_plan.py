"""The chaos soak's seeded schedule (bench/chaos/plan.py, pure: no stack). A seed still names
the schedule it named before the cluster, full-disk and clock-step faults were added (those
parts are drawn only when asked for), and the new parts are broken and restored as the rig
expects."""

from __future__ import annotations

import hashlib

from bench.chaos.plan import CLOCK_STEPS_S, RESTORE, make_plan


def _digest(seed: int, minutes: float, agents: int) -> str:
    text = "\n".join(str(s) for s in make_plan(seed, minutes * 60, agents))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def test_a_seed_names_the_schedule_it_named_before() -> None:
    # digests of bench/chaos/plan.py as of ee7dd16, before the new parts
    assert _digest(10, 4, 3) == "45173f807f90ce72"
    assert _digest(3, 3, 5) == "126eced049d41333"


def test_the_new_parts_are_drawn_when_asked_for_and_each_break_is_restored() -> None:
    plan = make_plan(21, 600, 3, processes=2, disks=1, clocks=1, max_down=4)
    parts = {s.part for s in plan}
    assert {"processor-0", "processor-1", "disk-agent-0", "clock-agent-0"} <= parts
    assert not parts & {"processor", "disk-agent-1", "clock-agent-1"}
    down: dict[str, str] = {}
    for step in plan:
        if step.part == "ingest":
            assert step.action == "kill"
            assert not {"processor-0", "processor-1"} <= down.keys()  # some process's ingest to kill
        elif step.action in RESTORE.values():
            assert RESTORE[down.pop(step.part)] == step.action
        else:
            assert step.part not in down
            down[step.part] = step.action
            assert len(down) <= 4
            assert (step.step_s in CLOCK_STEPS_S) == (step.action == "step")
            assert (step.action == "fill") == step.part.startswith("disk-")
