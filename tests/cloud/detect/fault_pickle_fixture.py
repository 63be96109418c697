"""The fixture of test_detect_fault_old_pickle.py: fault monitors pickled by an older version
of the rules midway through the calls the fault bench makes to them, and what that version
raised on every call.

    python -m tests.cloud.detect.fault_pickle_fixture PATH   # run in a checkout of that version

One run of the fault bench (`bench.faults.digest.seed_events`: seed `SEED`, `HOURS` h, the
faults it injects) is fed with every call to a `FaultMonitor` recorded in order with its
arguments (a numbering started again: the fresh monitor `restarted` made gets the next
number). Kept: the calls to the monitors that raised an event and to the first `PER_FIELD`
of each (kind, field) (each monitor's calls depend on no other monitor). Written, as one
lzma-compressed pickle: the monitors (kind, field, sensor, settings), the calls, `SPLIT`
(the index of the call at which the monitors were pickled), the monitors pickled then by
that version (bytes), and the events every call returned in that version, never pickled
(each as `repr`, one list per call)."""

from __future__ import annotations

import lzma
import pickle
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from cloud.detect.faults import FaultMonitor

SEED = 1
HOURS = 3.0
PER_FIELD = 1
METHODS = ("update", "unjudged", "stamped_before", "node_heartbeat", "tick", "agent_started",
           "heartbeat")

# (monitor number, method, args, kwargs); "restarted" has none.
Call = tuple[int, str, tuple[Any, ...], dict[str, Any]]
Made = tuple[str, str, str, Any]  # kind, field, sensor, settings


def record() -> tuple[list[Made], list[Call], list[list[str]], set[int]]:
    """The monitors made, every call, the `repr` of the events each returned, and the
    monitors made by a `restarted`."""
    from bench.faults.digest import seed_events
    from urbanpulse.simulate import City
    from urbanpulse.simulate.module_pairs import with_module_pairs

    made: list[Made] = []
    numbers: dict[int, int] = {}
    calls: list[Call] = []
    returned: list[list[str]] = []
    by_restart: set[int] = set()
    restarting = [False]
    depth = [0]
    keep: list[FaultMonitor] = []  # alive, so that no id is used twice
    originals = {name: getattr(FaultMonitor, name) for name in (*METHODS, "restarted")}
    init = FaultMonitor.__init__

    def made_init(self: FaultMonitor, kind: str, field: str, sensor: str = "",
                  settings: Any = None) -> None:
        init(self, kind, field, sensor, settings)
        numbers[id(self)] = len(made)
        if restarting[0]:
            by_restart.add(len(made))
        made.append((kind, field, sensor, settings))
        keep.append(self)

    def recorder(name: str) -> Callable[..., Any]:
        method = originals[name]

        def call(self: FaultMonitor, *args: Any, **kwargs: Any) -> Any:
            if depth[0]:  # a call the monitor makes itself: replayed with the outer one
                return method(self, *args, **kwargs)
            calls.append((numbers[id(self)], name, args, kwargs))
            restarting[0] = name == "restarted"
            depth[0] += 1
            try:
                got = method(self, *args, **kwargs)
            finally:
                restarting[0] = False
                depth[0] -= 1
            events = got[1] if name == "restarted" else got or []
            returned.append([repr(ev) for ev in events])
            return got
        return call

    try:
        FaultMonitor.__init__ = made_init  # type: ignore[method-assign]
        for name in originals:
            setattr(FaultMonitor, name, recorder(name))
        city = City.load()
        seed_events(city, with_module_pairs(city, 1.0), SEED, HOURS)
    finally:
        FaultMonitor.__init__ = init  # type: ignore[method-assign]
        for name, method in originals.items():
            setattr(FaultMonitor, name, method)
    return made, calls, returned, by_restart


def replay(made: list[Made], calls: list[Call], monitors: list[FaultMonitor] | None = None,
           start: int = 0, stop: int | None = None,
           after: Callable[[list[FaultMonitor], int], None] | None = None
           ) -> tuple[list[FaultMonitor], list[list[str]]]:
    """`calls[start:stop]` on `monitors` (fresh ones if None, made as numbered), and the
    `repr` of the events each returned. A monitor `restarted` made takes the next number.
    `after(monitors, m)` is called after each call, `m` the number of the monitor called."""
    if monitors is None:
        monitors = []
    out: list[list[str]] = []
    for m, name, args, kwargs in calls[start:stop]:
        while len(monitors) <= m:
            kind, field, sensor, settings = made[len(monitors)]
            monitors.append(FaultMonitor(kind, field, sensor, settings))
        if name == "restarted":
            fresh, events = monitors[m].restarted()
            monitors.append(fresh)
        else:
            events = getattr(monitors[m], name)(*args, **kwargs) or []
        out.append([repr(ev) for ev in events])
        if after is not None:
            after(monitors, m)
    return monitors, out


def select(made: list[Made], calls: list[Call], events: list[list[str]], by_restart: set[int]
           ) -> tuple[list[Made], list[Call]]:
    """The calls to the monitors that raised an event and to the first `PER_FIELD` of each
    (kind, field), renumbered; none whose numbering started again (`restarted`), nor the
    monitors made then (the replay's numbering would not hold)."""
    left_out = {m for m, name, _, _ in calls if name == "restarted"} | by_restart
    chosen: set[int] = {m for (m, _, _, _), ev in zip(calls, events, strict=True) if ev}
    per: dict[tuple[str, str], int] = {}
    for n, (kind, field, _, _) in enumerate(made):
        if per.get((kind, field), 0) < PER_FIELD and n not in left_out:
            per[kind, field] = per.get((kind, field), 0) + 1
            chosen.add(n)
    chosen -= left_out
    number = {m: k for k, m in enumerate(sorted(chosen))}
    return ([made[m] for m in sorted(chosen)],
            [(number[m], name, args, kwargs) for m, name, args, kwargs in calls if m in chosen])


def write(path: Path) -> None:
    made, calls = select(*record())
    split = len(calls) // 2
    _, events = replay(made, calls)
    monitors, _ = replay(made, calls, stop=split)
    state = pickle.dumps(monitors, protocol=pickle.HIGHEST_PROTOCOL)
    blob = {"made": made, "calls": calls, "split": split, "state": state, "events": events}
    path.write_bytes(lzma.compress(pickle.dumps(blob, protocol=pickle.HIGHEST_PROTOCOL)))
    print(f"{path}: {len(made)} monitors, {len(calls)} calls, "
          f"{sum(map(len, events))} events, split at {split}")


def load(path: Path) -> dict[str, Any]:
    loaded: dict[str, Any] = pickle.loads(lzma.decompress(path.read_bytes()))
    return loaded


if __name__ == "__main__":
    write(Path(sys.argv[1]))
