"""The query CSV read back typed (cloud.query.read_csv): frames of every dtype the API gives,
written chunk by chunk as `urbanpulse query` writes them, come back equal, the empty string
apart from a missing one; a file and a sidecar that do not belong together are refused."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cloud.query import BadArgument, read_csv
from cloud.query.typed_csv import sidecar_path, sidecar_text, write_frames

DTYPES = {"site": "object", "text": "object", "count": "Int64", "value": "float64",
          "flag": "boolean"}
texts = st.none() | st.text(alphabet=st.characters(exclude_categories=["Cs"]), max_size=12) \
    | st.sampled_from(["", '""', ",", '","', "\r\n", "\r", "NaN", "null", " "])
rows = st.tuples(
    st.integers(-(2**62), 2**62),  # the time in ns
    st.none() | st.sampled_from(["s1", "7", "NA"]),  # a tag: never empty in InfluxDB
    texts,
    st.none() | st.integers(-(2**63), 2**63 - 1),
    st.none() | st.floats(allow_nan=False) | st.sampled_from([float("inf"), float("-inf")]),
    st.none() | st.booleans(),
)


def frame_of(part: list[tuple[object, ...]]) -> pd.DataFrame:
    times = [r[0] for r in part]
    index = pd.DatetimeIndex(pd.to_datetime(pd.Series(times, dtype="int64").to_numpy(), unit="ns",
                                            utc=True), name="time")
    columns = list(zip(*part, strict=True))[1:] if part else [()] * len(DTYPES)
    data = {name: pd.Series(list(values), dtype=dtype, index=index)
            for (name, dtype), values in zip(DTYPES.items(), columns, strict=True)}
    frame = pd.DataFrame(data, index=index)
    frame["value"] = frame["value"].astype("float64")  # None -> NaN, as the API gives it
    return frame


def written(frames: list[pd.DataFrame]) -> tuple[str, str]:
    out = io.StringIO()
    n, dtypes = write_frames(iter(frames), out)
    return out.getvalue(), sidecar_text(dtypes, n)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.lists(rows, max_size=6), min_size=1, max_size=3))
def test_chunks_read_back_equal(chunks: list[list[tuple[object, ...]]]) -> None:
    frames = [frame_of(c) for c in chunks]
    text, _ = written(frames)
    back = read_csv(io.StringIO(text), DTYPES)
    whole = pd.concat(frames) if any(len(f) for f in frames) else frames[0]
    pd.testing.assert_frame_equal(back, whole, check_exact=True)
    # the missing strings are None and the empty ones "", cell by cell
    assert [v if v is None else str(v) for v in back["text"]] == \
        [v if v is None else str(v) for v in whole["text"]]


def test_an_empty_string_is_a_quoted_empty_cell_that_plain_readers_read_as_empty() -> None:
    frame = frame_of([(1, "s1", "", 1, 1.0, True), (2, "s1", None, None, None, None)])
    text, _ = written([frame])
    assert text.splitlines()[1:] == ['1970-01-01T00:00:00.000000001Z,s1,"",1,1.0,True',
                                     "1970-01-01T00:00:00.000000002Z,s1,,,,"]
    # a spreadsheet's or the csv module's reading: two empty cells
    assert [r[2] for r in csv.reader(io.StringIO(text))][1:] == ["", ""]
    assert read_csv(io.StringIO(text), DTYPES)["text"].tolist() == ["", None]


def test_the_sidecar_beside_the_file_is_found(tmp_path: Path) -> None:
    frame = frame_of([(5, "s1", "a", 2**63 - 1, 0.1, False)])
    text, sidecar = written([frame])
    path = tmp_path / "x.csv"
    path.write_text(text, encoding="utf-8")
    sidecar_path(path).write_text(sidecar, encoding="utf-8")
    assert json.loads(sidecar)["columns"] == DTYPES
    pd.testing.assert_frame_equal(read_csv(path), frame, check_exact=True)
    pd.testing.assert_frame_equal(read_csv(str(path)), frame, check_exact=True)


def test_a_file_without_its_sidecar_says_how_to_get_one(tmp_path: Path) -> None:
    path = tmp_path / "x.csv"
    path.write_text("time,a\n", encoding="utf-8")
    with pytest.raises(BadArgument, match=r"x\.csv\.dtypes\.json: No such file.*-o FILE") as err:
        read_csv(path)
    assert err.value.argument == "dtypes"
    with pytest.raises(BadArgument, match="a buffer has no sidecar"):
        read_csv(io.StringIO("time,a\n"))


def test_a_file_cut_short_or_not_the_sidecars_is_refused(tmp_path: Path) -> None:
    frame = frame_of([(1, "s1", "a", 1, 1.0, True), (2, "s1", "b", 2, 2.0, False)])
    text, sidecar = written([frame])
    path = tmp_path / "x.csv"
    sidecar_path(path).write_text(sidecar, encoding="utf-8")
    path.write_text("".join(text.splitlines(keepends=True)[:2]), encoding="utf-8")
    with pytest.raises(BadArgument, match="1 rows, where its dtypes sidecar says 2"):
        read_csv(path)
    path.write_text(text.replace("time,site,", "time,place,"), encoding="utf-8")
    with pytest.raises(BadArgument, match=r"columns \['place', .* are not the ones"):
        read_csv(path)


@pytest.mark.parametrize(("sidecar", "message"), [
    ("{", "not JSON"),
    ('{"columns": {}, "rows": 0}', "not a dtypes sidecar"),
    ('{"format": "urbanpulse-query-csv/1", "columns": {"a": "int"}, "rows": 0}',
     "column 'a' has dtype 'int'"),
    ('{"format": "urbanpulse-query-csv/1", "columns": {"a": "Int64"}}', "needs 'columns'"),
])
def test_a_sidecar_that_is_not_one_is_refused(tmp_path: Path, sidecar: str, message: str) -> None:
    path = tmp_path / "x.csv"
    path.write_text("time,a\n", encoding="utf-8")
    sidecar_path(path).write_text(sidecar, encoding="utf-8")
    with pytest.raises(BadArgument, match=message):
        read_csv(path)


@pytest.mark.parametrize(("text", "dtypes"), [
    ("time,a\n2024-01-01T00:00:00.000000000Z,abc\n", {"a": "Int64"}),
    ("time,a\n2024-01-01T00:00:00.000000000Z,abc\n", {"a": "float64"}),
    ("time,a\n2024-01-01T00:00:00.000000000Z,abc\n", {"a": "boolean"}),
    ("time,a\n2024-01-01T00:00:00.000000000Z,1.5\n", {"a": "Int64"}),
    ("time,a\n2024-01-01T00:00:00.000000000Z,1,2\n", {"a": "Int64"}),
    ("a,b\n1,2\n", {"b": "Int64"}),
    ("", {"a": "Int64"}),
])
def test_cells_the_dtypes_do_not_fit_are_a_bad_argument(text: str, dtypes: dict[str, str]) -> None:
    """A sidecar with the right columns and rows but another file's types (or a file that
    is no query CSV) is refused as such, not with whatever pandas raised on the way."""
    with pytest.raises(BadArgument, match="does not read as") as refused:
        read_csv(io.StringIO(text), dtypes)
    assert refused.value.argument == "path_or_buffer"


def test_empty_and_missing_strings_are_told_apart_wherever_the_time_column_is() -> None:
    """A file whose columns were reordered (time not first) keeps "" apart from missing."""
    text = 'a,time,b\n"",2024-01-01T00:00:00.000000000Z,\n,2024-01-01T00:00:01.000000000Z,""\n'
    frame = read_csv(io.StringIO(text), {"a": "object", "b": "object"})
    assert frame["a"].tolist() == ["", None]
    assert frame["b"].tolist() == [None, ""]
