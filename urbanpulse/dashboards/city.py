"""The urbanpulse dashboards: hospitals, traffic, air quality, data health, sensor events.

Measurements, policies, tags and fields follow docs/influx-schema.md: readings in `raw`
(one field per value), 1-minute and 1-hour aggregates in `agg_1m`/`agg_1h` (`count` and
`<field>_mean/_min/_max/_last`), `node_status`, `driver_status` and `dead_letter` in `raw`, the delivery
`ledger` in `agg_1h`, anomaly and sensor-fault `events` in `raw` (tag `type`; a whole
node's events have no `sensor` tag), and the processor's report on itself, `processor` in
`raw` (tag `process` only). A ward, an intersection and an air station are each one node.
"""

from __future__ import annotations

from urbanpulse.dashboards.alerts import (
    CLOCK_OFF_S,
    LINK_COUNTERS,
    LINK_ERRORS_MAX,
    OTHER_COUNTERS,
    PROCESSOR_BEHIND_S,
    STATE_DISK_LOW_BYTES,
    counter_rises,
)
from urbanpulse.dashboards.model import Dashboard, Panel, Query, Threshold, Variable

SITE_NODE = "\"site\" =~ /^$site$/ AND \"node\" =~ /^$node$/"
SITE_ONLY = "\"site\" =~ /^$site$/"
# Legends name the site: node ids are unique within a site only, sensor ids within a node
# (the Hanoi city has a `cabinet` at every intersection, an `opd-hall` in every hospital).
PER_LANE = "$tag_site/$tag_node $tag_sensor"
PER_NODE = "$tag_site/$tag_node"
BY_NODE = '"site", "node"'
# A rollup's ratio or statistic of nothing is void, whatever an earlier write of the point
# left in it (docs/influx-schema.md, "Fields that can be void"): read only where defined.
OCCUPANCY_DEFINED = ' AND ("occupied" > 0 OR "available" > 0)'
WAITS_DEFINED = ' AND "n" > 0'
BY_LANE = '"site", "node", "sensor"'
# "Now" for a lane: its loop reports every interval (60 s by default, up to 10 minutes in
# practice), so a lane without a window for longer is not reporting.
LANES_NOW = "10m"
# A loop's or a door's reading is stamped at the end of its interval and counts in the
# window its interval ends in, ts - 1 ns, in every aggregate (docs/influx-schema.md, "Window
# stamps"). Its raw point is stamped ts + (seq mod 1000) ns, ts whole microseconds: raw
# points grouped by time with this offset fall in buckets [T + 1 us, T + w + 1 us), which
# hold exactly the intervals ending within (T, T + w], the aggregates' window T (Grafana,
# reading epoch ms, shows the bucket at T). Without it each interval is one window late.
INTERVAL_END = "1u"


def per_interval(select: str, source: str, by: str, *, every: str = "$__interval",
                 fill: str = "none", where: str = "", alias: str = PER_NODE,
                 where_site_only: bool = False, offset: str = "") -> Query:
    """`select` from `source` in the selected sites and nodes (only sites, for per-site
    measurements), per `every` (shifted by `offset`) and per the tags in `by` (e.g.
    `"site", "node"`)."""
    scope = SITE_ONLY if where_site_only else SITE_NODE
    shift = f", {offset}" if offset else ""
    return Query(f'SELECT {select} FROM {source} WHERE $timeFilter AND {scope}{where} '
                 f'GROUP BY time({every}{shift}), {by} fill({fill})', alias=alias)


def site_node_variables(source: str) -> tuple[Variable, Variable]:
    """`source`: an InfluxQL FROM target, e.g. `"raw"."traffic_loop"` or `"raw"./^hospital_/`."""
    return (
        Variable("site", "Site", f'SHOW TAG VALUES FROM {source} WITH KEY = "site"'),
        Variable("node", "Node",
                 f'SHOW TAG VALUES FROM {source} WITH KEY = "node" WHERE "site" =~ /^$site$/'),
    )


# A driver's samples its node refused before the outbox (the contract refuses their values),
# all reasons together (`driver_status`'s `refused`, also a counter since the agent's start).
REFUSED = ("refused",)


