"""Running every dashboard and alert query against a real InfluxDB.

Grafana cannot run here, so this is how the dashboards are proven: each variable query is
run to get real tag values, then each panel query is run twice, once with every variable
at All (`.*`, the default view) and once with each variable at its first real value.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta

from urbanpulse.dashboards.alerts import RULES
from urbanpulse.dashboards.city import all_dashboards
from urbanpulse.dashboards.errors import DashboardsError
from urbanpulse.dashboards.model import Dashboard
from urbanpulse.dashboards.queries import TimeRange, interpolate, regex_value
from urbanpulse.influx_http import InfluxError, InfluxHTTP

ALL = ".*"


class CredentialsRefused(DashboardsError):
    """InfluxDB refused the user (401: unknown user or wrong password): every other query
    would be refused alike, so the check stops at the first. A 403 (a privilege missing, as
    for a misspelt `--db`) is left to each query's result."""


@dataclass(frozen=True)
class QueryResult:
    where: str  # "<dashboard uid> / <panel title> / <refId> [<variant>]"
    influxql: str
    series: int
    rows: int
    error: str | None
    measurement: str | None

    @property
    def ok(self) -> bool:
        return self.error is None


def _measurement(influxql: str) -> str | None:
    """The innermost `FROM "policy"."measurement"` of a query (None for regex sources)."""
    marker = 'FROM "'
    start = influxql.rfind(marker)
    if start < 0:
        return None
    names = influxql[start + len(marker):].split('"', 3)
    return names[2] if len(names) > 2 and names[1] == "." else None


def _run(client: InfluxHTTP, db: str, where: str, query: str) -> QueryResult:
    try:
        series = client.query(query, db=db, epoch="ms")
    except InfluxError as exc:
        if exc.status == 401:
            raise CredentialsRefused(str(exc)) from exc
        return QueryResult(where, query, 0, 0, str(exc), _measurement(query))
    rows = sum(len(s["values"]) for s in series)
    return QueryResult(where, query, len(series), rows, None, _measurement(query))


def _variable_values(
    client: InfluxHTTP, db: str, dashboard: Dashboard, time_range: TimeRange,
    results: list[QueryResult],
) -> dict[str, str]:
    """First real value of each variable (each query sees the earlier ones' values)."""
    chosen: dict[str, str] = {}
    for var in dashboard.variables:
        query = interpolate(var.influxql, time_range, chosen)
        result = _run(client, db, f"{dashboard.uid} / variable {var.name}", query)
        results.append(result)
        values: list[str] = []
        if result.ok:
            values = sorted(str(p["value"]) for p in client.query_points(query, db=db))
        chosen[var.name] = regex_value(values[0]) if values else ALL
    return chosen


def check_dashboards(client: InfluxHTTP, db: str, time_range: TimeRange,
                     dashboards: tuple[Dashboard, ...] | None = None) -> list[QueryResult]:
    results: list[QueryResult] = []
    for dashboard in dashboards if dashboards is not None else all_dashboards():
        first = _variable_values(client, db, dashboard, time_range, results)
        variants = {"all": {v.name: ALL for v in dashboard.variables}, "first": first}
        for panel in dashboard.panels:
            for index, query in enumerate(panel.queries):
                for variant, values in variants.items():
                    where = f"{dashboard.uid} / {panel.title} / {chr(65 + index)} [{variant}]"
                    try:
                        text = interpolate(query.influxql, time_range, values)
                    except DashboardsError as exc:
                        results.append(QueryResult(where, query.influxql, 0, 0, str(exc), None))
                        continue
                    results.append(_run(client, db, where, text))
    return results


def check_alerts(client: InfluxHTTP, db: str, now: datetime) -> list[QueryResult]:
    results = []
    for rule in RULES:
        time_range = TimeRange.last(now, timedelta(seconds=rule.window_s),
                                    timedelta(seconds=rule.window_end_s))
        queries = {f"alert {rule.uid}": rule.influxql}
        if rule.note_influxql:
            queries[f"alert {rule.uid} / D (summary)"] = rule.note_influxql
        for where, influxql in queries.items():
            try:
                text = interpolate(influxql, time_range, {})
            except DashboardsError as exc:
                results.append(QueryResult(where, influxql, 0, 0, str(exc), None))
                continue
            results.append(_run(client, db, where, text))
    return results


def check_all(client: InfluxHTTP, db: str, now: datetime, span: timedelta) -> Iterator[QueryResult]:
    yield from check_dashboards(client, db, TimeRange.last(now, span))
    yield from check_alerts(client, db, now)
