"""Air quality per station (the node), per event-time hour, into agg_1h.

Fields: the hour's means of PM2.5, PM10 (all `air.pm` sensors of the node) and CO2 (all
`air.co2` sensors), their reading counts, the NowCast of PM2.5 and PM10 over the 12
hours ending with this one, and the hourly index by both methods with its category
(see `cloud.logic.domain.aqi` for the method and sources). The NowCast of an hour depends
on the 11 before it, so a late reading re-emits its own hour and the 11 after it.

Values are kept per hour keyed by (sensor, ts) and summed with math.fsum (exactly
rounded), so late or shuffled input gives the in-order result.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

from cloud.logic.domain import aqi
from cloud.logic.domain.common import HOUR_NS, RP_1H, Horizon, Point, skipped, window_start
from cloud.logic.lines import line
from urbanpulse.wire import Reading

FIELDS_OF_KIND = {"air.pm": ("pm25", "pm10"), "air.co2": ("co2",)}
FIELDS = ("pm25", "pm10", "co2")
NOWCAST_HOURS = 12


class AirRollup(Horizon):
    """The hourly means of one station. Picklable."""

    def __init__(self, horizon_ns: int) -> None:
        self.horizon_ns = horizon_ns
        self.newest_ns = 0
        self.too_late = 0
        self.open: dict[int, dict[str, dict[tuple[str, int], float]]] = {}
        self.closed: dict[int, dict[str, tuple[float, int]]] = {}  # hour -> field -> (mean, n)
        # (hour, field) -> `mean`, kept until a reading enters the hour or it is let go: a
        # message re-emits its hour, whose NowCast reads the 11 before (not pickled)
        self._means: dict[tuple[int, str], tuple[float, int] | None] = {}

    def __getstate__(self) -> dict[str, object]:
        state = self.__dict__.copy()
        del state["_means"]
        return state

    def __setstate__(self, state: dict[str, object]) -> None:
        self.__dict__.update(state)
        self._means = {}

    def process(self, site: str, node: str, readings: Iterable[Reading]) -> list[Point]:
        touched: set[int] = set()
        kept = self.kept_ns
        for r in readings:
            names = FIELDS_OF_KIND.get(r.kind)
            if names is None or skipped(r):
                continue
            if r.ts_ns < self.newest_ns - self.horizon_ns or r.ts_ns < kept:  # before floor_ns()
                self.too_late += 1
                continue
            self.newest_ns = max(self.newest_ns, r.ts_ns)
            hour = window_start(r.ts_ns, HOUR_NS)
            fields = self.open.setdefault(hour, {})
            for name in names:
                if name in r.values:
                    fields.setdefault(name, {})[(r.sensor, r.ts_ns)] = float(r.values[name])
            touched.add(hour)
        means = self._means
        for hour in touched:
            for name in FIELDS:
                means.pop((hour, name), None)
        emit = {h + k * HOUR_NS for h in touched for k in range(NOWCAST_HOURS)} & self.open.keys()
        out = [(RP_1H, line("air_quality", {"site": site, "node": node}, self._fields(h, means), h))
               for h in sorted(emit)]
        self._evict()
        return out

    def mean(self, hour: int, name: str) -> tuple[float, int] | None:
        values = self.open.get(hour, {}).get(name)
        if values:
            return math.fsum(values.values()) / len(values), len(values)
        return self.closed.get(hour, {}).get(name)

    def _mean(self, hour: int, name: str, means: dict[tuple[int, str], tuple[float, int] | None]
              ) -> tuple[float, int] | None:
        """`mean`, remembered in `means`: the emitted hours share their NowCast hours."""
        key = (hour, name)
        if key in means:
            return means[key]
        m = means[key] = self.mean(hour, name)
        return m

    def _nowcast_hours(self, hour: int, name: str,
                       means: dict[tuple[int, str], tuple[float, int] | None]) -> list[float | None]:
        out: list[float | None] = []
        for k in range(NOWCAST_HOURS):
            m = self._mean(hour - k * HOUR_NS, name, means)
            out.append(None if m is None else m[0])
        return out

    def _fields(self, hour: int, means: dict[tuple[int, str], tuple[float, int] | None]
                ) -> dict[str, float | int | str | bool]:
        fields: dict[str, float | int | str | bool] = {}
        for name in FIELDS:
            m = self._mean(hour, name, means)
            if m is not None:
                fields[f"{name}_mean"], fields[f"{name}_n"] = m
        epa: list[int | None] = []
        vn: list[int | None] = []
        pollutant: aqi.Pollutant
        for pollutant in ("pm25", "pm10"):
            hours = self._nowcast_hours(hour, pollutant, means)
            epa_now, vn_now = aqi.epa_nowcast(hours), aqi.vn_nowcast(hours)
            if epa_now is not None:
                fields[f"{pollutant}_nowcast"] = epa_now
            epa.append(aqi.epa_aqi(pollutant, epa_now))
            vn.append(aqi.vn_subindex(pollutant, vn_now))
        for method, subs, category in (("epa", epa, aqi.epa_category), ("vn", vn, aqi.vn_category)):
            index = aqi.overall(subs)
            if index is not None:
                fields[f"aqi_{method}"] = index
                fields[f"category_{method}"] = category(index) or ""
        return fields

    def _evict(self) -> None:
        floor = self.newest_ns - self.horizon_ns - HOUR_NS
        for hour in [h for h in self.open if h < floor]:
            self.closed[hour] = {name: m for name in self.open[hour]
                                 if (m := self.mean(hour, name)) is not None}
            del self.open[hour]
        keep_from = floor - NOWCAST_HOURS * HOUR_NS
        for hour in [h for h in self.closed if h < keep_from]:
            del self.closed[hour]
        if len(self._means) > 4 * NOWCAST_HOURS * len(FIELDS):
            self._means = {k: m for k, m in self._means.items() if k[0] >= keep_from}
