"""urbanpulse.influx_http's typed answers and their `partial` flags, on real InfluxDB 1.6
servers: the `limited` one (max-row-limit LIMIT) and the session's (no limit).

What these pin down decides how the query API reads: a one-piece answer's flags do not
say whether rows are missing, a streamed answer's do (cloud.query.city_data)."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from bench.influx.server import Server
from cloud.logic.lines import line
from urbanpulse.influx_http import InfluxError, InfluxHTTP
from urbanpulse.stack import StackInfo

from .conftest import City
from .cutting_proxy import cutting_proxy
from .scratch_influx import BIG, LIMIT, T0_NS, S

pytestmark = pytest.mark.stack
PM = f'SELECT "pm25" FROM "raw"."air_pm" WHERE time < {T0_NS + 60 * S} GROUP BY "sensor"'
BIG_Q = 'SELECT "v" FROM "raw"."big"'


def test_one_piece_cut_between_two_series_has_no_flag(limited: InfluxHTTP) -> None:
    """The answer stops after pm-0's 7 rows (the limit) and nothing says so."""
    (result,) = limited.results(f"{PM}; SHOW FIELD KEYS", db="d")
    assert [(s.tags, len(s.values), s.partial) for s in result.series] == [
        ({"sensor": "pm-0"}, LIMIT, False)]
    assert result.complete
    # only the statement after it being dropped tells
    assert result.statement_id == 0


def test_one_piece_cut_inside_a_series_is_flagged(limited: InfluxHTTP) -> None:
    (result,) = limited.results(BIG_Q, db="d")
    assert [(len(s.values), s.partial) for s in result.series] == [(LIMIT, True)]
    assert not result.complete


def test_one_piece_whole_series_longer_than_10000_rows_is_flagged_anyway(
        db_ready: StackInfo, city: City, reader: InfluxHTTP,
        influx_client: Callable[[str | None], InfluxHTTP]) -> None:
    """No limit on the session's server: every row comes, yet the series says partial."""
    lines = [line("q_long", {"site": city.site}, {"v": i}, T0_NS + i * S) for i in range(10_001)]
    influx_client("writer").write("\n".join(lines).encode(), db=db_ready.database, rp="raw")
    q = f'SELECT "v" FROM "raw"."q_long" WHERE "site" = \'{city.site}\''
    (result,) = reader.results(q, db=db_ready.database)
    assert [(len(s.values), s.partial) for s in result.series] == [(10_001, True)]
    (streamed,) = reader.results(q, db=db_ready.database, chunk_size=10_000)
    assert [(len(s.values), s.partial) for s in streamed.series] == [(10_001, False)]
    assert streamed.complete


def test_a_streamed_answer_is_joined_whole_past_the_row_limit(limited: InfluxHTTP) -> None:
    # pieces of 4 rows: each sensor's series comes in two pieces, joined again here
    pm, keys = limited.results(f"{PM}; SHOW FIELD KEYS FROM \"raw\".\"air_pm\"", db="d",
                               chunk_size=4)
    assert [(s.tags["sensor"], [v for _, v in s.values]) for s in pm.series] == [
        (f"pm-{k}", [i for i in range(20) if i % 3 == k]) for k in range(3)]
    assert [r.statement_id for r in (pm, keys)] == [0, 1]
    assert pm.complete
    assert keys.complete
    assert keys.series[0].values == [["pm25", "float"], ["seq", "integer"]]
    (big,) = limited.results(BIG_Q, db="d", chunk_size=10_000)
    assert [[v for _, v in s.values] for s in big.series] == [list(range(BIG))]
    assert big.complete


def test_a_stream_that_ends_early_keeps_its_flag(limited_server: Server) -> None:
    with cutting_proxy(limited_server.url(), keep=3) as url, \
            InfluxHTTP(url, "admin", limited_server.password("admin")) as cut:
        (result,) = cut.results(PM, db="d", chunk_size=4)
    # sensor pm-0 whole (two pieces), then the first piece of pm-1, and the stream stops
    assert [(s.tags["sensor"], len(s.values), s.partial) for s in result.series] == [
        ("pm-0", 7, False), ("pm-1", 4, True)]
    assert result.partial
    assert not result.complete


def test_an_error_in_a_later_statement_of_a_stream_is_raised(limited: InfluxHTTP) -> None:
    with pytest.raises(InfluxError, match="retention policy not found: nope") as failed:
        limited.results(f'{BIG_Q}; SELECT * FROM "nope"."x"', db="d", chunk_size=10_000)
    assert failed.value.status == 200


def test_the_dict_answer_is_unchanged(limited: InfluxHTTP) -> None:
    series = limited.query(f"{PM}; SHOW FIELD KEYS FROM \"raw\".\"air_pm\"", db="d")
    assert series == [{"name": "air_pm", "tags": {"sensor": "pm-0"}, "columns": ["time", "pm25"],
                       "values": [[T0_NS + i * S, i] for i in range(0, 20, 3)]}]


@pytest.mark.parametrize("size", [0, -1, True, 2.5])
def test_a_chunk_size_that_is_no_positive_integer_is_refused(limited: InfluxHTTP,
                                                            size: object) -> None:
    with pytest.raises(ValueError, match="chunk_size must be a positive integer"):
        limited.results(BIG_Q, db="d", chunk_size=size)  # type: ignore[arg-type]


def test_a_stream_past_max_rows_is_read_no_further(limited: InfluxHTTP) -> None:
    limited.query("SHOW DATABASES")  # a connection open before
    opened = limited.connections_opened
    (big,) = limited.results(BIG_Q, db="d", chunk_size=1000, max_rows=2500)
    # three pieces of the 13: reading stopped once past 2,500 rows, the flags say so
    assert [[v for _, v in s.values] for s in big.series] == [list(range(3000))]
    assert big.series[0].partial
    assert not big.complete
    # the rest of that answer is not taken for the next one: its connection was closed
    (again,) = limited.results(BIG_Q, db="d", chunk_size=1000, max_rows=BIG)
    assert [[v for _, v in s.values] for s in again.series] == [list(range(BIG))]
    assert again.complete
    assert limited.connections_opened == opened + 1


@pytest.mark.parametrize(("chunk_size", "max_rows"), [(None, 10), (10, 0), (10, True)])
def test_max_rows_needs_a_stream_and_a_positive_integer(limited: InfluxHTTP, chunk_size: int | None,
                                                        max_rows: object) -> None:
    with pytest.raises(ValueError, match="max_rows must be a positive integer"):
        limited.results(BIG_Q, db="d", chunk_size=chunk_size, max_rows=max_rows)  # type: ignore[arg-type]


def test_an_empty_answer_is_an_error_not_one_without_rows(limited_server: Server) -> None:
    """InfluxDB answers every statement, with rows or not: a 200 with nothing in it (a proxy
    that dropped the body) is no answer, as it was before answers were streamed."""
    with cutting_proxy(limited_server.url(), keep=0) as url, \
            InfluxHTTP(url, "admin", limited_server.password("admin")) as cut:
        with pytest.raises(InfluxError, match="answer is empty"):
            cut.query(PM, db="d")
        with pytest.raises(InfluxError, match="answer is empty"):
            cut.results(PM, db="d", chunk_size=4)
