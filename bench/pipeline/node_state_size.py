"""What a node's state holds: a few simulated nodes fed hours of their own readings through
the dataflow's node step (`cloud.flow.NodeLogic`: decode, `NodeState.process`, a tick every
30 s of reception), one message per second of readings at most (the agent's
`outbox.batch_max_delay_s`) and a heartbeat every 30 s, then the state's pickled and
in-memory bytes broken down by part, each simulated hour, and at the end the time to pickle
each part and the whole state (a snapshot of the node: the median of --repeat pickles).

    python -m bench.pipeline.node_state_size --hours 6

With --frozen-store, each node is fed twice in one run (alternating which goes first): as
before, its closed windows frozen inline, and with a frozen store (cloud/frozen_store.py, a
temporary directory) and a snapshot of the node every --epoch-s of reception (as Bytewax
snapshots a node each epoch it is touched: `NodeState.frozen_snapshot`, which writes the
rows); it prints the snapshot bytes and pickling CPU of both, the node step's CPU, and the
store's cost per window written (each snapshot's flush: CPU and wall time, fsync included).

    python -m bench.pipeline.node_state_size --hours 6 --frozen-store
"""

from __future__ import annotations

import argparse
import bisect
import contextlib
import gc
import pickle
import statistics
import sys
import tempfile
import time
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

from bench.pipeline.errors import PipelineBenchError
from bench.pipeline.workload import numbering_of
from cloud.flow import NodeLogic
from cloud.frozen_store import FrozenStore
from cloud.journal import JournalRecord
from cloud.logic.node import NodeState
from cloud.logic.rollup import HOUR_NS, rollup_states
from cloud.logic.seqs import numberings_state
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


def snapshot_parts(state: NodeState) -> dict[str, list[object]]:
    """The parts as a snapshot pickles them: the rollups, numberings and fault monitors as
    the tuples the node's snapshot holds (`NodeState.__getstate__`), not as objects."""
    grouped = parts(state)
    grouped["fault_monitors"] = [fw.faults.__getstate__() for watch in state.watch.values()
                                 for fw in watch.fields.values() if fw is not None]
    grouped["seqs"] = [numberings_state(state.seqs)]
    grouped["windows_minute"] = [rollup_states(state.minute)]
    grouped["windows_hour"] = [rollup_states(state.hour)]
    return grouped


def breakdown(state: NodeState) -> dict[str, tuple[int, int]]:
    """part -> (pickled bytes as a snapshot holds it, in-memory bytes); "total" the whole
    state's. The in-memory sizes share one `seen` set, so an object reached from two parts
    counts in the first."""
    seen: set[int] = set()
    pickled = {name: _pickled(objs) for name, objs in snapshot_parts(state).items()}
    out = {name: (pickled[name], deep_size(objs, seen)) for name, objs in parts(state).items()}
    out["total"] = (_pickled(state), deep_size(state))
    return out


def pickle_times(state: NodeState, repeat: int) -> dict[str, float]:
    """part -> CPU µs to pickle it (the machine is shared: not wall time), the median of
    `repeat` pickles; "total" the whole state's."""
    grouped: dict[str, object] = dict(snapshot_parts(state))
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


class EveryNthFlush(FrozenStore):
    """A store whose flush writes only at every `every`-th call (and when forced): a
    processor's store flushes once an epoch for all its nodes, not once for each; fed one
    node, a flush at each of its snapshots costs its fsync's cold caches to the node step."""

    def __init__(self, directory: Path, every: int) -> None:
        super().__init__(directory, 0, 10**18)
        self.every = every
        self.calls = 0

    def flush(self, force_deletes: bool = False) -> None:
        self.calls += 1
        if force_deletes or self.calls % self.every == 0:
            super().flush(force_deletes)


