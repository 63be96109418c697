"""`decode_record` decodes a sound data message with orjson in one pass
(`records._sound_readings`) and leaves every other message to the contract's decoder
(`urbanpulse.wire.decode_batch`). The shortcut must give exactly what the contract's path
gives: the same readings (values of the same type, stamps, flags, order) and the same
points, dead letters included, for every payload, in particular those orjson reads
otherwise than json (NaN, 1e400, integers beyond 64 bits, a lone surrogate, a BOM, deep
nesting, duplicate keys)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bench.pipeline.workload import generate
from cloud.journal import JournalRecord
from cloud.logic import records
from cloud.logic.records import NodeData, Point, decode_record
from tests.core.wire_text import payload_text, reading_text
from urbanpulse.wire import decode_batch

SITE, NODE = "hn-bachmai", "ward-1"
TOPIC = f"urbanpulse/v1/{SITE}/{NODE}/data"
RECEIVED_NS = 1_795_000_000_000_000_000  # 2026-11-18
UNITS = {"air.pm": {"pm25": "ug/m3", "pm10": "ug/m3", "pm1": "ug/m3"},
         "hospital.bed": {"occupied": "bool", "fault": "bool"},
         "traffic.loop": {"count": "vehicles", "interval_s": "s", "occupancy_pct": "%"}}
GOOD: list[dict[str, Any]] = [
    {"sensor": "pm-1", "kind": "air.pm", "values": {"pm25": 41.5, "pm10": 60}},
    {"sensor": "pm-1", "kind": "air.pm", "values": {"pm10": 60, "pm25": 41.5}},  # other order
    {"sensor": "pm-2", "kind": "air.pm", "values": {"pm25": 3.25, "pm10": 7.0, "pm1": 1}},
    {"sensor": "bed-01", "kind": "hospital.bed", "values": {"occupied": 1}},
    {"sensor": "bed-02", "kind": "hospital.bed", "values": {"occupied": 0, "fault": 1}},
    {"sensor": "loop-1", "kind": "traffic.loop",
     "values": {"count": 12, "interval_s": 60.0, "occupancy_pct": 7.5}},
]
# JSON text put in place of a value: what orjson and json read differently, and the
# values the contract refuses.
VALUES = ["41.5", "-0.0", "0", "1e308", "1e400", "-1e400", "NaN", "Infinity", "1" + "0" * 30,
          "1" + "0" * 400, "18446744073709551615", "18446744073709551616",
          "-9223372036854775809", "9223372036854775807.0", "9.3e18", "-9.3e18", "true",
          '"41"', "null", "[1]", "2.2250738585072011e-308", "5e-324", "0.30000000000000004441"]
PARTS: list[dict[str, Any]] = [
    {"values": {"pm25": 1.0}},  # pm10 missing
    {"values": {"pm25": 1.0, "pm10": 2.0, "pm4": 3.0}},
    {"values": {}},
    {"sensor": "Not An Id"},
    {"sensor": ["pm-1"]},
    {"kind": "air.ozone"},
    {"seq": -1},
    {"seq": 2**63},
    {"seq": 2**64},
    {"seq": 1.0},
    {"seq": True},
    {"ts": "2026-11-18T09:00:01Z"},
    {"ts": "2026-11-18T09:00:01.250000+00:00"},
    {"ts": "2019-12-31T23:59:59.000000Z"},
    {"ts": "2026-11-20T09:00:01.000000Z"},  # more than a day after it was received
    {"ts": "not a time Z"},
    {"ts": 1795000000},
    {"flags": ["warmup", "nope"]},
    {"flags": [["warmup"]]},
    {"flags": [{}]},
    {"flags": "warmup"},
    {"flags": None},
    {"flags": []},
    {"flags": {}},
    {"flags": ["backlog", "warmup"]},
    {"extra": 1},
    {"extra": [[[[[[[[1]]]]]]]]},
]
# Whole payloads or envelope parts that orjson and json read differently, or that break
# the envelope.
ODD_PAYLOADS = [
    b"\xef\xbb\xbf",  # a BOM before the body: json takes it, orjson does not
    b'{"v":1,"v":1,',  # a duplicate key
]


def _reading(seq: int, base: dict[str, Any], part: dict[str, Any] | None, value: str | None) -> str:
    return reading_text(seq, base, part, value, f"2026-11-18T09:{seq % 60:02d}:01.{seq:06d}Z")


def _payload(readings: list[str], units: Any = None, envelope: str = "") -> bytes:
    return payload_text(readings, UNITS if units is None else units, SITE, NODE, envelope)


def _record(payload: bytes) -> JournalRecord:
    return JournalRecord("i0", 7, RECEIVED_NS, TOPIC, payload)


def _exact(out: tuple[NodeData | None, list[Point]]) -> str:
    """The decoded record with every value's type showing (1 == 1.0, but not here)."""
    data, points = out
    return repr((None if data is None else (data.key, data.received_ns, data.readings, data.status),
                 points))


