"""`urbanpulse query`: the analysts' queries (cloud.query.CityData) as CSV, to stdout or a
file. Exit codes: 0 done, 2 a bad argument or config (named), 1 InfluxDB failed (or holds a
count that is not a whole number: NotWholeCount)."""

from __future__ import annotations

import argparse
import os
import secrets
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import TextIO

import pandas as pd

from cloud.logic.records import RP_RAW
from cloud.query import catalog
from cloud.query.city_data import CityData
from cloud.query.errors import BadArgument, QueryError
from cloud.query.typed_csv import SIDECAR_SUFFIX, sidecar_path, sidecar_text, write_frames
from urbanpulse.cli_types import aware_datetime
from urbanpulse.clock import to_epoch_ns
from urbanpulse.closed_stdout import is_closed_stdout, silence_stdout
from urbanpulse.errors import ConfigError

EXIT_OK, EXIT_DATABASE, EXIT_ARGUMENTS = 0, 1, 2


def _time(text: str) -> datetime:
    """An ISO-8601 time with its zone (`aware_datetime`), to the nanosecond: the CSV's own
    times have nine digits, which `datetime` would cut to six without a word."""
    value = aware_datetime(text)
    try:
        stamp = pd.Timestamp(text).as_unit("ns")
        ns = stamp.value
    except (ValueError, OverflowError):
        # a form pandas does not read (an ISO week date), or beyond its nanoseconds (which
        # the query refuses by name): no digits past six
        return value
    # the same instant but for the nanoseconds, or datetime's reading stands
    if (not isinstance(stamp, datetime) or stamp.tzinfo is None
            or ns // 1000 != to_epoch_ns(value) // 1000):
        return value
    return stamp


def _tag(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"{text!r}: use KEY=VALUE")
    return key, value


def _parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--config", type=Path, required=True,
                        help="the cloud config: [influx] url, database, reader credentials")
    common.add_argument("--start", type=_time, required=True, help="ISO-8601 with a zone, included")
    common.add_argument("--end", type=_time, required=True, help="ISO-8601 with a zone, excluded")
    common.add_argument("--site", action="append", help="repeat for several (any matches)")
    common.add_argument("--node", action="append")
    common.add_argument("-o", "--output", type=Path,
                        help=f"CSV file (default: stdout), its dtypes beside it in FILE{SIDECAR_SUFFIX}")
    common.add_argument("--dtypes", type=Path, metavar="FILE",
                        help="where to write the dtypes sidecar (cloud.query.read_csv reads both)")
    common.add_argument("--float-counts", action="store_true",
                        help="the counts stored as floats as stored (1.0), not as integers (1)")

    def sub(name: str, help_: str, *, sensor: bool = True, fields: bool = False
            ) -> argparse.ArgumentParser:
        p = commands.add_parser(name, parents=[common], help=help_)
        if sensor:
            p.add_argument("--sensor", action="append")
        if fields:
            p.add_argument("--field", action="append", dest="fields", help="repeat for several")
        return p

    parser = argparse.ArgumentParser(prog="urbanpulse query", description=__doc__)
    commands = parser.add_subparsers(dest="cmd", required=True)
    sub("readings", "raw readings of a kind", fields=True).add_argument("kind")
    agg = sub("aggregates", "per-sensor 1-minute or 1-hour windows of a kind", fields=True)
    agg.add_argument("kind")
    agg.add_argument("--resolution", choices=sorted(catalog.RESOLUTIONS), default="1m")
    rollup = sub("rollup", "a domain rollup: " + ", ".join(catalog.ROLLUPS), fields=True)
    rollup.add_argument("name")
    rollup.add_argument("--resolution", choices=sorted(catalog.RESOLUTIONS), default="1h")
    sub("ledger", "the delivery ledger per node and hour, with completeness", sensor=False)
    events = sub("events", "anomalies and sensor faults")
    events.add_argument("--type", action="append", help=", ".join(catalog.EVENT_TYPES))
    events.add_argument("--kind", action="append")
    sub("dead-letters", "refused input", sensor=False).add_argument("--reason", action="append")
    sub("node-status", "the nodes' status reports", sensor=False)
    sub("driver-status", "the drivers' counts of bad input, per heartbeat (--sensor: the driver id)")
    sub("doors", "the door counters that sent readings, with the role the processor gives each "
                 "([flow.door_roles] of --config, or the id); warns of door roles naming no door",
        sensor=False)
    generic = sub("measurement", "any stored measurement", sensor=False, fields=True)
    generic.add_argument("name")
    generic.add_argument("--rp", choices=catalog.POLICIES, default=RP_RAW)
    generic.add_argument("--tag", action="append", type=_tag, default=[], metavar="KEY=VALUE")
    return parser


