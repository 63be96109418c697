"""Quoting, injection, argument checks before any I/O, and InfluxDB's errors translated."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from cloud.errors import CloudError
from cloud.logic.lines import line
from cloud.query import BadArgument, CityData, QueryError
from cloud.query.influxql import ident, literal, select
from cloud.query.timerange import TimeRange
from urbanpulse.clock import to_epoch_ns
from urbanpulse.errors import UrbanpulseError
from urbanpulse.influx_http import InfluxError, InfluxHTTP
from urbanpulse.stack import StackInfo
from urbanpulse.stack.process import free_ports

from .conftest import City

T0 = datetime(2026, 1, 1, tzinfo=UTC)
T1 = T0 + timedelta(hours=1)


def test_identifiers_and_literals_are_escaped() -> None:
    assert ident('a"b') == r'"a\"b"'
    assert ident("back\\slash") == r'"back\\slash"'
    assert literal("it's") == r"'it\'s'"
    assert literal("x\\' OR '1'='1") == r"'x\\\' OR \'1\'=\'1'"
    assert literal("two\nlines") == r"'two\nlines'"


def test_select_text() -> None:
    assert select("raw", "air_pm", ["pm25"], {"site": ("a",), "node": ("n1", "n'2")}, 5, 9) == (
        "SELECT \"pm25\" FROM \"raw\".\"air_pm\" WHERE time >= 5 AND time < 9 AND "
        "\"site\" = 'a' AND (\"node\" = 'n1' OR \"node\" = 'n\\'2') GROUP BY *")


@pytest.mark.stack
@pytest.mark.parametrize("suffix", ["' OR '1'='1", "' OR site =~ /.*/ --", "\\' OR '1'='1",
                                    "'; DROP MEASUREMENT air_pm; SELECT * FROM air_pm WHERE '1'='1"])
def test_injection_in_a_tag_value_matches_nothing(reader: InfluxHTTP, city: City, suffix: str) -> None:
    data = CityData(reader, "urbanpulse")
    assert len(data.readings("air.pm", city.base, city.base + timedelta(hours=1), site=city.site)) == 5
    frame = data.readings("air.pm", city.base, city.base + timedelta(hours=1), site=city.site + suffix)
    assert frame.empty


@pytest.mark.stack
def test_tag_values_with_quotes_and_backslashes_are_found_exactly(
        db_ready: StackInfo, reader: InfluxHTTP, city: City,
        influx_client: Callable[[str | None], InfluxHTTP]) -> None:
    odd = city.site + "-o'k\\\"x"
    at = to_epoch_ns(city.at(30))
    influx_client("writer").write(
        line("air_pm", {"site": odd, "node": "n", "sensor": "s", "kind": "air.pm"},
             {"pm25": 3.5, "seq": 1}, at).encode(), db=db_ready.database, rp="raw")
    data = CityData(reader, db_ready.database)
    frame = data.readings("air.pm", city.base, city.at(60), site=odd)
    assert frame["site"].tolist() == [odd]
    assert frame["pm25"].tolist() == [3.5]
    assert data.readings("air.pm", city.base, city.at(60), site=city.site + "-o'k").empty


def _closed_port_client() -> InfluxHTTP:
    (port,) = free_ports(1)
    return InfluxHTTP(f"http://127.0.0.1:{port}", "reader", "x", timeout_s=2)


BAD_CALLS: list[tuple[str, Callable[[CityData], Any]]] = [
    ("start", lambda d: d.readings("air.pm", datetime(2026, 1, 1), T1)),
    ("end", lambda d: d.readings("air.pm", T0, datetime(2026, 1, 2))),
    ("start", lambda d: d.readings("air.pm", T1, T0)),
    ("start", lambda d: d.readings("air.pm", T0, T0)),
    ("start", lambda d: d.readings("air.pm", "2026-01-01", T1)),  # type: ignore[arg-type]
    ("kind", lambda d: d.readings("air.ozone", T0, T1)),
    ("kind", lambda d: d.aggregates("hospital_bed", T0, T1)),
    ("resolution", lambda d: d.aggregates("air.pm", T0, T1, resolution="5m")),
    ("rp", lambda d: d.measurement("air_pm", T0, T1, rp="autogen")),
    ("measurement", lambda d: d.measurement("", T0, T1)),
    ("rollup", lambda d: d.rollup("bed_turnover", T0, T1)),
    ("resolution", lambda d: d.rollup("air_quality", T0, T1, resolution="1m")),
    ("type", lambda d: d.events(T0, T1, type="meteor")),
    ("site", lambda d: d.readings("air.pm", T0, T1, site=[])),
    ("site", lambda d: d.readings("air.pm", T0, T1, site="")),
    ("node", lambda d: d.ledger(T0, T1, node=["n1", 7])),  # type: ignore[list-item]
    ("fields", lambda d: d.readings("air.pm", T0, T1, fields="pm25")),
    ("fields", lambda d: d.readings("air.pm", T0, T1, fields=["pm25", "pm25"])),
]


@pytest.mark.parametrize(("argument", "call"), BAD_CALLS)
def test_bad_arguments_are_refused_before_any_io(argument: str, call: Callable[[CityData], Any]) -> None:
    # Nothing listens on the client's port: a call reaching the network would fail with
    # "did not answer" instead.
    data = CityData(_closed_port_client(), "urbanpulse")
    with pytest.raises(BadArgument) as err:
        call(data)
    assert err.value.argument == argument
    assert str(err.value).startswith(f"{argument}: ")
    assert data.requests == 0


def test_a_good_call_does_reach_the_network() -> None:
    data = CityData(_closed_port_client(), "urbanpulse")
    with pytest.raises(QueryError, match="did not answer") as err:
        data.readings("air.pm", T0, T1)
    assert not isinstance(err.value, BadArgument)
    assert isinstance(err.value.__cause__, InfluxError)


def test_naive_times_message() -> None:
    with pytest.raises(BadArgument, match="naive: give a timezone"):
        CityData(_closed_port_client(), "urbanpulse").events(datetime(2026, 1, 1), T1)


def test_other_offsets_are_the_same_instant() -> None:
    hanoi = T0.astimezone(ZoneInfo("Asia/Ho_Chi_Minh"))
    assert hanoi.hour == 7
    assert TimeRange.of(hanoi, T1) == TimeRange.of(T0, T1)
    assert TimeRange.of(datetime.fromisoformat("2026-01-01T07:00:00+07:00"), T1) == TimeRange.of(T0, T1)


@pytest.mark.stack
def test_an_unknown_field_names_the_stored_ones(reader: InfluxHTTP, city: City) -> None:
    with pytest.raises(BadArgument, match=r"'pm3' not stored in raw.air_pm \(stored: flags, pm10, "):
        CityData(reader, "urbanpulse").readings("air.pm", city.base, city.at(60), fields=["pm3"])


@pytest.mark.stack
def test_wrong_password_is_a_clear_query_error(db_ready: StackInfo, city: City) -> None:
    creds = db_ready.influx("reader")
    with (InfluxHTTP(creds.url, creds.username, "not-the-password") as client,
          pytest.raises(QueryError, match="refused the credentials") as err):
        CityData(client, db_ready.database).ledger(city.base, city.at(60))
    assert isinstance(err.value.__cause__, InfluxError)
    assert err.value.__cause__.status == 401
    assert isinstance(err.value, CloudError)
    assert isinstance(err.value, UrbanpulseError)


@pytest.mark.stack
def test_a_database_the_reader_may_not_read(reader: InfluxHTTP, city: City) -> None:
    with pytest.raises(QueryError, match="may not read database 'elsewhere'"):
        CityData(reader, "elsewhere").ledger(city.base, city.at(60))


@pytest.mark.parametrize(("argument", "call"), [
    ("start", lambda d: d.readings("air.pm", datetime(1, 1, 1, tzinfo=UTC), T1)),
    ("end", lambda d: d.readings("air.pm", T0, datetime(9999, 1, 1, tzinfo=UTC))),
])
def test_times_influxdb_cannot_hold_are_refused(argument: str, call: Callable[[CityData], Any]) -> None:
    data = CityData(_closed_port_client(), "urbanpulse")
    with pytest.raises(BadArgument, match="outside the times InfluxDB holds") as err:
        call(data)
    assert err.value.argument == argument
    assert data.requests == 0


@pytest.mark.stack
@pytest.mark.parametrize("value", ["/.*/", ".*", "x\\", "\\", "two\nlines", "a\"b", "\\'", "'",
                                   "x' OR time > 0 OR site = 'y"])
def test_odd_tag_values_match_nothing_and_raise_nothing(reader: InfluxHTTP, city: City,
                                                        value: str) -> None:
    data = CityData(reader, "urbanpulse")
    start, end = city.base, city.base + timedelta(hours=1)
    assert data.readings("air.pm", start, end, site=[value]).empty
    assert data.readings("air.pm", start, end, site=[city.site + value]).empty
    # beside a real value, the odd one changes nothing
    assert len(data.readings("air.pm", start, end, site=[value, city.site])) == 5


@pytest.mark.stack
@pytest.mark.parametrize("name", ['air_pm" WHERE 1=1; DROP MEASUREMENT "air_pm', "air_pm\\",
                                  'air_pm"', "air_pm\n"])
def test_identifiers_are_names_not_statements(reader: InfluxHTTP, city: City, name: str) -> None:
    data = CityData(reader, "urbanpulse")
    start, end = city.base, city.base + timedelta(hours=1)
    assert data.measurement(name, start, end).empty
    with pytest.raises(BadArgument, match=r"not stored in raw\.air_pm"):
        data.readings("air.pm", start, end, fields=["pm25", name])
    with pytest.raises(BadArgument, match=r"not a tag of raw\.air_pm") as err:
        data.measurement("air_pm", start, end, tags={name: "x"})
    assert err.value.argument == name
    assert len(data.readings("air.pm", start, end, site=city.site)) == 5


@pytest.mark.stack
def test_the_reader_cannot_change_anything(db_ready: StackInfo, reader: InfluxHTTP, city: City) -> None:
    point = line("air_pm", {"site": city.site, "node": "n", "sensor": "s", "kind": "air.pm"},
                 {"pm25": 1.0, "seq": 1}, to_epoch_ns(city.at(33)))
    with pytest.raises(InfluxError) as err:
        reader.write(point.encode(), db=db_ready.database, rp="raw")
    assert err.value.status == 403
    for statement in ('DROP MEASUREMENT "air_pm"',
                      'SELECT * INTO "raw"."copied" FROM "raw"."air_pm" GROUP BY *',
                      f"DELETE FROM \"air_pm\" WHERE \"site\" = '{city.site}'"):
        with pytest.raises(InfluxError):
            reader.query(statement, db=db_ready.database, post=True)
    assert len(CityData(reader, db_ready.database).readings(
        "air.pm", city.base, city.base + timedelta(hours=1), site=city.site)) == 5
