"""`CityData`: the stored city data as pandas DataFrames, over an InfluxDB client the
caller owns (built with the reader's credentials: reading needs no more)."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from cloud.config import CloudConfig, parse_cloud_config
from cloud.logic.domain.door_roles import NO_DOOR_ROLES, DoorRoleMap
from cloud.logic.records import RP_1H, RP_1M, RP_RAW
from cloud.query import catalog, influxql
from cloud.query.errors import BadArgument, ConfigFileError, IncompleteAnswer, QueryError
from cloud.query.frames import Schema, empty_index, to_frame, whole_counts
from cloud.query.timerange import Chunks, TimeRange, chunk_length_ns
from cloud.query.written import count_fields, written_schema
from urbanpulse.config_fields import read_toml
from urbanpulse.errors import ConfigError
from urbanpulse.influx_http import (
    InfluxCAFileError,
    InfluxError,
    InfluxHTTP,
    InfluxUnavailable,
    Result,
)

Tags = str | Sequence[str] | None
DOOR_MEASUREMENT = catalog.kind_measurement("hospital.door")
# The first chunk per policy; later ones adapt to the rows they hold (cloud.query.timerange).
FIRST_CHUNK = {RP_RAW: timedelta(hours=1), RP_1M: timedelta(days=1), RP_1H: timedelta(days=30)}
CHUNK_ROWS = 100_000
LEDGER_TAGS = ("site", "node")
LEDGER_COUNTS = ("duplicates", "expected", "late", "missing", "received", "restarts")
POST_ABOVE_CHARS = 4000  # longer statements go in a POST body, not the URL
# Each answer is streamed (chunked=true) in pieces of at most this many rows: InfluxDB's
# max-row-limit does not apply to a streamed answer, and its `partial` flags then say
# exactly whether rows are missing (urbanpulse.influx_http.InfluxHTTP.results).
STREAM_ROWS = 10_000
# An answer is read up to this many times `chunk_rows` rows: past that (a burst far denser
# than the chunk before it) reading stops and the chunk is fetched again in halves, so that
# memory stays bounded by the rows asked for, whatever the data holds.
READ_ROWS_FACTOR = 2


def _load_config(path: Path) -> CloudConfig:
    """The cloud config in `path`, its errors naming the file; a node's config given by
    mistake said to be one."""
    raw = read_toml(path)  # its errors name the file
    if "node" in raw and "influx" not in raw:
        raise ConfigError(str(path), (
            "looks like an edge node config ([node], [[sensors]]: for `urbanpulse edge run`), not "
            "the cloud processor's config that --config takes (its [influx] url, database and "
            "reader_password_file: docs/cloud-config.md; the demo's is <home>/demo/cloud.toml)"))
    try:
        return parse_cloud_config(raw)
    except ConfigError as exc:
        raise ConfigFileError(path, exc.key, exc.reason) from exc


class CityData:
    """Each method returns a DataFrame indexed by `time` (UTC, tz-aware), tags first as
    columns, then fields with their stored types (float64, Int64, boolean, object), but
    for the counts stored as floats (cloud.query.written.COUNTS: Int64, a value that is not
    a whole number raising NotWholeCount), which `float_counts=True` returns as stored.
    Ranges are half-open, [start, end); aggregates are stamped with their window's start.
    The `iter_*` form yields one frame per chunk, for ranges too large to hold at once."""

    def __init__(self, client: InfluxHTTP, database: str, *, chunk: timedelta | None = None,
                 chunk_rows: int = CHUNK_ROWS, door_roles: DoorRoleMap = NO_DOOR_ROLES,
                 float_counts: bool = False) -> None:
        if not isinstance(database, str) or not database:
            raise BadArgument("database", "must be a non-empty string")
        if not isinstance(chunk_rows, int) or chunk_rows < 1:
            raise BadArgument("chunk_rows", f"must be a positive integer, got {chunk_rows!r}")
        self.client = client
        self.database = database
        self._first_ns = None if chunk is None else chunk_length_ns(chunk)
        self._chunk_rows = chunk_rows
        self.requests = 0  # requests sent, for callers watching the cost of a range
        self._owns_client = False
        self.door_roles = door_roles  # the processor's [flow.door_roles], for `doors`
        self.float_counts = float_counts

    @classmethod
    def from_config(cls, path: Path, *, timeout_s: float | None = None, chunk: timedelta | None = None,
                    chunk_rows: int = CHUNK_ROWS, float_counts: bool = False) -> CityData:
        """From the cloud config file (docs/cloud-config.md): its `[influx]` url, `ca_file`,
        database and `timeout_s` (unless `timeout_s` is given here), and the READ-only reader's
        credentials (`reader_username`, `reader_password_file`), never the writer's. Close it
        (or use `with`) to close its connection."""
        cfg = _load_config(path)
        password_file = cfg.influx.reader_password_file
        if password_file is None:
            raise ConfigError("influx.reader_password_file",
                              "missing: queries use the reader's READ-only credentials")
        try:
            password = password_file.read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise ConfigError("influx.reader_password_file",
                              f"{password_file}: {exc.strerror or exc}") from exc
        try:
            client = InfluxHTTP(cfg.influx.url, cfg.influx.reader_username, password,
                                timeout_s=cfg.influx.timeout_s if timeout_s is None else timeout_s,
                                ca_file=cfg.influx.ca_file)
        except InfluxCAFileError as exc:
            raise ConfigError("influx.ca_file", str(exc)) from exc
        data = cls(client, cfg.influx.database, chunk=chunk, chunk_rows=chunk_rows,
                   door_roles=cfg.flow.door_roles, float_counts=float_counts)
        data._owns_client = True
        return data

    def close(self) -> None:
        """Closes the connection if `from_config` opened it; an injected client is the caller's."""
        if self._owns_client:
            self.client.close()

    def __enter__(self) -> CityData:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- the base: any stored measurement ------------------------------------------

    def measurement(self, name: str, start: datetime, end: datetime, *, rp: str = RP_RAW,
                    tags: catalog.Filters | None = None,
                    fields: Sequence[str] | None = None) -> pd.DataFrame:
        """Every point of measurement `name` in `rp` over [start, end); `tags`: tag key ->
        value or list of values (any matches); `fields`: the fields wanted (default all)."""
        return _concat(self.iter_measurement(name, start, end, rp=rp, tags=tags, fields=fields))

    def iter_measurement(self, name: str, start: datetime, end: datetime, *, rp: str = RP_RAW,
                         tags: catalog.Filters | None = None,
                         fields: Sequence[str] | None = None) -> Iterator[pd.DataFrame]:
        span = TimeRange.of(start, end)
        plan = (catalog.policy(rp), catalog.measurement_name(name),
                catalog.tag_filters(tags or {}), catalog.field_names(fields))
        return self._chunks(span, *plan)

    # -- readings and their aggregates ---------------------------------------------

    def readings(self, kind: str, start: datetime, end: datetime, *, site: Tags = None,
                 node: Tags = None, sensor: Tags = None,
                 fields: Sequence[str] | None = None) -> pd.DataFrame:
        """Raw readings of a kind ("air.pm", ...): its values, `seq` and `flags`."""
        return _concat(self.iter_readings(kind, start, end, site=site, node=node, sensor=sensor,
                                          fields=fields))

    def iter_readings(self, kind: str, start: datetime, end: datetime, *, site: Tags = None,
                      node: Tags = None, sensor: Tags = None,
                      fields: Sequence[str] | None = None) -> Iterator[pd.DataFrame]:
        measurement = catalog.kind_measurement(kind)
        return self.iter_measurement(measurement, start, end, rp=RP_RAW, fields=fields,
                                     tags={"site": site, "node": node, "sensor": sensor})

    def aggregates(self, kind: str, start: datetime, end: datetime, *, resolution: str = "1m",
                   site: Tags = None, node: Tags = None, sensor: Tags = None,
                   fields: Sequence[str] | None = None) -> pd.DataFrame:
        """Per-sensor windows ("1m" or "1h"): `count` and `<value>_mean/_min/_max/_last`."""
        return _concat(self.iter_aggregates(kind, start, end, resolution=resolution, site=site,
                                            node=node, sensor=sensor, fields=fields))

    def iter_aggregates(self, kind: str, start: datetime, end: datetime, *, resolution: str = "1m",
                        site: Tags = None, node: Tags = None, sensor: Tags = None,
                        fields: Sequence[str] | None = None) -> Iterator[pd.DataFrame]:
        measurement = catalog.kind_measurement(kind)
        rp = catalog.resolution(resolution)
        return self.iter_measurement(measurement, start, end, rp=rp, fields=fields,
                                     tags={"site": site, "node": node, "sensor": sensor})

    # -- domain rollups (docs/domain-rollups.md) -----------------------------------

    def rollup(self, name: str, start: datetime, end: datetime, *, resolution: str = "1h",
               site: Tags = None, node: Tags = None, sensor: Tags = None,
               fields: Sequence[str] | None = None) -> pd.DataFrame:
        """Any domain rollup by its measurement name (catalog.ROLLUPS). A ratio or statistic
        of nothing (catalog.VOID: occupancy_pct where occupied + available is 0, the wait
        statistics where n is 0) is NaN, whatever an earlier write of the point left there."""
        return _concat(self.iter_rollup(name, start, end, resolution=resolution, site=site,
                                        node=node, sensor=sensor, fields=fields))

    def iter_rollup(self, name: str, start: datetime, end: datetime, *, resolution: str = "1h",
                    site: Tags = None, node: Tags = None, sensor: Tags = None,
                    fields: Sequence[str] | None = None) -> Iterator[pd.DataFrame]:
        rp = catalog.rollup_policy(name, resolution)
        asked = catalog.field_names(fields)
        tags = {"site": site, "node": node, "sensor": sensor}
        void = catalog.VOID.get(name)
        if void is None or (asked is not None and not set(void.fields) & set(asked)):
            return self.iter_measurement(name, start, end, rp=rp, fields=asked, tags=tags)
        read = None if asked is None else (*asked, *(c for c in void.counts if c not in asked))
        frames = self.iter_measurement(name, start, end, rp=rp, fields=read, tags=tags)
        return (_voided(frame, void, asked) for frame in frames)

    def ward_occupancy(self, start: datetime, end: datetime, *, resolution: str = "1h",
                       site: Tags = None, node: Tags = None) -> pd.DataFrame:
        """Per ward (node): beds, occupied, available, faulty, stale (pads not heard for over
        2 h 10 min: in none of the others), occupancy_pct (NaN where no bed has a valid
        state)."""
        return self.rollup("ward_occupancy", start, end, resolution=resolution, site=site, node=node)

    def hospital_occupancy(self, start: datetime, end: datetime, *, resolution: str = "1h",
                           site: Tags = None) -> pd.DataFrame:
        return self.rollup("hospital_occupancy", start, end, resolution=resolution, site=site)

    def hospital_flow(self, start: datetime, end: datetime, *, site: Tags = None) -> pd.DataFrame:
        """ER arrivals and visits (sums of the door counts) per hospital and hour;
        per door node: `rollup("door_flow", ...)`."""
        return self.rollup("hospital_flow", start, end, site=site)

    def waiting_times(self, start: datetime, end: datetime, *, site: Tags = None,
                      per_queue: bool = False, node: Tags = None) -> pd.DataFrame:
        """Waits per hour of the call (n, median_s, p90_s, mean_s; the statistics NaN where n
        is 0): per hospital, or with `per_queue=True` per queue node (which `node` may choose)."""
        if node is not None and not per_queue:
            raise BadArgument("node", "the hospital's waits have no node: use per_queue=True")
        return self.rollup("queue_wait" if per_queue else "hospital_wait", start, end, site=site,
                           node=node)

    def lane_traffic(self, start: datetime, end: datetime, *, resolution: str = "1m",
                     site: Tags = None, node: Tags = None, sensor: Tags = None) -> pd.DataFrame:
        return self.rollup("traffic_lane", start, end, resolution=resolution, site=site, node=node,
                           sensor=sensor)

    def intersection_traffic(self, start: datetime, end: datetime, *, resolution: str = "1m",
                             site: Tags = None, node: Tags = None) -> pd.DataFrame:
        return self.rollup("traffic_intersection", start, end, resolution=resolution, site=site,
                           node=node)

    def air_quality(self, start: datetime, end: datetime, *, site: Tags = None,
                    node: Tags = None) -> pd.DataFrame:
        """Per station (node) and hour: means, NowCasts, US EPA and VN_AQI indices."""
        return self.rollup("air_quality", start, end, site=site, node=node)

    # -- delivery, events, dead letters, node status -------------------------------

    def ledger(self, start: datetime, end: datetime, *, site: Tags = None,
               node: Tags = None) -> pd.DataFrame:
        """Per node and hour: duplicates, expected, late, missing, received, restarts (sensors
        whose numbering started again; 0 where none did, <NA> in hours written by a processor
        that stored it only when not 0), all Int64, and `completeness` =
        (received - duplicates) / expected (NaN where nothing was expected)."""
        return _concat(self.iter_ledger(start, end, site=site, node=node))

    def iter_ledger(self, start: datetime, end: datetime, *, site: Tags = None,
                    node: Tags = None) -> Iterator[pd.DataFrame]:
        frames = self.iter_measurement("ledger", start, end, rp=RP_1H,
                                       tags={"site": site, "node": node})
        return (_with_completeness(f) for f in frames)

    def events(self, start: datetime, end: datetime, *, type: Tags = None, site: Tags = None,
               node: Tags = None, sensor: Tags = None, kind: Tags = None) -> pd.DataFrame:
        """Anomalies and sensor faults; `type` one or more of catalog.EVENT_TYPES."""
        return _concat(self.iter_events(start, end, type=type, site=site, node=node,
                                        sensor=sensor, kind=kind))

    def iter_events(self, start: datetime, end: datetime, *, type: Tags = None, site: Tags = None,
                    node: Tags = None, sensor: Tags = None,
                    kind: Tags = None) -> Iterator[pd.DataFrame]:
        tags = {"type": catalog.event_types(type), "site": site, "node": node, "sensor": sensor,
                "kind": kind}
        return self.iter_measurement("events", start, end, rp=RP_RAW, tags=tags)

    def dead_letters(self, start: datetime, end: datetime, *, site: Tags = None, node: Tags = None,
                     reason: Tags = None) -> pd.DataFrame:
        """Refused input: reason code, detail, the payload kept (up to its limit)."""
        return _concat(self.iter_dead_letters(start, end, site=site, node=node, reason=reason))

    def iter_dead_letters(self, start: datetime, end: datetime, *, site: Tags = None,
                          node: Tags = None, reason: Tags = None) -> Iterator[pd.DataFrame]:
        return self.iter_measurement("dead_letter", start, end, rp=RP_RAW,
                                     tags={"site": site, "node": node, "reason": reason})

    def node_status(self, start: datetime, end: datetime, *, site: Tags = None,
                    node: Tags = None) -> pd.DataFrame:
        return _concat(self.iter_node_status(start, end, site=site, node=node))

    def iter_node_status(self, start: datetime, end: datetime, *, site: Tags = None,
                         node: Tags = None) -> Iterator[pd.DataFrame]:
        return self.iter_measurement("node_status", start, end, rp=RP_RAW,
                                     tags={"site": site, "node": node})

    def driver_status(self, start: datetime, end: datetime, *, site: Tags = None,
                      node: Tags = None, sensor: Tags = None) -> pd.DataFrame:
        """Each driver's counts of the input it could not use, one row per heartbeat:
        counters since the agent's start, 0 again after a restart (docs/influx-schema.md)."""
        return _concat(self.iter_driver_status(start, end, site=site, node=node, sensor=sensor))

    def iter_driver_status(self, start: datetime, end: datetime, *, site: Tags = None,
                           node: Tags = None, sensor: Tags = None) -> Iterator[pd.DataFrame]:
        return self.iter_measurement("driver_status", start, end, rp=RP_RAW,
                                     tags={"site": site, "node": node, "sensor": sensor})

    # -- the doors and the roles the processor gives them ----------------------------

    def doors(self, start: datetime, end: datetime, *, site: Tags = None,
              node: Tags = None) -> pd.DataFrame:
        """Every door counter that sent readings over [start, end), one row each, stamped
        with its last reading: `readings` (raw points stored), `people` (their counts
        summed, Int64 as a count), the `role` the processor gives it (er, visit or ignore) and `role_from`:
        "config" (named in `flow.door_roles` of the config this was made from, or of
        `door_roles`) or "id" (its id's words, docs/domain-rollups.md "Doors"). The
        config's doors that sent nothing: `unmatched_door_roles`."""
        span = TimeRange.of(start, end)
        tags = catalog.tag_filters({"site": site, "node": node})
        by = ("site", "node", "sensor")
        args = (RP_RAW, DOOR_MEASUREMENT)
        counts = influxql.grouped(*args, 'COUNT("count") AS "readings", SUM("count") AS "people"',
                                  tags, span.start_ns, span.end_ns, by)
        last = influxql.grouped(*args, 'LAST("count")', tags, span.start_ns, span.end_ns, by)
        answer = self._query(f"{counts}; {last}")
        if not _whole(answer, statements=2):
            raise IncompleteAnswer(f"{RP_RAW}.{DOOR_MEASUREMENT}", span.start_ns, span.end_ns,
                                   "counting the doors' readings")
        seen, lasts = (_by_door(result) for result in answer)
        doors = sorted(k for k in seen if k in lasts)
        roles = [self.door_roles.role_of(k) for k in doors]
        stamps = [lasts[k]["time"] for k in doors]
        people = [seen[k]["people"] for k in doors]
        frame = pd.DataFrame({
            "site": pd.Series([k[0] for k in doors], dtype=object),
            "node": pd.Series([k[1] for k in doors], dtype=object),
            "sensor": pd.Series([k[2] for k in doors], dtype=object),
            "readings": pd.Series([seen[k]["readings"] for k in doors], dtype="Int64"),
            "people": (pd.Series(people, dtype="float64") if self.float_counts else
                       whole_counts(people, stamps, f"{RP_RAW}.{DOOR_MEASUREMENT}", "people")),
            "role": pd.Series([r for r, _ in roles], dtype=object),
            "role_from": pd.Series([f for _, f in roles], dtype=object),
        })
        frame.index = pd.DatetimeIndex(pd.to_datetime(stamps, unit="ns", utc=True), name="time")
        return frame

    def unmatched_door_roles(self, doors: pd.DataFrame, *, site: Tags = None,
                             node: Tags = None) -> list[str]:
        """The config's `flow.door_roles` keys ("site/node/sensor") that name none of `doors`
        (a frame of `doors` asked with the same `site` and `node`): a misspelt id counts
        nothing as it says, or the door sent nothing in that range."""
        tags = catalog.tag_filters({"site": site, "node": node})
        found = set(zip(doors["site"], doors["node"], doors["sensor"], strict=True)) if len(doors) else set()
        sites = set(tags["site"]) if "site" in tags else None
        nodes = set(tags["node"]) if "node" in tags else None
        return ["/".join(k) for k in self.door_roles.not_among(found, sites, nodes)]

    # -- I/O -------------------------------------------------------------------------

    def _chunks(self, span: TimeRange, rp: str, name: str, tags: dict[str, tuple[str, ...]],
                fields: tuple[str, ...] | None) -> Iterator[pd.DataFrame]:
        where = f"{rp}.{name}"
        keys = self._query(influxql.schema(rp, name))
        if not _whole(keys, statements=2):
            raise IncompleteAnswer(where, span.start_ns, span.end_ns, "naming its tags and fields")
        stored = Schema.from_series([s for r in keys for s in r.series])
        if not stored.fields:
            # Never written there (every point has a field; InfluxDB 1.x names the tags of
            # every policy, e.g. a kind's raw points aged out while its windows stay): the
            # keys the processor would write, if any.
            stored = written_schema(rp, name) or Schema((), {})
        schema = stored.select(fields, where)
        if not self.float_counts:
            schema = schema.counting(count_fields(rp, name))
        _check_tag_keys(tags, stored, where)
        first = self._first_ns if self._first_ns is not None else chunk_length_ns(FIRST_CHUNK[rp])
        chunks = Chunks(span, first, self._chunk_rows)
        while (part := chunks.next_span()) is not None:
            lo, hi = part
            # One nanosecond cannot be cut: its answer is read whole, however long.
            cap = None if hi - lo == 1 else READ_ROWS_FACTOR * self._chunk_rows
            answer = self._query(influxql.select(rp, name, fields, tags, lo, hi), max_rows=cap)
            if not _whole(answer, statements=1):
                # Reading stopped at the cap, or the stream was cut short: a shorter span's
                # answer may come whole.
                if hi - lo == 1:
                    raise IncompleteAnswer(where, lo, hi, "even for one nanosecond")
                chunks.cut()
                continue
            frame = to_frame(answer[0].series, schema, where)
            chunks.fetched(hi, len(frame))
            yield frame

    def _query(self, statement: str, max_rows: int | None = None) -> list[Result]:
        self.requests += 1
        url = self.client.url
        try:
            return self.client.results(statement, db=self.database, epoch="ns",
                                       post=len(statement) > POST_ABOVE_CHARS,
                                       chunk_size=min(STREAM_ROWS, self._chunk_rows),
                                       max_rows=max_rows)
        except InfluxUnavailable as exc:
            raise QueryError(f"InfluxDB at {url} did not answer: {exc.body}") from exc
        except InfluxError as exc:
            if exc.status == 401:
                raise QueryError(f"InfluxDB at {url} refused the credentials (wrong user or "
                                 f"password): {exc.body}") from exc
            if exc.status == 403:
                raise QueryError(f"InfluxDB at {url}: the user may not read database "
                                 f"{self.database!r}: {exc.body}") from exc
            raise QueryError(f"InfluxDB at {url} refused the query ({exc.status}): {exc.body}; "
                             f"query: {statement[:300]}") from exc


