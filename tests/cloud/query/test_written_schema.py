"""The keys `cloud.query.written` gives a measurement nothing was stored in are the ones the
processor writes: every point its own code makes (a simulated city with detection on, every
optional field of the contract, dead letters, heartbeats, a drift, its own report) has
exactly the measurement, tags and field types said there, and every measurement, tag and
field said there is written by some point. The fields said to hold counts are float fields
that every such point fills with whole numbers."""

from __future__ import annotations

import math
from collections import defaultdict

import pytest

from cloud.logic.records import Point
from cloud.query import ROLLUPS
from cloud.query.catalog import tag_order
from cloud.query.written import COUNTS, WRITTEN, count_fields, written_schema
from urbanpulse.wire import KINDS

from .processor_points import Parsed, parse_line, parse_shapes, processor_points

Key = tuple[str, str]  # (retention policy, measurement)


@pytest.fixture(scope="module")
def points(tmp_path_factory: pytest.TempPathFactory) -> list[Point]:
    return processor_points(tmp_path_factory.mktemp("state"))


@pytest.fixture(scope="module")
def parsed(points: list[Point]) -> list[tuple[str, Parsed]]:
    return parse_shapes(points)


def test_every_point_has_the_written_keys_and_types(parsed: list[tuple[str, Parsed]]) -> None:
    wrong: set[str] = set()
    for rp, point in parsed:
        schema = written_schema(rp, point.measurement)
        if schema is None:
            wrong.add(f"{rp}.{point.measurement}: not in cloud.query.written")
            continue
        wrong.update(f"{rp}.{point.measurement}: tag {t!r} not in {schema.tags}"
                     for t in point.tags if t not in schema.tags)
        wrong.update(f"{rp}.{point.measurement}: field {f!r} written as {t}, said {schema.fields.get(f)}"
                     for f, t in point.fields.items() if schema.fields.get(f) != t)
    assert sorted(wrong) == []


def test_every_measurement_tag_and_field_written_is_written_by_some_point(
        parsed: list[tuple[str, Parsed]]) -> None:
    tags: dict[Key, set[str]] = defaultdict(set)
    fields: dict[Key, set[str]] = defaultdict(set)
    for rp, point in parsed:
        tags[(rp, point.measurement)].update(point.tags)
        fields[(rp, point.measurement)].update(point.fields)
    never = {f"{rp}.{name}": (sorted(set(s.tags) - tags[(rp, name)]),
                              sorted(set(s.fields) - fields[(rp, name)]))
             for (rp, name), s in WRITTEN.items()}
    assert {k: v for k, v in never.items() if v != ([], [])} == {}


def test_it_covers_every_kind_rollup_and_record_in_the_order_influxdb_lists_keys() -> None:
    names = {name for _, name in WRITTEN}
    assert names == ({k.measurement for k in KINDS.values()} | set(ROLLUPS)
                     | {"ledger", "events", "dead_letter", "node_status", "driver_status",
                        "processor"})
    for (rp, name), schema in WRITTEN.items():
        assert list(schema.fields) == sorted(schema.fields), (rp, name)
        assert list(schema.tags) == tag_order(sorted(schema.tags)), (rp, name)
        assert not schema.stored
    assert written_schema("raw", "ledger") is None  # written to agg_1h only
    assert written_schema("agg_1m", "air_quality") is None


def test_the_line_reader_tells_each_type_and_escape() -> None:
    text = (r'm\ 1\,x,a\,b=c\ d\=e,z=1 s="x, \"y\" z=1i",i=-3i,f=1e-05,b=t,B=FALSE,n=7,'
            r'e="" 1700000000000000000')
    assert parse_line(text) == Parsed("m 1,x", {"a,b": "c d=e", "z": "1"},
                                      {"s": "string", "i": "integer", "f": "float", "b": "boolean",
                                       "B": "boolean", "n": "float", "e": "string"})
    with pytest.raises(ValueError, match="could not convert string to float"):
        parse_line("m f=abc 1")



def test_the_fields_said_to_hold_counts_are_float_fields_written() -> None:
    for (rp, name), counts in COUNTS.items():
        schema = written_schema(rp, name)
        assert schema is not None, (rp, name)
        assert {f: schema.fields.get(f) for f in counts} == dict.fromkeys(counts, "float"), (rp, name)
    assert count_fields("agg_1h", "hospital_door") == {"count_min", "count_max", "count_last",
                                                       "glitches_min", "glitches_max", "glitches_last"}
    assert count_fields("raw", "air_pm") == frozenset()


def test_every_count_the_processor_writes_is_a_whole_number(points: list[Point]) -> None:
    """Of the simulated city (doors, loops, their sums, heartbeats) and every optional field:
    each field said to hold counts is written, and only with whole numbers."""
    seen: set[tuple[str, str, str]] = set()
    broken = []
    for rp, text in points:
        name = text.split(",", 1)[0]
        counts = count_fields(rp, name)
        if not counts:
            continue
        fields = text.rsplit(" ", 2)[1]  # these points' strings (flags, state) have no space or comma
        for key, value in (f.split("=", 1) for f in fields.split(",")):
            if key in counts:
                number = float(value)
                seen.add((rp, name, key))
                if not (math.isfinite(number) and number == int(number)):
                    broken.append((rp, text))
    assert broken == []
    assert seen == {(rp, name, f) for (rp, name), fs in COUNTS.items() for f in fs}
