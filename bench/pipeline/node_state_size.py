"""What a node's state holds: a few simulated nodes fed hours of their own readings through
the dataflow's node step (`cloud.flow.NodeLogic`: decode, `NodeState.process`, a tick every
30 s of reception), one message per second of readings at most (the agent's
`outbox.batch_max_delay_s`) and a heartbeat every 30 s, then the state's pickled and
in-memory bytes broken down by part, each simulated hour, and at the end the time to pickle
each part and the whole state (a snapshot of the node: the median of --repeat pickles).

    python -m bench.pipeline.node_state_size --hours 6
"""

from __future__ import annotations

import argparse
import bisect
import gc
import pickle
import statistics
import sys
import time
from collections import deque
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

from bench.pipeline.errors import PipelineBenchError
from bench.pipeline.workload import numbering_of
from cloud.flow import NodeLogic
from cloud.journal import JournalRecord
from cloud.logic.node import NodeState
from cloud.logic.rollup import HOUR_NS
from urbanpulse.clock import to_epoch_ns
from urbanpulse.simulate import City, Simulation
from urbanpulse.wire import Reading, data_topic, encode_batch, encode_status, status_topic

# An air station, a traffic intersection (4 loops), hospital wards of 30 and 20 beds, a
# kiosk department, a smaller intersection (2 loops): sensor counts differ within a kind.
NODES = ("hoan-kiem-lake/aq-1", "nga-tu-so/cabinet", "cau-giay/cabinet", "bach-mai/ward-cardio",
         "saint-paul/ward-peds", "bach-mai/laboratory")
START = datetime(2026, 6, 1, 0, tzinfo=UTC)  # 07:00 in Hanoi: kiosks and traffic busy
MESSAGE_S = 1.0
HEARTBEAT_S = 30.0
DEFAULT_HORIZON_S = 6 * 3600  # flow.aggregate_horizon_s's default
PARTS = ("detectors", "fault_monitors", "node_watch", "seqs", "windows_minute", "windows_hour",
         "ledger", "domain", "other")


def deep_size(obj: object, seen: set[int] | None = None) -> int:
    """sys.getsizeof of `obj` and everything it reaches (dicts, slots, containers), each
    object once; classes, functions and modules are not counted."""
    seen = set() if seen is None else seen
    total = 0
    stack = [obj]
    while stack:
        o = stack.pop()
        if id(o) in seen or isinstance(o, type) or (callable(o) and not hasattr(o, "__dict__")):
            continue
        seen.add(id(o))
        total += sys.getsizeof(o)
        if isinstance(o, dict):
            stack.extend(o.keys())
            stack.extend(o.values())
        elif isinstance(o, (list, tuple, set, frozenset, deque)):
            stack.extend(o)
        if hasattr(o, "__dict__") and not isinstance(o, type):
            stack.append(vars(o))
        for klass in type(o).__mro__:
            for name in getattr(klass, "__slots__", ()):
                if name != "__dict__" and hasattr(o, name):
                    stack.append(getattr(o, name))
    return total


def _pickled(obj: object) -> int:
    return len(pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL))


def parts(state: NodeState) -> dict[str, list[object]]:
    """The state's objects grouped by part."""
    detectors: list[object] = []
    faults: list[object] = []
    for watch in state.watch.values():
        for fw in watch.fields.values():
            if fw is not None:
                detectors.append(fw.detector)
                faults.append(fw.faults)
    grouped: dict[str, list[object]] = {
        "detectors": detectors, "fault_monitors": faults, "node_watch": [state.node_watch],
        "seqs": [state.seqs], "windows_minute": [state.minute], "windows_hour": [state.hour],
        "ledger": [state.ledger, state.ledger_closed], "domain": [state.domain]}
    named = {"watch", "node_watch", "seqs", "minute", "hour", "ledger", "ledger_closed", "domain"}
    grouped["other"] = [v for k, v in state.__getstate__().items() if k not in named]
    return grouped


def breakdown(state: NodeState) -> dict[str, tuple[int, int]]:
    """part -> (pickled bytes, in-memory bytes); "total" the whole state's. The in-memory
    sizes share one `seen` set, so an object reached from two parts counts in the first."""
    seen: set[int] = set()
    out = {name: (_pickled(objs), deep_size(objs, seen)) for name, objs in parts(state).items()}
    out["total"] = (_pickled(state), deep_size(state))
    return out


