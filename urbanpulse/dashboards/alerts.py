"""Alert rules as code, rendered to Grafana unified-alerting file provisioning.

Each rule is one InfluxQL query (A), reduced to its last value per series (B), compared
with a threshold (C). Series are grouped by tags, so every node or station alerts alone.
A rule may carry a second query (D), reduced the same way (E), for its texts only.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from urbanpulse.dashboards import DATASOURCE_UID
from urbanpulse.dashboards.model import JSON
from urbanpulse.wire.values import REFUSAL_CODES

FOLDER = "UrbanPulse"
GROUP = "urbanpulse"

Comparison = Literal["gt", "lt"]

# A node that heartbeats at least once a minute sends >= 4 online statuses in any 5 minutes.
# Minute buckets filled with 0 over the last hour give every recently seen node a series, so
# a node that vanished (or published its last will) drops to 0 instead of disappearing; the
# moving sum of the last 5 buckets is its heartbeat count. (An outer `WHERE time > now() - 5m`
# does not work: InfluxDB 1.x pushes it into the subquery, and the silent node's series is gone.)
# A node silent for longer than the hour leaves the answer, and Grafana resolves its instance
# (MissingSeries) though the node is still silent. A day's look-back would keep it, but cost
# 4 s of InfluxDB per evaluation (each minute) at 500 nodes with 30 s heartbeats, against 0.3 s
# (measured on a private influxd, one day of heartbeats): it needs a cheaper 'last seen'.
NODE_OFFLINE_QUERY = (
    'SELECT 5 * moving_average("n", 5) FROM (SELECT count("state") AS "n" FROM "raw"."node_status" '
    "WHERE \"state\" = 'online' AND time > now() - 1h "
    'GROUP BY time(1m), "site", "node" fill(0)) GROUP BY "site", "node"'
)

# The processor writes a `processor` point every flow.health_every_s (at most 60 s), from its
# InfluxDB writer thread. The same moving count as for heartbeats: a process seen in the last
# hour and silent for the last 5 minute buckets drops to 0.
PROCESSOR_SILENT_QUERY = (
    'SELECT 5 * moving_average("n", 5) FROM (SELECT count("uptime_s") AS "n" FROM "raw"."processor" '
    'WHERE time > now() - 1h GROUP BY time(1m), "process" fill(0)) GROUP BY "process"'
)
PROCESSOR_BEHIND_S = 120  # read lag: the dashboards are this far behind the nodes
# Free on the state disk (the processor's `state_free_bytes`). The ingest stops taking
# messages at state.min_free_bytes (1 GiB by default): at the rated 100,000 readings/s the
# journal grows 13.5-36 MB/s by message size (docs/sizing.md), so this leaves 5-13 minutes
# at full load.
STATE_DISK_LOW_BYTES = 10 * 1024**3

# A node's clock against the cloud's: every status is stamped when the cloud received it and
# carries `clock_offset_s`, its own stamp minus that (the clock's error less the transit).
# Beyond 5 minutes each of its readings counts `late` in the ledger (cloud/logic/node.py,
# LATE_AFTER_NS) and its fault events are stamped at reception (cloud/logic/events.py,
# RECEIVED_AFTER_MAX_NS; 1 minute ahead already): past that line its aggregates, ledger
# hours and the alerts reading them ("PM2.5 high", "Missing data") are misplaced by as
# much. Ahead and behind alike: an aggregate is as far out either way. A live status's
# transit is well under a second, and NTP keeps a clock within milliseconds.
CLOCK_OFF_S = 300
# Statuses go out live (edge/publisher.py: QoS 1, retained, never through the outbox), but one
# can still come late: a heartbeat published while the link was dying goes out again at the
# reconnect (its stamp as old as the outage), the broker keeps the ingest's session through
# an ingest outage and hands it the lot at once, and re-delivers a node's retained status at
# each re-subscription without a shared group (a node stopped days ago: one status days
# "behind"). Each says its clock is off by its delay. So the rule takes the smallest
# absolute offset of the last 15 minutes (any status delivered on time clears it: a
# reconnect sends a fresh one beside the old), and only from a node heard in at least 3 of
# the 5-minute buckets the window spans (4, the two at its ends partial; with heartbeats
# every 120 s at most a live node is heard in 3): statuses received over more than 5
# minutes, never one burst. The time filter goes on the bucketing step, and InfluxDB pushes
# it into the subquery below; on the outer steps it empties the answer (InfluxDB 1.6).
CLOCK_OFF_QUERY = (
    'SELECT "off_s" FROM (SELECT min("least_s") AS "off_s", count("least_s") AS "buckets" FROM '
    '(SELECT min("abs_s") AS "least_s" FROM (SELECT abs("clock_offset_s") AS "abs_s" '
    'FROM "raw"."node_status") WHERE $timeFilter GROUP BY time(5m), "site", "node") '
    'GROUP BY "site", "node") WHERE "buckets" >= 3 GROUP BY "site", "node"'
)
# What the node says of its clock (`clock_synchronised` of its statuses: the kernel's
# STA_UNSYNC flag as the agent read it), for the alert's summary only: off and synchronised
# is a wrong NTP server, off and not synchronised no NTP server reached. A number, as
# Grafana's expressions take numbers: per minute the highest of CLAIM_NONE for every status
# with a clock offset (every heartbeat), CLAIM_UNSYNCED for one saying not synchronised and
# CLAIM_SYNCED for one saying synchronised; the rule reduces it to the last minute's. The
# CLAIM_NONE branch gives every node this rule's query answers for a series here too: were
# this query's answer empty (no node saying, an older fleet), Grafana would take the whole
# rule as "no data", and resolve the alerts of the nodes whose clock is off.
CLAIM_NONE, CLAIM_UNSYNCED, CLAIM_SYNCED = 0, 1, 2
CLOCK_CLAIM_QUERY = (
    'SELECT max("claim") FROM '
    f'(SELECT "clock_offset_s" * 0 + {CLAIM_NONE} AS "claim" FROM "raw"."node_status"), '
    f'(SELECT "clock_offset_s" * 0 + {CLAIM_UNSYNCED} AS "claim" FROM "raw"."node_status" '
    'WHERE "clock_synchronised" = false), '
    f'(SELECT "clock_offset_s" * 0 + {CLAIM_SYNCED} AS "claim" FROM "raw"."node_status" '
    'WHERE "clock_synchronised" = true) '
    'WHERE $timeFilter GROUP BY time(1m), "site", "node" fill(none)'
)
# Grafana's template of the claim (the reduce E of the query D): `with` so that a missing
# value (no series) reads as "does not say" rather than failing the expansion.
CLOCK_CLAIM_TEXT = (
    "{{ with $values.E }}"
    f"{{{{ if gt .Value {CLAIM_UNSYNCED + 0.5} }}}}its clock says it is synchronised: to a wrong "
    "NTP server?"
    f"{{{{ else if gt .Value {CLAIM_NONE + 0.5} }}}}its clock says it is NOT synchronised: no "
    "NTP server reached?"
    "{{ else }}it does not say whether its clock is synchronised (agent older than the "
    "check, or its clock_check off)"
    "{{ end }}{{ else }}it does not say whether its clock is synchronised{{ end }}"
)


# A driver's counts of bad input (`driver_status`, from each heartbeat: docs/influx-schema.md)
# are counters since the node's agent started, 0 again at a restart. So each count is read as
# its rises from one heartbeat to the next, a fall (the restart) left out
# (`non_negative_difference`): never negative, and what the first heartbeat after a restart
# counted is lost (a lower bound), as is the rise into a window's first heartbeat. Several
# counters are summed as one, each its own subquery (InfluxQL's arithmetic over fields is null
# where a driver does not send one of them), merged as the sources of one query.
DRIVER_STATUS = '"raw"."driver_status"'


def counter_rises(counters: tuple[str, ...], where: str) -> str:
    """The FROM sources giving, per (site, node, sensor), each rise of `counters` as
    `rise`, within `where` (a condition on time and tags)."""
    return ", ".join(f'(SELECT non_negative_difference("{c}") AS "rise" FROM {DRIVER_STATUS} '
                     f'WHERE {where} GROUP BY "site", "node", "sensor")' for c in counters)


# What a bad link between a serial sensor and the node counts: frames whose checksum failed,
# bytes skipped resynchronising (garbage, truncated or corrupt frames), frames that break the
# protocol, a board's sentences lost (gaps in its numbering).
LINK_COUNTERS = ("checksum_errors", "bytes_skipped", "malformed", "lost_sentences")
# The rest: input refused for what it says, not for how it arrived (pulses too short, calls
# with nobody waiting, a sensor's own error frames, loop onsets no speed came of...).
OTHER_COUNTERS = ("sensor_errors", "door_gaps", "ignored", "uneven_intervals", "glitches",
                  "unmatched_upstream", "unmatched_downstream", "implausible_length", "empty_calls")
# A healthy link counts nothing while it runs. A driver (re)start may begin in the middle of a
# frame and skip it: at most 82 bytes (an upfw sentence, the longest; a PMS5003 frame 32, an
# SDS011 10), with a checksum error or a lost sentence or two. A corrupt frame costs its length
# + 1 (a checksum error and its bytes): 11 for an SDS011, 33 for a PMS5003; so more than 100
# in 15 minutes is a few corrupt frames at the least, and a wrong baud rate (every byte
# skipped: hundreds a second) passes it within the first heartbeat.
LINK_ERRORS_MAX = 100
SENSOR_LINK_QUERY = (
    f'SELECT sum("rise") FROM {counter_rises(LINK_COUNTERS, "$timeFilter")} '
    'WHERE $timeFilter GROUP BY "site", "node", "sensor"'
)

# The samples a driver emitted that its node's agent refused before the outbox (the wire
# contract refuses their values: a NaN, 2.5 vehicles, a field the kind has not), `refused` in
# `driver_status`, a counter since the agent's start as the others: each is a reading lost
# for a driver bug, and no dead letter tells of it (the node drops it). Any rise in 15 minutes
# fires, one alert per driver (its sensor tag: the driver's id in the heartbeat, a upfw
# board's id for all its channels). A restart's fall is no rise; what the first heartbeat
# after it counted is lost, as for the link's counts. Only drivers whose count rose answer:
# every driver of the fleet sends the count (0 included), and a series each would be an
# alert instance each in Grafana; with none rising the rule has no data, which is OK (as
# "Dead letters", whose count answers only the sites with some).
REFUSED_QUERY = (
    f'SELECT sum("rise") FROM {counter_rises(("refused",), "$timeFilter")} '
    'WHERE $timeFilter AND "rise" > 0 GROUP BY "site", "node", "sensor"'
)
# Why (the summary's reason): of the refusal codes the driver's last heartbeat of the window
# counts (`refused_<code>`, since the agent's start), the one counting most, as a number
# (Grafana's expressions take numbers): its place in REFUSAL_ORDER from 1, REASON_NONE when
# no code is stored (a code this cloud does not know, left out of driver_status). Each code's
# last count c becomes c * REASON_BASE + its place, the largest of them wins, and the
# remainder by REASON_BASE is the place (ties: the later code). The REASON_NONE branch, from
# `refused` itself, gives every driver the rule's query answers for a series here too (and
# the drivers whose count did not rise):
# Grafana takes a rule any of whose queries answers nothing as "no data" as a whole.
REFUSAL_ORDER = tuple(sorted(REFUSAL_CODES))
REASON_NONE = 0
REASON_BASE = len(REFUSAL_ORDER) + 1
_BY_SENSOR = 'GROUP BY "site", "node", "sensor"'
REFUSED_REASON_QUERY = (
    f'SELECT max("reason") % {REASON_BASE} FROM '
    f'(SELECT last("refused") * 0 + {REASON_NONE} AS "reason" FROM {DRIVER_STATUS} '
    f'WHERE $timeFilter {_BY_SENSOR}), '
    + ", ".join(f'(SELECT last("refused_{code}") * {REASON_BASE} + {place} AS "reason" '
                f'FROM {DRIVER_STATUS} WHERE $timeFilter {_BY_SENSOR})'
                for place, code in enumerate(REFUSAL_ORDER, start=1))
    + f' WHERE $timeFilter {_BY_SENSOR}'
)
# What each code says of the driver's samples (docs/wire-contract.md, "What the node refuses").
REFUSAL_MEANING = {
    "bad_count": "a count that is not a whole number from 0 (2.5 vehicles, -1 persons)",
    "bad_value": "a value that is not a finite number (NaN, infinity) or a bool other than 0/1",
    "bad_values": "values that are no object of fields, or an empty one",
    "missing_field": "a field the kind requires left out",
    "unknown_field": "a field the kind does not have",
    "unknown_kind": "a kind the wire contract does not know",
    "wrong_unit": "a field in a unit the contract does not give it",
}
_REASON_SAID = (("no reason stored (a refusal code this cloud does not know: the node's log "
                 "names it)"),
                *(f"{code}: {REFUSAL_MEANING[code]}" for code in REFUSAL_ORDER))
# Grafana's template of the reason (the reduce E of the query D): a chain of `lt`, as .Value
# is a float; `with` so that a missing value (no series) reads as no reason.
REFUSED_REASON_TEXT = (
    "{{ with $values.E }}"
    + "".join(f"{{{{ {'else if' if place else 'if'} lt .Value {place + 0.5} }}}}{said}"
              for place, said in enumerate(_REASON_SAID[:-1]))
    + f"{{{{ else }}}}{_REASON_SAID[-1]}"
    + "{{ end }}{{ else }}no reason stored{{ end }}"
)

# Bed pads not heard for over 2 h 10 min (cloud/logic/domain/hospital.py, STALE_NS) count as
# `stale` in their ward's `ward_occupancy` rows, in none of beds, occupied, available and
# faulty: the ward's capacity shrinks by them. The rule takes each ward's last 1-minute row
# (the count at that minute's end). A ward writes a row only at a minute holding a bed
# reading, and a pad sends one at least every heartbeat (at most 3600 s, a little late): a
# look-back of 2 hours holds a row of every ward with a pad still talking, at every
# evaluation of the pending period. A ward all of whose pads fell silent writes no row: it
# leaves the answer 2 hours after its last one (its node: "Node offline"; its hospital's
# `hospital_occupancy` counts all its beds stale).
STALE_PADS_WINDOW_S = 2 * 3600
STALE_PADS_QUERY = (
    'SELECT last("stale") FROM "agg_1m"."ward_occupancy" WHERE $timeFilter GROUP BY "site", "node"'
)


@dataclass(frozen=True)
class AlertRule:
    uid: str
    title: str
    influxql: str
    window_s: int
    comparison: Comparison
    threshold: float
    pending: str
    summary: str
    severity: Literal["critical", "warning"]
    # What to check first, and the runbook section (docs/runbook.md) that says more.
    action: str = ""
    window_end_s: int = 0
    no_data: Literal["OK", "NoData", "Alerting"] = "OK"
    # A second query (D) over the same time range, reduced to its last value per series (E)
    # for the summary and action (`$values.E`); the condition stays C, on A alone. Its
    # answer must hold a series whenever A's does: Grafana takes a rule any of whose
    # queries answers nothing as "no data" as a whole.
    note_influxql: str = ""

    def fires(self, last_value: float) -> bool:
        """What the threshold expression (C) decides for a series whose last value this is."""
        if self.comparison == "gt":
            return last_value > self.threshold
        return last_value < self.threshold


RULES: tuple[AlertRule, ...] = (
    AlertRule(
        uid="urbanpulse-node-offline", title="Node offline", influxql=NODE_OFFLINE_QUERY,
        window_s=3600, comparison="lt", threshold=1, pending="2m", severity="critical",
        summary="{{ $labels.site }}/{{ $labels.node }} sent no online heartbeat for 5 minutes",
        action="Every node at once? Check \"Processor silent\" first: the processor writes "
               "node_status (docs/runbook.md, \"Processor silent\"). Other nodes of the site "
               "offline too? Then the site network or the broker. Else the node's power and "
               "network, then `systemctl status urbanpulse-edge` on it. Its readings wait in its "
               "outbox. Resolved an hour after the node fell silent, with no heartbeat since? It "
               "left this rule's window (Grafana: MissingSeries), it did not come back: see "
               "\"Heartbeats per node\" (data health). Runbook: docs/runbook.md, \"Node offline\".",
    ),
    AlertRule(
        uid="urbanpulse-outbox-growing", title="Outbox growing",
        influxql='SELECT last("outbox_depth") - first("outbox_depth") FROM "raw"."node_status" '
                 'WHERE $timeFilter GROUP BY "site", "node"',
        window_s=1800, comparison="gt", threshold=500, pending="10m", severity="warning",
        summary="{{ $labels.site }}/{{ $labels.node }}: outbox grew by {{ $values.B }} readings "
                "in 30 minutes; the node is not delivering",
        action="Many nodes at once: the central side (processor, ingest, broker) is not "
               "confirming. One node: its uplink. Runbook: docs/runbook.md, \"Outbox growing\".",
    ),
    AlertRule(
        uid="urbanpulse-dead-letters", title="Dead letters",
        influxql='SELECT count("offset") FROM "raw"."dead_letter" WHERE $timeFilter '
                 'GROUP BY "site", "reason"',
        window_s=900, comparison="gt", threshold=0, pending="0s", severity="warning",
        summary="{{ $labels.site }}: {{ $values.B }} messages rejected as {{ $labels.reason }} "
                "in 15 minutes",
        action="The dead_letter measurement holds each rejection's detail and payload; the "
               "reason says whose fault. Runbook: docs/runbook.md, \"Dead letters\".",
    ),
    AlertRule(
        uid="urbanpulse-missing-data", title="Missing data",
        # $timeFilter is inclusive at both ends: evaluated on the hour, [now-3h, now-1h]
        # would hold three hour starts; the window's start is left out.
        influxql='SELECT sum("missing") FROM "agg_1h"."ledger" WHERE $timeFilter '
                 'AND time > now() - 3h GROUP BY "site", "node"',
        window_s=3 * 3600, window_end_s=3600, comparison="gt", threshold=0, pending="0s",
        severity="warning",
        summary="{{ $labels.site }}/{{ $labels.node }}: {{ $values.B }} readings never arrived "
                "in the two complete hours before the last one",
        action="Was the node offline or evicting from its outbox, or did its numbering restart "
               "(ledger field restarts)? Runbook: docs/runbook.md, \"Missing data\".",
    ),
    AlertRule(
        uid="urbanpulse-sensor-fault", title="Sensor fault",
        influxql='SELECT count("detail") FROM "raw"."events" WHERE $timeFilter '
                 "AND \"type\" != 'anomaly' GROUP BY \"site\", \"node\", \"sensor\", \"type\"",
        window_s=900, comparison="gt", threshold=0, pending="0s", severity="warning",
        summary="{{ $labels.site }}/{{ $labels.node }} {{ $labels.sensor }}: {{ $labels.type }} "
                "({{ $values.B }} events in 15 minutes)",
        action="Raised once per episode: this alert clears after 15 minutes even if the fault "
               "lasts. What each type means on site: docs/runbook.md, \"Sensor fault\".",
    ),
    AlertRule(
        uid="urbanpulse-sensor-link-errors", title="Sensor link errors", influxql=SENSOR_LINK_QUERY,
        window_s=900, comparison="gt", threshold=LINK_ERRORS_MAX, pending="0s", severity="warning",
        summary="{{ $labels.site }}/{{ $labels.node }} {{ $labels.sensor }}: {{ $values.B }} link "
                "errors (checksum errors, bytes skipped, malformed frames, lost sentences) in 15 "
                "minutes",
        action="The sensor's serial link corrupts or loses what it sends: its readings come "
               "fewer or not at all. Check the cable and its connectors (reseat, swap), the "
               "baud rate the node's config gives the driver against the sensor's, the ground "
               "shared by the sensor and the node, the cable's length and its route beside mains "
               "or motors; then the driver's README (edge/drivers/<driver>/README.md, \"Bad "
               "input\"; upfw's: \"Liveness and status\"). A burst that stops: someone worked "
               "on the cable. Data-health dashboard, \"Bad input per sensor\"; on the node, "
               "`urbanpulse edge status`. Runbook: "
               "docs/runbook.md, \"Sensor link errors\".",
    ),
    AlertRule(
        uid="urbanpulse-samples-refused", title="Samples refused", influxql=REFUSED_QUERY,
        window_s=900, comparison="gt", threshold=0, pending="0s", severity="warning",
        summary="{{ $labels.site }}/{{ $labels.node }} driver {{ $labels.sensor }}: "
                "{{ $values.B }} samples refused by the node in 15 minutes, lost (the wire "
                "contract refuses them: a driver bug); the reason it refused most since its "
                "agent started: " + REFUSED_REASON_TEXT,
        action="The driver emitted readings the cloud would refuse; the node's agent dropped "
               "them before its outbox, so they are lost and no dead letter tells of them. Not "
               "the site's wiring: a bug in the driver, or in a upfw board's firmware. On the "
               "node, `urbanpulse edge status` (the driver's refused samples by reason; a upfw "
               "board's, by channel too) and the agent's log, one line per sensor and reason "
               "(\"a driver emitted a sample the wire contract refuses\", naming the sensor, "
               "the reason and the value). Open an issue with that line, the driver, and a "
               "board's firmware version. Data-health dashboard, \"Bad input per sensor\" "
               "(\"refused by the node\"). Runbook: docs/runbook.md, \"Samples refused\".",
        note_influxql=REFUSED_REASON_QUERY,
    ),
    AlertRule(
        uid="urbanpulse-node-clock-off", title="Node clock off", influxql=CLOCK_OFF_QUERY,
        window_s=900, comparison="gt", threshold=CLOCK_OFF_S, pending="5m", severity="warning",
        summary="{{ $labels.site }}/{{ $labels.node }}: clock off by at least {{ $values.B }} s "
                "on every status of the last 15 minutes; " + CLOCK_CLAIM_TEXT,
        action="Its readings are stored at the wrong time: aggregates, ledger hours, \"PM2.5 "
               "high\" and \"Missing data\" misplace them by as much. Ahead or behind: data-health "
               "dashboard, \"Clock offset per node\". Every node at once: the cloud host's clock, "
               "or a backlog of statuses the broker is still handing the ingest; not the nodes. "
               "One node saying it is synchronised: its NTP server is wrong (the time_sync "
               "role's servers, `chronyc sources`); saying it is not: it reaches no NTP server "
               "(firewall, DNS, `chronyc sources`), its RTC. Runbook: docs/runbook.md, "
               "\"Node clock off\".",
        note_influxql=CLOCK_CLAIM_QUERY,
    ),
    AlertRule(
        uid="urbanpulse-processor-silent", title="Processor silent", influxql=PROCESSOR_SILENT_QUERY,
        window_s=3600, comparison="lt", threshold=1, pending="0s", severity="critical",
        no_data="Alerting",  # no point from any process in the last hour
        summary="Processor process {{ $labels.process }} wrote no `processor` point for 5 minutes",
        action="The processor is down, cannot reach InfluxDB, or InfluxDB refuses its writer "
               "(its log: \"InfluxDB refuses the writer\", with the GRANT to run): `systemctl "
               "status urbanpulse-cloud influxdb` centrally. While it is, nothing reaches the "
               "dashboards and \"Node offline\" fires for every node: not a field problem. Nothing "
               "is lost (journal, outboxes). Runbook: docs/runbook.md, \"Processor silent\".",
    ),
    AlertRule(
        uid="urbanpulse-processor-behind", title="Processor behind",
        influxql='SELECT last("read_lag_s") FROM "raw"."processor" WHERE $timeFilter GROUP BY "process"',
        window_s=600, comparison="gt", threshold=PROCESSOR_BEHIND_S, pending="10m", severity="warning",
        summary="Processor process {{ $labels.process }} reads its journal {{ $values.B }} s behind",
        action="Everything on the dashboards is that late; nothing is lost. Falling after an "
               "outage: let it drain. Growing with write retries: InfluxDB is failing; without: "
               "the processor is stuck or too slow (data-health dashboard, \"Processor\" panels). "
               "Runbook: docs/runbook.md, \"Processor behind\".",
    ),
    AlertRule(
        uid="urbanpulse-processor-read-refused", title="Processor cannot read back",
        influxql='SELECT last("domain_spans_refused") + last("windows_refused") FROM "raw"."processor" '
                 'WHERE $timeFilter GROUP BY "process"',
        window_s=600, comparison="gt", threshold=0, pending="10m", severity="warning",
        summary="Processor process {{ $labels.process }} holds {{ $values.B }} rebuilds of late "
                "data (domain spans and windows) because InfluxDB refuses it the raw points",
        action="InfluxDB refuses the processor's reader (influx.reader_username) the reads that "
               "rebuild rollups and aggregates after late data: most often READ missing or its "
               "password changed. Its log names the user and the GRANT (\"InfluxDB refused the "
               "reader\"). The rebuilds are held and done once it may read; raw points are "
               "complete, nothing is lost. Runbook: docs/runbook.md, \"Processor cannot read back\".",
    ),
    AlertRule(
        uid="urbanpulse-state-disk-low", title="State disk low",
        influxql='SELECT last("state_free_bytes") FROM "raw"."processor" WHERE $timeFilter '
                 'GROUP BY "process"',
        window_s=600, comparison="lt", threshold=STATE_DISK_LOW_BYTES, pending="2m", severity="critical",
        summary="Processor process {{ $labels.process }}: {{ $values.B }} bytes free on the state "
                "disk (journals, recovery store)",
        action="Below state.min_free_bytes the ingest stops taking messages (the broker and the "
               "nodes' outboxes hold them; nothing is lost while they have room). Is \"Processor "
               "behind\" firing too? Then the journal grows because InfluxDB is down or slow: fix "
               "that. Else `du -sh` the journal/ and recovery/ folders of state.dir. Never delete "
               "journal or recovery files to make room. Runbook: docs/runbook.md, \"State disk low\".",
    ),
    AlertRule(
        # stale only after 2 h 10 min of silence; the 15 minutes cover a ward back from an
        # outage longer than that, whose pads count stale until their first live reading
        # (one heartbeat, 60 s by default) or the backlog's replay
        uid="urbanpulse-bed-pads-stale", title="Bed pads stale", influxql=STALE_PADS_QUERY,
        window_s=STALE_PADS_WINDOW_S, comparison="gt", threshold=0, pending="15m",
        severity="warning",
        summary="Hospital {{ $labels.site }}, ward {{ $labels.node }}: {{ $values.B }} bed pads "
                "not heard for over 2 h 10 min (stale); the ward's beds, occupied and available "
                "leave them out",
        action="A pad removed, renamed or lost by its node, out of the ward's capacity until it "
               "reports again. Which pads: the runbook's query of each pad's last reading. Was it "
               "taken out or given another id on purpose? Then nothing to fix on site (the cloud "
               "keeps counting it stale: silence this ward's alert, see the runbook). Else is "
               "the node talking (\"Node offline\")? Then its driver (`urbanpulse edge status`), "
               "the pad's cable and connector, a board's channel. Hospitals dashboard, \"Beds "
               "per ward now\" and \"Stale bed pads per ward\". Runbook: docs/runbook.md, "
               "\"Bed pads stale\".",
    ),
    AlertRule(
        uid="urbanpulse-pm25-high", title="PM2.5 high",
        influxql='SELECT mean("pm25_mean") FROM "agg_1m"."air_pm" WHERE $timeFilter '
                 'GROUP BY "site", "node"',
        window_s=3600, comparison="gt", threshold=50, pending="15m", severity="warning",
        summary="{{ $labels.site }}/{{ $labels.node }}: PM2.5 hourly mean {{ $values.B }} ug/m3",
        action="Do nearby stations agree? One station alone with fault events is more likely "
               "the sensor. Runbook: docs/runbook.md, \"PM2.5 high\".",
    ),
)


def _escape_dollars(text: str) -> str:
    """Grafana expands `$NAME` from the environment in provisioning files; `$$` is a `$`."""
    return text.replace("$", "$$")


def render_rule(rule: AlertRule) -> JSON:
    query = {
        "refId": "A",
        "datasource": {"type": "influxdb", "uid": DATASOURCE_UID},
        "rawQuery": True,
        "query": _escape_dollars(rule.influxql),
        "resultFormat": "time_series",
        "intervalMs": 60000,
        "maxDataPoints": 43200,
    }
    expr = {"type": "__expr__", "uid": "__expr__"}
    time_range = {"from": rule.window_s, "to": rule.window_end_s}
    data = [
        {"refId": "A", "datasourceUid": DATASOURCE_UID, "relativeTimeRange": time_range,
         "model": query},
        {"refId": "B", "datasourceUid": "__expr__", "relativeTimeRange": {"from": 0, "to": 0},
         "model": {"refId": "B", "type": "reduce", "expression": "A", "reducer": "last",
                   "settings": {"mode": "dropNN"}, "datasource": expr}},
        {"refId": "C", "datasourceUid": "__expr__", "relativeTimeRange": {"from": 0, "to": 0},
         "model": {"refId": "C", "type": "threshold", "expression": "B", "datasource": expr,
                   "conditions": [{"evaluator": {"type": rule.comparison,
                                                 "params": [rule.threshold]}}]}},
    ]
    if rule.note_influxql:
        data += [
            {"refId": "D", "datasourceUid": DATASOURCE_UID, "relativeTimeRange": dict(time_range),
             "model": query | {"refId": "D", "query": _escape_dollars(rule.note_influxql)}},
            {"refId": "E", "datasourceUid": "__expr__", "relativeTimeRange": {"from": 0, "to": 0},
             "model": {"refId": "E", "type": "reduce", "expression": "D", "reducer": "last",
                       "settings": {"mode": "dropNN"}, "datasource": expr}},
        ]
    return {
        "uid": rule.uid,
        "title": rule.title,
        "condition": "C",
        "data": data,
        "noDataState": rule.no_data,
        "execErrState": "Error",
        "for": rule.pending,
        "annotations": {"summary": _escape_dollars(rule.summary),
                        "description": _escape_dollars(rule.action)},
        "labels": {"severity": rule.severity, "team": "urbanpulse"},
        "isPaused": False,
    }


def alert_provisioning() -> JSON:
    return {
        "apiVersion": 1,
        "groups": [{
            "orgId": 1,
            "name": GROUP,
            "folder": FOLDER,
            "interval": "1m",
            "rules": [render_rule(r) for r in RULES],
        }],
    }