def _bad_input(counters: tuple[str, ...], alias: str) -> Query:
    """The rises of `counters` summed per sensor and interval; sensors with none left out
    (a node has dozens of sensors, most of them counting nothing)."""
    rises = counter_rises(counters, f"$timeFilter AND {SITE_NODE}")
    return Query(f'SELECT sum("rise") FROM {rises} WHERE $timeFilter AND "rise" > 0 '
                 'GROUP BY time($__interval), "site", "node", "sensor" fill(0)', alias=alias)


def _node_status_panels() -> tuple[Panel, ...]:
    return (
        Panel(
            "Nodes now", "table",
            (Query('SELECT last("state") AS "state", last("outbox_depth") AS "outbox", '
                   'last("readings_per_s") AS "readings/s", last("uptime_s") AS "uptime", '
                   'last("clock_synchronised") AS "clock synchronised" '
                   f'FROM "raw"."node_status" WHERE $timeFilter AND {SITE_NODE} '
                   'GROUP BY "site", "node"', result_format="table"),),
            description="Last status each node sent (birth, heartbeat or its last will). Clock "
                        "synchronised: what its last heartbeat said of its clock (the kernel's "
                        "flag; empty when the node does not say: an older agent, or its "
                        "clock_check off). A clock off (\"Clock offset per node\") and "
                        "synchronised is a wrong NTP server; off and not synchronised, no NTP "
                        "server reached.",
            width=12,
        ),
        Panel(
            "Outbox depth per node", "timeseries",
            (per_interval('max("outbox_depth")', '"raw"."node_status"', BY_NODE),),
            description="Readings waiting on the node for the broker's acknowledgement; "
                        "a rising line means the node cannot deliver.",
            width=12,
        ),
        Panel(
            "Bad input per sensor", "timeseries",
            (_bad_input(LINK_COUNTERS, "link errors " + PER_LANE),
             _bad_input(OTHER_COUNTERS, "other bad input " + PER_LANE),
             _bad_input(REFUSED, "refused by the node: a driver bug " + PER_LANE)),
            description="What each sensor's driver could not use, per interval, from its node's "
                        "heartbeats (driver_status): the rises of its counts, which run from the "
                        "agent's start (a restart's fall is left out, and what its first heartbeat "
                        "counted). Link errors: checksum errors, bytes skipped, malformed frames, "
                        "lost sentences, the serial link's (a bad cable, connector or ground, a "
                        "wrong baud rate); \"Sensor link errors\" fires past "
                        f"{LINK_ERRORS_MAX} in 15 minutes. Other: pulses too short (glitches), "
                        "a kiosk's calls with nobody waiting, a sensor's own error frames, a loop "
                        "pair's unmatched onsets... Refused by the node: samples the driver "
                        "emitted that the wire contract refuses (a NaN, 2.5 vehicles, a field the "
                        "kind does not have), dropped by the agent before its outbox, so never a "
                        "dead letter: a driver bug (its reasons: driver_status's refused_<code>, "
                        "the node's log, `urbanpulse edge status`); \"Samples refused\" fires on "
                        "any. Sensors that counted nothing are not shown.",
            width=24, unit="none",
        ),
    )


# Beds from the dataflow's ward rollup (docs/domain-rollups.md): each bed's last state, a
# bed whose cable is cut (fault = 1) counted as faulty, neither occupied nor available. Its
# pad keeps sending the state it read last, so a count of the raw `occupied` would take
# such a bed as free or taken. A bed whose pad has not been heard for over 2 h 10 min is
# stale: in none of beds, occupied, available, faulty.
WARDS = '"agg_1m"."ward_occupancy"'


def _ward_beds(field: str) -> str:
    """The sum over the selected wards of `field` in each ward's last window in range."""
    return (f'SELECT sum("{field}") FROM (SELECT last("{field}") AS "{field}" FROM {WARDS} '
            f'WHERE $timeFilter AND {SITE_NODE} GROUP BY "site", "node") WHERE $timeFilter')


