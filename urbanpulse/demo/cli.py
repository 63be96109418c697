"""`urbanpulse demo [--duration SECONDS]`."""

from __future__ import annotations

import argparse
import sys

from urbanpulse.errors import UrbanpulseError


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="urbanpulse demo", description="Run a small simulated city "
                                "(air stations, intersections, a hospital ward) through the whole "
                                "pipeline on the local stack, with a live summary.")
    p.add_argument("--duration", type=float, default=None,
                   help="seconds to run (default: until Ctrl-C)")
    p.add_argument("--seed", type=int, default=1)
    args = p.parse_args(argv)
    if args.duration is not None and args.duration <= 0:
        p.error("--duration must be > 0")
    from urbanpulse.demo.runner import run_demo

    try:
        return run_demo(args.duration, args.seed)
    except UrbanpulseError as exc:
        print(f"urbanpulse demo: {exc}", file=sys.stderr)
        return 3
