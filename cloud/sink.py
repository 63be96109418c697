"""Writes points to InfluxDB in big batches, and keeps trying while InfluxDB is away.

While a write fails for a reason that can pass (InfluxDB down, a 5xx, a 408 or 429), the
writer blocks and retries with backoff: the dataflow stops advancing, its snapshot stays
behind, and the journal holds the data. A write InfluxDB denies the writer (401: its
credentials; 403: no WRITE on the database; 404: no such database), a proxy redirects (3xx),
or that something other than InfluxDB answers (a proxy's page, its JSON error, a 405), is
held the same way, since only an operator can fix it and nothing may be lost meanwhile:
logged once per status at ERROR with what to do, reminded every DENIED_REMINDER_S, counted
(`write_denied`, `write_denied_s`). Only InfluxDB's own 400 or 422 (a field type conflict,
points beyond a retention policy, a line it cannot parse) and its 413 for a single line
refuse lines: counted and logged with InfluxDB's words, not retried, and the rest goes on.
An answer is InfluxDB's verdict on the lines only when it says so beyond doubt
(`influxdb_verdict`: its X-Influxdb-Version header, or InfluxDB 3's own errors), never for a
JSON error alone, which a proxy sends too. `write_failure` is that classification. InfluxDB
1.x's series limits (`SERIES_LIMITS`) refuse new series in a 400 "partial write" too, but
they are an operator's limits: held like a denied write. InfluxDB 1.x stores the request's
good lines itself ("partial write"), as 2.x does for a field type conflict (422) and 3.x for
its "partial write of line protocol occurred"; but 2.x stores nothing of a request with a
line it cannot parse (400), nor 3.x of one with any bad line on its v1 /write ("parsing
failed for write_lp endpoint"): such a request is written again in halves, split again while
refused (`whole_request_refused`), so that only the bad lines are refused, logged once for
the request. A request too large (413: InfluxDB's max-body-size, or a proxy's; InfluxDB 3's
500 on /write) is written again in halves the same way; the single lines InfluxDB still
refuses are logged once for the request, and later requests are kept under half the smallest
body refused (`_body_cap`), split before they are sent. A stop is seen between the parts of
a split. The lines a partial write stored count as written where InfluxDB says how many
(`stored_by_partial_write`).

Reads of raw points back (window rebuilds and domain replays after late data) retry the
same way while InfluxDB is away or busy. A read refused for good (`read_failure`: the
reader lacks READ, the database is missing, a limit of InfluxDB's config, a query it cannot
run, an answer not InfluxDB's) raises `ReadRefused` with what to do, or, for a caller that
gives a `refused` list (the processor's partition), leaves that request's text in it to be
held and tried again later, so that the rest of the data goes on being written. Such a
refusal is logged at ERROR once per span (scope, site, node) or node and kind, until a read
of it succeeds again.
A write that got no answer (`outcome_unknown`: a timeout, a connection cut once the request
was sent, a proxy's 502 or 504) is retried like an outage, but InfluxDB may still apply it
later, after the writes that followed: the kernel delivers what the closed connection had
not sent yet once a dead link heals, and InfluxDB applies a request it has read whether its
client is still there or not. The points of such a request that are written again meanwhile
(an open window, a ledger hour) are written once more REWRITE_AFTER_S after the last write
without an answer (`InfluxWriter.rewrite`), so that the older value cannot stand. What is so
owed goes into the processor's snapshot (`InfluxWriter.owed`, in the InfluxDB partition's),
so that a processor resumed after a crash or a restart within that time keeps the promise
(`InfluxWriter.restore_owed`).

`check_writer` and `check_reader` are `cloud run`'s start-up looks at the users' rights.
"""

from __future__ import annotations

import enum
import logging
import random
import re
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field, replace
from functools import partial
from pathlib import Path
from typing import Any, Protocol

from cloud.config import CloudInflux
from cloud.errors import InfluxAccessError, ReadRefused, SinkError
from cloud.logic.domain.door_roles import NO_DOOR_ROLES, DoorRoleMap
from cloud.logic.domain_replay import DOMAIN_REPLAY, ReplayInput, ReplaySpan, coalesce
from cloud.logic.recompute import RECOMPUTE, Recompute, raw_reads
from cloud.logic.records import RP_RAW, Point
from urbanpulse.influx_http import InfluxCAFileError, InfluxError, InfluxHTTP, InfluxTLSError

log = logging.getLogger("urbanpulse.cloud.sink")

BACKOFF_MIN_S = 0.2
BACKOFF_MAX_S = 10.0
# A window's raw points are read streamed, in pieces of this many rows: InfluxDB 1.x's
# `max-row-limit` cuts a one-piece answer short without a reliable sign, a stream not.
REBUILD_CHUNK_ROWS = 10_000
# A domain replay reads its span in pieces of this many hours (each with its lookback), so
# that an operator's replay of a month holds a few hours of a site's raw points at a time.
# Each piece reads its lookback again: the scopes of a long lookback and few points (a
# node's air, 11 h; a site's queue, 12 h) read a day at a time.
REPLAY_CHUNK_HOURS = {"traffic": 6, "air": 24, "beds": 6, "doors": 6, "queue": 24}
# `cloud run`'s start-up look at the reader's rights: a bounded read of the raw policy the
# rebuilds read (the last minute of the processor's own points: one shard, a few rows).
READ_CHECK = f'SELECT "uptime_s" FROM "{RP_RAW}"."processor" WHERE time > now() - 1m LIMIT 1'
READ_CHECK_TIMEOUT_S = 5.0  # at most influx.timeout_s: a hung InfluxDB does not hold the start
# InfluxDB 2.x's answer (400) to the writer check's write of no line, on its v1 /write as on
# /api/v2/write: given only after the DBRP mapping (or bucket) and the write permission on
# it passed (its legacy write handler: mapping 404, permission 403, then the body).
NO_POINTS_2X = "writing requires points"
# While InfluxDB denies the writer, the ERROR is logged once; this reminds of it at WARNING
# (journalctl --since -1h would not show an ERROR logged hours ago).
DENIED_REMINDER_S = 600.0
# A write without an answer (`outcome_unknown`: a timeout, a connection cut after the
# request was sent, a proxy's 502 or 504) may still be applied by InfluxDB later, after a
# newer write of the same points (an open window, a ledger hour): what the closed connection
# had not delivered yet is sent again by the kernel (Linux gives an orphaned connection 8
# retransmissions, about 102 s from its first: tcp_orphan_retries), and InfluxDB applies a
# request it has read whether or not its client is still there. The points of such a
# request that are written again meanwhile are written once more this long after the last
# write without an answer (`InfluxWriter.rewrite`), so that the last write InfluxDB applies
# is the newest.
REWRITE_AFTER_S = 120.0
# After a restart (`owe_after_restart`): at most so many points of the aggregate policies
# written in the first REWRITE_AFTER_S are kept to be written again (their newest lines).
RESUMED_OWED_MAX_POINTS = 200_000  # (about 40 MB of lines held for the 120 s)
# The entries of the processor's snapshot (the InfluxDB partition's) with what is owed since
# a write without an answer (`InfluxWriter.owed`): the points of those writes, and the lines
# of them written since, by policy, so that a restart within REWRITE_AFTER_S keeps the promise.
OWED_POINTS = "unanswered|"
OWED_LINES = "rewrite|"


def owed_entry(text: str) -> bool:
    """A snapshot entry of `InfluxWriter.owed`, not one of the partition's held requests."""
    return text.startswith((OWED_POINTS, OWED_LINES))


# 502 and 504 from a proxy (not InfluxDB's: no X-Influxdb-Version) leave open whether the
# request reached InfluxDB and is still being applied.
GATEWAY_UNANSWERED = (502, 504)


class WriteFailure(enum.Enum):
    """What a failed write means for its points (`write_failure`)."""

    UNAVAILABLE = "unavailable"  # no answer, a 5xx, 408, 429: wait and try again
    # the writer is refused (401, 403, 404), redirected (3xx) or not answered by InfluxDB
    # (whatever the status: a proxy's 400 or 413 too): held until an operator acts
    DENIED = "denied"
    REJECTED = "rejected"  # InfluxDB refuses the lines (400, 422, 413): asking again gets the same


