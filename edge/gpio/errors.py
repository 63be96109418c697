"""Errors of the GPIO layer (part of the edge hierarchy)."""

from edge.errors import EdgeError


class GpioError(EdgeError):
    pass


class GpioBackendUnavailable(GpioError):
    """The requested gpiozero backend cannot run here (library missing, wrong board)."""
