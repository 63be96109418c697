"""Argument types shared by the command-line tools (argparse `type=` functions)."""

from __future__ import annotations

import argparse
from datetime import datetime
from pathlib import Path


def aware_datetime(text: str) -> datetime:
    """An ISO-8601 time with its zone: a time without one is refused, not taken as local."""
    try:
        value = datetime.fromisoformat(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"{text!r} is not an ISO-8601 time") from exc
    if value.tzinfo is None:
        raise argparse.ArgumentTypeError(f"{text!r} has no zone: add Z (UTC) or an offset (+07:00)")
    return value


def add_config_argument(parser: argparse.ArgumentParser) -> None:
    """`check-config FILE` and `check-config --config FILE` alike: every other command
    takes `--config`, and a technician types it here too. Read back with `config_of`."""
    parser.add_argument("config", type=Path, nargs="?", help="the config file")
    parser.add_argument("--config", dest="config_option", type=Path, metavar="CONFIG",
                        help="the config file (the same as giving it alone)")


def config_of(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """Sets `args.config` from either form of `add_config_argument`; a usage error (exit 2)
    when neither or two different files are given."""
    given = getattr(args, "config_option", None)
    if given is not None and args.config is not None and given != args.config:
        parser.error(f"two config files given: {args.config} and --config {given}")
    args.config = args.config or given
    if args.config is None:
        parser.error("the config file is required (check-config FILE, or --config FILE)")
