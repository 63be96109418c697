"""`urbanpulse simulate`: run the city offline, as fast as it goes, into files.

    urbanpulse simulate --city FILE --seed N --hours H --out DIR

writes DIR/readings.jsonl (one reading a line: site, node, sensor, kind, ts, seq,
values) or, with --format wire, DIR/batches.jsonl (one contract payload a line, ready to
publish on urbanpulse/v1/<site>/<node>/data), plus DIR/ground_truth.jsonl,
DIR/nodes.json (the nodes and sensors) and DIR/summary.json.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import IO, Any

from urbanpulse.cli_types import aware_datetime
from urbanpulse.clock import from_epoch_ns
from urbanpulse.closed_stdout import is_closed_stdout
from urbanpulse.errors import UrbanpulseError
from urbanpulse.simulate.city import DEFAULT_CITY, City, NodeSpec
from urbanpulse.simulate.lightweight import NodeBatch
from urbanpulse.simulate.scenario import merge_events, plan_events, write_ground_truth
from urbanpulse.simulate.simulation import DEFAULT_START, Simulation
from urbanpulse.wire import format_ts


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="urbanpulse simulate", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--city", type=Path, default=DEFAULT_CITY,
                   help="city TOML file (default: the shipped Hanoi pilot)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--hours", type=float, default=24.0, help="simulated hours to run")
    p.add_argument("--out", type=Path, help="directory for the output files")
    p.add_argument("--start", type=aware_datetime, default=DEFAULT_START,
                   help="start, ISO 8601 with a zone (default: Monday 2026-03-02 00:00 +07:00)")
    p.add_argument("--anomalies", type=int, default=0, help="random anomalies to inject")
    p.add_argument("--faults", type=int, default=0, help="random sensor faults to inject")
    p.add_argument("--no-city-events", action="store_true",
                   help="leave out the [[event]]s of the city file")
    p.add_argument("--replicas", type=int, default=1,
                   help="copies of every site (for load tests of many nodes)")
    p.add_argument("--format", choices=("readings", "wire"), default="readings")
    p.add_argument("--max-batch", type=int, default=500, help="readings per wire batch")
    p.add_argument("--check", action="store_true",
                   help="only load the city and print its nodes; write nothing")
    return p


def node_inventory(nodes: Sequence[NodeSpec]) -> list[dict[str, Any]]:
    return [
        {"site": n.site, "node": n.node, "sensors": [
            {"id": s.id, "driver": s.driver, "kind": s.kind, "period_s": s.period_s,
             "pins": list(s.pins), "params": dict(s.params)} for s in n.sensors]}
        for n in nodes
    ]


def _write_readings(out: IO[str], batch: NodeBatch) -> None:
    lines = []
    for r in batch.readings:
        item: dict[str, Any] = {"site": batch.site, "node": batch.node, "sensor": r.sensor,
                                "kind": r.kind, "ts": format_ts(from_epoch_ns(r.ts_ns)),
                                "seq": r.seq, "values": r.values}
        if r.flags:
            item["flags"] = list(r.flags)
        lines.append(json.dumps(item, separators=(",", ":")))
    out.write("\n".join(lines) + "\n")


def main(argv: list[str]) -> int:
    args = _parser().parse_args(argv)
    try:
        return _run(args)
    except UrbanpulseError as exc:
        print(f"urbanpulse simulate: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        if is_closed_stdout(exc):
            raise  # `simulate --check | head -1`: the dispatcher ends it quietly
        print(f"urbanpulse simulate: {exc}", file=sys.stderr)
        return 1


def _run(args: argparse.Namespace) -> int:
    if args.hours <= 0 or args.replicas < 1 or args.anomalies < 0 or args.faults < 0:
        print("urbanpulse simulate: --hours must be > 0, --replicas >= 1, counts >= 0",
              file=sys.stderr)
        return 2
    city = City.load(args.city)
    if args.replicas > 1:
        city = city.replicate(args.replicas)
    if args.check:
        sensors = sum(len(n.sensors) for n in city.nodes)
        print(f"{city.name}: {len(city.nodes)} nodes, {sensors} sensors, "
              f"{len(city.events)} events")
        return 0
    if args.out is None:
        print("urbanpulse simulate: --out DIR is required", file=sys.stderr)
        return 2
    planned = plan_events(city, args.seed, args.hours, args.anomalies, args.faults)
    events = merge_events(() if args.no_city_events else city.events, planned)
    sim = Simulation(city, args.seed, args.start, events=events)
    args.out.mkdir(parents=True, exist_ok=True)
    until = args.hours * 3600.0
    generator = sim.readings(args.max_batch)
    batches = 0
    began = time.perf_counter()
    name = "readings.jsonl" if args.format == "readings" else "batches.jsonl"
    with (args.out / name).open("w", encoding="utf-8") as out:
        for batch in generator.run(until):
            batches += 1
            if args.format == "wire":
                out.write(batch.encode().decode() + "\n")
            else:
                _write_readings(out, batch)
    elapsed = time.perf_counter() - began
    truth = sim.ground_truth(until)
    write_ground_truth(args.out / "ground_truth.jsonl", truth, sim.timebase)
    (args.out / "nodes.json").write_text(json.dumps(node_inventory(city.nodes), indent=1))
    summary = {
        "city": city.name, "seed": args.seed, "start": format_ts(sim.start),
        "hours": args.hours, "nodes": len(city.nodes), "readings": generator.count,
        "batches": batches, "seconds": round(elapsed, 3),
        "readings_per_s": round(generator.count / elapsed) if elapsed > 0 else None,
        "events": len(truth),
    }
    (args.out / "summary.json").write_text(json.dumps(summary, indent=1) + "\n")
    print(f"{generator.count} readings from {len(city.nodes)} nodes over {args.hours:g} h "
          f"in {elapsed:.1f} s; {len(truth)} ground-truth events; files in {args.out}")
    return 0