WRITE_DENIED = (401, 403, 404)
TOO_LARGE = 413  # a request over InfluxDB's max-body-size (or a proxy's): split, not dropped
# InfluxDB's own answers that refuse the lines of a write, not the writer: 400 (1.x's
# "partial write", a field type conflict, a line it cannot parse, points beyond a retention
# policy), 422 (2.x's), 413 for a single line over its max-body-size.
LINES_REFUSED = (400, 422, TOO_LARGE)
# InfluxDB 3 Core puts its X-Influxdb-Version header on /ping's answer only, none on its
# write answers; the errors in which it refuses lines are JSON errors of its own, which no
# proxy words so (influxdb3_server/src/http.rs). Its partial write stores the request's
# other lines ({"error": INFLUXDB3_PARTIAL, "data": [each line refused, with its error]};
# 400, or 422 for a schema limit): /api/v3/write_lp's default (accept_partial=true).
INFLUXDB3_PARTIAL = "partial write of line protocol occurred"
# Its refusal of a whole request for its first bad line stores nothing of it (400, "data":
# that line): its v1 /write and /api/v2/write never accept a partial write ("legacy
# behaviour"), nor /api/v3/write_lp with accept_partial=false. Worded "parsing failed for
# write_lp endpoint" in its source, "line protocol parsing error" by Core 3.11 (as the
# clients' tests against it show).
INFLUXDB3_WHOLE_REFUSED = ("parsing failed for write_lp endpoint", "line protocol parsing error")
INFLUXDB3_LINES_REFUSED = (INFLUXDB3_PARTIAL, *INFLUXDB3_WHOLE_REFUSED)
# InfluxDB 3's answer on its v1 /write to a body over its --max-http-request-size (10 MiB by
# default): 500 and this text, no JSON, no header (Error::RequestSizeExceeded falls to its
# 500; only its /api/v2/write maps it to 413). No proxy words a 500 so: split like a 413.
INFLUXDB3_TOO_LARGE = re.compile(r"max request size \(\d+ bytes\) exceeded")
# InfluxDB 2.x's answer (422, with its headers) to a write of which it stored the lines it
# could (tsdb.PartialWriteError: a field type conflict, points beyond the bucket's
# retention): "failure writing points to database: partial write: ... dropped=N". Its 400
# for a line it cannot parse comes before any write: none of the request is stored.
PARTIAL_WRITE = "partial write"
# InfluxDB 1.x's partial write (tsdb.PartialWriteError): "partial write: <reason> dropped=N".
PARTIAL_WRITE_1X = "partial write: "
_DROPPED = re.compile(r" dropped=(\d+)$")
# InfluxDB 1.x's series limits ([data] max-values-per-tag, max-series-per-database) refuse a
# request's new series in a 400 "partial write" worded like a refusal of lines: an
# operator's limit, not the points' fault, so held like a denied write, not dropped.
SERIES_LIMITS = ("max-values-per-tag limit exceeded", "max-series-per-database limit exceeded")


def influxdb_verdict(exc: InfluxError) -> bool:
    """The answer is InfluxDB's own beyond doubt, so its refusal is a verdict on the lines:
    it carries the X-Influxdb-Version or X-Influxdb-Build header (InfluxDB 1.x on every
    answer, 2.x since 2.0.9 and 2.1 on every answer, its v2 API's too), or it is one of
    InfluxDB 3's errors refusing lines (`INFLUXDB3_LINES_REFUSED`). A JSON error alone
    (`{"error": ...}`, `{"code": ..., "message": ...}`: `InfluxError.from_influxdb`) is no
    proof: a proxy or an API gateway before InfluxDB answers so too, without having shown
    InfluxDB a line."""
    return (exc.version is not None or _influxdb3_too_large(exc)
            or (exc.from_influxdb and exc.body in INFLUXDB3_LINES_REFUSED))


def _influxdb3_too_large(exc: InfluxError) -> bool:
    """InfluxDB 3's 500 on /write for a body over its --max-http-request-size."""
    return exc.status == 500 and INFLUXDB3_TOO_LARGE.fullmatch(exc.body.strip()) is not None


def too_large(exc: InfluxError) -> bool:
    """The request is over a size limit, InfluxDB's or a proxy's: a 413 (1.x's max-body-size,
    2.x's, 3.x's /api/v2/write, nginx's client_max_body_size), or InfluxDB 3's 500 on /write.
    The writer splits such a request; a single line is refused (InfluxDB's) or held."""
    return exc.status == TOO_LARGE or _influxdb3_too_large(exc)


def whole_request_refused(exc: InfluxError) -> bool:
    """InfluxDB's refusal of lines (`write_failure` REJECTED) stored none of the request,
    its good lines neither, so the writer writes them again in halves until only the bad
    lines are refused. False where InfluxDB stored the rest itself: 1.x's 400 (it stores
    every line it parses: "partial write"; a 400 without those words means no line parsed,
    so there is none to keep; services/httpd/handler.go), 2.x's 422 "partial write" (a field
    type conflict, points beyond the retention; http/write_handler.go and its v1 /write's
    legacy handler), 3.x's "partial write of line protocol occurred". True for 2.x's 400 (a
    line it cannot parse: its parser refuses the request before any point is written) and
    3.x's `INFLUXDB3_WHOLE_REFUSED`, and for any other answer, which does not say the rest
    was stored (written again, a good line only overwrites itself)."""
    if exc.body == INFLUXDB3_PARTIAL:
        return False
    if exc.body in INFLUXDB3_WHOLE_REFUSED:
        return True
    if _major_version(exc.version) == 1:
        return False
    return not (exc.status == 422 and PARTIAL_WRITE in exc.body)


def stored_by_partial_write(exc: InfluxError, lines: int) -> int | None:
    """How many of a request's `lines` InfluxDB stored when it refused some of them for
    good (`write_failure` REJECTED, not `whole_request_refused`), where its answer says so
    exactly; None where it does not. 2.x's 422 "partial write ... dropped=N": N points
    dropped, the rest stored (a line it cannot parse is its 400, before any write). 1.x's
    400 "partial write: ... dropped=0" after lines it could not parse: each is named,
    "unable to parse '<line>': <why>" on a line of its own (the writer's lines hold no raw
    newline), the others stored (checked on 1.6.7). Not 1.x's "dropped=N" for a field type
    conflict or a retention policy: it leaves out the lines of the request that also failed
    to parse (1.6.7: one conflicting and one unparsable line answer "dropped=1"); nor 3.x's
    partial write, which names its lines in a "data" the writer does not keep."""
    text = exc.body.strip()
    dropped = _DROPPED.search(text)
    if dropped is None:
        return None
    if exc.status == 422 and PARTIAL_WRITE in text and _major_version(exc.version) != 1:
        return max(lines - int(dropped.group(1)), 0)
    if (exc.status == 400 and _major_version(exc.version) == 1 and dropped.group(1) == "0"
            and text.startswith(PARTIAL_WRITE_1X)):
        failed = sum(1 for part in text[len(PARTIAL_WRITE_1X):].split("\n")
                     if part.startswith("unable to parse '"))
        return lines - failed if 0 < failed <= lines else None
    return None


def _major_version(version: str | None) -> int | None:
    """The major version in an X-Influxdb-Version header ("1.6.7~rc0", "v2.7.10")."""
    found = re.match(r"v?(\d+)\.", version or "")
    return int(found.group(1)) if found else None


def write_failure(exc: InfluxError) -> WriteFailure:
    """Only InfluxDB's own 400, 422 or 413 (`influxdb_verdict`) refuses the lines
    themselves (a 413 refuses the request's size: the writer splits it, and one line too
    large is refused). Every other answer that cannot pass says nothing about the points,
    which are held, never dropped, until an operator acts: a 401 (credentials), 403 (no
    WRITE on the database), 404 (no such database or 2.x bucket, or a wrong path), a 3xx (a
    proxy's redirect, which the writer does not follow), a 405, a 2xx that is no 204, and
    any 4xx that is not InfluxDB's verdict (a proxy's or another server's page or JSON
    error, its 400, 422 or its 413 for a single line included; InfluxDB's own behind a
    proxy that drops its headers): influx.url or the proxy is to be fixed. InfluxDB 3's 500
    for a request over its size limit is refused like a 413, not waited out."""
    if _influxdb3_too_large(exc):
        return WriteFailure.REJECTED
    if exc.retryable:
        return WriteFailure.UNAVAILABLE
    if exc.status in LINES_REFUSED and influxdb_verdict(exc):
        return WriteFailure.DENIED if series_limit(exc) else WriteFailure.REJECTED
    return WriteFailure.DENIED


def outcome_unknown(exc: InfluxError) -> bool:
    """A failed write InfluxDB may still apply later (`REWRITE_AFTER_S`): no answer (a
    timeout, a connection reset or cut once the request was sent), or a proxy's 502 or 504.
    Not so a connection refused or a TLS handshake that failed (no request was sent), nor
    any answer of InfluxDB's own (it answers once it is done with the request)."""
    if exc.status in GATEWAY_UNANSWERED:
        return exc.version is None
    if exc.status != 0 or isinstance(exc, InfluxTLSError) or not exc.retryable:
        return False
    cause: BaseException | None = exc
    while cause is not None:  # the transport's own error (InfluxHTTP's, urllib3's)
        if isinstance(cause, ConnectionRefusedError):
            return False
        cause = cause.__cause__ or cause.__context__
    return True


