"""Dashboards as dataclasses, rendered to Grafana dashboard JSON (schemaVersion 39).

Only what the dashboards here use is modelled: InfluxQL raw-query targets, query template
variables, and a handful of panel types laid out left to right, row by row.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from urbanpulse.dashboards import DATASOURCE_UID

SCHEMA_VERSION = 39
# The city's own time on every screen: "browser" showed a wall screen on UTC 7 h off.
TIMEZONE = "Asia/Ho_Chi_Minh"
GRID_WIDTH = 24

JSON = dict[str, Any]
PanelType = Literal["timeseries", "stat", "table", "bargauge"]
ResultFormat = Literal["time_series", "table"]


def datasource_ref() -> JSON:
    return {"type": "influxdb", "uid": DATASOURCE_UID}


@dataclass(frozen=True)
class Query:
    """One InfluxQL statement; `$timeFilter`, `$__interval` and `$<variable>` are Grafana's."""

    influxql: str
    alias: str = ""
    result_format: ResultFormat = "time_series"


@dataclass(frozen=True)
class Threshold:
    value: float | None  # None: the base step
    color: str


@dataclass(frozen=True)
class Panel:
    title: str
    kind: PanelType
    queries: tuple[Query, ...]
    description: str = ""
    unit: str = "short"
    width: int = 12
    height: int = 8
    thresholds: tuple[Threshold, ...] = ()
    stacked: bool = False
    decimals: int | None = None


@dataclass(frozen=True)
class Variable:
    """A query variable over tag values; later variables may refer to earlier ones."""

    name: str
    label: str
    influxql: str


@dataclass(frozen=True)
class Dashboard:
    uid: str
    title: str
    description: str
    panels: tuple[Panel, ...]
    variables: tuple[Variable, ...] = ()
    tags: tuple[str, ...] = ("urbanpulse",)
    time_from: str = "now-6h"
    refresh: str = "1m"
    extra: JSON = field(default_factory=dict)


def _target(query: Query, ref_id: str) -> JSON:
    return {
        "refId": ref_id,
        "datasource": datasource_ref(),
        "rawQuery": True,
        "query": query.influxql,
        "alias": query.alias,
        "resultFormat": query.result_format,
    }


def _field_config(panel: Panel) -> JSON:
    steps = [{"value": t.value, "color": t.color} for t in panel.thresholds] or [
        {"value": None, "color": "green"}
    ]
    defaults: JSON = {
        "unit": panel.unit,
        "thresholds": {"mode": "absolute", "steps": steps},
        "color": {"mode": "thresholds" if panel.thresholds else "palette-classic"},
    }
    if panel.decimals is not None:
        defaults["decimals"] = panel.decimals
    if panel.kind == "timeseries":
        defaults["custom"] = {
            "drawStyle": "line",
            "lineWidth": 1,
            "fillOpacity": 10,
            "spanNulls": False,
            "stacking": {"mode": "normal" if panel.stacked else "none", "group": "A"},
        }
    return {"defaults": defaults, "overrides": []}


def _options(panel: Panel) -> JSON:
    reduce = {"calcs": ["lastNotNull"], "fields": "", "values": False}
    if panel.kind == "timeseries":
        return {
            "legend": {"displayMode": "table", "placement": "right", "showLegend": True,
                       "calcs": ["lastNotNull", "max"]},
            "tooltip": {"mode": "multi", "sort": "desc"},
        }
    if panel.kind == "stat":
        return {"reduceOptions": reduce, "colorMode": "value", "graphMode": "area",
                "textMode": "auto", "justifyMode": "auto", "orientation": "auto"}
    if panel.kind == "bargauge":
        return {"reduceOptions": reduce, "displayMode": "gradient", "orientation": "horizontal",
                "showUnfilled": True}
    return {"showHeader": True, "cellHeight": "sm", "footer": {"show": False}}


def _variable(var: Variable) -> JSON:
    return {
        "type": "query",
        "name": var.name,
        "label": var.label,
        "datasource": datasource_ref(),
        "query": var.influxql,
        "definition": var.influxql,
        "refresh": 1,
        "includeAll": True,
        "multi": True,
        "allValue": ".*",
        "current": {"selected": True, "text": ["All"], "value": ["$__all"]},
        "options": [],
        "regex": "",
        "sort": 1,
        "hide": 0,
    }


def render(dashboard: Dashboard) -> JSON:
    """The dashboard's Grafana JSON (no `id`, so it imports into any Grafana)."""
    panels: list[JSON] = []
    x = y = row_height = 0
    for number, panel in enumerate(dashboard.panels, start=1):
        if x + panel.width > GRID_WIDTH:
            x, y, row_height = 0, y + row_height, 0
        refs = [chr(ord("A") + i) for i in range(len(panel.queries))]
        panels.append({
            "id": number,
            "type": panel.kind,
            "title": panel.title,
            "description": panel.description,
            "datasource": datasource_ref(),
            "gridPos": {"x": x, "y": y, "w": panel.width, "h": panel.height},
            "targets": [_target(q, r) for q, r in zip(panel.queries, refs, strict=True)],
            "fieldConfig": _field_config(panel),
            "options": _options(panel),
        })
        x += panel.width
        row_height = max(row_height, panel.height)
    out: JSON = {
        "uid": dashboard.uid,
        "title": dashboard.title,
        "description": dashboard.description,
        "tags": list(dashboard.tags),
        "schemaVersion": SCHEMA_VERSION,
        "version": 1,
        "editable": False,
        "graphTooltip": 1,
        "timezone": TIMEZONE,
        "time": {"from": dashboard.time_from, "to": "now"},
        "refresh": dashboard.refresh,
        "annotations": {"list": []},
        "templating": {"list": [_variable(v) for v in dashboard.variables]},
        "panels": panels,
    }
    out.update(dashboard.extra)
    return out