@dataclass
class Snapshots:
    """A node's snapshots taken with a frozen store every `epoch_ns` of reception, and what
    their `NodeState.frozen_snapshot` calls cost (the store's flush included)."""

    store: FrozenStore
    epoch_ns: int
    taken: int = 0
    cpu_ns: list[int] = field(default_factory=list)
    wall_ns: list[int] = field(default_factory=list)

    def take(self, state: NodeState) -> None:
        cpu, wall = time.process_time_ns(), time.perf_counter_ns()
        state.frozen_snapshot()
        self.cpu_ns.append(time.process_time_ns() - cpu)
        self.wall_ns.append(time.perf_counter_ns() - wall)
        self.taken += 1


def measure(key: str, hours: float, horizon_s: int = DEFAULT_HORIZON_S, detect: bool = True,
            cpu: list[int] | None = None, readings: list[Reading] | None = None,
            snapshots: Snapshots | None = None
            ) -> tuple[list[tuple[float, int, int, dict[str, tuple[int, int]]]], NodeState]:
    """(hour, readings so far, sensors, breakdown) at the end of each simulated hour; with
    `cpu`, the CPU ns the node step took for each record (message or heartbeat) appended;
    with `snapshots`, the node's windows freeze into its store and it is snapshotted every
    epoch of reception (and once at the end)."""
    if readings is None:
        readings = node_stream(key, hours)
    logic = NodeLogic(NodeState(horizon_s * 10**9, detect), 1 << 16)
    if snapshots is not None:
        logic.state.use_frozen_store(snapshots.store)
    next_epoch = 0
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
        if snapshots is not None and rec.received_ns >= next_epoch:
            if next_epoch:
                snapshots.take(logic.state)
            next_epoch = rec.received_ns - rec.received_ns % snapshots.epoch_ns + snapshots.epoch_ns
        if cpu is None:
            logic.on_batch([rec])
        else:
            start = time.process_time_ns()
            logic.on_batch([rec])
            cpu.append(time.process_time_ns() - start)
    if snapshots is not None:
        snapshots.take(logic.state)
        snapshots.store.flush(force_deletes=True)
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
    p.add_argument("--frozen-store", action="store_true",
                   help="each node without and with a frozen store, compared (see above)")
    p.add_argument("--epoch-s", type=float, default=2.0,
                   help="with --frozen-store: a snapshot of the node each this of reception")
    p.add_argument("--flush-every", type=int, default=1,
                   help="with --frozen-store: the store written at every N-th snapshot only")
    args = p.parse_args(argv)
    if not args.hours > 0:
        raise PipelineBenchError("--hours must be positive")
    if args.repeat < 1:
        raise PipelineBenchError("--repeat must be at least 1")
    if not args.epoch_s > 0:
        raise PipelineBenchError("--epoch-s must be positive")
    if args.flush_every < 1:
        raise PipelineBenchError("--flush-every must be at least 1")
    with collector_off():
        if args.frozen_store:
            _compare_store(args)
        else:
            _report(args)


