"""`python -m bench.pipeline.run`: the pipeline at several offered rates, detection on and off.

Each case starts its own private stack; the wire batches are made once, before any case,
and each case publishes a prefix of them (rate × duration readings).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

from bench.pipeline.atpace import DEFAULT_PER_SITE, at_pace
from bench.pipeline.case import CaseResult, CaseSpec, run_case
from bench.pipeline.errors import PipelineBenchError
from bench.pipeline.report import markdown_table
from bench.pipeline.workload import Workload, generate


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m bench.pipeline.run", description=__doc__)
    p.add_argument("--rates", default="5000,20000,50000,100000",
                   help="offered readings/s, comma-separated")
    p.add_argument("--duration", type=float, default=25.0, help="seconds of publishing per case")
    p.add_argument("--detect", default="on,off", help="'on', 'off' or 'on,off'")
    p.add_argument("--batch", type=int, default=500, help="readings per MQTT message (at most, with --live)")
    p.add_argument("--live", type=float, metavar="SECONDS",
                   help="cut messages as a live node does: the readings stamped within SECONDS of "
                        "the first (the agent's outbox.batch_max_delay_s, 1 by default)")
    p.add_argument("--relay", type=float, metavar="SECONDS",
                   help="send each site's node messages through its gateway: those due in each "
                        "SECONDS in one relay on the gateway's user (urbanpulse.wire.relay)")
    p.add_argument("--replicas", type=int, default=1, help="copies of the default city (19 nodes each)")
    p.add_argument("--at-pace", action="store_true",
                   help="a city of the size the rate implies, each node at its own recorded pace, "
                        "instead of the default city's hours in seconds (bench.pipeline.atpace; "
                        "each rate its own workload)")
    p.add_argument("--site-copies", type=int, default=DEFAULT_PER_SITE,
                   help="with --at-pace: copies of a site's nodes that share one site and gateway")
    p.add_argument("--publishers", type=int, default=2, help="publisher processes")
    p.add_argument("--window", type=int, default=100, help="unacknowledged messages per connection")
    p.add_argument("--drain", type=float, default=120.0, help="seconds to wait for the backlog")
    p.add_argument("--flow", action="append", default=[], metavar="KEY=JSON",
                   help="extra [flow] settings of the processor, e.g. epoch_interval_s=2.0")
    p.add_argument("--processes", type=int, default=1,
                   help="run the processor as a Bytewax cluster of this many processes (and ingests)")
    p.add_argument("--profile", action="store_true", help="py-spy the processor (if installed)")
    p.add_argument("--workdir", type=Path, default=None, help="keep logs and state here")
    p.add_argument("--out", type=Path, default=None, help="write the results as JSON")
    return p


def _at_pace(rate: float, args: argparse.Namespace) -> Workload:
    started = time.monotonic()
    city = at_pace(int(rate * args.duration), rate=rate, per_site=args.site_copies, batch=args.batch,
                   live_s=args.live)
    w = city.workload
    print(f"workload at {rate:g} readings/s at the nodes' own pace: {w.readings} readings in "
          f"{len(w.messages)} messages; the city's {city.base_nodes} nodes {city.copies} times "
          f"({city.city_nodes} nodes, {city.sites} sites), {len(w.nodes)} of them sending in the "
          f"{city.span_s:g} s; made in {time.monotonic() - started:.1f} s", flush=True)
    return w


def main(argv: list[str]) -> int:
    args = _parser().parse_args(argv)
    try:
        rates = [float(r) for r in args.rates.split(",") if r]
        detects = {"on": True, "off": False}
        modes = [detects[d] for d in args.detect.split(",")]
        flow = {k: json.loads(v) for k, _, v in (f.partition("=") for f in args.flow)}
    except (ValueError, KeyError) as exc:
        print(f"bad argument: {exc}", file=sys.stderr)
        return 2
    if args.at_pace and args.relay is None:
        print("--at-pace needs --relay: tens of thousands of nodes cannot each hold their own "
              "connection here", file=sys.stderr)
        return 2
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="bench-pipeline-"))
    started = time.monotonic()
    try:
        workload = None if args.at_pace else generate(
            int(max(rates) * args.duration), replicas=args.replicas, batch=args.batch, live_s=args.live)
    except PipelineBenchError as exc:
        print(f"cannot make the workload: {exc}", file=sys.stderr)
        return 1
    if workload is not None:
        print(f"workload: {workload.readings} readings in {len(workload.messages)} messages from "
              f"{len(workload.nodes)} nodes, made in {time.monotonic() - started:.1f} s", flush=True)
    paced: dict[float, Workload] = {}
    results: list[CaseResult] = []
    for detect in modes:
        for rate in rates:
            spec = CaseSpec(rate, args.duration, detect, args.publishers, args.window, args.drain, flow,
                            args.profile, args.processes, args.relay)
            name = (f"r{int(rate)}-{'detect' if detect else 'nodetect'}{'-relay' if args.relay else ''}"
                    f"{'-atpace' if args.at_pace else ''}")
            try:
                if workload is None:
                    if rate not in paced:
                        paced[rate] = _at_pace(rate, args)
                    offered = paced[rate]
                else:
                    offered = workload.prefix(int(rate * args.duration))
                result = run_case(spec, offered, workdir / name)
            except PipelineBenchError as exc:
                print(f"{name}: {exc}", file=sys.stderr)
                return 1
            results.append(result)
            print(json.dumps(result.to_json()), flush=True)
            if args.out:
                args.out.write_text(json.dumps([r.to_json() for r in results], indent=1))
    print(markdown_table(results))
    return 0 if all(r.complete and not r.error for r in results) else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
