"""The exception hierarchy of the edge agent."""

from urbanpulse.errors import ConfigError, UrbanpulseError

__all__ = ["ConfigError", "DriverError", "EdgeError", "OutboxError"]


class EdgeError(UrbanpulseError):
    pass


class DriverError(EdgeError):
    """A sensor driver failed (unplugged, garbage, timeout); the agent restarts it."""


class OutboxError(EdgeError):
    pass