def pickle_times(state: NodeState, repeat: int) -> dict[str, float]:
    """part -> CPU µs to pickle it (the machine is shared: not wall time), the median of
    `repeat` pickles; "total" the whole state's."""
    grouped: dict[str, object] = dict(parts(state))
    grouped["total"] = state
    out = {}
    for name, obj in grouped.items():
        times = []
        for _ in range(repeat):
            start = time.process_time_ns()
            pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)
            times.append(time.process_time_ns() - start)
        out[name] = statistics.median(times) / 1e3
    return out


def detail(state: NodeState) -> dict[str, int]:
    """Pickled bytes of the larger parts' pieces: each detector's attributes summed over the
    node's detectors, the domain's sub-rollups, and the windows held."""
    out: dict[str, int] = {}
    for watch in state.watch.values():
        for fw in watch.fields.values():
            if fw is not None and fw.detector is not None:
                for name, value in fw.detector._attributes().items():
                    key = f"detector.{name}"
                    out[key] = out.get(key, 0) + _pickled(value)
    for name, value in state.domain.__getstate__().items():
        out[f"domain.{name}"] = _pickled(value)
    for name, rollups in (("minute", state.minute), ("hour", state.hour)):
        # (getattr: the bench also measures the code before windows froze, for comparison)
        frozen = sum(len(getattr(r, "frozen", ())) for r in rollups.values())
        out[f"{name} windows held"] = sum(len(r.windows) for r in rollups.values()) + frozen
        out[f"{name} windows frozen"] = frozen
    out["ledger hours held"] = len(state.ledger)
    return out


def node_stream(key: str, hours: float, seed: int = 1) -> list[Reading]:
    site, node = key.split("/")
    city = City.load()
    if not any(n.site == site and n.node == node for n in city.nodes):
        raise PipelineBenchError(f"no node {key} in the simulated city")
    gen = Simulation(city, seed=seed, start=START).readings(max_batch=2000)
    out: list[Reading] = []
    for nb in gen.advance(hours * 3600):
        if nb.site == site and nb.node == node:
            out.extend(nb.readings)
    out.sort(key=lambda r: r.ts_ns)
    return out


def messages(readings: list[Reading]) -> list[list[Reading]]:
    """The node's readings cut as a live node sends them: those stamped within a second."""
    out: list[list[Reading]] = []
    i = 0
    while i < len(readings):
        end = readings[i].ts_ns + int(MESSAGE_S * 1e9)
        j = i
        while j < len(readings) and readings[j].ts_ns < end:
            j += 1
        out.append(readings[i:j])
        i = j
    return out


def records(key: str, readings: list[Reading], hours: float) -> Iterator[JournalRecord]:
    """The node's messages and heartbeats as the journal holds them, in reception order."""
    site, node = key.split("/")
    timed: list[tuple[int, str, bytes]] = []
    for message in messages(readings):
        end = message[0].ts_ns + int(MESSAGE_S * 1e9)
        payload = encode_batch(site, node, message, numbering=numbering_of(site, node))
        timed.append((end + 10_000_000, data_topic(site, node), payload))
    beats = int(hours * 3600 / HEARTBEAT_S)
    for b in range(1, beats + 1):
        at = START + timedelta(seconds=b * HEARTBEAT_S)
        health = {"uptime_s": b * HEARTBEAT_S, "run_id": "run0001",
                  "clock": {"jumps": 0, "synchronised": True}}
        timed.append((to_epoch_ns(at) + 10_000_000, status_topic(site, node),
                      encode_status("online", at, health)))
    timed.sort(key=lambda t: t[0])
    for offset, (received, topic, payload) in enumerate(timed):
        yield JournalRecord("p0", offset, received, topic, payload)