def _point_of(line: str) -> tuple[str, str] | None:
    """A line's point (its series and timestamp, as one text: InfluxDB keeps, per point and
    field, the value it applied last) and the text of its fields; None for a line without
    a timestamp."""
    first = line.find(" ")
    while first > 0 and line[first - 1] == "\\":  # an escaped space, in the series
        first = line.find(" ", first + 1)
    last = line.rfind(" ")
    if first < 0 or last <= first or not line[last + 1:].isdigit():
        return None
    return f"{line[:first]} {line[last + 1:]}", line[first + 1:last]


def _field_names(fields: str) -> tuple[str, ...]:
    """The names in the text of a line's fields, sorted."""
    if '"' not in fields and "\\" not in fields:  # no string value, no escape
        return tuple(sorted(f.partition("=")[0] for f in fields.split(",")))
    names: list[str] = []
    start, name_end, quoted = 0, -1, False
    j = 0
    while j < len(fields):
        ch = fields[j]
        if ch == "\\":
            j += 2
            continue
        if ch == '"':
            quoted = not quoted
        elif not quoted:
            if ch == "=" and name_end < 0:
                name_end = j
            elif ch == ",":
                names.append(fields[start:name_end])
                start, name_end = j + 1, -1
        j += 1
    names.append(fields[start:name_end])
    return tuple(sorted(names))


def series_limit(exc: InfluxError) -> bool:
    """InfluxDB refused new series for its series limits (`SERIES_LIMITS`)."""
    return any(limit in exc.body for limit in SERIES_LIMITS)


@dataclass(frozen=True)
class WriterUser:
    """Who the writer writes as, for the advice of a denied write (InfluxDB's 401 names no
    one). `secret`: the config key of the password or token file and its path."""

    name: str = ""
    secret: str = "influx.password_file"
    also_reader: bool = False  # influx.reader_username names the same user
    v2: bool = False  # a 2.x token (api = "v2"), not a v1 user

    @property
    def who(self) -> str:
        if self.v2:
            return f"the token of {self.secret}"
        return f"the writer {self.name!r} (influx.username)"

    def advice(self, status: int, database: str, rp: str | None = None) -> str:
        """What an operator does about a write denied with `status`."""
        if 300 <= status < 400:
            return ("InfluxDB, or a proxy before it, redirects the write elsewhere (the writer "
                    "follows no redirect): set influx.url to where it points (https?)")
        if status == 401:
            return (f"check {self.secret} and that the "
                    + ("token exists" if self.v2 else "user exists"))
        if self.v2:
            bucket = f"{database}/{rp}" if rp else f"the buckets {database}/<rp>"
            return (f"give the token write access to {bucket} (and create the buckets, one per "
                    "retention policy, if missing)")
        if status == 404:
            return (f"create the database and its retention policies (urbanpulse cloud init-db), "
                    f"or correct influx.database ({database!r})")
        if self.also_reader:
            # In InfluxDB 1.x a GRANT replaces the user's privilege on the database.
            return (f'as an InfluxDB admin: GRANT ALL ON "{database}" TO "{self.name}" (it is '
                    "influx.reader_username too: GRANT WRITE would take its READ away)")
        return f'as an InfluxDB admin: GRANT WRITE ON "{database}" TO "{self.name}"'


def write_advice(user: WriterUser, exc: InfluxError, database: str, rp: str | None = None) -> str:
    """What an operator does about a write `write_failure` holds (DENIED)."""
    if series_limit(exc) and influxdb_verdict(exc):
        return ("InfluxDB refuses new series for its series limits: raise [data] "
                "max-values-per-tag and max-series-per-database in influxdb.conf (0: no limit; "
                "the Ansible role's influxdb_max_values_per_tag and "
                "influxdb_max_series_per_database) and restart InfluxDB, or drop series no "
                "longer needed")
    if 300 <= exc.status < 400:
        return user.advice(exc.status, database, rp)
    if exc.status in LINES_REFUSED and not influxdb_verdict(exc):
        if exc.status == TOO_LARGE:
            return ("a proxy before InfluxDB refuses even a single line as too large (its answer "
                    "is not InfluxDB's): raise its body size limit (nginx: client_max_body_size)")
        if exc.from_influxdb:  # a JSON error, without InfluxDB's header
            return ("the answer refuses the lines without the X-Influxdb-Version header "
                    "InfluxDB 1.x and 2.x put on every answer: a proxy or gateway before InfluxDB "
                    "(or another server) answered, or a proxy drops InfluxDB's headers: check "
                    "influx.url and any proxy before InfluxDB (it must pass X-Influxdb-Version on)")
    if not exc.from_influxdb:
        return ("the answer is not InfluxDB's (no X-Influxdb-Version header, no InfluxDB error: "
                "a proxy's or another server's page): check influx.url (host, port, path, http "
                "or https) and any proxy before InfluxDB")
    if exc.status in WRITE_DENIED and not exc.body.startswith("404 page not found"):
        return user.advice(exc.status, database, rp)
    return (f"InfluxDB answers the write with {exc.status}, as it answers a path or method that "
            "is not its write API: check influx.url (InfluxDB's API root, no path after the port)")


def _answerer(exc: InfluxError, url: str | None = None) -> str:
    """Who answered a write that is held, for its log: InfluxDB (at `url`), or what answers
    at `url` (else influx.url); a JSON error refusing lines without InfluxDB's header is not
    named InfluxDB's."""
    if exc.from_influxdb and (exc.status not in LINES_REFUSED or influxdb_verdict(exc)):
        return "InfluxDB" if url is None else f"InfluxDB at {url}"
    why = "not InfluxDB" if not exc.from_influxdb else "no InfluxDB header"
    return f"what answers at {url or 'influx.url'} ({why})"


def retry_advice(exc: InfluxError, rp: str) -> str:
    """What an operator does about a write InfluxDB fails that is retried, where its answer
    says: InfluxDB 1.x answers a write to a missing retention policy with 500."""
    if "retention policy not found" in exc.body:
        return (f" (the retention policy {rp!r} is missing: create the policies with "
                "urbanpulse cloud init-db; the points wait meanwhile)")
    return ""


class ReadFailure(enum.Enum):
    """What a failed read of raw points back means (`read_failure`)."""

    UNAVAILABLE = "unavailable"  # no answer, a 5xx, 408, 429, InfluxDB busy: wait and try again
    DENIED = "denied"  # the reader's credentials or its READ
    MISSING = "missing"  # the database or its raw retention policy is gone
    LIMIT = "limit"  # a limit of InfluxDB's config stops the read
    QUERY = "query"  # InfluxDB cannot run the query: it never will as it is
    NOT_INFLUXDB = "not influxdb"  # the answer is a proxy's or another server's
    OTHER = "other"


# InfluxDB 1.x's errors in a 200 answer (its "error" of the statement) that name a limit
# of its config, and the setting (influxdb.conf) that sets it. max-select-series and
# query-timeout checked on 1.6.7 ("max-select-series limit exceeded: (3/2)", "query-timeout
# limit exceeded"); max-select-point (1.x spells it "limit exceeed") from its source: it is
# checked about once a second of a query's run, so no small read meets it.
READ_LIMITS = {"max-select-point": "[coordinator] max-select-point",
               "max-select-series": "[coordinator] max-select-series",
               "max-select-buckets": "[coordinator] max-select-buckets",
               "query-timeout": "[coordinator] query-timeout"}
# Errors in a 200 answer that say "not now": a query over [coordinator]
# max-concurrent-queries ("max-concurrent-queries limit exceeded(1, 1)", checked on 1.6.7),
# a query an admin killed ("query interrupted").
READ_BUSY = ("max-concurrent-queries limit exceeded", "query interrupted")
READ_DENIED = ("not authorized", "requires READ", "authorization failed")


def read_failure(exc: InfluxError) -> ReadFailure:
    """A read's error, by what InfluxDB 1.6.7 answers: 401 and 403 (with "requires READ on
    <db>") for the reader's rights; a 200 whose statement holds the error for a limit
    ("max-select-series limit exceeded", "query-timeout limit exceeded"), a missing database
    or retention policy ("database not found: x", "retention policy not found: x"), too many
    queries at once; a 400 ("error parsing query: ...") for a query it cannot parse. An
    answer without InfluxDB's headers or JSON error, a 3xx, 405 or 404 page, is not
    InfluxDB's API."""
    text = exc.body
    if exc.retryable or (exc.from_influxdb and any(busy in text for busy in READ_BUSY)):
        return ReadFailure.UNAVAILABLE
    if (not exc.from_influxdb or 300 <= exc.status < 400 or exc.status == 405
            or text.startswith("404 page not found")):
        return ReadFailure.NOT_INFLUXDB
    if exc.status in (401, 403) or any(word in text for word in READ_DENIED):
        return ReadFailure.DENIED
    if any(limit in text for limit in READ_LIMITS):
        return ReadFailure.LIMIT
    if exc.status == 404 or "database not found" in text or "retention policy not found" in text:
        return ReadFailure.MISSING
    if exc.status == 400 or "error parsing query" in text:
        return ReadFailure.QUERY
    return ReadFailure.OTHER