def hospitals() -> Dashboard:
    return Dashboard(
        uid="urbanpulse-hospitals",
        title="City operations — hospitals",
        description="Bed occupancy per ward, ER and entrance visits, queue tickets, node status.",
        variables=site_node_variables('"raw"./^hospital_/'),
        panels=(
            Panel(
                "Beds per ward now", "table",
                (Query('SELECT last("occupied") AS "occupied", last("available") AS "available", '
                       'last("faulty") AS "faulty", last("beds") AS "beds", last("stale") AS "stale" '
                       f'FROM {WARDS} WHERE $timeFilter AND {SITE_NODE} GROUP BY "site", "node"',
                       result_format="table"),),
                description="Each bed's last state, summed per ward (node), as of the ward's "
                            "last minute in the time range. Faulty: the pad's cable is cut, its "
                            "state unknown (neither occupied nor available). Stale: pads not "
                            "heard for over 2 h 10 min (removed, renamed or lost by their "
                            "node), in none of the other columns (runbook: A stale bed pad).",
            ),
            Panel(
                "Beds occupied", "stat",
                (Query(_ward_beds("occupied"), alias="occupied"),),
                width=6, unit="none",
            ),
            Panel(
                "Beds available", "stat",
                (Query(_ward_beds("available"), alias="available"),),
                description="Free beds with a working pad (a bed whose cable is cut, or whose "
                            "pad is stale, is not counted: see Beds per ward now).",
                width=6, unit="none",
                thresholds=(Threshold(None, "red"), Threshold(3, "orange"), Threshold(10, "green")),
            ),
            Panel(
                "Beds occupied per ward", "timeseries",
                (per_interval('last("occupied")', WARDS, BY_NODE, fill="previous",
                              alias="$tag_site/$tag_node"),),
                description="Each bed's last state per minute, summed per ward (beds whose "
                            "cable is cut, or whose pad is stale, not counted).",
                width=24, stacked=True, unit="none",
            ),
            Panel(
                "Stale bed pads per ward", "timeseries",
                (per_interval('last("stale")', WARDS, BY_NODE, fill="previous",
                              alias="$tag_site/$tag_node"),),
                description="Beds whose pad the cloud has not heard for over 2 h 10 min (twice "
                            "the longest heartbeat, and a margin): a pad removed, renamed or lost "
                            "by its node. They count in none of the ward's beds, occupied, "
                            "available and faulty (runbook: A stale bed pad).",
                width=24, unit="none",
            ),
            Panel(
                "Entrances and ER arrivals per hour", "timeseries",
                (per_interval('sum("count")', '"raw"."hospital_door"', BY_LANE,
                              every="1h", fill="0", alias=PER_LANE, offset=INTERVAL_END),),
                description="Persons counted by each door sensor per hour (ER doors and main "
                            "entrances are separate sensors), in the hour each count's "
                            "interval ends in, as the per-hospital flows.",
                unit="none",
            ),
            Panel(
                "Queue tickets per hour", "timeseries",
                (per_interval('count("ticket")', '"raw"."hospital_queue"', BY_NODE,
                              every="1h", fill="0", where=' AND "called" = 0', alias="issued " + PER_NODE),
                 per_interval('count("ticket")', '"raw"."hospital_queue"', BY_NODE,
                              every="1h", fill="0", where=' AND "called" = 1', alias="called " + PER_NODE)),
                description="Tickets issued by the kiosks and tickets called to a counter.",
                unit="none",
            ),
            Panel(
                "Waiting now (last ticket issued minus last called)", "table",
                (Query('SELECT last("ticket") AS "last issued" FROM "raw"."hospital_queue" '
                       f'WHERE $timeFilter AND {SITE_NODE} AND "called" = 0 '
                       'GROUP BY "site", "node", "sensor"', result_format="table"),
                 Query('SELECT last("ticket") AS "last called" FROM "raw"."hospital_queue" '
                       f'WHERE $timeFilter AND {SITE_NODE} AND "called" = 1 '
                       'GROUP BY "site", "node", "sensor"', result_format="table")),
                width=24, height=6,
            ),
            Panel(
                "Occupancy per hospital", "timeseries",
                (per_interval('last("occupancy_pct")', '"agg_1m"."hospital_occupancy"', '"site"',
                              where=OCCUPANCY_DEFINED, where_site_only=True, alias="$tag_site"),),
                description="Occupied beds over beds with a valid state, all wards of the "
                            "hospital (beds with a cut cable or a stale pad count in neither; a "
                            "ward silent for 2 h 10 min counts all its beds stale).",
                unit="percent", thresholds=OCCUPANCY_STEPS,
            ),
            Panel(
                "ER arrivals and visits per hour, per hospital", "timeseries",
                (per_interval('sum("er_arrivals")', '"agg_1h"."hospital_flow"', '"site"',
                              every="1h", where_site_only=True, alias="ER arrivals $tag_site"),
                 per_interval('sum("visits")', '"agg_1h"."hospital_flow"', '"site"',
                              every="1h", where_site_only=True, alias="visits $tag_site"),
                 per_interval('sum("faulty")', '"agg_1h"."hospital_flow"', '"site"',
                              every="1h", where_site_only=True,
                              alias="undercounted: faulty door readings $tag_site")),
                description="From the door counters: ER doors (ids starting er-) and the other "
                            "entrances, per hour of the count. Undercounted: the hour's door "
                            "readings with a cut beam cable (fault = 1; their counts mean "
                            "nothing), above 0 the hour's arrivals and visits are too low.",
                unit="none",
            ),
            Panel(
                "Waiting time per queue (median and 90th percentile)", "timeseries",
                (per_interval('max("median_s")', '"agg_1h"."queue_wait"', BY_NODE, every="1h",
                              where=WAITS_DEFINED, alias="median " + PER_NODE),
                 per_interval('max("p90_s")', '"agg_1h"."queue_wait"', BY_NODE, every="1h",
                              where=WAITS_DEFINED, alias="p90 " + PER_NODE)),
                description="Ticket issued to ticket called, per hour of the call, per queue "
                            "node: registration halls, and paraclinical departments (imaging, "
                            "laboratory) where each has its own kiosk node.",
                unit="s",
            ),
            Panel(
                "Patients served per hour per queue", "timeseries",
                (per_interval('sum("n")', '"agg_1h"."queue_wait"', BY_NODE, every="1h",
                              fill="0"),),
                description="Tickets called at a counter (waits measured) per hour: "
                            "registrations, or examinations done at a paraclinical queue.",
                unit="none", stacked=True,
            ),
            *_node_status_panels(),
        ),
    )


