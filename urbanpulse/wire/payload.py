"""Payloads of contract v1: a batch of readings per data message, a node status.

One definition serves both sides: the edge builds with `encode_batch`, the cloud
validates with `decode_batch`. A broken envelope raises `WireError`; a broken reading
inside a sound envelope is returned as a `RejectedReading` so that the rest of the batch
still counts.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from urbanpulse.clock import from_epoch_ns, to_epoch_ns
from urbanpulse.errors import UrbanpulseError
from urbanpulse.wire.kinds import BOOL_UNIT, COUNT_UNITS, KINDS, KindSpec, count_problem
from urbanpulse.wire.topics import CONTRACT_VERSION, validate_id
from urbanpulse.wire.values import CONTRACT_UNITS, Refusal, reading_problem, values_problem
from urbanpulse.wire.values import finite as finite  # the edge and the cloud import it from here

MAX_PAYLOAD_BYTES = 256 * 1024
MAX_READINGS_PER_BATCH = 2000
MAX_SEQ = 2**63 - 1
FLAGS = frozenset({"warmup", "calibrating", "backlog", "clock_unsynced"})
# Readings stamped before this or too far in the future are certainly a broken clock.
EARLIEST_TS_NS = to_epoch_ns(datetime(2020, 1, 1, tzinfo=UTC))
FUTURE_TOLERANCE = timedelta(days=1)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)

SENSOR_ID_MAX = 64  # characters
SENSOR_ID = re.compile(rf"[a-z0-9][a-z0-9_.-]{{0,{SENSOR_ID_MAX - 1}}}")
_SENSOR = SENSOR_ID
# Names the node's sequence numbering: made with its outbox, new when a node loses its state.
NUMBERING_ID = re.compile(r"[0-9a-f]{16}")


class WireError(UrbanpulseError):
    """A payload breaks the contract. `code` is short and stable (for counting),
    `detail` says exactly where and why."""

    def __init__(self, code: str, detail: str) -> None:
        super().__init__(f"{code}: {detail}")
        self.code = code
        self.detail = detail


class ReadingRefused(WireError):
    """`encode_batch` was given a reading the contract refuses (a value the cloud would
    dead-letter): `index` is its place in the readings given."""

    def __init__(self, index: int, refusal: Refusal) -> None:
        super().__init__(refusal.code, f"readings[{index}]{refusal.detail}")
        self.index = index


# Not frozen, though no one may change a reading once made: the cloud makes one per reading
# received (hundreds of thousands a second), and a frozen dataclass's __init__ sets each
# field through object.__setattr__, 0.69 µs a reading against 0.15 for a plain slotted one
# (docs/throughput.md, session 10). Equal and hashed as the frozen class was
# (`unsafe_hash`), and pickled in its form (a list of the field values), so that either
# version loads the other's pickles.
@dataclass(slots=True, unsafe_hash=True)
class Reading:
    sensor: str
    kind: str
    ts_ns: int
    seq: int
    values: Mapping[str, float]
    flags: tuple[str, ...] = ()

    @property
    def ts(self) -> datetime:
        return from_epoch_ns(self.ts_ns)

    def __getstate__(self) -> list[object]:
        return [self.sensor, self.kind, self.ts_ns, self.seq, self.values, self.flags]

    def __setstate__(self, state: list[Any]) -> None:
        self.sensor, self.kind, self.ts_ns, self.seq, self.values, self.flags = state


@dataclass(frozen=True, slots=True)
class RejectedReading:
    index: int
    code: str
    detail: str
    raw: Any


@dataclass(frozen=True, slots=True)
class ParsedBatch:
    site: str
    node: str
    readings: list[Reading]
    rejected: list[RejectedReading] = field(default_factory=list)
    numbering: str | None = None  # the batch's `numbering`; None from nodes that send none


def format_ts(ts: datetime) -> str:
    """RFC 3339 in UTC with a Z and microseconds, the only form the contract accepts."""
    if ts.tzinfo is None:
        raise ValueError("naive datetime: the contract only carries aware UTC timestamps")
    return ts.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse_ts(value: Any) -> int:
    if not isinstance(value, str) or not value.endswith("Z"):
        raise ValueError(f"ts must be an RFC 3339 UTC string ending in Z, got {value!r}")
    try:
        ts = datetime.fromisoformat(value)
    except ValueError as exc:
        raise ValueError(f"ts {value!r} is not RFC 3339: {exc}") from exc
    return to_epoch_ns(ts)


# A batch id: `<hex boot id>.<counter>` (a node's batch, a gateway's relay).
BATCH_ID = re.compile(r"[0-9a-f]{1,16}\.[0-9]{1,19}")
_BATCH_FIELD = re.compile(rb'"batch":"([0-9a-f]{1,16}\.[0-9]{1,19})"')


def batch_id_of(payload: bytes) -> str | None:
    """The batch id of a data payload, found without parsing it (the ingest's hot path)."""
    m = _BATCH_FIELD.search(payload, 0, 512)
    return m.group(1).decode() if m else None


def encode_ack(batches: Sequence[str]) -> bytes:
    return json.dumps({"v": CONTRACT_VERSION, "batches": list(batches)}, separators=(",", ":")).encode()


def decode_ack(payload: bytes) -> list[str]:
    body = _envelope(payload)
    batches = body.get("batches")
    if not isinstance(batches, list) or not all(isinstance(b, str) and BATCH_ID.fullmatch(b)
                                                for b in batches):
        raise WireError("bad_ack", "batches must be a list of batch ids")
    return batches


def encode_batch(site: str, node: str, readings: Sequence[Reading], batch: str | None = None,
                 numbering: str | None = None) -> bytes:
    """Build a data payload; raises WireError if the result would break the contract, and
    ReadingRefused (a WireError with the reading's index) for a reading whose kind or
    values the cloud would refuse (`reading_problem`): nothing the cloud dead-letters for
    its values leaves a node."""
    validate_id("site", site)
    validate_id("node", node)
    units: dict[str, dict[str, str]] = {}
    items = []
    for index, r in enumerate(readings):
        refusal = reading_problem(r.kind, r.values)
        if refusal is not None:
            raise ReadingRefused(index, refusal)
        kind_units = units.setdefault(r.kind, {})
        contract_units = CONTRACT_UNITS[r.kind]  # every name is a field: reading_problem said
        for name in r.values:
            if name not in kind_units:
                kind_units[name] = contract_units[name]
        item: dict[str, Any] = {
            "sensor": r.sensor,
            "kind": r.kind,
            "ts": format_ts(r.ts),
            "seq": r.seq,
            "values": dict(r.values),
        }
        if r.flags:
            item["flags"] = list(r.flags)
        items.append(item)
    body: dict[str, Any] = {"v": CONTRACT_VERSION, "site": site, "node": node}
    if batch is not None:
        if not BATCH_ID.fullmatch(batch):
            raise WireError("bad_batch", f"batch id {batch!r} is not <hex boot id>.<counter>")
        body["batch"] = batch
    if numbering is not None:
        if not NUMBERING_ID.fullmatch(numbering):
            raise WireError("bad_numbering", f"numbering {numbering!r} is not 16 hex digits")
        body["numbering"] = numbering
    body["units"] = units
    body["readings"] = items
    payload = json.dumps(body, separators=(",", ":"), allow_nan=False).encode()
    if len(payload) > MAX_PAYLOAD_BYTES:
        raise WireError("too_large", f"{len(payload)} bytes > {MAX_PAYLOAD_BYTES}")
    return payload


def _envelope(payload: bytes) -> dict[str, Any]:
    if len(payload) > MAX_PAYLOAD_BYTES:
        raise WireError("too_large", f"payload of {len(payload)} bytes > {MAX_PAYLOAD_BYTES}")
    try:
        body = json.loads(payload)
    except (ValueError, RecursionError) as exc:
        # ValueError: not UTF-8, not JSON, or an integer past Python's 4,300-digit limit;
        # RecursionError: arrays or objects nested thousands deep.
        raise WireError("not_json", f"payload is not UTF-8 JSON: {str(exc)[:200]}") from exc
    if not isinstance(body, dict):
        raise WireError("not_object", f"payload must be a JSON object, got {type(body).__name__}")
    version = body.get("v")
    if version != CONTRACT_VERSION:
        raise WireError("bad_version", f"v must be {CONTRACT_VERSION}, got {version!r}")
    return body


def decode_batch(payload: bytes, *, site: str | None = None, node: str | None = None,
                 now_ns: int | None = None) -> ParsedBatch:
    """Validate a data payload. `site`/`node` (from the topic) must match the body's."""
    body = _envelope(payload)
    for key, expected in (("site", site), ("node", node)):
        value: Any = body.get(key)
        try:
            validate_id(key, value)
        except UrbanpulseError as exc:
            raise WireError(f"bad_{key}", str(exc)) from exc
        if expected is not None and value != expected:
            raise WireError(f"{key}_mismatch", f"body {key} {value!r} != topic {key} {expected!r}")
    numbering = body.get("numbering")
    if numbering is not None and not (isinstance(numbering, str) and NUMBERING_ID.fullmatch(numbering)):
        raise WireError("bad_numbering", f"numbering must be 16 hex digits [0-9a-f], got {numbering!r:.40}")
    units = body.get("units")
    if not isinstance(units, dict):
        raise WireError("bad_units", "units must be an object of kind -> {field: unit}")
    readings_raw = body.get("readings")
    if not isinstance(readings_raw, list):
        raise WireError("bad_readings", "readings must be a list")
    if len(readings_raw) > MAX_READINGS_PER_BATCH:
        raise WireError("too_many", f"{len(readings_raw)} readings > {MAX_READINGS_PER_BATCH}")
    latest = None if now_ns is None else now_ns + int(FUTURE_TOLERANCE.total_seconds() * 1e9)
    good: list[Reading] = []
    rejected: list[RejectedReading] = []
    sound: set[tuple[str, tuple[str, ...]]] = set()
    for index, raw in enumerate(readings_raw):
        try:
            good.append(_reading(raw, units, latest, sound))
        except _Reject as exc:
            rejected.append(RejectedReading(index, exc.code, f"readings[{index}]{exc.detail}", raw))
    return ParsedBatch(body["site"], body["node"], good, rejected, numbering)


class _Reject(Exception):
    def __init__(self, code: str, detail: str) -> None:
        super().__init__(detail)
        self.code = code
        self.detail = detail


# Sensor ids that matched SENSOR_ID: the same few recur in every batch (bounded; a cache).
_sensor_ids: set[str] = set()
_SENSOR_IDS_MAX = 100_000


def is_sensor_id(sensor: str) -> bool:
    """`sensor` is a sensor id of the contract (SENSOR_ID), remembered once it matched."""
    if sensor in _sensor_ids:
        return True
    if not _SENSOR.fullmatch(sensor):
        return False
    if len(_sensor_ids) >= _SENSOR_IDS_MAX:
        _sensor_ids.clear()
    _sensor_ids.add(sensor)
    return True


def sensor_id_cache() -> set[str]:
    """The ids `is_sensor_id` remembers, for hot loops: `sensor in ids or is_sensor_id(sensor)`
    (read only)."""
    return _sensor_ids


def _reading(raw: Any, units: Mapping[str, Any], latest_ns: int | None,
             sound: set[tuple[str, tuple[str, ...]]]) -> Reading:
    """One reading, validated. `sound` holds the (kind, field names) whose names, units and
    required fields this batch has already passed: their values only need checking."""
    if not isinstance(raw, dict):
        raise _Reject("bad_reading", f": must be an object, got {type(raw).__name__}")
    sensor = raw.get("sensor")
    if not isinstance(sensor, str) or (sensor not in _sensor_ids and not is_sensor_id(sensor)):
        raise _Reject("bad_sensor", f".sensor: {sensor!r} is not 1-{SENSOR_ID_MAX} of [a-z0-9_.-]")
    kind = raw.get("kind")
    spec = KINDS.get(kind) if isinstance(kind, str) else None
    if spec is None or not isinstance(kind, str):
        raise _Reject("unknown_kind", f".kind: {kind!r} is not in contract v1")
    seq = raw.get("seq")
    if type(seq) is not int or not 0 <= seq <= MAX_SEQ:
        raise _Reject("bad_seq", f".seq: must be an integer in [0, 2^63), got {seq!r}")
    ts = raw.get("ts")
    stamp = None
    if isinstance(ts, str) and ts.endswith("Z"):  # parse_ts, inlined (no `with`: per reading)
        try:  # noqa: SIM105
            stamp = datetime.fromisoformat(ts)
        except ValueError:
            pass
    if stamp is None:
        try:
            ts_ns = parse_ts(ts)  # raises, saying what is wrong with it
        except ValueError as exc:
            raise _Reject("bad_ts", f".ts: {exc}") from exc
    else:
        ts_ns = (stamp - _EPOCH) // _MICROSECOND * 1000  # to_epoch_ns(stamp)
    if ts_ns < EARLIEST_TS_NS or (latest_ns is not None and ts_ns > latest_ns):
        raise _Reject("ts_out_of_range", f".ts: {raw.get('ts')} is before 2020 or in the future")
    values = raw.get("values")
    if not isinstance(values, dict) or not values:
        raise _Reject("bad_values", ".values: must be a non-empty object")
    kind_units = units.get(kind)
    if not isinstance(kind_units, dict):
        raise _Reject("missing_units", f": units has no entry for kind {kind!r}")
    fields = (kind, tuple(values))
    if (fields in sound and _finite_numbers(values) and _bools_sound(kind, values)
            and _counts_sound(kind, values)):
        clean: dict[str, float] = values  # as _clean would copy it, and no longer referenced
    else:
        clean = _clean(values, kind, spec, kind_units)
        sound.add(fields)
    flags = raw.get("flags", ())
    if flags or not isinstance(flags, list | tuple):
        # (a flag that is no string, [] or {}, would make `in FLAGS` raise: it is rejected)
        if not isinstance(flags, list | tuple) or not all(isinstance(f, str) and f in FLAGS
                                                          for f in flags):
            raise _Reject("bad_flags", f".flags: must be a list drawn from {sorted(FLAGS)}")
        flags = tuple(flags)
    return Reading(sensor, kind, ts_ns, seq, clean, flags or ())


_SMALL_INT = 2**1000  # an int below this in size is a finite float, no conversion needed
_BOOL_FIELDS = {kind.name: tuple(name for name, f in kind.fields.items() if f.unit == BOOL_UNIT)
                for kind in KINDS.values()}
_COUNT_FIELDS = {kind.name: tuple(name for name, f in kind.fields.items() if f.unit in COUNT_UNITS)
                 for kind in KINDS.values()}


def _counts_sound(kind: str, values: dict[str, Any]) -> bool:
    """Every count field among `values` a whole number in range: the count check of `_clean`."""
    return all(count_problem(values[name]) is None for name in _COUNT_FIELDS[kind] if name in values)


def _bools_sound(kind: str, values: dict[str, Any]) -> bool:
    """Every bool field among `values` 0 or 1: the bool check of `_clean`."""
    return all(values[name] in (0, 1) for name in _BOOL_FIELDS[kind] if name in values)


def _finite_numbers(values: dict[str, Any]) -> bool:
    """Every value an int or a float and finite: the value check of `_clean`."""
    for value in values.values():
        t = type(value)
        if t is float:
            if value - value != 0.0:  # inf or nan
                return False
        elif t is not int or not (-_SMALL_INT < value < _SMALL_INT or finite(value)):
            return False
    return True


def _clean(values: dict[str, Any], kind: str, spec: KindSpec, kind_units: dict[str, Any]
           ) -> dict[str, float]:
    """The values checked (`values_problem`, the rule the edge applies too): the first
    broken one raises."""
    problem = values_problem(spec, values, kind_units)
    if problem is not None:
        raise _Reject(*problem)
    return dict(values)


def encode_status(state: str, ts: datetime, health: Mapping[str, Any] | None = None) -> bytes:
    if state not in ("online", "offline"):
        raise ValueError(f"state must be online or offline, got {state!r}")
    body: dict[str, Any] = {"v": CONTRACT_VERSION, "state": state, "ts": format_ts(ts)}
    if health is not None:
        body["health"] = dict(health)
    return json.dumps(body, separators=(",", ":")).encode()


def decode_status(payload: bytes, now_ns: int | None = None) -> dict[str, Any]:
    """Validate a status payload; its `ts` must lie in the range a reading's may (from 2020
    to `now_ns` plus the future tolerance). `health` is the agent's, read field by field
    by whoever uses it."""
    body = _envelope(payload)
    if body.get("state") not in ("online", "offline"):
        raise WireError("bad_state", f"state must be online or offline, got {body.get('state')!r:.40}")
    try:
        ts_ns = parse_ts(body.get("ts"))
    except ValueError as exc:
        raise WireError("bad_ts", f"ts: {exc}") from exc
    latest = None if now_ns is None else now_ns + int(FUTURE_TOLERANCE.total_seconds() * 1e9)
    if ts_ns < EARLIEST_TS_NS or (latest is not None and ts_ns > latest):
        raise WireError("ts_out_of_range", f"ts: {body.get('ts')} is before 2020 or in the future")
    return body
