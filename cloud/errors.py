"""The exception hierarchy of the cloud side."""

from urbanpulse.errors import ConfigError, UrbanpulseError

__all__ = ["CloudError", "ConfigError", "JournalError", "SinkError"]


class CloudError(UrbanpulseError):
    pass


class JournalError(CloudError):
    pass


class SinkError(CloudError):
    pass