def _frames(data: CityData, a: argparse.Namespace) -> Iterator[pd.DataFrame]:
    span = (a.start, a.end)
    where = {"site": a.site, "node": a.node}
    if a.cmd == "readings":
        return data.iter_readings(a.kind, *span, sensor=a.sensor, fields=a.fields, **where)
    if a.cmd == "aggregates":
        return data.iter_aggregates(a.kind, *span, resolution=a.resolution, sensor=a.sensor,
                                    fields=a.fields, **where)
    if a.cmd == "rollup":
        return data.iter_rollup(a.name, *span, resolution=a.resolution, sensor=a.sensor,
                                fields=a.fields, **where)
    if a.cmd == "ledger":
        return data.iter_ledger(*span, **where)
    if a.cmd == "events":
        return data.iter_events(*span, type=a.type, kind=a.kind, sensor=a.sensor, **where)
    if a.cmd == "dead-letters":
        return data.iter_dead_letters(*span, reason=a.reason, **where)
    if a.cmd == "node-status":
        return data.iter_node_status(*span, **where)
    if a.cmd == "driver-status":
        return data.iter_driver_status(*span, sensor=a.sensor, **where)
    if a.cmd == "doors":
        return _doors(data, a.start, a.end, where)
    # --site/--node and --tag site=/node= on the same key: any of them matches, as with
    # --site repeated (a --tag used to replace --site without a word)
    tags: dict[str, list[str]] = {key: list(values) for key, values in where.items() if values}
    for key, value in a.tag:
        tags.setdefault(key, []).append(value)
    return data.iter_measurement(a.name, *span, rp=a.rp, fields=a.fields, tags=tags)


def _doors(data: CityData, start: datetime, end: datetime, where: dict[str, list[str] | None]
           ) -> Iterator[pd.DataFrame]:
    frame = data.doors(start, end, **where)
    for key in data.unmatched_door_roles(frame, **where):
        print(f'warning: flow.door_roles."{key}" names no door that sent readings in '
              f"[{start.isoformat()}, {end.isoformat()}): a misspelt site, node or sensor id "
              "gives its role to nothing", file=sys.stderr)
    yield frame


def _write_file(frames: Iterator[pd.DataFrame], path: Path, dtypes: Path | None) -> None:
    """Whole or not at all: the CSV and its dtypes sidecar (`dtypes`, or beside `path`), each
    into a new file beside its place, renamed over it once both are complete, the sidecar
    first. Made with mode 0o666 so that the kernel applies the umask, as for any file written."""
    sidecar = dtypes or sidecar_path(path)
    with _new_file(path, "--output") as (csv_part, out), \
            _new_file(sidecar, "--dtypes") as (sidecar_part, side):
        rows, types = write_frames(frames, out)
        side.write(sidecar_text(types, rows))
        side.close()
        out.close()
        _rename(sidecar_part, sidecar, "--dtypes")
        _rename(csv_part, path, "--output")


def _write_sidecar(path: Path, types: dict[str, str], rows: int) -> None:
    with _new_file(path, "--dtypes") as (part, out):
        out.write(sidecar_text(types, rows))
        out.close()
        _rename(part, path, "--dtypes")


@contextmanager
def _new_file(path: Path, option: str) -> Iterator[tuple[Path, TextIO]]:
    """A new temporary file beside `path`, removed on leaving unless renamed meanwhile."""
    part = path.parent / f".{path.name}.{secrets.token_hex(6)}.part"
    try:
        fd = os.open(part, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    except OSError as exc:
        raise BadArgument(option, f"{path}: {exc.strerror or exc}") from exc
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as out:
            yield part, out
    except OSError as exc:
        raise BadArgument(option, f"{path}: {exc.strerror or exc}") from exc
    finally:
        part.unlink(missing_ok=True)


def _rename(part: Path, path: Path, option: str) -> None:
    try:
        os.replace(part, path)
    except OSError as exc:
        raise BadArgument(option, f"{path}: {exc.strerror or exc}") from exc


def main(argv: list[str]) -> int:
    args = _parser().parse_args(argv)
    prog = f"urbanpulse query {args.cmd}"
    if (args.output is not None and args.dtypes is not None
            and os.path.realpath(args.output) == os.path.realpath(args.dtypes)):
        print(f"{prog}: --dtypes: {args.dtypes} is the --output file itself", file=sys.stderr)
        return EXIT_ARGUMENTS
    try:
        with CityData.from_config(args.config, float_counts=args.float_counts) as data:
            frames = _frames(data, args)
            if args.output is None:
                try:
                    rows, types = write_frames(frames, sys.stdout)
                    sys.stdout.flush()
                except BrokenPipeError as exc:
                    if not is_closed_stdout(exc):
                        raise
                    # The reader stopped (`| head`): it has what it wanted (exit 0 here,
                    # where 1 means InfluxDB failed).
                    silence_stdout()
                    return EXIT_OK
                if args.dtypes is not None:
                    _write_sidecar(args.dtypes, types, rows)
                return EXIT_OK
            _write_file(frames, args.output, args.dtypes)
    except (ConfigError, BadArgument) as exc:
        print(f"{prog}: {exc}", file=sys.stderr)
        return EXIT_ARGUMENTS
    except QueryError as exc:
        print(f"{prog}: {exc}", file=sys.stderr)
        return EXIT_DATABASE
    return EXIT_OK
