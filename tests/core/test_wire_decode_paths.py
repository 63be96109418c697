"""decode_batch checks a (kind, field names) pair's names, units and required fields once
per batch and then only the values of later readings with the same fields: that shortcut
must accept and reject exactly what the reading-by-reading check does, with the same codes
and details."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.core.wire_text import payload_text, reading_text
from urbanpulse.wire import decode_batch
from urbanpulse.wire.payload import EARLIEST_TS_NS, parse_ts

UNITS = {"air.pm": {"pm25": "ug/m3", "pm10": "ug/m3", "pm1": "ug/m3"},
         "hospital.bed": {"occupied": "bool", "fault": "bool"},
         "hospital.door": {"count": "persons", "interval_s": "s", "glitches": "pulses"}}
GOOD: list[dict[str, Any]] = [
    {"sensor": "pm-1", "kind": "air.pm", "values": {"pm25": 41.5, "pm10": 60}},
    {"sensor": "pm-1", "kind": "air.pm", "values": {"pm10": 60, "pm25": 41.5}},  # other order
    {"sensor": "pm-2", "kind": "air.pm", "values": {"pm25": 3.25, "pm10": 7.0, "pm1": 1}},
    {"sensor": "bed-01", "kind": "hospital.bed", "values": {"occupied": 1}},
    {"sensor": "bed-02", "kind": "hospital.bed", "values": {"occupied": 0, "fault": 1}},
    {"sensor": "door-er", "kind": "hospital.door", "values": {"count": 3, "interval_s": 60}},
    {"sensor": "door-er", "kind": "hospital.door", "values": {"glitches": 2, "count": 0.0,
                                                              "interval_s": 60}},
]
# JSON text (not Python values): Infinity and NaN are what json.loads makes of them.
BAD_VALUES = ["Infinity", "-Infinity", "NaN", "true", '"41"', "null", "[1]", "1" + "0" * 400,
              "1e400", "-0.0", "0", "1e308", "2.5", "-3", "3.0", "9007199254740993"]
BAD_READING_PARTS: list[dict[str, Any]] = [
    {"values": {"pm25": 1.0}},  # pm10 missing
    {"values": {"pm25": 1.0, "pm10": 2.0, "pm4": 3.0}},  # unknown field
    {"values": {}},
    {"sensor": "Not An Id"},
    {"sensor": ["pm-1"]},
    {"kind": "air.ozone"},
    {"seq": -1},
    {"flags": ["warmup", "nope"]},
    {"flags": [["warmup"]]},  # unhashable: raised TypeError in `f in FLAGS` before
    {"flags": [{}]},
    {"flags": "warmup"},
    {"flags": None},
    {"flags": []},
    {"flags": ["backlog", "warmup"]},
]


def _reading(seq: int, base: dict[str, Any], part: dict[str, Any] | None, bad: str | None
             ) -> str:
    return reading_text(seq, base, part, bad, f"2026-11-28T09:{seq % 60:02d}:01.250000Z")


def _payload(readings: list[str], units: dict[str, Any]) -> bytes:
    return payload_text(readings, units, "hn-bachmai", "ward-1")


def _decoded(payload: bytes) -> tuple[list[Any], list[tuple[int, str, str]]]:
    batch = decode_batch(payload, site="hn-bachmai", node="ward-1")
    return ([(r.sensor, r.kind, r.ts_ns, r.seq, dict(r.values), list(r.values), r.flags)
             for r in batch.readings],
            [(r.index, r.code, r.detail) for r in batch.rejected])


def _one_by_one(readings: list[str], units: dict[str, Any]
                ) -> tuple[list[Any], list[tuple[int, str, str]]]:
    """Each reading in a batch of its own: no shortcut can apply."""
    good: list[Any] = []
    rejected: list[tuple[int, str, str]] = []
    for i, text in enumerate(readings):
        g, r = _decoded(_payload([text], units))
        good += g
        rejected += [(i, code, detail.replace("readings[0]", f"readings[{i}]", 1))
                     for _, code, detail in r]
    return good, rejected


@settings(max_examples=150, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(range(len(GOOD))),
                          st.none() | st.sampled_from(range(len(BAD_READING_PARTS))),
                          st.none() | st.sampled_from(BAD_VALUES)),
                min_size=1, max_size=30),
       st.booleans())
def test_a_batch_decodes_as_its_readings_do_one_by_one(
        picks: list[tuple[int, int | None, str | None]], wrong_unit: bool) -> None:
    units = json.loads(json.dumps(UNITS))
    if wrong_unit:
        units["air.pm"]["pm10"] = "mg/m3"
    readings = [_reading(seq, GOOD[g], None if p is None else BAD_READING_PARTS[p], bad)
                for seq, (g, p, bad) in enumerate(picks)]
    assert _decoded(_payload(readings, units)) == _one_by_one(readings, units)


def test_values_checked_once_still_reject_a_later_broken_value() -> None:
    readings = [_reading(0, GOOD[0], None, None), _reading(1, GOOD[0], None, "Infinity"),
                _reading(2, GOOD[0], None, "true"), _reading(3, GOOD[0], None, None)]
    good, rejected = _decoded(_payload(readings, UNITS))
    assert [g[3] for g in good] == [0, 3]
    assert rejected == [
        (1, "bad_value", "readings[1].values.pm25: must be a finite number, got inf"),
        (2, "bad_value", "readings[2].values.pm25: must be a finite number, got True")]


def test_a_count_checked_once_still_rejects_a_later_count_that_is_not_whole() -> None:
    readings = [_reading(0, GOOD[5], None, None), _reading(1, GOOD[5], None, "2.5"),
                _reading(2, GOOD[5], None, "-3"), _reading(3, GOOD[5], None, "4.0")]
    good, rejected = _decoded(_payload(readings, UNITS))
    assert [g[3] for g in good] == [0, 3]
    assert [(i, code) for i, code, _ in rejected] == [(1, "bad_count"), (2, "bad_count")]
    assert "readings[1].values.count: a count of persons" in rejected[0][2]


def test_a_flag_that_is_no_string_is_rejected_not_raised() -> None:
    readings = [_reading(0, GOOD[0], {"flags": [["warmup"]]}, None),
                _reading(1, GOOD[0], {"flags": [{"a": 1}]}, None),
                _reading(2, GOOD[0], {"flags": ["warmup"]}, None)]
    good, rejected = _decoded(_payload(readings, UNITS))
    assert [(g[3], g[6]) for g in good] == [(2, ("warmup",))]
    assert [(i, code) for i, code, _ in rejected] == [(0, "bad_flags"), (1, "bad_flags")]


TS_TEXTS = ["2026-11-28T09:30:01.250000Z", "2026-11-28T09:30:01Z", "2026-11-28T09:30Z",
            "20261128T093001Z", "2026-11-28T09:30:01.5Z", "2026-11-28T09:30:01.250000",
            "2026-11-28T09:30:01+00:00", "2026-11-28T25:30:01Z", "2026-11-28T09:30:01+07:00Z",
            "Z", "", "2019-12-31T23:59:59.999999Z", "2020-01-01T00:00:00Z"]


@pytest.mark.parametrize("ts", [*TS_TEXTS, 1764322201, None, ["2026-11-28T09:30:01Z"]])
def test_a_reading_stamp_is_read_as_parse_ts_reads_it(ts: object) -> None:
    reading = json.dumps({"sensor": "pm-1", "kind": "air.pm", "ts": ts, "seq": 1,
                          "values": {"pm25": 1.0, "pm10": 2.0}})
    good, rejected = _decoded(_payload([reading], UNITS))
    expected = _parsed(ts)
    if isinstance(expected, str):
        assert rejected == [(0, "bad_ts", f"readings[0].ts: {expected}")]
    elif expected < EARLIEST_TS_NS:
        assert [code for _, code, _ in rejected] == ["ts_out_of_range"]
    else:
        assert [g[2] for g in good] == [expected]


def _parsed(ts: object) -> int | str:
    """parse_ts's stamp, or its error message."""
    try:
        return parse_ts(ts)
    except ValueError as exc:
        return str(exc)
