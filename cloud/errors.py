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
    READ on the database, or an error in its answer: a limit, a missing database, a query
    it cannot run), or what answered is not InfluxDB: asking again at once gets the same
    answer. `status` is the HTTP status, `reason` InfluxDB's message, `kind` what it means
    (cloud.sink.ReadFailure's value) and `advice` what an operator does about it."""

    def __init__(self, message: str, status: int, reason: str, kind: str = "other",
                 advice: str = "") -> None:
        super().__init__(message)
        self.status = status
        self.reason = reason
        self.kind = kind
        self.advice = advice


class InfluxAccessError(CloudError):
    """An InfluxDB user of the config is refused what the processor needs of it (a wrong
    password, a missing GRANT), found by a start-up step: `cloud run` logs it and runs on,
    holding what is refused; `cloud recompute` stops with exit code 2."""


class QueryError(CloudError):
    """An analyst's query (cloud.query) could not be answered."""