def _both(payload: bytes, monkeypatch: pytest.MonkeyPatch) -> tuple[str, str]:
    """(decode_record as it is, decode_record with the shortcut turned off)."""
    fast = _exact(decode_record(_record(payload), 4096))
    with monkeypatch.context() as m:
        m.setattr(records, "_sound_readings", lambda *args: None)
        contract = _exact(decode_record(_record(payload), 4096))
    return fast, contract


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(picks=st.lists(st.tuples(st.sampled_from(range(len(GOOD))),
                                st.none() | st.sampled_from(range(len(PARTS))),
                                st.none() | st.sampled_from(VALUES)),
                      min_size=1, max_size=20),
       units_case=st.sampled_from(["good", "wrong_unit", "nested_units", "no_units"]),
       envelope=st.sampled_from(["", '"batch":"0a1b.12",', '"batch":12,', '"x":[[[[1]]]],',
                                 '"site":"hn-other",', '"v":2,']))
def test_every_payload_decodes_as_the_contract_decodes_it(
        picks: list[tuple[int, int | None, str | None]], units_case: str, envelope: str,
        monkeypatch: pytest.MonkeyPatch) -> None:
    units: Any = json.loads(json.dumps(UNITS))
    if units_case == "wrong_unit":
        units["air.pm"]["pm10"] = "mg/m3"
    elif units_case == "nested_units":
        units["air.co2"] = {"co2": ["ppm"]}
    elif units_case == "no_units":
        units = []
    readings = [_reading(seq, GOOD[g], None if p is None else PARTS[p], value)
                for seq, (g, p, value) in enumerate(picks)]
    fast, contract = _both(_payload(readings, units, envelope), monkeypatch)
    assert fast == contract


@pytest.mark.parametrize("value", VALUES)
def test_each_odd_value_alone_decodes_as_the_contract_decodes_it(
        value: str, monkeypatch: pytest.MonkeyPatch) -> None:
    payload = _payload([_reading(0, GOOD[0], None, None), _reading(1, GOOD[0], None, value)])
    fast, contract = _both(payload, monkeypatch)
    assert fast == contract


@pytest.mark.parametrize("payload", [
    ODD_PAYLOADS[0] + _payload([_reading(0, GOOD[0], None, None)]),
    _payload([_reading(0, GOOD[0], None, None)]).replace(b'{"v":1,', ODD_PAYLOADS[1], 1),
    _payload([_reading(0, GOOD[0], None, None).replace('"pm-1"', '"pm-1\\ud800"')]),
    # nested deeper than json's recursion limit and less deep than orjson's (1,024)
    _payload([_reading(0, GOOD[0], None, None)]).replace(b'"units"', b'"deep":' + b"[" * 1015
                                                         + b"]" * 1015 + b',"units"', 1),
    _payload([_reading(0, GOOD[0], {"deep": 0}, None).replace('"deep": 0', '"deep": ' + "[" * 1015
                                                               + "]" * 1015)]),
    _payload([_reading(0, GOOD[0], None, None)], {"air.pm": {"pm25": "ug/m3", "pm10": "ug/m3"},
                                                  "air.co2": {"co2": [[[[[[[[[[[[]]]]]]]]]]]]}}
             ).replace(b"[[[[[[[[[[[[", b"[" * 1015).replace(b"]]]]]]]]]]]]", b"]" * 1015),
    _payload([_reading(0, GOOD[0], None, None)]).replace(b'"units"', b'"deep":' + b"[" * 60_000
                                                         + b"]" * 60_000 + b',"units"', 1),
    _payload([_reading(0, GOOD[0], None, None)]).replace(b'"units"', b'"n":1' + b"0" * 5000
                                                         + b',"units"', 1),
    _payload([_reading(i, GOOD[0], None, None) for i in range(2001)]),
    _payload([]),
    b"[]",
    b"not json",
    b'{"v":1}',
], ids=["bom", "duplicate-key", "lone-surrogate", "nested-1015", "nested-1015-in-a-reading",
        "nested-1015-in-units", "nested-60000", "int-5000-digits",
        "too-many", "empty", "array", "not-json", "envelope-only"])
def test_odd_payloads_decode_as_the_contract_decodes_them(
        payload: bytes, monkeypatch: pytest.MonkeyPatch) -> None:
    fast, contract = _both(payload, monkeypatch)
    assert fast == contract


def test_the_city_s_messages_take_the_shortcut(monkeypatch: pytest.MonkeyPatch) -> None:
    """The benchmark city's messages are all sound: each one is decoded by the shortcut
    (else the tests above would pass with a shortcut that never applies), and gives what
    the contract's decoder gives."""
    workload = generate(4_000, now=datetime(2026, 6, 1, 12, tzinfo=UTC))  # the same city each run
    for i, m in enumerate(workload.messages):
        received = workload.last_ts_ns + i
        topic = m.topic.split("/")
        sound = records._sound_readings(m.payload, topic[2], topic[3], received)
        assert sound is not None
        expected = decode_batch(m.payload, site=topic[2], node=topic[3], now_ns=received)
        assert repr(sound) == repr((expected.readings, expected.numbering))
        assert not expected.rejected
