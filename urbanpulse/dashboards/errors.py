"""Errors of the dashboards package."""

from __future__ import annotations

from urbanpulse.errors import UrbanpulseError


class DashboardsError(UrbanpulseError):
    """Base of the errors this package raises on purpose."""


class QueryTemplateError(DashboardsError):
    """A query still holds a `$variable` that nothing could substitute."""

    def __init__(self, query: str, names: list[str]) -> None:
        super().__init__(f"unknown template variable(s) {', '.join(names)} in: {query}")
        self.query = query
        self.names = names