def measure(key: str, hours: float, horizon_s: int = DEFAULT_HORIZON_S, detect: bool = True,
            cpu: list[int] | None = None
            ) -> tuple[list[tuple[float, int, int, dict[str, tuple[int, int]]]], NodeState]:
    """(hour, readings so far, sensors, breakdown) at the end of each simulated hour; with
    `cpu`, the CPU ns the node step took for each record (message or heartbeat) appended."""
    readings = node_stream(key, hours)
    logic = NodeLogic(NodeState(horizon_s * 10**9, detect), 1 << 16)
    start_ns = to_epoch_ns(START)
    rows = []
    stamps = [r.ts_ns for r in readings]
    next_hour = 1
    for rec in records(key, readings, hours):
        while rec.received_ns >= start_ns + next_hour * HOUR_NS:
            boundary = start_ns + next_hour * HOUR_NS - int(MESSAGE_S * 1e9) - 10_000_000
            fed = bisect.bisect_left(stamps, boundary)
            rows.append((float(next_hour), fed, len(logic.state.seqs), breakdown(logic.state)))
            next_hour += 1
        if cpu is None:
            logic.on_batch([rec])
        else:
            start = time.process_time_ns()
            logic.on_batch([rec])
            cpu.append(time.process_time_ns() - start)
    if not rows or rows[-1][0] < hours:
        rows.append((hours, len(readings), len(logic.state.seqs), breakdown(logic.state)))
    return rows, logic.state


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--hours", type=float, default=6.0)
    p.add_argument("--nodes", default=",".join(NODES),
                   help="site/node,... or 'all': every node of the city, and their sum")
    p.add_argument("--horizon-s", type=int, default=DEFAULT_HORIZON_S,
                   help="flow.aggregate_horizon_s (default 6 h)")
    p.add_argument("--detail", action="store_true", help="also the larger parts' pieces at the end")
    p.add_argument("--no-detect", action="store_true", help="the node state without detection")
    p.add_argument("--repeat", type=int, default=21, help="pickles timed per part (the median)")
    args = p.parse_args(argv)
    if not args.hours > 0:
        raise PipelineBenchError("--hours must be positive")
    if args.repeat < 1:
        raise PipelineBenchError("--repeat must be at least 1")
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        _report(args)
    finally:
        if was_enabled:  # a test calls main in its own process: the collector given back
            gc.enable()


def _report(args: argparse.Namespace) -> None:
    keys = ([f"{n.site}/{n.node}" for n in City.load().nodes] if args.nodes == "all"
            else args.nodes.split(","))
    city = dict.fromkeys((*PARTS, "total"), (0, 0))
    city_us = dict.fromkeys((*PARTS, "total"), 0.0)
    city_cpu: list[int] = []
    for key in keys:
        cpu: list[int] = []
        rows, state = measure(key, args.hours, args.horizon_s, detect=not args.no_detect, cpu=cpu)
        city_cpu.extend(cpu)
        print(f"\n{key}: KB pickled / KB in memory by part")
        heads = " ".join(f"{n[:13]:>15}" for n in (*PARTS, "total"))
        print(f"{'hour':>5} {'readings':>8} {'sensors':>7} {heads}")
        for hour, n, sensors, b in rows:
            cells = " ".join(f"{b[n][0] / 1e3:7.1f}/{b[n][1] / 1e3:7.1f}" for n in (*PARTS, "total"))
            print(f"{hour:5.1f} {n:8d} {sensors:7d} {cells}")
        city = {n: (city[n][0] + rows[-1][3][n][0], city[n][1] + rows[-1][3][n][1]) for n in city}
        us = pickle_times(state, args.repeat)
        print(f"{'':>22} " + " ".join(f"{us[n]:13.1f}us" for n in (*PARTS, "total"))
              + f"  to pickle (median of {args.repeat})")
        print(f"{'':>22} node step: {sum(cpu) / len(cpu) / 1e3:.1f} CPU µs a record (mean of {len(cpu)})")
        city_us = {n: city_us[n] + us[n] for n in city_us}
        if args.detail:
            for name, value in sorted(detail(state).items(), key=lambda kv: -kv[1]):
                print(f"    {name:<28} {value:>9,}")
    if len(keys) > 1:
        print(f"\nthe {len(keys)} nodes at {args.hours} h: KB pickled / KB in memory / µs to pickle")
        for name, (pickled, memory) in city.items():
            print(f"    {name:<16} {pickled / 1e3:9.1f} {memory / 1e3:9.1f} {city_us[name]:9.1f}")
        print(f"    node step        {sum(city_cpu) / len(city_cpu) / 1e3:.2f} CPU µs a record "
              f"(mean of {len(city_cpu)} messages and heartbeats)")


if __name__ == "__main__":
    main()
