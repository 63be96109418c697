"""`python -m bench.influx.run`: influxd's CPU per point written, per influxd setting and per
request shape, the variants interleaved round by round (each round in another order) on
servers of their own, so that a noisy neighbour on the VM hits them all alike.

Each variant has its own private influxd (urbanpulse.stack.influxd's config with the
variant's settings). It first takes the whole point set once unmeasured (its series made),
then each round the same points again, stamped a span later (new points on the same series,
as time goes on in the city).
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import tempfile
from dataclasses import asdict
from pathlib import Path

from bench.influx.measure import Sample, Sender, requests, write_once
from bench.influx.points import PointSet, make_points
from bench.influx.report import rss_table, summarise, table
from bench.influx.server import Server
from bench.influx.variants import Variant, select


class Bench:
    """Variants, each with its server and sender, and how many point sets each has taken."""

    def __init__(self, points: PointSet, variants: list[Variant], workdir: Path) -> None:
        self.points = points
        self.variants = variants
        self.servers = {v.name: Server(workdir / f"v{i:02d}", v.settings, v.env)
                        for i, v in enumerate(variants)}
        self.senders: dict[str, Sender] = {}
        self.written = {v.name: 0 for v in variants}

    def start(self) -> None:
        for v in self.variants:
            server = self.servers[v.name]
            server.start()
            self.senders[v.name] = Sender(server.url(), "writer", server.password("writer"),
                                          server.database)

    def stop(self) -> None:
        for sender in self.senders.values():
            sender.close()
        for server in self.servers.values():
            server.stop()

    def write(self, variant: Variant, round_no: int) -> Sample:
        server = self.servers[variant.name]
        if server.pid is None:
            raise AssertionError("started servers have a pid")
        reqs = requests(self.points, variant, self.written[variant.name] * self.points.span_ns)
        self.written[variant.name] += 1
        return write_once(self.senders[variant.name], server.pid, reqs, variant, round_no)


def run(points: PointSet, variants: list[Variant], rounds: int, workdir: Path, seed: int = 1,
        progress: bool = False) -> list[Sample]:
    """Warm-up (unmeasured, round 0) then `rounds` measured rounds in shuffled orders."""
    bench = Bench(points, variants, workdir)
    samples: list[Sample] = []
    try:
        bench.start()
        for v in variants:
            bench.write(v, 0)
        rng = random.Random(seed)
        for round_no in range(1, rounds + 1):
            order = list(variants)
            rng.shuffle(order)
            for v in order:
                sample = bench.write(v, round_no)
                samples.append(sample)
                if progress:
                    peak_mb, rss_mb = (sample.peak_rss_kb or 0) / 1024, (sample.rss_kb or 0) / 1024
                    print(f"round {round_no} {v.name}: {sample.influxd_per_100k:.3f} s/100k, "
                          f"{sample.rate:,.0f} points/s, peak RSS {peak_mb:,.0f} MB, RSS {rss_mb:,.0f} MB",
                          file=sys.stderr, flush=True)
    finally:
        bench.stop()
    return samples


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.influx.run", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--readings", type=int, default=100_000, help="simulated readings per round")
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--variants", default=None, help="comma-separated names (default: all)")
    p.add_argument("--no-detect", action="store_true", help="no detector events in the points")
    p.add_argument("--workdir", type=Path, default=None, help="keep the servers' homes here")
    p.add_argument("--out", type=Path, default=None, help="write the samples as JSON")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--quiet", action="store_true")
    args = p.parse_args(argv)
    try:
        variants = select(args.variants.split(",") if args.variants else None)
    except ValueError as exc:
        p.error(str(exc))
    points = make_points(args.readings, detect=not args.no_detect, seed=args.seed)
    print(f"{len(points.points):,} points per round from {points.readings:,} readings "
          f"({len(points.points) / points.readings:.2f} per reading), {len(variants)} variants, "
          f"{args.rounds} rounds", flush=True)
    with tempfile.TemporaryDirectory(prefix="bench-influx-") as tmp:
        workdir = args.workdir or Path(tmp)
        workdir.mkdir(parents=True, exist_ok=True)
        samples = run(points, variants, args.rounds, workdir, args.seed, progress=not args.quiet)
    print(table(summarise(samples)))
    print()
    print(rss_table(samples))
    if args.out is not None:
        args.out.write_text(json.dumps([asdict(s) for s in samples], indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
