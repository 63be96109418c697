"""Errors of the detectors."""

from __future__ import annotations

from cloud.errors import CloudError


class DetectError(CloudError):
    """A detector was given something it cannot score (a non-finite value, an unknown kind)."""
