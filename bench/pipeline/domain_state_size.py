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
from bench.pipeline.node_state_size import (
    DEFAULT_HORIZON_S,
    NODES,
    deep_size,
    measure,
    messages,
    node_stream,
)
from cloud.logic.domain.node import DomainNode
from cloud.logic.rollup import HOUR_NS

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
            # (pickled as the snapshot holds it: the bed readings as columns' bytes)
            out[f"{name}.{attr}"] = (_pickled(pickled[attr]) if attr in pickled else 0, size)
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


def process_us(key: str, hours: float, horizon_s: int, rounds: int, late_h: float = 0.0
               ) -> tuple[float, int]:
    """Least CPU µs per message of `DomainNode.process` over the node's hours, fed to a new
    domain state each round; and the messages. With `late_h`, the readings of the `late_h`
    hours from the first hour's end on come last (an outage's backlog, within the horizon)."""
    site, node = key.split("/")
    readings = node_stream(key, hours)
    if late_h:
        first = readings[0].ts_ns - readings[0].ts_ns % HOUR_NS + HOUR_NS
        end = first + int(late_h * HOUR_NS)
        held = [r for r in readings if first <= r.ts_ns < end]
        readings = [r for r in readings if not first <= r.ts_ns < end]
        msgs = messages(readings) + messages(held)
    else:
        msgs = messages(readings)
    best = float("inf")
    for _ in range(rounds):
        domain = DomainNode(horizon_s * 10**9)
        t0 = time.process_time()
        for msg in msgs:
            domain.process(site, node, msg)
        best = min(best, time.process_time() - t0)
    return best / len(msgs) * 1e6, len(msgs)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--hours", type=float, default=6.0)
    p.add_argument("--nodes", default=",".join(NODES), help="site/node,...")
    p.add_argument("--horizon-s", type=int, default=DEFAULT_HORIZON_S)
    p.add_argument("--rounds", type=int, default=50, help="pickles timed per node")
    p.add_argument("--process-rounds", type=int, default=0,
                   help="also time DomainNode.process per message, the least of these rounds")
    p.add_argument("--late-hours", type=float, default=2.0,
                   help="and with these hours' readings (from hour 1 on) sent last, a backlog")
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
        if args.process_rounds:
            us, n = process_us(key, args.hours, args.horizon_s, args.process_rounds)
            print(f"    process: {us:.2f} µs a message ({n} messages, least of {args.process_rounds})")
            if args.late_hours:
                us, n = process_us(key, args.hours, args.horizon_s, args.process_rounds,
                                   args.late_hours)
                print(f"    process, {args.late_hours} h sent last: {us:.2f} µs a message")


if __name__ == "__main__":
    main()