def _concat(frames: Iterator[pd.DataFrame]) -> pd.DataFrame:
    parts = list(frames)
    nonempty = [f for f in parts if len(f)]
    if not nonempty:
        frame = parts[0].iloc[0:0] if parts else pd.DataFrame(index=empty_index())
        return frame
    return nonempty[0] if len(nonempty) == 1 else pd.concat(nonempty)


def _by_door(result: Result) -> dict[tuple[str, str, str], dict[str, Any]]:
    """The rows of a statement grouped by site, node and sensor, by door."""
    return {(row["site"], row["node"], row["sensor"]): row for s in result.series for row in s.rows()}


def _whole(answer: list[Result], statements: int) -> bool:
    """Every statement answered, and no flag left saying that rows are missing."""
    return ([r.statement_id for r in answer] == list(range(statements))
            and all(r.complete for r in answer))


def _check_tag_keys(tags: dict[str, tuple[str, ...]], stored: Schema, where: str) -> None:
    """A filter on a key that is no tag would match nothing, silently (InfluxQL compares a
    field or a missing key with the value); refused instead, also where nothing is stored
    yet (the keys the processor writes). A measurement the processor does not write, with
    nothing stored, has no keys to check against: its frame is empty either way."""
    if stored.empty:
        return
    for key in tags:
        if key not in stored.tags:
            yet = "" if stored.stored else ", where nothing is stored yet"
            raise BadArgument(key, f"not a tag of {where}{yet} "
                                   f"(tags: {', '.join(stored.tags) or 'none'})")


