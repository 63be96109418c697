"""`urbanpulse dashboards generate | check`."""

from __future__ import annotations

import argparse
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

from urbanpulse.dashboards.check import CredentialsRefused, check_all
from urbanpulse.dashboards.errors import DashboardsError
from urbanpulse.dashboards.generate import stale, write
from urbanpulse.influx_http import InfluxError, InfluxHTTP


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="urbanpulse dashboards",
                                     description="Grafana dashboards, provisioning and alert rules.")
    sub = parser.add_subparsers(dest="command", required=True)
    gen = sub.add_parser("generate", help="write the dashboard JSON and provisioning YAML")
    gen.add_argument("--out", type=Path, default=Path("dashboards"))
    gen.add_argument("--check", action="store_true",
                     help="write nothing; exit 1 if the files under --out differ from the code")
    chk = sub.add_parser("check", help="run every panel, variable and alert query on InfluxDB")
    chk.add_argument("--influx-url", required=True)
    chk.add_argument("--user", required=True)
    chk.add_argument("--password-file", type=Path, required=True)
    chk.add_argument("--db", default="urbanpulse")
    chk.add_argument("--ca-file", type=Path, default=None,
                     help="CA bundle that signed an https InfluxDB's certificate (default: the system's)")
    chk.add_argument("--hours", type=float, default=6.0, help="dashboard time range (default 6)")
    chk.add_argument("--verbose", action="store_true", help="print every query, not only failures")
    return parser


def _generate(out: Path, check_only: bool) -> int:
    if check_only:
        differing = stale(out)
        for relative in differing:
            print(f"stale: {out / relative}", file=sys.stderr)
        return 1 if differing else 0
    for path in write(out):
        print(path)
    return 0


def _check(args: argparse.Namespace) -> int:
    try:
        password = args.password_file.read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise DashboardsError(f"--password-file {args.password_file}: {exc}") from exc
    if args.hours <= 0:
        raise DashboardsError(f"--hours must be positive, got {args.hours}")
    failures = total = 0
    # A server that cannot be reached, or not trusted, is one error, not one per query.
    try:
        client = InfluxHTTP(args.influx_url, args.user, password, ca_file=args.ca_file)
        answers = client.ping()
    except (InfluxError, ValueError) as exc:
        raise DashboardsError(f"--influx-url {args.influx_url}: {exc}") from exc
    if not answers:
        client.close()
        raise DashboardsError(f"--influx-url {args.influx_url}: InfluxDB does not answer")
    with client:
        now = datetime.now(UTC)
        try:
            for result in check_all(client, args.db, now, timedelta(hours=args.hours)):
                total += 1
                if not result.ok:
                    failures += 1
                    print(f"FAIL {result.where}: {result.error}\n     {result.influxql}")
                elif args.verbose:
                    print(f"ok   {result.where}: {result.series} series, {result.rows} rows")
        except CredentialsRefused as exc:
            # one message, not the same refusal for each of the ~160 queries
            raise DashboardsError(
                f"--user {args.user}: InfluxDB at {args.influx_url} refused the credentials "
                f"(an unknown user or a wrong password; --password-file {args.password_file}): "
                f"{exc}") from exc
    print(f"{total - failures}/{total} queries ran without error")
    return 1 if failures else 0


def main(argv: list[str]) -> int:
    args = _parser().parse_args(argv)
    try:
        if args.command == "generate":
            return _generate(args.out, args.check)
        return _check(args)
    except DashboardsError as exc:
        print(f"urbanpulse dashboards: {exc}", file=sys.stderr)
        return 2
