"""The exception hierarchy of the edge agent."""

from urbanpulse.errors import ConfigError, UrbanpulseError

__all__ = ["ConfigError", "CredentialsError", "DriverError", "DriverStateError", "EdgeError",
           "GatewayError", "OutboxError", "OutboxInUseError", "PublisherError"]


class EdgeError(UrbanpulseError):
    pass


class DriverError(EdgeError):
    """A sensor driver failed (unplugged, garbage, timeout); the agent restarts it."""


class OutboxError(EdgeError):
    pass


class OutboxInUseError(OutboxError):
    """Another process holds the outbox open (SQLite's lock on its database file): the agent
    runs. What only a stopped agent allows (clearing a driver's saved state, which the
    running agent would write again with its next commit) is refused."""


class DriverStateError(EdgeError):
    """Saved driver state asked for by a driver (sensor id) or key that has none."""


class CredentialsError(EdgeError):
    """The MQTT credential or TLS files named in the config cannot be used (missing,
    unreadable, not a certificate); the publisher tries again, the outbox keeps the readings."""


class PublisherError(EdgeError):
    """The MQTT publisher thread died. The agent stops with it, so that its supervisor
    (systemd, Restart=always) starts it afresh; the outbox keeps every reading meanwhile."""


class GatewayError(EdgeError):
    """The site gateway (edge/gateway) cannot go on (a relay it cut does not encode). It
    keeps nothing on disk: the nodes keep every batch it carried in their outboxes until
    the cloud's ack comes back, and its supervisor starts it afresh."""
