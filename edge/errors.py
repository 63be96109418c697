"""The exception hierarchy of the edge agent."""

from urbanpulse.errors import ConfigError, UrbanpulseError

__all__ = ["ConfigError", "CredentialsError", "DriverError", "EdgeError", "OutboxError",
           "PublisherError"]


class EdgeError(UrbanpulseError):
    pass


class DriverError(EdgeError):
    """A sensor driver failed (unplugged, garbage, timeout); the agent restarts it."""


class OutboxError(EdgeError):
    pass


class CredentialsError(EdgeError):
    """The MQTT credential or TLS files named in the config cannot be used (missing,
    unreadable, not a certificate); the publisher tries again, the outbox keeps the readings."""


class PublisherError(EdgeError):
    """The MQTT publisher thread died. The agent stops with it, so that its supervisor
    (systemd, Restart=always) starts it afresh; the outbox keeps every reading meanwhile."""
