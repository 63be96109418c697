"""Argument types shared by the command-line tools (argparse `type=` functions)."""

from __future__ import annotations

import argparse
from datetime import datetime


def aware_datetime(text: str) -> datetime:
    """An ISO-8601 time with its zone: a time without one is refused, not taken as local."""
    try:
        value = datetime.fromisoformat(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"{text!r} is not an ISO-8601 time") from exc
    if value.tzinfo is None:
        raise argparse.ArgumentTypeError(f"{text!r} has no zone: add Z (UTC) or an offset (+07:00)")
    return value
