"""The query package's errors: a bad argument (found before any I/O) or a failed query."""

from __future__ import annotations

from cloud.errors import QueryError

__all__ = ["BadArgument", "QueryError"]


class BadArgument(QueryError):
    """An argument is wrong; `argument` names it, the message says why."""

    def __init__(self, argument: str, reason: str) -> None:
        super().__init__(f"{argument}: {reason}")
        self.argument = argument
        self.reason = reason
