"""What a node's domain rollups hold (`DomainNode`: traffic, air, hospital), part by part:
the nodes of `bench.pipeline.node_state_size` fed the same hours of their own readings
through the dataflow's node step, then each rollup's attributes pickled apart and sized in
memory (`deep_size`), and the time to pickle the node's domain state.

    python -m bench.pipeline.domain_state_size --hours 6
"""

from __future__ import annotations

import argparse
import gc
import pickle
import time

from bench.pipeline.errors import PipelineBenchError
from bench.pipeline.node_state_size import DEFAULT_HORIZON_S, NODES, deep_size, measure
from cloud.logic.domain.node import DomainNode

ROLLUPS = ("traffic", "air", "hospital")


def _pickled(obj: object) -> int:
    return len(pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL))


def rollup_parts(domain: DomainNode) -> dict[str, tuple[int, int]]:
    """"rollup.attribute" -> (pickled bytes, in-memory bytes) of the rollups holding
    anything, each rollup's whole ("rollup") and the domain's whole ("domain")."""
    out: dict[str, tuple[int, int]] = {}
    for name in ROLLUPS:
        rollup = getattr(domain, name)
        whole = (_pickled(rollup), deep_size(rollup))
        if whole[0] < 600:  # a rollup of a kind the node does not send
            continue
        out[name] = whole
        pickled = rollup.__getstate__()
        for attr, value in vars(rollup).items():
            size = deep_size(value)
            if size < 200:
                continue
            out[f"{name}.{attr}"] = (_pickled(value) if attr in pickled else 0, size)
    out["domain"] = (_pickled(domain), deep_size(domain))
    return out


def pickle_us(domain: DomainNode, rounds: int) -> float:
    """Median µs of pickling the domain state whole (as a snapshot does)."""
    times = []
    for _ in range(rounds):
        t0 = time.perf_counter()
        pickle.dumps(domain, protocol=pickle.HIGHEST_PROTOCOL)
        times.append(time.perf_counter() - t0)
    times.sort()
    return times[len(times) // 2] * 1e6


def unpickle_us(domain: DomainNode, rounds: int) -> float:
    data = pickle.dumps(domain, protocol=pickle.HIGHEST_PROTOCOL)
    times = []
    for _ in range(rounds):
        t0 = time.perf_counter()
        pickle.loads(data)
        times.append(time.perf_counter() - t0)
    times.sort()
    return times[len(times) // 2] * 1e6


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--hours", type=float, default=6.0)
    p.add_argument("--nodes", default=",".join(NODES), help="site/node,...")
    p.add_argument("--horizon-s", type=int, default=DEFAULT_HORIZON_S)
    p.add_argument("--rounds", type=int, default=50, help="pickles timed per node")
    args = p.parse_args(argv)
    if not args.hours > 0 or args.rounds < 1:
        raise PipelineBenchError("--hours must be positive and --rounds at least 1")
    for key in args.nodes.split(","):
        # detection off: the domain rollups do not depend on it, and the run is faster
        _, state = measure(key, args.hours, args.horizon_s, detect=False)
        domain = state.domain
        was = gc.isenabled()
        gc.disable()
        try:
            dump, load = pickle_us(domain, args.rounds), unpickle_us(domain, args.rounds)
        finally:
            if was:
                gc.enable()
        print(f"\n{key} at {args.hours} h: KB pickled / KB in memory; "
              f"pickle {dump:.0f} µs, unpickle {load:.0f} µs (median of {args.rounds})")
        for name, (pickled, memory) in rollup_parts(domain).items():
            print(f"    {name:<28} {pickled / 1e3:8.1f} {memory / 1e3:9.1f}")


if __name__ == "__main__":
    main()
