"""The edge agent as `urbanpulse edge run --config FILE` runs it, on a wall clock the soak
steps from outside: `python -m bench.chaos.stepped_agent --config FILE --offset-file F`.

The agent takes its clock as an argument (`Agent(config, clock=...)`, the clock its drivers
stamp readings with, its publisher judges rows live or backlog by, its outbox commits under
and its clock check watches). This one is the system's, its wall time moved by the number
of seconds in F (absent or empty: 0), which the soak writes: a step of an RTC or of NTP
correcting it, on a running node. The monotonic time is the system's, as a step leaves it.
"""

from __future__ import annotations

import argparse
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from edge.cli import EXIT_CONFIG, run_agent
from edge.config import load_config
from urbanpulse.errors import ConfigError

REREAD_S = 0.05  # the offset file is looked at no more often than this


class SteppedClock:
    def __init__(self, offset_file: Path) -> None:
        self.offset_file = offset_file
        self._offset = timedelta(0)
        self._read_at = -REREAD_S

    def now(self) -> datetime:
        mono = time.monotonic()
        if mono - self._read_at >= REREAD_S:
            self._read_at = mono
            try:
                text = self.offset_file.read_text().strip()
            except FileNotFoundError:
                text = ""
            self._offset = timedelta(seconds=float(text or 0))
        return datetime.now(UTC) + self._offset

    def monotonic(self) -> float:
        return time.monotonic()


def write_offset(offset_file: Path, offset_s: float) -> None:
    """Atomically: the agent never reads half a number."""
    tmp = offset_file.with_suffix(".tmp")
    tmp.write_text(f"{offset_s:.6f}\n")
    tmp.replace(offset_file)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.chaos.stepped_agent", description=__doc__)
    p.add_argument("--config", type=Path, required=True)
    p.add_argument("--offset-file", type=Path, required=True)
    args = p.parse_args(argv)
    try:
        config = load_config(args.config)
    except ConfigError as exc:
        print(f"config error: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    return run_agent(config, "INFO", SteppedClock(args.offset_file))


if __name__ == "__main__":
    sys.exit(main())