def traffic() -> Dashboard:
    return Dashboard(
        uid="urbanpulse-traffic",
        title="City operations — traffic",
        description="Vehicles per minute, occupancy and speed per lane (loop detectors).",
        variables=site_node_variables('"raw"."traffic_loop"'),
        panels=(
            Panel(
                "Vehicles per minute per lane", "timeseries",
                (per_interval('60 * sum("vehicles") / sum("interval_s")', '"agg_1m"."traffic_lane"',
                              BY_LANE, alias=PER_LANE),),
                description="Vehicles counted divided by the seconds the intervals covered, "
                            "from the dataflow's lane rollup (traffic_lane): each loop "
                            "interval in the minute it ends in, as the panels beside it, and "
                            "readings of a loop warming up or with an unsynchronised clock "
                            "left out.",
                width=24, unit="none",
            ),
            Panel(
                "Vehicles per minute per lane (1-minute aggregates)", "timeseries",
                (per_interval('60 * mean("count_mean") / mean("interval_s_mean")',
                              '"agg_1m"."traffic_loop"', BY_LANE, alias=PER_LANE),),
                description="For long ranges: the same rate from the 1-minute aggregates "
                            "(each minute weighted equally).",
                width=24, unit="none",
            ),
            Panel(
                "Occupancy per lane", "timeseries",
                (per_interval('mean("occupancy_pct_mean")', '"agg_1m"."traffic_loop"', BY_LANE,
                              alias=PER_LANE),),
                description="Share of time a vehicle stood over the loop.",
                unit="percent",
            ),
            Panel(
                "Speed per lane", "timeseries",
                (per_interval('mean("speed_kmh")', '"agg_1m"."traffic_lane"', BY_LANE,
                              alias=PER_LANE),),
                description="Mean speed of the vehicles measured, where the detector measures "
                            "it (loop pairs), from the dataflow's lane rollup (traffic_lane): "
                            "each minute's readings weighted by the vehicles their speed is the "
                            "mean of (speed_count; count from agents that do not send it), so "
                            "a crawl measured in an interval that counted no vehicle counts; "
                            "minutes averaged alike over a longer step. Readings of a loop "
                            "warming up or with an unsynchronised clock are left out, as in "
                            "the vehicles per minute.",
                unit="velocitykmh",
            ),
            Panel(
                "Vehicles per minute per intersection", "timeseries",
                (per_interval('mean("flow_vpm")', '"agg_1m"."traffic_intersection"', BY_NODE),),
                description="The sum of the lanes' flows (a lane without a reading is not "
                            "read as an empty road).",
                width=24, unit="none",
            ),
            Panel(
                "Busiest lanes now (occupancy, last minute)", "bargauge",
                (Query('SELECT last("occupancy_pct_mean") FROM "agg_1m"."traffic_loop" '
                       f'WHERE time > now() - {LANES_NOW} AND {SITE_NODE} '
                       'GROUP BY "site", "node", "sensor"', alias=PER_LANE),),
                description=f"Each lane's latest 1-minute window within the last {LANES_NOW} "
                            "(a loop reports every interval, 60 s by default, an empty road "
                            "too): a lane whose node stopped drops out rather than keeping the "
                            "value it had then.",
                unit="percent", width=24,
                thresholds=(Threshold(None, "green"), Threshold(30, "orange"), Threshold(60, "red")),
            ),
            *_node_status_panels(),
        ),
    )