def read_advice(failure: ReadFailure, exc: InfluxError, reader: str, database: str,
                writer_too: bool = False, password_file: str = "influx.reader_password_file") -> str:
    """What an operator does about a read `read_failure` refuses."""
    if failure is ReadFailure.DENIED:
        if exc.status == 401:
            return f"check {password_file} and that the user {reader!r} exists"
        if writer_too:
            # In InfluxDB 1.x a GRANT replaces the user's privilege on the database.
            return (f'as an InfluxDB admin: GRANT ALL ON "{database}" TO "{reader}" (it is '
                    "influx.username too: GRANT READ would take its WRITE away)")
        return f'as an InfluxDB admin: GRANT READ ON "{database}" TO "{reader}"'
    if failure is ReadFailure.MISSING:
        return (f"the database {database!r} or its retention policy {RP_RAW!r} is missing: "
                "urbanpulse cloud init-db, or correct influx.database")
    if failure is ReadFailure.LIMIT:
        setting = next(s for key, s in READ_LIMITS.items() if key in exc.body)
        return (f"a limit of InfluxDB's config stops the read: raise {setting} in influxdb.conf "
                "(0 turns it off) and restart InfluxDB")
    if failure is ReadFailure.QUERY:
        return ("InfluxDB cannot run the processor's query, and never will as it is: a fault of "
                "the processor, to report with this message; a fixed version rebuilds what is held")
    if failure is ReadFailure.NOT_INFLUXDB:
        return ("the answer is not InfluxDB's query API (a proxy's or another server's page, a "
                "redirect, a wrong path): check influx.url and any proxy before InfluxDB")
    return "InfluxDB's words say why"


@dataclass
class SinkStats:
    points: int = 0
    requests: int = 0
    retries: int = 0
    refused_requests: int = 0
    recomputed: int = 0
    not_recomputed: int = 0
    domain_replays: int = 0  # spans of domain rollups rebuilt from raw points
    domain_not_replayed: int = 0
    reads: int = 0  # queries of raw points read back, for rebuilds and replays
    # Write attempts InfluxDB denied the writer (401, 403, 404, 3xx: `write_failure`), held and
    # tried again, and the seconds writes were held so, since start.
    denied: int = 0
    denied_s: float = 0.0
    rows_read: int = 0
    last_error: str | None = None
    # Held now because InfluxDB refused to read their raw points back (set by the
    # processor's partition, which holds them): domain spans (scope, site, node), windows.
    spans_refused: int = 0
    windows_refused: int = 0
    # Writes without an answer InfluxDB may still apply (`outcome_unknown`), and the points
    # written again after them so that none of them stands over a newer one (`REWRITE_AFTER_S`).
    unanswered: int = 0
    rewritten: int = 0


@dataclass
class Refused:
    """Requests whose raw points InfluxDB refused to read back, handed back to be held."""

    windows: list[str] = field(default_factory=list)  # RECOMPUTE texts
    spans: list[str] = field(default_factory=list)  # DOMAIN_REPLAY texts (coalesced spans)

    def __bool__(self) -> bool:
        return bool(self.windows or self.spans)


class LineWriter(Protocol):
    """What the writer needs from a transport: InfluxHTTP (v1 API) or InfluxV2Client."""

    def write(self, lines: bytes, *, db: str, rp: str | None = None, precision: str = "ns") -> None: ...


