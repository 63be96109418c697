"""The benchmark's own errors."""

from __future__ import annotations

from urbanpulse.errors import UrbanpulseError


class PipelineBenchError(UrbanpulseError):
    """The benchmark could not set up, run or measure."""
