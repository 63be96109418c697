"""`python -m bench.faults.state_size`: what a node's fault monitors (`FaultMonitor`) hold,
pickled and in memory, per monitor and per attribute.

    python -m bench.faults.state_size [--hours 6] [--nodes site/node,...]

Each node is fed `--hours` of its simulated readings and heartbeats through the dataflow's
node step, as `python -m bench.pipeline.node_state_size` feeds it (its `measure`, imported),
and its monitors (one per sensor field, `NodeState.watch`) are measured twice: as fed
("live"), and after the node's state went through a snapshot (`pickle.dumps` and
`pickle.loads` of the whole `NodeState`, as a resumed dataflow holds it: "resumed").
Printed, per node: the monitors' bytes pickled together (as in the node's snapshot: an
object they share pickled once) and in memory (`deep_size`: each object once, however
many monitors reach it), and the CPU µs to pickle and to unpickle them (best of 5);
then, over all the nodes, each attribute's in-memory bytes (an object shared by several
monitors counted once, at the first) and pickled bytes (each monitor's attribute pickled
alone: an object shared is counted for each), and the instance itself and its attribute
dict where it has one.
"""

from __future__ import annotations

import argparse
import gc
import pickle
import sys
import time
from collections.abc import Callable

from bench.pipeline.node_state_size import deep_size, measure
from cloud.detect.faults import FaultMonitor
from cloud.logic.node import NodeState

NODES = ("bach-mai/ward-cardio", "nga-tu-so/cabinet", "hoan-kiem-lake/aq-1",
         "bach-mai/laboratory")
REPEAT = 5


def monitors(state: NodeState) -> list[FaultMonitor]:
    return [fw.faults for watch in state.watch.values() for fw in watch.fields.values()
            if fw is not None]


def attributes(monitor: FaultMonitor) -> dict[str, object]:
    """The monitor's attributes, read where they are kept (its dict or its slots)."""
    if hasattr(monitor, "__dict__"):
        return dict(vars(monitor))
    return {name: getattr(monitor, name) for klass in type(monitor).__mro__
            for name in getattr(klass, "__slots__", ()) if hasattr(monitor, name)}


def _cpu(fn: Callable[[], object]) -> float:
    """Best CPU seconds of `REPEAT` runs of `fn`."""
    best = float("inf")
    for _ in range(REPEAT):
        start = time.process_time()
        fn()
        best = min(best, time.process_time() - start)
    return best


def node_row(mons: list[FaultMonitor]) -> tuple[int, int, float, float]:
    """(pickled bytes, in-memory bytes, µs to pickle, µs to unpickle), all monitors."""
    blob = pickle.dumps(mons, protocol=pickle.HIGHEST_PROTOCOL)
    dump = _cpu(lambda: pickle.dumps(mons, protocol=pickle.HIGHEST_PROTOCOL))
    load = _cpu(lambda: pickle.loads(blob))
    return len(blob), deep_size(mons), dump * 1e6, load * 1e6


def by_attribute(mons: list[FaultMonitor]) -> dict[str, tuple[int, int]]:
    """attribute -> (pickled bytes, in-memory bytes) summed over `mons`; "(instance)" the
    objects themselves, "(__dict__)" their attribute dicts (the table, not the values)."""
    seen: set[int] = set()
    out: dict[str, tuple[int, int]] = {"(instance)": (0, 0), "(__dict__)": (0, 0)}
    for m in mons:
        seen.add(id(m))
        out["(instance)"] = (0, out["(instance)"][1] + sys.getsizeof(m))
        if hasattr(m, "__dict__"):
            table = vars(m)
            seen.add(id(table))
            out["(__dict__)"] = (0, out["(__dict__)"][1] + sys.getsizeof(table))
            seen.update(id(k) for k in table)  # the names: interned, shared by all
        for name, value in attributes(m).items():
            pickled, memory = out.get(name, (0, 0))
            out[name] = (pickled + len(pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)),
                         memory + deep_size(value, seen))
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.faults.state_size", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--hours", type=float, default=6.0)
    parser.add_argument("--nodes", default=",".join(NODES), help="site/node,...")
    args = parser.parse_args(argv)
    if not args.hours > 0:
        raise SystemExit("--hours must be positive")
    live: list[FaultMonitor] = []
    resumed: list[FaultMonitor] = []
    print(f"after {args.hours:g} h: the node's monitors, pickled together / in memory, "
          "CPU to pickle / unpickle them")
    print(f"{'node':<24} {'view':<8} {'monitors':>8} {'KB pickled':>10} {'KB memory':>10} "
          f"{'B/monitor':>15} {'µs dump':>8} {'µs load':>8}")
    for key in args.nodes.split(","):
        _, state = measure(key, args.hours)
        again: NodeState = pickle.loads(pickle.dumps(state, protocol=pickle.HIGHEST_PROTOCOL))
        for view, mons in (("live", monitors(state)), ("resumed", monitors(again))):
            (live if view == "live" else resumed).extend(mons)
            gc.collect()
            pickled, memory, dump, load = node_row(mons)
            n = len(mons)
            print(f"{key:<24} {view:<8} {n:8d} {pickled / 1e3:10.1f} {memory / 1e3:10.1f} "
                  f"{pickled / n:7.0f}/{memory / n:7.0f} {dump:8.0f} {load:8.0f}")
    for view, mons in (("live", live), ("resumed", resumed)):
        table = by_attribute(mons)
        n = len(mons)
        total = sum(memory for _, memory in table.values())
        print(f"\n{view}: {n} monitors, bytes per monitor by attribute (in memory: shared "
              f"objects once; pickled: each attribute alone), {total / n:.0f} B in memory")
        print(f"    {'attribute':<16} {'memory':>8} {'pickled':>8}")
        for name, (pickled, memory) in sorted(table.items(), key=lambda kv: -kv[1][1]):
            if memory or pickled:
                print(f"    {name:<16} {memory / n:8.0f} {pickled / n:8.0f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
