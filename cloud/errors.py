"""The exception hierarchy of the cloud side."""

from urbanpulse.errors import ConfigError, UrbanpulseError

__all__ = ["CloudError", "ConfigError", "InfluxAccessError", "JournalError", "QueryError",
           "ReadRefused", "SinkError"]


class CloudError(UrbanpulseError):
    pass


class JournalError(CloudError):
    pass


class SinkError(CloudError):
    pass


class ReadRefused(SinkError):
    """InfluxDB refused for good a read of raw points back (a 4xx, e.g. a reader without
    READ on the database, or an error in its answer): asking again at once gets the same
    answer. `status` is InfluxDB's HTTP status, `reason` its message."""

    def __init__(self, message: str, status: int, reason: str) -> None:
        super().__init__(message)
        self.status = status
        self.reason = reason


class InfluxAccessError(CloudError):
    """An InfluxDB user of the config is refused what the processor needs of it (a wrong
    password, a missing GRANT): found by a start-up step, it stops `cloud run` with exit
    code 2, as a configuration error does (restarting would not fix it)."""


class QueryError(CloudError):
    """An analyst's query (cloud.query) could not be answered."""
