"""The benchmark's one error type."""

from __future__ import annotations

from urbanpulse.errors import UrbanpulseError


class BenchError(UrbanpulseError):
    """The benchmark could not set up, run or measure what it was asked to."""
