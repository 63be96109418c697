"""Helpers for tests of urbanpulse and of systems built on it (shipped, as gpiozero ships
its mock pins): waiting on real processes without sleeping blindly."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def wait_for(check: Callable[[], T | None], timeout_s: float, what: str, every_s: float = 0.1) -> T:
    """Poll `check` until it returns something truthy and return it; at the deadline raise
    AssertionError naming `what` and the last value seen."""
    deadline = time.monotonic() + timeout_s
    last: T | None = None
    while True:
        last = check()
        if last:
            return last
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout_s}s waiting for {what}; last: {last!r}")
        time.sleep(every_s)
