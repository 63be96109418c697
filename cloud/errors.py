"""The exception hierarchy of the cloud side."""

from urbanpulse.errors import ConfigError, UrbanpulseError

__all__ = ["CloudError", "ConfigError", "JournalError", "QueryError", "SinkError"]


class CloudError(UrbanpulseError):
    pass


class JournalError(CloudError):
    pass


class SinkError(CloudError):
    pass


class QueryError(CloudError):
    """An analyst's query (cloud.query) could not be answered."""
