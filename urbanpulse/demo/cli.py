"""`urbanpulse demo [--duration SECONDS] [--seed N] [--city FILE] [--city-nodes all|live]
[--no-gateway]`."""

from __future__ import annotations

import argparse
import signal
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from urbanpulse.errors import UrbanpulseError


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(
        prog="urbanpulse demo",
        description="Run the simulated city (default: Hanoi) through the whole pipeline on the "
                    "local stack, at real time, with a live summary. A subset of nodes runs on "
                    "real edge agents with emulated devices; the rest is published by the "
                    "simulator's lightweight mode. See docs/demo.md.")
    p.add_argument("--duration", type=float, default=None,
                   help="seconds to run (default: until Ctrl-C)")
    p.add_argument("--seed", type=int, default=1, help="the simulation's seed (default 1)")
    p.add_argument("--city", type=Path, default=None,
                   help="a city file (default: the shipped Hanoi pilot city)")
    p.add_argument("--city-nodes", choices=("all", "live"), default="all",
                   help="all: publish the rest of the city in lightweight mode too (default); "
                        "live: only the live subset")
    p.add_argument("--no-gateway", action="store_true",
                   help="the live hospital's nodes publish to the stack's broker directly, "
                        "not through a site broker and a site gateway")
    args = p.parse_args(argv)
    if args.duration is not None and args.duration <= 0:
        p.error("--duration must be > 0")
    from urbanpulse.demo.runner import DemoOptions, run_demo

    try:
        with _stops_as_ctrl_c():
            return run_demo(DemoOptions(args.duration, args.seed, args.city, args.city_nodes,
                                        gateway=not args.no_gateway))
    except UrbanpulseError as exc:
        print(f"urbanpulse demo: {exc}", file=sys.stderr)
        return 3
    except KeyboardInterrupt:  # before the demo ran (its own loop stops cleanly)
        print("urbanpulse demo: stopped while starting; what it started is stopped", file=sys.stderr)
        return 130


@contextmanager
def _stops_as_ctrl_c() -> Iterator[None]:
    """A `kill` (SIGTERM) or a closed terminal (SIGHUP) stops the demo as Ctrl-C does: its
    processor, agents and devices stopped, the ground truth written. Left to their
    defaults, they ended the demo at once and left its processor running, whose ingest
    lock then held the next demo up at start."""
    previous = {sig: signal.signal(sig, signal.default_int_handler)
                for sig in (signal.SIGTERM, signal.SIGHUP)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