OCCUPANCY_STEPS = (Threshold(None, "green"), Threshold(85, "orange"), Threshold(95, "red"))
AQI_STEPS = (Threshold(None, "green"), Threshold(51, "yellow"), Threshold(101, "orange"),
             Threshold(151, "red"), Threshold(201, "purple"), Threshold(301, "dark-red"))

PM25_STEPS = (Threshold(None, "green"), Threshold(25, "yellow"), Threshold(50, "orange"),
              Threshold(150, "red"))


def air_quality() -> Dashboard:
    return Dashboard(
        uid="urbanpulse-air",
        title="City operations — air quality",
        description="PM2.5, PM10 and CO2 per station from the 1-minute aggregates.",
        variables=site_node_variables('"agg_1m"./^air_/'),
        panels=(
            Panel(
                "PM2.5 per station", "timeseries",
                (per_interval('mean("pm25_mean")', '"agg_1m"."air_pm"', BY_NODE),),
                unit="conμgm3", thresholds=PM25_STEPS,
            ),
            Panel(
                "PM10 per station", "timeseries",
                (per_interval('mean("pm10_mean")', '"agg_1m"."air_pm"', BY_NODE),),
                unit="conμgm3",
            ),
            Panel(
                "PM2.5 now (mean of the last hour)", "bargauge",
                (Query('SELECT mean("pm25_mean") FROM "agg_1m"."air_pm" '
                       f'WHERE time > now() - 1h AND {SITE_NODE} GROUP BY "site", "node"',
                       alias=PER_NODE),),
                unit="conμgm3", thresholds=PM25_STEPS, width=12,
            ),
            Panel(
                "CO2 per station", "timeseries",
                (per_interval('mean("co2_mean")', '"agg_1m"."air_co2"', BY_NODE),),
                unit="ppm",
                thresholds=(Threshold(None, "green"), Threshold(1000, "orange"),
                            Threshold(2000, "red")),
            ),
            Panel(
                "Air-quality index per station: US EPA and VN_AQI", "timeseries",
                (per_interval('last("aqi_epa")', '"agg_1h"."air_quality"', BY_NODE, every="1h",
                              alias="EPA " + PER_NODE),
                 per_interval('last("aqi_vn")', '"agg_1h"."air_quality"', BY_NODE, every="1h",
                              alias="VN " + PER_NODE)),
                description="Hourly indices from PM2.5, PM10 (NowCast for EPA): US EPA's 2024 "
                            "breakpoints and Vietnam's VN_AQI (Decision 1459/QD-TCMT), see "
                            "docs/domain-rollups.md.",
                unit="none", thresholds=AQI_STEPS,
            ),
            Panel(
                "Air quality now", "table",
                (Query('SELECT last("aqi_epa") AS "AQI EPA", last("category_epa") AS "EPA", '
                       'last("aqi_vn") AS "VN_AQI", last("category_vn") AS "VN", '
                       'last("pm25_mean") AS "PM2.5 (hour)" FROM "agg_1h"."air_quality" '
                       f'WHERE time > now() - 2h AND {SITE_NODE} GROUP BY "site", "node"',
                       result_format="table"),),
                description="The latest hour of each station, within the last two hours: each "
                            "column takes its own latest value, so a station whose PM "
                            "modules stopped hours ago shows no index rather than an old one.",
                width=24, height=6,
            ),
            *_node_status_panels(),
        ),
    )


