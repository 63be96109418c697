"""The wire contract: what the edge builds, the cloud accepts; what breaks it, it names."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from urbanpulse.clock import to_epoch_ns
from urbanpulse.wire import (
    KINDS,
    Reading,
    ReadingRefused,
    WireError,
    data_topic,
    decode_batch,
    decode_status,
    encode_batch,
    encode_status,
    format_ts,
    parse_topic,
    reading_problem,
)
from urbanpulse.wire.kinds import BOOL_UNIT, COUNT_UNITS, MAX_WHOLE_COUNT
from urbanpulse.wire.topics import TopicError

TS = to_epoch_ns(datetime(2026, 11, 28, 9, 30, 1, 250000, tzinfo=UTC))


def _body(**readings_override: object) -> dict:
    reading = {"sensor": "pm-1", "kind": "air.pm", "ts": "2026-11-28T09:30:01.250000Z", "seq": 3,
               "values": {"pm25": 41.5, "pm10": 60}}
    reading.update(readings_override)
    return {"v": 1, "site": "hn-hoankiem", "node": "aq-01",
            "units": {kind: spec.units for kind, spec in KINDS.items()}, "readings": [reading]}


def test_round_trip_keeps_every_field() -> None:
    r = Reading("pm-1", "air.pm", TS, 3, {"pm25": 41.5, "pm10": 60.0}, ("warmup",))
    parsed = decode_batch(encode_batch("hn-hoankiem", "aq-01", [r]), site="hn-hoankiem", node="aq-01")
    assert parsed.readings == [r]
    assert parsed.rejected == []


def test_the_numbering_id_goes_with_the_batch_and_may_be_absent() -> None:
    r = Reading("pm-1", "air.pm", TS, 3, {"pm25": 41.5, "pm10": 60.0})
    named = encode_batch("hn-hoankiem", "aq-01", [r], batch="9f3c.1", numbering="0123456789abcdef")
    assert json.loads(named)["numbering"] == "0123456789abcdef"
    assert decode_batch(named).numbering == "0123456789abcdef"
    assert decode_batch(encode_batch("hn-hoankiem", "aq-01", [r])).numbering is None
    with pytest.raises(WireError, match="bad_numbering"):
        encode_batch("hn-hoankiem", "aq-01", [r], numbering="node-7")


def test_topic_layout() -> None:
    assert data_topic("hn-hoankiem", "aq-01") == "urbanpulse/v1/hn-hoankiem/aq-01/data"
    t = parse_topic("urbanpulse/v1/hn-hoankiem/aq-01/status")
    assert (t.site, t.node, t.stream) == ("hn-hoankiem", "aq-01", "status")
    with pytest.raises(TopicError, match="unknown stream"):
        parse_topic("urbanpulse/v1/hn-hoankiem/aq-01/telemetry")
    with pytest.raises(TopicError, match="not a valid id"):
        data_topic("Hanoi Site", "aq-01")


@pytest.mark.parametrize(("override", "code", "where"), [
    ({"seq": -1}, "bad_seq", "readings[0].seq"),
    ({"seq": 1.5}, "bad_seq", "readings[0].seq"),
    ({"ts": "2026-11-28T09:30:01"}, "bad_ts", "readings[0].ts"),
    ({"ts": "2019-01-01T00:00:00.000000Z"}, "ts_out_of_range", "readings[0].ts"),
    ({"kind": "air.ozone"}, "unknown_kind", "readings[0].kind"),
    ({"sensor": "PM 1"}, "bad_sensor", "readings[0].sensor"),
    ({"values": {"pm25": "high", "pm10": 1}}, "bad_value", "readings[0].values.pm25"),
    ({"values": {"pm25": 1.0}}, "missing_field", "readings[0].values.pm10"),
    ({"values": {"pm25": 1.0, "pm10": 2.0, "o3": 1}}, "unknown_field", "readings[0].values.o3"),
    ({"flags": ["sunny"]}, "bad_flags", "readings[0].flags"),
    ({"values": {"pm25": 10**400, "pm10": 1}}, "bad_value", "readings[0].values.pm25"),
    ({"kind": "hospital.bed", "values": {"occupied": 0.5}}, "bad_value", "readings[0].values.occupied"),
    ({"kind": "hospital.bed", "values": {"occupied": 1, "fault": 2}}, "bad_value",
     "readings[0].values.fault"),
    ({"kind": "hospital.queue", "values": {"ticket": 4, "called": -1}}, "bad_value",
     "readings[0].values.called"),
])
def test_a_bad_reading_is_rejected_with_its_place_and_reason(override: dict, code: str, where: str) -> None:
    parsed = decode_batch(json.dumps(_body(**override)).encode())
    assert parsed.readings == []
    [rej] = parsed.rejected
    assert rej.code == code
    assert rej.detail.startswith(where)


def test_the_count_units_are_the_fields_that_count_things() -> None:
    counts = {(kind, name) for kind, spec in KINDS.items() for name, f in spec.fields.items()
              if f.unit in COUNT_UNITS}
    assert counts == {("traffic.loop", "count"), ("traffic.loop", "speed_count"),
                      ("traffic.loop", "glitches"), ("hospital.door", "count"),
                      ("hospital.door", "glitches"), ("hospital.bed", "glitches")}


_DOOR = {"kind": "hospital.door", "sensor": "door-er"}


@pytest.mark.parametrize(("kind", "values", "field", "why"), [
    ("hospital.door", {"count": 2.5, "interval_s": 60}, "count", "2.5 is not a whole number"),
    ("hospital.door", {"count": -3, "interval_s": 60}, "count", "-3 is negative"),
    ("hospital.door", {"count": -0.5, "interval_s": 60}, "count", "-0.5 is negative"),
    ("hospital.door", {"count": 2, "interval_s": 60, "glitches": 0.25}, "glitches",
     "0.25 is not a whole number"),
    ("traffic.loop", {"count": 2**53 + 1, "interval_s": 60}, "count",
     "9007199254740993 is beyond 2^53"),
    ("traffic.loop", {"count": 1e300, "interval_s": 60}, "count", "1e+300 is beyond 2^53"),
    ("traffic.loop", {"count": 4, "interval_s": 60, "speed_kmh": 50, "speed_count": 3.5},
     "speed_count", "3.5 is not a whole number"),
    ("hospital.bed", {"occupied": 1, "glitches": 1.5}, "glitches", "1.5 is not a whole number"),
])
def test_a_count_that_is_not_a_whole_number_from_0_is_rejected_naming_it(
        kind: str, values: dict, field: str, why: str) -> None:
    parsed = decode_batch(json.dumps(_body(kind=kind, values=values)).encode())
    assert parsed.readings == []
    [rej] = parsed.rejected
    assert rej.code == "bad_count"
    assert rej.detail.startswith(f"readings[0].values.{field}: a count of ")
    assert "must be a whole number in [0, 2^53]" in rej.detail
    assert why in rej.detail


def test_a_whole_count_is_taken_also_as_a_float_and_a_bool_is_no_count() -> None:
    whole = [{"count": 3.0, "interval_s": 60}, {"count": 0, "interval_s": 60},
             {"count": -0.0, "interval_s": 60}, {"count": 2**53, "interval_s": 60},
             {"count": 7, "interval_s": 60, "glitches": 2.0}]
    for values in whole:
        parsed = decode_batch(json.dumps(_body(**_DOOR, values=values)).encode())
        assert parsed.rejected == [], values
        assert parsed.readings[0].values == values
    [rej] = decode_batch(json.dumps(_body(**_DOOR, values={"count": True, "interval_s": 60})
                                    ).encode()).rejected
    assert (rej.code, rej.detail) == ("bad_value", "readings[0].values.count: must be a finite "
                                                   "number, got True")


def test_a_count_above_its_range_but_whole_is_stored_for_out_of_range() -> None:
    parsed = decode_batch(json.dumps(_body(**_DOOR, values={"count": 200_000.0, "interval_s": 60})
                                     ).encode())
    assert parsed.rejected == []


def test_wrong_unit_is_rejected_not_mixed() -> None:
    body = _body()
    body["units"]["air.pm"]["pm25"] = "mg/m3"
    [rej] = decode_batch(json.dumps(body).encode()).rejected
    assert rej.code == "wrong_unit"
    assert "'ug/m3'" in rej.detail


def test_good_readings_survive_a_bad_neighbour() -> None:
    body = _body()
    body["readings"].append(dict(body["readings"][0], seq="x"))
    parsed = decode_batch(json.dumps(body).encode())
    assert len(parsed.readings) == 1
    assert parsed.rejected[0].index == 1


@pytest.mark.parametrize(("payload", "code"), [
    (b"\xff\xfe", "not_json"),
    (b"[1,2]", "not_object"),
    (json.dumps(dict(_body(), v=2)).encode(), "bad_version"),
    (json.dumps(dict(_body(), readings={})).encode(), "bad_readings"),
    (b"x" * (256 * 1024 + 1), "too_large"),
    # Past Python's 4,300-digit limit for int(); nested past the recursion limit.
    (b'{"v":1,"site":"s","node":"n","units":{},"readings":[' + b"9" * 5000 + b"]}", "not_json"),
    (b'{"v":1,"x":' + b"[" * 50_000 + b"]" * 50_000 + b"}", "not_json"),
    (json.dumps(dict(_body(), numbering="0123456789ABCDEF")).encode(), "bad_numbering"),
    (json.dumps(dict(_body(), numbering="0123")).encode(), "bad_numbering"),
    (json.dumps(dict(_body(), numbering=12)).encode(), "bad_numbering"),
])
def test_a_broken_envelope_raises_a_precise_error(payload: bytes, code: str) -> None:
    with pytest.raises(WireError) as err:
        decode_batch(payload)
    assert err.value.code == code


def test_body_must_match_the_topic() -> None:
    with pytest.raises(WireError, match="node_mismatch"):
        decode_batch(json.dumps(_body()).encode(), site="hn-hoankiem", node="aq-02")


def test_future_timestamps_are_rejected_against_the_receive_time() -> None:
    parsed = decode_batch(json.dumps(_body()).encode(), now_ns=TS - 2 * 86400 * 10**9)
    assert parsed.rejected[0].code == "ts_out_of_range"


def test_timestamps_are_utc_only() -> None:
    with pytest.raises(ValueError, match="naive"):
        format_ts(datetime(2026, 1, 1))
    hanoi = timezone(timedelta(hours=7))
    assert format_ts(datetime(2026, 1, 1, 7, tzinfo=hanoi)) == "2026-01-01T00:00:00.000000Z"


def test_a_status_stamped_outside_the_readings_range_is_refused() -> None:
    now = datetime(2026, 11, 28, tzinfo=UTC)
    now_ns = int(now.timestamp()) * 10**9
    assert decode_status(encode_status("online", now), now_ns=now_ns)["state"] == "online"
    for ts in (datetime(2019, 12, 31, tzinfo=UTC), datetime(2026, 12, 1, tzinfo=UTC)):
        with pytest.raises(WireError) as err:
            decode_status(encode_status("online", ts), now_ns=now_ns)
        assert err.value.code == "ts_out_of_range"


def test_status_round_trip() -> None:
    body = decode_status(encode_status("online", datetime(2026, 1, 1, tzinfo=UTC), {"outbox_depth": 3}))
    assert body["state"] == "online"
    assert body["health"]["outbox_depth"] == 3


_kind = st.sampled_from(sorted(KINDS))


@st.composite
def readings(draw: st.DrawFn) -> Reading:
    kind = draw(_kind)
    spec = KINDS[kind]
    values = {name: draw(st.sampled_from([0, 1, 0.0, 1.0]) if f.unit == BOOL_UNIT
                         else st.integers(0, MAX_WHOLE_COUNT) | st.integers(0, 10**6).map(float)
                         if f.unit in COUNT_UNITS
                         else st.floats(-1e6, 1e6, allow_nan=False))
              for name, f in spec.fields.items() if f.required or draw(st.booleans())}
    ts = draw(st.integers(to_epoch_ns(datetime(2021, 1, 1, tzinfo=UTC)),
                          to_epoch_ns(datetime(2030, 1, 1, tzinfo=UTC))))
    return Reading(draw(st.sampled_from(["pm-1", "loop.a_2", "0", "bed-07"])), kind,
                   ts - ts % 1000, draw(st.integers(0, 2**63 - 1)), values)


@settings(deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(readings(), max_size=10))
def test_any_valid_batch_round_trips(batch: list[Reading]) -> None:
    parsed = decode_batch(encode_batch("s1", "n1", batch))
    assert parsed.readings == batch


# The node refuses with the cloud's own rule (urbanpulse.wire.values): each reading below,
# whatever the cloud's decode says of it, the edge's check says too, code and detail.
_SAME_RULE = [
    ("air.pm", {"pm25": 12.0, "pm10": 20}),
    ("air.pm", {"pm25": float("nan"), "pm10": 20}),
    ("air.pm", {"pm25": 12.0, "pm10": float("-inf")}),
    ("air.pm", {"pm25": 10**400, "pm10": 20}),
    ("air.pm", {"pm25": True, "pm10": 20}),
    ("air.pm", {"pm25": "12", "pm10": 20}),
    ("air.pm", {"pm25": None, "pm10": 20}),
    ("air.pm", {"pm25": 12.0}),
    ("air.pm", {"pm25": 12.0, "pm10": 20, "o3": 1}),
    ("air.pm", {}),
    ("air.ozone", {"o3": 1}),
    ("traffic.loop", {"count": 2.5, "interval_s": 60}),
    ("traffic.loop", {"count": 7.0, "interval_s": 60}),
    ("traffic.loop", {"count": -1, "interval_s": 60}),
    ("traffic.loop", {"count": 2**53 + 1, "interval_s": 60}),
    ("traffic.loop", {"count": 20_000, "interval_s": 60}),  # out of range: stored, flagged
    ("hospital.bed", {"occupied": 2}),
    ("hospital.bed", {"occupied": 1, "glitches": 0.5}),
]


@pytest.mark.parametrize(("kind", "values"), _SAME_RULE)
def test_the_edge_refuses_what_the_cloud_rejects_with_the_same_code_and_detail(
        kind: str, values: dict) -> None:
    refusal = reading_problem(kind, values)
    # json.dumps writes a NaN as `NaN`, which the cloud's parser reads back: what a node sent
    # before it checked
    parsed = decode_batch(json.dumps(_body(kind=kind, values=values)).encode())
    if refusal is None:
        assert parsed.rejected == []
        assert parsed.readings[0].values == values
    else:
        [rej] = parsed.rejected
        assert (rej.code, rej.detail) == (refusal.code, "readings[0]" + refusal.detail)


def test_encode_refuses_a_value_the_cloud_would_reject_naming_the_reading() -> None:
    good = Reading("loop-1", "traffic.loop", TS, 0, {"count": 7, "interval_s": 60.0})
    bad = Reading("loop-1", "traffic.loop", TS, 1, {"count": 2.5, "interval_s": 60.0})
    with pytest.raises(ReadingRefused) as caught:
        encode_batch("hn-hoankiem", "aq-01", [good, good, bad])
    assert caught.value.index == 2
    assert caught.value.code == "bad_count"
    assert str(caught.value).startswith("bad_count: readings[2].values.count: a count of vehicles")
    nan = Reading("pm-1", "air.pm", TS, 0, {"pm25": float("nan"), "pm10": 3.0})
    with pytest.raises(WireError, match=r"bad_value: readings\[0\].values.pm25: must be a finite"):
        encode_batch("hn-hoankiem", "aq-01", [nan])
