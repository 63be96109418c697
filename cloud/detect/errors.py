"""Errors of the detectors."""

from __future__ import annotations

from urbanpulse.errors import UrbanpulseError


class DetectError(UrbanpulseError):
    """A detector was given something it cannot score (a non-finite value, an unknown kind)."""