PROCESSOR = '"raw"."processor"'
PER_PROCESS = "process $tag_process"


def _per_process(select: str, alias: str = PER_PROCESS) -> Query:
    """`select` from the processor's own points, per interval and process: they have no site
    or node, so no variable filters them."""
    return Query(f'SELECT {select} FROM {PROCESSOR} WHERE $timeFilter '
                 'GROUP BY time($__interval), "process" fill(none)', alias=alias)


def _processor_panels() -> tuple[Panel, ...]:
    """The processor's report on itself (the `processor` measurement, cloud/health.py)."""
    return (
        Panel(
            "Processor: read lag", "timeseries",
            (_per_process('max("read_lag_s")'),),
            description="How far the processor's reading of its journal is behind: the age of "
                        "the newest record read while behind, about 0 when caught up. Every "
                        "panel below is this late. A line that stops: see \"Processor silent\".",
            width=8, unit="s",
            thresholds=(Threshold(None, "green"), Threshold(PROCESSOR_BEHIND_S, "red")),
        ),
        Panel(
            "Processor: journal backlog", "timeseries",
            (_per_process('max("journal_backlog")'),),
            description="Messages journaled by the ingest and not yet read by the processor.",
            width=8, unit="none",
        ),
        Panel(
            "Processor: InfluxDB write retries and refusals", "timeseries",
            (_per_process('non_negative_difference(max("write_retries"))', "retries $tag_process"),
             _per_process('non_negative_difference(max("write_refused"))', "refused $tag_process"),
             _per_process('non_negative_difference(max("write_denied"))', "denied $tag_process")),
            description="Per interval. Retries: InfluxDB unavailable, the writer waits and tries "
                        "again (nothing lost). Refused: InfluxDB rejected lines of a request for "
                        "good (its reason is in the processor's log). Denied: InfluxDB refused "
                        "the writer (401, 403, 404), which held the points and tried again; shown "
                        "once writes resume, as no point can be written meanwhile (\"Processor "
                        "silent\").",
            width=8, unit="none",
        ),
        Panel(
            "Processor: throughput", "timeseries",
            (_per_process('non_negative_derivative(max("records_read"), 1s)', "records read/s $tag_process"),
             _per_process('non_negative_derivative(max("points_written"), 1s)',
                          "points written/s $tag_process")),
            description="Journal records (MQTT messages) read and InfluxDB points written per second.",
            width=12, unit="none",
        ),
        Panel(
            "Processor: state disk free", "timeseries",
            (_per_process('min("state_free_bytes")'),),
            description="Free on state.dir's filesystem (journals, recovery store). Red: the "
                        "\"State disk low\" alert. At state.min_free_bytes (1 GiB by default) "
                        "the ingest stops taking messages until there is room again.",
            width=12, unit="bytes",
            thresholds=(Threshold(None, "red"), Threshold(STATE_DISK_LOW_BYTES, "green")),
        ),
        Panel(
            "Processor now", "table",
            (Query('SELECT last("read_lag_s") AS "read lag s", last("journal_backlog") AS "backlog", '
                   'last("points_pending") AS "points pending", last("write_retries") AS "retries", '
                   'last("write_refused") AS "refused", last("write_denied") AS "denied", '
                   'last("domain_spans_refused") AS "spans refused", '
                   'last("windows_refused") AS "windows refused", '
                   'last("state_free_bytes") AS "state disk free", '
                   'last("uptime_s") AS "uptime s" '
                   f'FROM {PROCESSOR} WHERE $timeFilter GROUP BY "process"', result_format="table"),),
            description="The last report of each process (counts since its start). Only the "
                        "process that reads the journals has read lag and backlog. Spans and "
                        "windows refused: rebuilds held now because InfluxDB refuses the reader "
                        "(\"Processor cannot read back\").",
            width=24,
        ),
    )