class InfluxWriter:
    def __init__(self, client: LineWriter, database: str, batch_lines: int,
                 stop: threading.Event | None = None,
                 wait: Callable[[float], bool] | None = None,
                 reader: InfluxHTTP | None = None, reader_user: str = "",
                 user: WriterUser | None = None,
                 monotonic: Callable[[], float] = time.monotonic) -> None:
        self.client = client
        self.reader = reader
        self.reader_user = reader_user  # for the log: InfluxDB's 401 does not name it
        # the roles its domain replays count doors by (`flow.door_roles`: make_writer)
        self.door_roles = NO_DOOR_ROLES
        self.user = user or WriterUser()
        self._monotonic = monotonic
        self.database = database
        self.batch_lines = batch_lines
        self.stats = SinkStats()
        self._stop = stop or threading.Event()
        self._wait = wait or self._stop.wait
        self._refusals: dict[tuple[str, str, str], str] = {}  # refused, logged; until read again
        # Writes denied now: since when (monotonic), the statuses logged, the last reminder.
        self._denied_since: float | None = None
        self._denied_mark = 0.0  # up to when denied_s counts
        self._denied_logged: set[int] = set()
        self._denied_reminded = 0.0
        self._split_logged = False  # a request too large (413) was logged
        self._too_large: tuple[int, InfluxError] | None = None  # to log: its lines, the refusal
        self._splitting = 0  # how deep in the parts of a request (`_in_parts`)
        # The refusals met in the parts of the request written in parts now (the answer,
        # its lines), logged once for the request, and the requests sent for it.
        self._split_refused: list[tuple[InfluxError, int]] = []
        self._split_requests = 0
        # After a request refused as too large (a 413): the bytes later requests are kept
        # under, half the smallest refused (`_lower_body_cap`); None before any.
        self._body_cap: int | None = None
        # The points (series and timestamp) of writes without an answer (`outcome_unknown`),
        # by policy, and their timestamps alone (a cheap first look at each line written).
        self._unanswered: dict[str, set[str]] = {}
        self._unanswered_times: dict[str, set[str]] = {}
        # The lines of those points written since, the last of each point and set of fields,
        # in the order written: written again at `_rewrite_at` (monotonic), then forgotten.
        self._since: dict[tuple[str, str, tuple[str, ...]], str] = {}
        self._rewrite_at: float | None = None
        self._rewriting = False
        # The lines `rewrite` is writing now (by policy), owed until written.
        self._rewriting_lines: dict[str, list[str]] = {}
        # Resumed (`owe_after_restart`): until then (monotonic) every line of an aggregate
        # policy written is owed a rewrite, as if a write without an answer named its point.
        self._owe_all_until: float | None = None
        self._owed_all = 0  # points taken so
        # those of them no write without an answer names: not in `owed` (a snapshot taken
        # every epoch of the 120 s would carry them all; the next resume owes its own)
        self._owed_all_points: dict[str, set[str]] = {}
        # Guards the above against `owed`, which the dataflow's thread calls for the
        # partition's snapshot while the writer thread writes.
        self._owed_lock = threading.Lock()

    def close(self) -> None:
        """Closes the connections of the transport and of the reader."""
        for client in (self.client, self.reader):
            close = getattr(client, "close", None)
            if close is not None:
                close()

    def write(self, points: Iterable[Point], between: Callable[[], None] | None = None,
              defer_replays: list[str] | None = None, hold_refused: bool = False) -> Refused:
        """`between` is called after each request done (stored, or its lines refused for
        good; the parts of a split request each): a long set of requests (a catch-up, many
        windows to rebuild, a split) lets its caller do its own work meanwhile.
        The domain replay requests among `points` run after the rest is written, or, with
        `defer_replays`, are appended to it for `run_replays` later. With `hold_refused`,
        the requests whose raw points InfluxDB refused to read back are returned, the rest
        done; without, `ReadRefused` is raised."""
        refused = Refused()
        by_rp: dict[str, list[str]] = defaultdict(list)
        for rp, ln in points:
            by_rp[rp].append(ln)
        recomputes = by_rp.pop(RECOMPUTE, [])
        replays = by_rp.pop(DOMAIN_REPLAY, [])
        self._write_grouped(by_rp, between)
        if recomputes:  # after the raw points they read are written
            refused.windows += self.rebuild_windows(recomputes, between, hold_refused).windows
        if defer_replays is not None:
            defer_replays += replays
        elif replays:  # after the raw points, and after the live points they correct
            refused.spans += self.run_replays(replays, between, hold_refused).spans
        return refused

    def run_replays(self, requests: Iterable[str], between: Callable[[], None] | None = None,
                    hold_refused: bool = False) -> Refused:
        """Runs domain replay requests (DOMAIN_REPLAY points' texts), coalesced. With
        `hold_refused`, the spans whose raw points InfluxDB refused to read are returned
        (as request texts) and the others run; without, `ReadRefused` is raised."""
        refused = Refused()
        spans = coalesce(ReplaySpan.decode(text) for text in set(requests))
        if self.reader is None:
            self.stats.domain_not_replayed += len(spans)
            log.warning("late readings beyond the aggregation horizon; domain rollups not "
                        "rebuilt (no influx.reader_* credentials configured)",
                        extra={"spans": len(spans)})
            return refused
        for span in spans:
            what = f"the {span.scope} rollups of site {span.site}" + (
                f" node {span.node}" if span.node else "")
            try:
                # the doors by the config's roles, as live (a request's text does not carry them)
                self.replay_domain(replace(span, door_roles=self.door_roles), between)
            except ReadRefused as exc:
                if not hold_refused:
                    raise
                self._refused(span.key, what, exc)
                refused.spans.append(span.encode())
                continue
            self._read_again(span.key, what)
        return refused

    def replay_domain(self, span: ReplaySpan, between: Callable[[], None] | None = None) -> int:
        """Rebuild the domain rollups of `span` from the raw points (cloud.logic.domain_replay)
        and write them; returns the points written. Needs the reader's credentials."""
        if self.reader is None:
            raise SinkError("rebuilding domain rollups needs influx.reader_username and "
                            "influx.reader_password_file")
        reader = self.reader
        written = 0
        for chunk in span.chunks(REPLAY_CHUNK_HOURS[span.scope]):
            kept = ReplayInput(chunk)  # the readings only, not each answer's rows
            for q in chunk.queries():
                self._retrying(partial(_each_row, reader, q, self.database, kept.take))
            if chunk.scope == "beds":  # beds whose state lies before the last-state window
                beds: list[dict[str, Any]] = []
                self._retrying(partial(_each_row, reader, chunk.beds_query(), self.database,
                                       beds.append, beds.clear))
                older = chunk.older_states_query(kept.beds_without_state(beds))
                if older is not None:
                    self._retrying(partial(_each_row, reader, older, self.database, kept.take_older))
            by_rp: dict[str, list[str]] = defaultdict(list)
            for rp, ln in kept.points():
                by_rp[rp].append(ln)
            self._write_grouped(by_rp)
            written += sum(len(lines) for lines in by_rp.values())
            if between is not None:
                between()
        self.stats.domain_replays += 1
        return written

    def read_rows(self, q: str) -> list[dict[str, Any]]:
        """The rows of `q`'s answer (tags merged in), read as the reader: retried while
        InfluxDB is away or busy, `ReadRefused` when refused for good. For a one-off
        command's own reads (`cloud recompute` lists a site's sensors with it)."""
        if self.reader is None:
            raise SinkError("reading raw points back needs influx.reader_username and "
                            "influx.reader_password_file")
        rows: list[dict[str, Any]] = []
        self._retrying(partial(_each_row, self.reader, q, self.database, rows.append, rows.clear))
        return rows

    def _write_grouped(self, by_rp: dict[str, list[str]],
                       between: Callable[[], None] | None = None) -> None:
        """Each policy's lines in requests of `batch_lines` (`_write_chunk`: `between`
        after each request done)."""
        for rp, lines in by_rp.items():
            for i in range(0, len(lines), self.batch_lines):
                self._write_chunk(rp, lines[i:i + self.batch_lines], between)

    def rebuild_windows(self, requests: Iterable[str], between: Callable[[], None] | None = None,
                        hold_refused: bool = False) -> Refused:
        """Rebuilds the aggregate windows of RECOMPUTE requests (their texts) from the raw
        points. With `hold_refused`, the requests of the reads InfluxDB refused are
        returned and the other reads go on; without, `ReadRefused` is raised."""
        refused = Refused()
        requests = sorted(set(requests))
        if self.reader is None:
            self.stats.not_recomputed += len(requests)
            log.warning("late readings beyond the aggregation horizon; windows not rebuilt "
                        "(no influx.reader_* credentials configured)", extra={"windows": len(requests)})
            return refused
        reader = self.reader
        rebuilt: dict[str, list[str]] = defaultdict(list)
        done = 0
        for read in raw_reads([Recompute.decode(text) for text in requests]):
            key = ("windows", read.site, read.node)
            what = f"the windows of site {read.site} node {read.node}"
            rows: list[dict[str, Any]] = []
            try:
                self._retrying(partial(_each_row, reader, read.query(), self.database, rows.append,
                                       rows.clear))
            except ReadRefused as exc:
                if not hold_refused:
                    raise
                self._refused(key, what, exc)
                refused.windows += (w.encode() for w in read.windows)
                continue
            self._read_again(key, what)
            for rp, ln in read.rebuild(rows):
                rebuilt[rp].append(ln)
            done += len(read.windows)
            if between is not None:
                between()
        self._write_grouped(rebuilt, between)
        self.stats.recomputed += done
        return refused

    def _refused(self, key: tuple[str, str, str], what: str, exc: ReadRefused) -> None:
        """A read refused for good: logged at ERROR the first time for `key` and its kind
        (`read_failure`), until a read of it succeeds again (`_read_again`), not at every
        retry."""
        self.stats.last_error = str(exc)
        if self._refusals.get(key) != exc.kind:
            log.error("InfluxDB refused the reader %r the raw points of %s (status %d: %s): "
                      "%s. Held, not dropped: tried again every flow.replay_interval_s "
                      "(logged once; docs/runbook.md, \"InfluxDB refuses the reader\")",
                      self.reader_user, what, exc.status, exc.reason, exc.advice,
                      extra={"status": exc.status, "error": exc.reason, "kind": exc.kind})
        self._refusals[key] = exc.kind

    def _read_again(self, key: tuple[str, str, str], what: str) -> None:
        if self._refusals.pop(key, None) is not None:
            log.info("InfluxDB let the reader %r read the raw points of %s again: rebuilt",
                     self.reader_user, what)

    def _retrying(self, read: Callable[[], int]) -> None:
        """Runs `read` (it returns the rows it read) until it succeeds or fails for good
        (`ReadRefused`)."""
        delay = BACKOFF_MIN_S
        while True:
            try:
                rows = read()
                self.stats.reads += 1
                self.stats.rows_read += rows
                return
            except InfluxError as exc:
                failure = read_failure(exc)
                if failure is not ReadFailure.UNAVAILABLE:
                    advice = read_advice(failure, exc, self.reader_user, self.database,
                                         self.user.also_reader)
                    raise ReadRefused(f"reading raw points back: {exc}: {advice}", exc.status,
                                      _error_reason(exc), failure.value, advice) from exc
                if self._wait(random.uniform(delay / 2, delay)):
                    raise SinkError("stopped while InfluxDB was unavailable") from exc
                delay = min(BACKOFF_MAX_S, delay * 2)

    def _write_chunk(self, rp: str, lines: list[str],
                     between: Callable[[], None] | None = None) -> None:
        """One request of `lines`, tried again while InfluxDB is away or denies the writer;
        in smaller ones when it is over the size a 413 taught (`_body_cap`), or when
        InfluxDB refuses it as too large or whole (`_split`). `between` is called after
        each request done: stored, or its lines refused for good."""
        # (a lone surrogate, which UTF-8 cannot carry, as its escape: no text stops the flow)
        body = "\n".join(lines).encode(errors="backslashreplace")
        if (self._body_cap is not None and len(body) > self._body_cap and len(lines) > 1
                and not self._splitting):  # the parts of a split are smaller than a request sent
            self._in_parts(rp, lines, list(_packed(lines, self._body_cap)), None, between)
            return
        if (self._rewrite_at is not None and not self._rewriting and not self._splitting
                and self._monotonic() >= self._rewrite_at):
            self.rewrite(between)
        if self._splitting:
            self._split_requests += 1  # its first try: a retry is no other request
        delay = BACKOFF_MIN_S
        while True:
            try:
                self.client.write(body, db=self.database, rp=rp)
            except InfluxError as exc:
                self.stats.last_error = str(exc)
                failure = write_failure(exc)
                if too_large(exc) and len(lines) > 1:
                    self._lower_body_cap(len(body))
                    self._split(rp, lines, exc, between)
                    return
                if failure is WriteFailure.REJECTED:
                    if len(lines) > 1 and whole_request_refused(exc):
                        self._split(rp, lines, exc, between)  # InfluxDB stored none of its good lines
                        return
                    self.stats.refused_requests += 1
                    self.stats.points += stored_by_partial_write(exc, len(lines)) or 0
                    if self._splitting:
                        self._split_refused.append((exc, len(lines)))  # logged by `_in_parts`
                    elif too_large(exc):
                        self._log_parts(rp, 1, exc, [(exc, 1)])
                    else:
                        log.error("InfluxDB refused lines of a write of %d to policy %s for good "
                                  "(status %d: %s); not retried: the lines it names are not "
                                  "stored (InfluxDB stored the request's other lines: a partial "
                                  "write)", len(lines), rp, exc.status, _error_reason(exc),
                                  extra={"rp": rp, "lines": len(lines), "status": exc.status,
                                         "error": str(exc)})
                    if between is not None:
                        between()
                    return
                if failure is WriteFailure.DENIED:
                    self._denied(exc, rp, len(lines))
                else:
                    self.stats.retries += 1
                    if outcome_unknown(exc):
                        self._unanswered_write(rp, lines, exc)
                    if self.stats.retries % 10 == 1:
                        log.warning("InfluxDB write failed; retrying: %s%s", exc, retry_advice(exc, rp),
                                    extra={"error": str(exc)})
                if self._wait(random.uniform(delay / 2, delay)):
                    held = "refused the writer" if failure is WriteFailure.DENIED else "was unavailable"
                    raise SinkError(f"stopped while InfluxDB {held}") from exc
                delay = min(BACKOFF_MAX_S, delay * 2)
                continue
            if self._denied_since is not None:
                self._write_again()
            self.stats.points += len(lines)
            self.stats.requests += 1
            if self._rewrite_at is not None:
                self._written_since(rp, lines)
            if between is not None:
                between()
            return

    def _unanswered_write(self, rp: str, lines: list[str], exc: InfluxError) -> None:
        """A write of `lines` to `rp` got no answer (`outcome_unknown`): InfluxDB may apply
        it later than the writes after it. Its points are remembered, and those written
        again from now on are written once more REWRITE_AFTER_S after the last such write
        (`rewrite`)."""
        self.stats.unanswered += 1
        with self._owed_lock:
            first = self._rewrite_at is None
            self._add_unanswered(rp, lines)
            self._rewrite_at = self._monotonic() + REWRITE_AFTER_S
            only_resumed = self._owed_all_points.get(rp)
            if only_resumed:  # named by a write without an answer now: owed in snapshots too
                for line in lines:
                    found = _point_of(line)
                    if found is not None:
                        only_resumed.discard(found[0])
        if first:
            log.warning("InfluxDB did not answer a write of %d lines to policy %s (%s): it may "
                        "still apply it later, over newer values of its points; those written "
                        "again meanwhile are written once more %.0f s after the last write "
                        "without an answer", len(lines), rp, exc, REWRITE_AFTER_S,
                        extra={"rp": rp, "lines": len(lines), "error": str(exc)})

    def _add_unanswered(self, rp: str, lines: Iterable[str]) -> None:
        """The points of `lines` are those of a write without an answer (the caller holds
        the lock)."""
        points = self._unanswered.setdefault(rp, set())
        times = self._unanswered_times.setdefault(rp, set())
        for line in lines:
            found = _point_of(line)
            if found is not None:
                points.add(found[0])
                times.add(line[line.rfind(" ") + 1:])

    def owe_after_restart(self) -> None:
        """A processor resumed from its recovery snapshot: a request its previous run sent
        in the epoch no snapshot committed, unanswered when it died, is named by no `owed`
        entry, yet may still reach InfluxDB (the kernel goes on sending what a dead
        process's socket held, for up to about REWRITE_AFTER_S) and land over the newer
        values this run writes for the same windows and ledger hours. So every point of
        the aggregate policies written in the first REWRITE_AFTER_S after the resume is
        owed a rewrite, as a write without an answer's points are (raw points are written
        with the same values each time: nothing to owe), at most RESUMED_OWED_MAX_POINTS."""
        with self._owed_lock:
            until = self._monotonic() + REWRITE_AFTER_S
            self._owe_all_until = until
            if self._rewrite_at is None or self._rewrite_at < until:
                self._rewrite_at = until

    def _owe_all(self, rp: str, lines: list[str]) -> None:
        """`owe_after_restart`'s part of `_written_since` (the caller holds the lock)."""
        if self._owe_all_until is None or rp == RP_RAW:
            return
        if self._monotonic() >= self._owe_all_until:
            self._owe_all_until = None
            return
        room = RESUMED_OWED_MAX_POINTS - self._owed_all
        if room <= 0:
            return
        if len(lines) > room:
            log.warning("resumed: more than %d points of the aggregate policies written in the "
                        "first %.0f s; those past them are not written again (a request of the "
                        "run before that InfluxDB applies late could stand over them)",
                        RESUMED_OWED_MAX_POINTS, REWRITE_AFTER_S)
            lines = lines[:room]
        self._owed_all += len(lines)
        points = self._unanswered.setdefault(rp, set())
        times = self._unanswered_times.setdefault(rp, set())
        mine = self._owed_all_points.setdefault(rp, set())
        for line in lines:  # `_add_unanswered`, the points no such write named kept apart
            found = _point_of(line)
            if found is not None:
                if found[0] not in points:
                    points.add(found[0])
                    mine.add(found[0])
                times.add(line[line.rfind(" ") + 1:])

    def _written_since(self, rp: str, lines: list[str]) -> None:
        """`lines` were written to `rp`: those of the points of a write without an answer
        are kept, the last of each point and set of fields, to be written again."""
        with self._owed_lock:
            self._owe_all(rp, lines)
            times = self._unanswered_times.get(rp)
            if not times:
                return
            points = self._unanswered[rp]
            for line in lines:
                if line[line.rfind(" ") + 1:] not in times:
                    continue
                found = _point_of(line)
                if found is not None and found[0] in points:
                    self._keep_since(rp, found, line)

    def _keep_since(self, rp: str, found: tuple[str, str], line: str) -> None:
        """`line` (its point and fields `found`) is the newest of its point and set of fields
        written since a write without an answer, moved to the end: the order written."""
        key = (rp, found[0], _field_names(found[1]))
        self._since.pop(key, None)
        self._since[key] = line

    def seconds_to_rewrite(self) -> float | None:
        """Seconds until the points written since a write without an answer are written
        again (`rewrite`; 0: due); None if there are none to wait for."""
        if self._rewrite_at is None:
            return None
        return max(self._rewrite_at - self._monotonic(), 0.0)

    def rewrite(self, between: Callable[[], None] | None = None) -> None:
        """Writes again, in the order they were written, the last lines of the points of
        the writes without an answer that were written since (REWRITE_AFTER_S after the
        last such write, when InfluxDB can no longer apply it: `_write_chunk` and the
        processor's writer thread call it when due), so that the newest value of each
        stands whether InfluxDB applied the write without an answer late or never."""
        with self._owed_lock:
            if self._rewrite_at is None:
                return
            by_rp: dict[str, list[str]] = defaultdict(list)
            for (rp, _, _), line in self._since.items():
                by_rp[rp].append(line)
            self._unanswered.clear()
            self._unanswered_times.clear()
            self._since = {}
            self._rewrite_at = None
            self._owe_all_until, self._owed_all, self._owed_all_points = None, 0, {}
            self._rewriting_lines = dict(by_rp)  # owed until written (`owed`)
        if not by_rp:
            return
        lines = sum(len(part) for part in by_rp.values())
        self._rewriting = True
        try:
            self._write_grouped(by_rp, between)
        finally:
            self._rewriting = False
        with self._owed_lock:  # not if the write raised: the snapshot still owes them
            self._rewriting_lines = {}
        self.stats.rewritten += lines
        log.info("wrote again %d points that a write InfluxDB had not answered could have "
                 "overwritten with older values", lines, extra={"lines": lines})

    def owed(self) -> list[str]:
        """What is owed since writes without an answer, for the processor's snapshot (the
        InfluxDB partition's; `restore_owed` takes it back): per policy, one OWED_POINTS
        entry with the points of those writes, one OWED_LINES entry with the lines of them
        written since (and those `rewrite` is writing now), in the order written. Empty
        when nothing is owed."""
        with self._owed_lock:
            lines: dict[str, list[str]] = defaultdict(list)
            for rp, part in self._rewriting_lines.items():
                lines[rp] += part
            resumed = self._owed_all_points
            for (rp, point, _), line in self._since.items():
                if point not in resumed.get(rp, ()):
                    lines[rp].append(line)
            owed_points = {rp: points - resumed.get(rp, set()) for rp, points in self._unanswered.items()}
            entries = [f"{OWED_POINTS}{rp}\n" + "\n".join(sorted(points))
                       for rp, points in owed_points.items() if points]
        return entries + [f"{OWED_LINES}{rp}\n" + "\n".join(part) for rp, part in lines.items()]

    def restore_owed(self, entries: Iterable[str]) -> None:
        """Takes back what a snapshot's `owed` entries say is owed (a processor resumed
        from its recovery snapshot: the request InfluxDB did not answer may still land,
        and the promise to write its points again must not die with the process that
        made it). Their lines are written again REWRITE_AFTER_S from now (the time the
        process spent down is not known to be past), each point's newest line in its
        place: those written from now on are the newer."""
        restored = 0
        with self._owed_lock:
            for entry in entries:
                kind = OWED_POINTS if entry.startswith(OWED_POINTS) else OWED_LINES
                rp, _, text = entry[len(kind):].partition("\n")
                lines = text.split("\n") if text else []
                if kind == OWED_POINTS:
                    self._unanswered.setdefault(rp, set()).update(lines)
                    self._unanswered_times.setdefault(rp, set()).update(
                        p[p.rfind(" ") + 1:] for p in lines)
                    continue
                self._add_unanswered(rp, lines)
                for line in lines:
                    found = _point_of(line)
                    if found is not None:
                        self._keep_since(rp, found, line)
                        restored += 1
            points = sum(len(p) for p in self._unanswered.values())
            if not points:
                return
            self._rewrite_at = self._monotonic() + REWRITE_AFTER_S
        log.info("resumed owing a rewrite to a write InfluxDB had not answered before the "
                 "restart (%d points): the %d lines of them written since, and those written "
                 "from now on, are written again %.0f s from now", points, restored,
                 REWRITE_AFTER_S, extra={"points": points, "lines": restored})

    def _lower_body_cap(self, refused: int) -> None:
        """A request of `refused` bytes was refused as too large: later requests are kept
        under half of it (`_body_cap`, only ever lowered, until a restart), so that they are
        split before they are sent instead of being refused first. Half a body over the
        limit is over half the limit: a cap never makes requests smaller than that."""
        cap = max(refused // 2, 1)
        if self._body_cap is None or cap < self._body_cap:
            self._body_cap = cap

    def _split(self, rp: str, lines: list[str], exc: InfluxError,
               between: Callable[[], None] | None = None) -> None:
        """A request InfluxDB (or a proxy before it) refused as too large, or InfluxDB
        refused whole for some of its lines (`whole_request_refused`): its lines are
        written again in halves, each split again while refused so, so that none is
        dropped for its size or for another line, and only the lines refused alone (or
        named by a partial write) are not stored. A request of N lines with k such lines
        costs at most 1 + 2k·⌈log2 N⌉ requests. The refusals met are logged once for the
        request (`_in_parts`, which also sees a stop before each half)."""
        if too_large(exc) and not self._split_logged and self._too_large is None:
            self._too_large = (len(lines), exc)  # logged once the request is written (`_in_parts`)
        half = len(lines) // 2
        self._in_parts(rp, lines, [lines[:half], lines[half:]], exc, between)

    def _in_parts(self, rp: str, lines: list[str], parts: list[list[str]],
                  first: InfluxError | None, between: Callable[[], None] | None) -> None:
        """The `parts` of a request of `lines`, each written (`_write_chunk`, split again
        if refused so); `first`: the refusal that split it, None for a request over the
        size cap, never sent whole. The refusals met in all its parts are logged once, when
        the outermost request is done (`_log_parts`). After a refusal, a stop (the writer's
        stop event) is seen before each part: SinkError, as in a wait (the epoch is not
        committed: read again on restart)."""
        if not self._splitting:
            self._split_refused = []
            self._split_requests = 0 if first is None else 1  # the request refused
        self._splitting += 1
        try:
            for part in parts:
                if first is not None and self._stop.is_set():
                    raise SinkError("stopped while a request InfluxDB refused was written "
                                    "again in parts") from first
                self._write_chunk(rp, part, between)
        finally:
            self._splitting -= 1
            if not self._splitting and self._too_large is not None:
                self._log_too_large(rp)
        if not self._splitting:
            refused, self._split_refused = self._split_refused, []
            self._log_parts(rp, len(lines), first, refused)

    def _log_too_large(self, rp: str) -> None:
        """The first request refused as too large, once written in parts: logged once, with
        the size later requests are kept under (`_body_cap`, as low as the parts taught)."""
        assert self._too_large is not None
        (lines, exc), self._too_large = self._too_large, None
        self._split_logged = True
        log.warning("InfluxDB refused a write of %d lines as too large (status %d: %s); written "
                    "in smaller requests, and later requests are kept under %d bytes until a "
                    "restart (logged once): lower influx.batch_lines, or raise the limit ([http] "
                    "max-body-size in InfluxDB 1.x, --max-http-request-size in 3.x, a proxy's "
                    "body size)", lines, exc.status, _error_reason(exc), self._body_cap or 0,
                    extra={"rp": rp, "lines": lines, "status": exc.status,
                           "cap_bytes": self._body_cap})

    def _log_parts(self, rp: str, lines: int, first: InfluxError | None,
                   refused: list[tuple[InfluxError, int]]) -> None:
        """One ERROR for the refusals met in the parts of a request of `lines` (`_in_parts`),
        worded by why it was written in parts (`first`): the single lines refused as too
        large, and the lines refused for themselves."""
        big = [exc for exc, _ in refused if too_large(exc)]
        if big:
            log.error("InfluxDB refused %d lines of a write of %d to policy %s as too large even "
                      "alone (status %d: %s); not retried: those lines are not stored, the "
                      "others are (logged once for the request): raise [http] max-body-size "
                      "(InfluxDB 1.x; 3.x: --max-http-request-size)", len(big), lines, rp,
                      big[0].status, _error_reason(big[0]),
                      extra={"rp": rp, "lines": lines, "refused": len(big),
                             "status": big[0].status, "error": str(big[0])})
        bad = [(exc, n) for exc, n in refused if not too_large(exc)]
        if not bad:
            return
        alone = sum(1 for _, n in bad if n == 1)
        partial = len(bad) - alone
        if first is None:
            how, because = "written in smaller requests", "as it was over the size InfluxDB refused before"
        elif too_large(first):
            how, because = "written again in smaller requests", "as it was too large"
        else:
            how, because = "written again in halves", "as InfluxDB stores none of a request with such a line"
        why = first if first is not None and not too_large(first) else bad[0][0]
        named = f"those it names in {partial} partial write{'s' if partial > 1 else ''} of a part"
        single = f"the {alone} line{'s' if alone > 1 else ''} it refused alone"
        what = single if not partial else named if not alone else f"{single} and {named}"
        log.error("InfluxDB refused lines of a write of %d to policy %s for good (status %d: %s); "
                  "%s (%d requests; logged once for the request), %s; not retried: %s are not "
                  "stored, every other line is", lines, rp, why.status, _error_reason(why),
                  how, self._split_requests, because, what,
                  extra={"rp": rp, "lines": lines, "refused": alone, "partial": partial,
                         "status": why.status, "error": str(why),
                         "requests": self._split_requests})

    def _denied(self, exc: InfluxError, rp: str, lines: int) -> None:
        """A write InfluxDB denied the writer: counted, and logged at ERROR once per status
        until a write succeeds again, with a reminder every DENIED_REMINDER_S."""
        now = self._monotonic()
        self.stats.denied += 1
        if self._denied_since is None:
            self._denied_since = self._denied_mark = self._denied_reminded = now
        self.stats.denied_s += now - self._denied_mark
        self._denied_mark = now
        reason = _error_reason(exc)
        advice = write_advice(self.user, exc, self.database, rp)
        who = _answerer(exc)
        who = who[0].upper() + who[1:]
        if exc.status not in self._denied_logged:
            self._denied_logged.add(exc.status)
            log.error("%s refuses %s writes to database %r (status %d: %s): %s. The points "
                      "are held, not dropped: the write is tried again with backoff until InfluxDB "
                      "takes it; meanwhile the dataflow waits and the journal keeps the data "
                      "(logged once; docs/runbook.md, \"InfluxDB refuses the writer\")",
                      who, self.user.who, self.database, exc.status, reason, advice,
                      extra={"status": exc.status, "error": reason, "rp": rp, "lines": lines})
        elif now - self._denied_reminded >= DENIED_REMINDER_S:
            self._denied_reminded = now
            log.warning("%s still refuses %s writes to database %r (status %d: %s): writes "
                        "held for %.0f s; %s", who, self.user.who, self.database, exc.status,
                        reason, now - self._denied_since, advice,
                        extra={"status": exc.status, "error": reason})

    def _write_again(self) -> None:
        """A write succeeded after writes were denied: the episode ends."""
        assert self._denied_since is not None
        now = self._monotonic()
        self.stats.denied_s += now - self._denied_mark
        log.info("InfluxDB takes %s writes again, after %.1f s refused: the held points are "
                 "written", self.user.who, now - self._denied_since)
        self._denied_since = None
        self._denied_logged.clear()


def _packed(lines: list[str], cap: int) -> Iterator[list[str]]:
    """`lines` in runs, in order, each of at most `cap` bytes once joined by newlines (a
    line longer than that alone)."""
    part: list[str] = []
    size = -1  # of the part joined: its lines and the newlines between them
    for line in lines:
        n = (len(line) if line.isascii() else len(line.encode(errors="backslashreplace"))) + 1
        if part and size + n > cap:
            yield part
            part, size = [], -1
        part.append(line)
        size += n
    if part:
        yield part


def _each_row(reader: InfluxHTTP, q: str, db: str, take: Callable[[dict[str, Any]], None],
              restart: Callable[[], None] | None = None) -> int:
    """Hands every row of `q`'s answer to `take` (as `InfluxHTTP.query_points` gives them,
    one dict at a time); returns how many. An answer that ended before its last rows (its
    `partial` flag still set) is retried like an outage (after `restart`, if given)."""
    if restart is not None:
        restart()
    count = 0
    for result in reader.results(q, db=db, chunk_size=REBUILD_CHUNK_ROWS):
        if not result.complete:
            raise InfluxError(0, f"the answer to {q[:200]!r} ended before its last rows")
        for s in result.series:
            for values in s.values:
                row: dict[str, Any] = dict(s.tags)
                row.update(zip(s.columns, values, strict=True))
                take(row)
                count += 1
    return count


def _error_reason(exc: InfluxError) -> str:
    """InfluxDB's own message, bounded (a 403 quotes the whole statement)."""
    return exc.body.strip()[:500]


def check_reader(cfg: CloudInflux, timeout_s: float = READ_CHECK_TIMEOUT_S) -> None:
    """`cloud run`'s start-up step (it does I/O, so it is no part of config validation):
    with reader credentials configured, one bounded read of the raw policy the rebuilds
    read back. A reader InfluxDB refuses (401, 403) raises `InfluxAccessError`, naming the
    user, the database and the grant, and so does an answer that is not InfluxDB's query
    API (`ReadFailure.NOT_INFLUXDB`: influx.url); an InfluxDB that does not answer (or any
    other error, with `read_advice`) is logged and start-up goes on: the writer waits for
    it as always, and a refused read is then held and retried (`InfluxWriter.rebuild_windows`). An answer
    is waited for at most `timeout_s` (and `influx.timeout_s`)."""
    if cfg.reader_password_file is None:
        return
    user, db = cfg.reader_username, cfg.database
    client = _client(replace(cfg, timeout_s=min(cfg.timeout_s, timeout_s)), user,
                     read_secret(cfg.reader_password_file, "influx.reader_password_file"))
    try:
        client.results(READ_CHECK, db=db)
    except InfluxError as exc:
        reason = _error_reason(exc)
        failure = read_failure(exc)
        if failure is ReadFailure.DENIED and exc.status == 401:
            raise InfluxAccessError(
                f"InfluxDB at {cfg.url} refuses the reader {user!r} (influx.reader_username) "
                f"its credentials (401: {reason}): check influx.reader_password_file "
                f"({cfg.reader_password_file}) and that the user exists") from exc
        if failure is ReadFailure.NOT_INFLUXDB:
            raise InfluxAccessError(
                f"what answers at {cfg.url} the reader's start-up read is not InfluxDB's query "
                f"API ({exc.status}: {reason}): check influx.url and any proxy before "
                "InfluxDB") from exc
        if failure is ReadFailure.DENIED:
            # In InfluxDB 1.x a GRANT replaces the user's privilege on the database: READ
            # for the writer's own user would take its WRITE away.
            grant = (f'GRANT ALL ON "{db}" TO "{user}" (it is influx.username too: GRANT READ '
                     "would take its WRITE away; better, a reader of its own with READ)"
                     if user == cfg.username else f'GRANT READ ON "{db}" TO "{user}"')
            raise InfluxAccessError(
                f"InfluxDB at {cfg.url} does not let the reader {user!r} (influx.reader_username) "
                f"read database {db!r} ({exc.status}: {reason}). The processor reads raw points back "
                f"to rebuild aggregates after late data. As an InfluxDB admin: {grant}; or "
                "leave influx.reader_* out to run without rebuilds") from exc
        if failure is ReadFailure.UNAVAILABLE:
            log.warning("the reader's rights could not be checked at start-up (%s); starting "
                        "anyway: InfluxDB is waited for as always", exc, extra={"error": str(exc)})
        else:
            log.warning("InfluxDB answered the start-up check of the reader %r with an error "
                        "(%s): %s; starting anyway", user, exc,
                        read_advice(failure, exc, user, db, user == cfg.username),
                        extra={"error": str(exc)})
    finally:
        client.close()


def writer_user(cfg: CloudInflux) -> WriterUser:
    if cfg.api == "v2":
        return WriterUser(secret=f"influx.token_file ({cfg.token_file})", v2=True)
    return WriterUser(cfg.username, f"influx.password_file ({cfg.password_file})",
                      also_reader=(cfg.reader_password_file is not None
                                   and cfg.reader_username == cfg.username))


def check_writer(cfg: CloudInflux, timeout_s: float = READ_CHECK_TIMEOUT_S) -> None:
    """`cloud run`'s and `cloud recompute`'s start-up step: a write of no line to the raw
    policy, as the writer. InfluxDB 1.x checks the database and the user's WRITE on it
    before it reads the body, then stores nothing and answers 204 (checked on 1.6.7), so
    the check leaves no point behind. Denied (401, 403, 404, a 3xx, an answer that is not
    InfluxDB's: `write_failure`) raises `InfluxAccessError`, naming the user, the database
    and the fix (`write_advice`); an InfluxDB that does
    not answer within `timeout_s` (and `influx.timeout_s`), or any other error, is logged
    and start-up goes on (the writer waits for it, and holds a denied write, as always).
    InfluxDB 2.x (v1 API with DBRP mappings) answers a write of no line with 400 "writing
    requires points" once the mapping and the right passed: that passes the check.
    api = "v2" is not checked: no 2.x server was at hand to learn how its client library
    sends a write of no line; a denied write is held and logged at run time all the same."""
    if cfg.api == "v2":
        return
    user = writer_user(cfg)
    db = cfg.database
    client = _client(replace(cfg, timeout_s=min(cfg.timeout_s, timeout_s)), cfg.username,
                     read_secret(cfg.password_file, "influx.password_file"))
    try:
        client.write(b"", db=db, rp=RP_RAW)
    except InfluxError as exc:
        reason = _error_reason(exc)
        if exc.status == 400 and NO_POINTS_2X in exc.body:
            return  # 2.x found the bucket and the write right before it looked at the body
        if write_failure(exc) is WriteFailure.DENIED:
            who = _answerer(exc, cfg.url)
            raise InfluxAccessError(
                f"{who} refuses {user.who} writes to database {db!r} "
                f"({exc.status}: {reason}). The processor writes every point as this user: "
                f"{write_advice(user, exc, db, RP_RAW)}") from exc
        if exc.retryable:
            log.warning("the writer's rights could not be checked at start-up (%s)%s; starting "
                        "anyway: InfluxDB is waited for as always", exc, retry_advice(exc, RP_RAW),
                        extra={"error": str(exc)})
        else:
            log.warning("InfluxDB answered the start-up check of the writer %r with an error "
                        "(%s); starting anyway", cfg.username, exc, extra={"error": str(exc)})
    finally:
        client.close()


def read_secret(path: Path, key: str) -> str:
    """The secret in the file at `path` (config key `key`), stripped; a `SinkError` naming
    both and why if it cannot be read."""
    try:
        return path.read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise SinkError(f"{key} {path}: {exc.strerror}") from exc


def make_writer(cfg: CloudInflux, stop: threading.Event | None = None,
                wait: Callable[[float], bool] | None = None,
                door_roles: DoorRoleMap = NO_DOOR_ROLES) -> InfluxWriter:
    """`door_roles`: the config's `flow.door_roles`, which the domain replays the writer
    runs count the doors by, as the live rollups do."""
    client: LineWriter
    if cfg.api == "v2":
        from cloud.influx_v2 import InfluxV2Client

        assert cfg.token_file is not None  # the config requires it with api = "v2"
        try:
            client = InfluxV2Client(cfg.url, read_secret(cfg.token_file, "influx.token_file"), cfg.org,
                                    timeout_s=cfg.timeout_s, ca_file=cfg.ca_file)
        except InfluxCAFileError as exc:
            raise SinkError(f"influx.ca_file: {exc}") from exc
    else:
        client = _client(cfg, cfg.username, read_secret(cfg.password_file, "influx.password_file"))
    reader = None
    if cfg.reader_password_file is not None:
        reader = _client(cfg, cfg.reader_username,
                         read_secret(cfg.reader_password_file, "influx.reader_password_file"))
    writer = InfluxWriter(client, cfg.database, cfg.batch_lines, stop, wait, reader,
                          cfg.reader_username, writer_user(cfg))
    writer.door_roles = door_roles
    return writer


def _client(cfg: CloudInflux, username: str, password: str) -> InfluxHTTP:
    try:
        return InfluxHTTP(cfg.url, username, password, timeout_s=cfg.timeout_s, ca_file=cfg.ca_file)
    except InfluxCAFileError as exc:
        raise SinkError(f"influx.ca_file: {exc}") from exc