@contextlib.contextmanager
def collector_off() -> Iterator[None]:
    """The cyclic collector off while measuring (its passes land in whatever runs then),
    given back after: a test calls a bench's main in its own process."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
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


def _keys(nodes: str) -> list[str]:
    return [f"{n.site}/{n.node}" for n in City.load().nodes] if nodes == "all" else nodes.split(",")


def _frozen_windows(state: NodeState) -> int:
    return sum(len(r.frozen) for rs in (state.minute, state.hour) for r in rs.values())


def _compare_store(args: argparse.Namespace) -> None:
    """Each node fed without and with a frozen store (alternating which first), compared."""
    total: dict[str, float] = {}

    def add(name: str, value: float) -> None:
        total[name] = total.get(name, 0.0) + value

    batched: list[tuple[int, int, int]] = []
    print(f"{'node':<28} {'KB pickled':>17} {'µs to pickle':>17} {'step µs/rec':>13} "
          f"{'frozen':>7} {'rows':>7} {'flush µs/row':>12} {'flush ms':>9}")
    print(f"{'':<28} {'inline -> store':>17} {'inline -> store':>17} {'inline store':>13} "
          f"{'windows':>7} {'written':>7} {'(CPU)':>12} {'wall/snap':>9}")
    for n, key in enumerate(_keys(args.nodes)):
        readings = node_stream(key, args.hours)
        with tempfile.TemporaryDirectory() as d:
            store = EveryNthFlush(Path(d), args.flush_every)
            snapshots = Snapshots(store, int(args.epoch_s * 1e9))
            results = {}
            for with_store in ((False, True) if n % 2 == 0 else (True, False)):
                cpu: list[int] = []
                _, state = measure(key, args.hours, args.horizon_s, not args.no_detect, cpu, readings,
                                   snapshots if with_store else None)
                results[with_store] = (len(pickle.dumps(state, protocol=pickle.HIGHEST_PROTOCOL)),
                                       pickle_times(state, args.repeat)["total"],
                                       sum(cpu) / len(cpu) / 1e3, _frozen_windows(state))
            rows = store.rows_written
            states = [s for r in (*state.minute.values(), *state.hour.values())
                      for s in r.frozen.values() if isinstance(s, bytes)]
            batched.extend(_batch_cost(Path(d), states or [b"x" * 90]))
            store.close()
        (b0, us0, step0, frozen), (b1, us1, step1, _) = results[False], results[True]
        flush_cpu = sum(snapshots.cpu_ns)
        per_row = flush_cpu / rows / 1e3 if rows else 0.0
        wall = statistics.median(snapshots.wall_ns) / 1e6
        print(f"{key:<28} {b0 / 1e3:8.1f}{b1 / 1e3:9.1f} {us0:8.1f}{us1:9.1f} {step0:6.1f}{step1:7.1f} "
              f"{frozen:7d} {rows:7d} {per_row:12.2f} {wall:9.3f}")
        for name, value in (("b0", b0), ("b1", b1), ("us0", us0), ("us1", us1), ("frozen", frozen),
                            ("rows", rows), ("flush_cpu", flush_cpu), ("snaps", snapshots.taken)):
            add(name, value)
    if total.get("rows"):
        print(f"\nthe nodes at {args.hours} h: snapshot {total['b0'] / 1e3:.1f} -> "
              f"{total['b1'] / 1e3:.1f} KB "
              f"({total['b1'] / total['b0']:.3f}), pickling {total['us0']:.0f} -> {total['us1']:.0f} µs "
              f"({total['us1'] / total['us0']:.3f}); {total['frozen']:.0f} windows frozen at the end, "
              f"{total['rows']:.0f} rows written, the snapshots' flushes "
              f"{total['flush_cpu'] / total['rows'] / 1e3:.2f} CPU µs a row "
              f"({total['snaps']:.0f} snapshots, "
              f"{total['flush_cpu'] / total['snaps'] / 1e3:.1f} CPU µs each)")
    rows = sum(n for n, _, _ in batched)
    print(f"written as one process's epoch writes them (the nodes' frozen windows, {BATCH_ROWS} "
          f"a flush): {sum(c for _, c, _ in batched) / rows / 1e3:.2f} CPU µs a row, put and "
          f"flush, {sum(w for _, _, w in batched) / rows / 1e3:.2f} µs wall (fsync included; "
          f"{len(batched)} flushes)")


BATCH_ROWS = 1000  # a process's rows of an epoch: ~16,500 windows close a second in the city


def _batch_cost(directory: Path, states: list[bytes]) -> list[tuple[int, int, int]]:
    """(rows, CPU ns, wall ns) of each flush of BATCH_ROWS rows (the node's frozen windows'
    states, repeated) into a store of its own: the cost per window when one flush carries an
    epoch's rows of many nodes, as in a processor."""
    store = FrozenStore(directory, 1, 0)
    out = []
    for k in range(5):
        batch = [states[(k * BATCH_ROWS + i) % len(states)] for i in range(BATCH_ROWS)]
        cpu, wall = time.process_time_ns(), time.perf_counter_ns()
        for state in batch:
            store.put(state)
        store.flush()
        out.append((len(batch), time.process_time_ns() - cpu, time.perf_counter_ns() - wall))
    store.close()
    return out


if __name__ == "__main__":
    main()