def data_health() -> Dashboard:
    return Dashboard(
        uid="urbanpulse-data-health",
        title="Data health",
        description="The processor's own health, delivery ledger, dead letters, node status and "
                    "silent nodes.",
        variables=site_node_variables('"raw"."node_status"'),
        panels=(
            *_processor_panels(),
            Panel(
                "Delivery ledger per node", "table",
                (Query('SELECT sum("expected") AS "expected", sum("received") AS "received", '
                       'sum("duplicates") AS "duplicates", sum("late") AS "late", '
                       'sum("missing") AS "missing" FROM "agg_1h"."ledger" '
                       f'WHERE $timeFilter AND {SITE_NODE} GROUP BY "site", "node"',
                       result_format="table"),),
                description="Per node over the hours in range: readings expected from the "
                            "sequence numbers, received (with duplicates), late, and missing.",
                width=24,
            ),
            Panel(
                "Missing readings per hour", "timeseries",
                (per_interval('sum("missing")', '"agg_1h"."ledger"', BY_NODE, every="1h"),),
                unit="none",
            ),
            Panel(
                "Delivered share per hour", "timeseries",
                (per_interval('100 * (sum("received") - sum("duplicates")) / sum("expected")',
                              '"agg_1h"."ledger"', BY_NODE, every="1h"),),
                description="Distinct readings received over readings expected.",
                unit="percent", decimals=2,
            ),
            Panel(
                "Dead letters per reason", "timeseries",
                (per_interval('count("offset")', '"raw"."dead_letter"', '"reason"',
                              fill="0", alias="$tag_reason"),),
                description="Rejected messages and readings, by rejection code.",
                unit="none", stacked=True,
            ),
            Panel(
                "Latest dead letters", "table",
                (Query('SELECT "reason", "site", "node", "detail", "topic" FROM "raw"."dead_letter" '
                       f'WHERE $timeFilter AND {SITE_NODE} ORDER BY time DESC LIMIT 50',
                       result_format="table"),),
            ),
            *_node_status_panels(),
            Panel(
                "Readings per second per node", "timeseries",
                (per_interval('mean("readings_per_s")', '"raw"."node_status"', BY_NODE),),
                unit="none",
            ),
            Panel(
                "Heartbeats per node (0 = silent)", "timeseries",
                (Query('SELECT count("state") FROM "raw"."node_status" '
                       f'WHERE $timeFilter AND {SITE_NODE} AND "state" = \'online\' '
                       'GROUP BY time(5m), "site", "node" fill(0)', alias=PER_NODE),),
                description="Online heartbeats per 5 minutes; a node that died or lost its "
                            "link drops to 0.",
                unit="none",
            ),
            Panel(
                "Clock offset per node", "timeseries",
                (per_interval('median("clock_offset_s")', '"raw"."node_status"', BY_NODE),),
                description="Each node's clock minus the cloud's, from its statuses "
                            "(`clock_offset_s`: the status's own stamp minus its reception, so "
                            "less the transit, well under a second live); below 0 the node is "
                            "behind. Median per interval. Red beyond 5 minutes either way: the "
                            "\"Node clock off\" alert, whose node's readings, aggregates and "
                            "ledger hours are that far misplaced. A lone dip after a reconnect "
                            "or an ingest outage is a status delivered late, not the clock; "
                            "every node moving together is the cloud host's clock. Whether "
                            "the node says its clock is synchronised: \"Nodes now\" (off and "
                            "synchronised: a wrong NTP server; off and not: none reached).",
                unit="s", width=24,
                thresholds=(Threshold(None, "red"), Threshold(-CLOCK_OFF_S, "green"),
                            Threshold(CLOCK_OFF_S, "red")),
            ),
            Panel(
                "Readings stored per node per minute", "timeseries",
                (per_interval('sum("count")', '"agg_1m"./^(air|traffic|hospital)_/', BY_NODE,
                              every="1m", fill="0", alias=PER_NODE + " $m"),),
                description="From the 1-minute aggregates of every reading measurement.",
                unit="none", width=24,
            ),
        ),
    )