def _voided(frame: pd.DataFrame, void: catalog.Void, asked: tuple[str, ...] | None) -> pd.DataFrame:
    """`void.fields` set to NaN where `void.counts` sum to 0 (a value left there by an
    earlier write of the point, or none); the counts read for it alone dropped again."""
    if all(c in frame.columns for c in void.counts) and len(frame):
        total = sum(frame[c].astype("float64") for c in void.counts)
        where = (total == 0).to_numpy()  # NaN (a point without its counts) is not 0
        if where.any():
            frame = frame.copy()
            for name in void.fields:
                if name in frame.columns:
                    frame.loc[where, name] = np.nan
    if asked is not None:
        frame = frame.drop(columns=[c for c in void.counts if c not in asked and c in frame.columns])
    return frame


def _with_completeness(frame: pd.DataFrame) -> pd.DataFrame:
    """Every ledger count as Int64, `restarts` (which earlier processors stored only when
    not 0) and the columns of a ledger not stored yet included as missing; then
    `completeness`."""
    absent = {c: pd.Series([None] * len(frame), index=frame.index, dtype=object)
              for c in LEDGER_TAGS if c not in frame.columns}
    absent.update({c: pd.Series(pd.NA, index=frame.index, dtype="Int64")
                   for c in LEDGER_COUNTS if c not in frame.columns})
    if absent:
        frame = frame.assign(**absent)
        tags = [*LEDGER_TAGS, *(c for c in frame.columns if c not in (*LEDGER_TAGS, *LEDGER_COUNTS))]
        frame = frame[[*tags, *sorted(c for c in frame.columns if c not in tags)]]
    expected = frame["expected"].astype("float64")
    unique = (frame["received"] - frame["duplicates"]).astype("float64")
    ratio = unique.to_numpy() / np.where(expected.to_numpy() > 0, expected.to_numpy(), np.nan)
    return frame.assign(completeness=ratio)