NOT_ANOMALY = " AND \"type\" != 'anomaly'"
ANOMALY = " AND \"type\" = 'anomaly'"


def sensor_events() -> Dashboard:
    return Dashboard(
        uid="urbanpulse-events",
        title="Sensor faults and anomalies",
        description="The dataflow's events: sensor faults (stuck, silence, out of range, spikes, "
                    "cut cable, clock jumps, drift) and anomaly scores above their threshold.",
        variables=site_node_variables('"raw"."events"'),
        panels=(
            Panel(
                "Sensor faults per type", "timeseries",
                (per_interval('count("detail")', '"raw"."events"', '"type"', where=NOT_ANOMALY,
                              fill="0", alias="$tag_type"),),
                description="Fault events raised, by rule, counted when they are stamped: by the "
                            "reading that completed the rule (the node's clock), or when the cloud "
                            "received it where it came over 5 minutes after its stamp or over a "
                            "minute before it (a node's clock wrong, a backlog: the event's "
                            "node_ts, in \"Latest sensor faults\", is then the reading's stamp); a "
                            "heartbeat's events and a node's clock jumps when the cloud received "
                            "the message; silence found on the cloud's tick at the tick.",
                unit="none", stacked=True,
            ),
            Panel(
                "Anomalies per node", "timeseries",
                (per_interval('count("score")', '"raw"."events"', BY_NODE, where=ANOMALY, fill="0"),),
                description="Values whose anomaly score reached their sensor kind's threshold.",
                unit="none", stacked=True,
            ),
            Panel(
                "Latest sensor faults", "table",
                (Query('SELECT "type", "site", "node", "sensor", "field", "node_ts", "detail", '
                       f'"delay_s" FROM "raw"."events" WHERE $timeFilter AND {SITE_NODE}{NOT_ANOMALY} '
                       'ORDER BY time DESC LIMIT 100', result_format="table"),),
                description="Newest first. Time: when the event is stamped. `node_ts` (UTC), where "
                            "set: when the reading (or heartbeat) that raised it was taken, by the "
                            "node's clock; the event is then stamped when the cloud received it, "
                            "as the reading came over 5 minutes after its stamp or over a minute "
                            "before it (a node's clock wrong, a backlog), or came in a heartbeat. "
                            "Empty: the event's time is its reading's (a silence found on the "
                            "cloud's tick and a node's clock jump: the cloud's). `delay_s`: from "
                            "the fault's start to the reading or heartbeat. A node's own events "
                            "(clock jumps) have no sensor.",
                width=24,
            ),
            Panel(
                "Latest anomalies", "table",
                (Query('SELECT "site", "node", "sensor", "kind", "field", "value", "score", "detail" '
                       f'FROM "raw"."events" WHERE $timeFilter AND {SITE_NODE}{ANOMALY} '
                       'ORDER BY time DESC LIMIT 100', result_format="table"),),
                width=24,
            ),
        ),
    )


def all_dashboards() -> tuple[Dashboard, ...]:
    return (hospitals(), traffic(), air_quality(), data_health(), sensor_events())
