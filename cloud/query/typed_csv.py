"""The CSV that `urbanpulse query` writes, and `read_csv`, which reads it back with its dtypes.

The CSV stays plain for spreadsheets: one header row, times as ISO 8601 UTC with nine
digits, a missing value as an empty cell. Two things only the file's writer knows travel
beside it or in it:
- the dtypes, in a small JSON sidecar (`<file>.dtypes.json`): a column's type cannot be read
  from its cells (a tag "7", an all-missing column, a float stored as 1);
- an empty string is written `""`, a missing one as nothing: a spreadsheet shows both as
  an empty cell, `read_csv` tells them apart.
"""

from __future__ import annotations

import io
import json
import re
import secrets
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import IO, Any, TextIO

import pandas as pd

from cloud.query.errors import BadArgument

SIDECAR_SUFFIX = ".dtypes.json"
FORMAT = "urbanpulse-query-csv/1"
INDEX = "time"
INDEX_DTYPE = "datetime64[ns, UTC]"
DTYPES = ("float64", "Int64", "boolean", "object")
# One CSV field: quoted (quotes inside doubled) or bare.
_FIELD = re.compile(r'"(?:[^"]|"")*"|[^,"\r\n]*')


def sidecar_path(csv_path: Path) -> Path:
    return csv_path.with_name(csv_path.name + SIDECAR_SUFFIX)


def iso_times(index: pd.DatetimeIndex) -> pd.Index:
    """UTC stamps as ISO 8601 with all nine digits of the nanoseconds and a Z, the same in
    every chunk (pandas writes only the digits a frame needs, so chunks written one by one
    would mix formats that `read_csv(parse_dates=...)` then leaves unparsed)."""
    ns = index.as_unit("ns").asi8 % 1_000_000_000
    return pd.Index(index.strftime("%Y-%m-%dT%H:%M:%S.") + pd.Index(ns).map("{:09d}Z".format),
                    name=index.name)


def csv_text(frame: pd.DataFrame, header: bool) -> str:
    """The frame as CSV: its empty strings as `""`, its missing values as nothing, and any
    string holding a carriage return quoted (Python's csv writer quotes a field for a line
    feed but not for a lone CR, which readers then take for the end of a row)."""
    framed = frame.set_axis(iso_times(frame.index), axis="index")
    strings = [c for c in frame.columns if frame[c].dtype == object]
    empty = {c: framed[c].eq("").to_numpy(dtype=bool) for c in strings}
    empty = {c: e for c, e in empty.items() if e.any()}
    with_cr = [c for c in strings if framed[c].str.contains("\r", regex=False).fillna(False).any()]
    if not empty and not with_cr:
        text: str = framed.to_csv(header=header)
        return text
    # Marks no cell holds stand for what pandas would write wrong until it has written:
    # "" (written as nothing, like None) and CR (a LF beside it makes pandas quote the cell).
    cells = pd.concat([framed[c].dropna().astype(str) for c in strings])
    mark = _unused_mark(cells, [str(c) for c in frame.columns])
    empty_mark, cr_mark = f"{mark}e", f"\n{mark}r"
    changed = {str(c): framed[c].mask(e, empty_mark) for c, e in empty.items()}
    for c in with_cr:
        column = changed.get(str(c), framed[c])
        changed[str(c)] = column.str.replace("\r", cr_mark, regex=False)
    marked: str = framed.assign(**changed).to_csv(header=header)
    return marked.replace(cr_mark, "\r").replace(empty_mark, '""')


def _unused_mark(cells: pd.Series, names: list[str]) -> str:
    while True:
        mark = f"mark{secrets.token_hex(12)}"
        if not any(mark in n for n in names) and not cells.str.contains(mark, regex=False).any():
            return mark


def write_frames(frames: Iterator[pd.DataFrame], out: TextIO) -> tuple[int, dict[str, str]]:
    """Chunk by chunk, so a long range never sits in memory whole (a chunk with no rows
    after the first writes nothing). Returns the rows and the columns' dtypes."""
    rows = 0
    dtypes: dict[str, str] = {}
    for i, frame in enumerate(frames):
        if i == 0:
            dtypes = {str(c): str(t) for c, t in frame.dtypes.items()}
        if i == 0 or len(frame):
            out.write(csv_text(frame, header=i == 0))
        rows += len(frame)
    return rows, dtypes


def sidecar_text(dtypes: Mapping[str, str], rows: int) -> str:
    return json.dumps({"format": FORMAT, "index": {INDEX: INDEX_DTYPE}, "columns": dict(dtypes),
                       "rows": rows}, indent=1) + "\n"


def read_csv(path_or_buffer: str | Path | IO[str],
             dtypes: str | Path | Mapping[str, str] | None = None) -> pd.DataFrame:
    """A CSV written by `urbanpulse query`, back as the frame the API gave: a `time` index of
    UTC datetimes (datetime64[ns, UTC]), the columns in order with their dtypes, a missing
    value as None / NaN / <NA>, an empty string as "".

    `dtypes`: the sidecar's path, or a mapping column -> dtype ("float64", "Int64",
    "boolean", "object"); by default the sidecar beside the file (`<file>.dtypes.json`),
    which `urbanpulse query -o FILE` writes (`--dtypes FILE` when writing to stdout). With a
    sidecar, the file must have its columns and its number of rows."""
    text = _text(path_or_buffer)
    columns, rows = _dtypes(path_or_buffer, dtypes)
    try:
        frame = pd.read_csv(io.StringIO(text), index_col=INDEX, keep_default_na=False,
                            na_values={c: [""] for c, t in columns.items() if t != "object"},
                            dtype={INDEX: object, **columns})
    except (ValueError, TypeError, KeyError, pd.errors.ParserError,
            pd.errors.EmptyDataError) as exc:
        # cells the dtypes do not fit (another file's sidecar), no `time` column, a row with
        # more cells than the header, no header at all
        raise BadArgument("path_or_buffer", f"does not read as a query CSV with these dtypes "
                                            f"({', '.join(f'{c}: {t}' for c, t in columns.items())}"
                                            f"): {type(exc).__name__}: {exc}") from exc
    if list(frame.columns) != list(columns):
        raise BadArgument("dtypes", f"the file's columns {list(frame.columns)} are not the "
                                    f"ones its dtypes name {list(columns)}")
    if rows is not None and len(frame) != rows:
        raise BadArgument("path_or_buffer", f"{len(frame)} rows, where its dtypes sidecar says "
                                            f"{rows} were written: not the file it describes, "
                                            "or cut short")
    try:
        times = pd.to_datetime(frame.index, utc=True, format="ISO8601").as_unit("ns")
    except (ValueError, TypeError) as exc:
        raise BadArgument("path_or_buffer", f"a time that is not ISO 8601: {exc}") from exc
    frame.index = pd.DatetimeIndex(times, name=INDEX)
    strings = [c for c, t in columns.items() if t == "object"]
    return _strings(frame, strings, text)


def _text(source: str | Path | IO[str]) -> str:
    if isinstance(source, str | Path):
        try:
            return Path(source).read_text(encoding="utf-8")
        except OSError as exc:
            raise BadArgument("path_or_buffer", f"{source}: {exc.strerror or exc}") from exc
    return source.read()


def _dtypes(source: str | Path | IO[str], dtypes: str | Path | Mapping[str, str] | None
            ) -> tuple[dict[str, str], int | None]:
    if isinstance(dtypes, Mapping):
        return _checked(dict(dtypes), "dtypes"), None
    if dtypes is None:
        if not isinstance(source, str | Path):
            raise BadArgument("dtypes", "a buffer has no sidecar beside it: give the sidecar's "
                                        "path or a mapping column -> dtype")
        dtypes = sidecar_path(Path(source))
    path = Path(dtypes)
    try:
        described = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise BadArgument("dtypes", f"{path}: {exc.strerror or exc} (`urbanpulse query -o FILE` "
                                    "writes it beside FILE; `--dtypes PATH` for stdout)") from exc
    except json.JSONDecodeError as exc:
        raise BadArgument("dtypes", f"{path}: not JSON ({exc})") from exc
    if not isinstance(described, dict) or described.get("format") != FORMAT:
        raise BadArgument("dtypes", f"{path}: not a dtypes sidecar of format {FORMAT}")
    columns, rows = described.get("columns"), described.get("rows")
    if not isinstance(columns, dict) or not isinstance(rows, int):
        raise BadArgument("dtypes", f"{path}: needs 'columns' (an object) and 'rows' (an integer)")
    return _checked(columns, str(path)), rows


def _checked(columns: dict[Any, Any], where: str) -> dict[str, str]:
    for name, dtype in columns.items():
        if not isinstance(name, str) or dtype not in DTYPES:
            raise BadArgument("dtypes", f"{where}: column {name!r} has dtype {dtype!r} "
                                        f"(known: {', '.join(DTYPES)})")
    if INDEX in columns:
        raise BadArgument("dtypes", f"{where}: {INDEX!r} is the index, not a column")
    return columns


def _strings(frame: pd.DataFrame, strings: list[str], text: str) -> pd.DataFrame:
    """Empty cells of string columns: None, except those written `""` (the empty string)."""
    blank = {c: frame[c].eq("").to_numpy() for c in strings}
    blank = {c: b for c, b in blank.items() if b.any()}
    if not blank:
        return frame
    quoted = _quoted_empty_cells(text) if '""' in text else set()
    # the columns' places in the file, `time` wherever it is
    header = [str(c) for c in pd.read_csv(io.StringIO(text), nrows=0, dtype=object).columns]
    positions = {c: header.index(c) for c in blank}
    updates = {}
    for c, b in blank.items():
        values = frame[c].to_numpy(dtype=object, copy=True)
        for row in b.nonzero()[0]:
            if (int(row) + 1, positions[c]) not in quoted:  # +1: the header row
                values[row] = None
        updates[c] = pd.Series(values, index=frame.index, dtype=object)
    return frame.assign(**updates)


def _quoted_empty_cells(text: str) -> set[tuple[int, int]]:
    """(row, column) of every field written `""`; row 0 is the header."""
    cells: set[tuple[int, int]] = set()
    row = column = at = 0
    end = len(text)
    while at < end:
        match = _FIELD.match(text, at)
        if match is None:  # the pattern matches the empty string: never None
            raise AssertionError("unreachable")
        if match.group() == '""':
            cells.add((row, column))
        at = match.end()
        if at < end and text[at] == ",":
            column += 1
            at += 1
            continue
        if text.startswith("\r\n", at):
            at += 2
        elif at < end and text[at] in "\r\n":
            at += 1
        elif at < end:
            raise BadArgument("path_or_buffer", f"not CSV: a quote inside a bare field at "
                                                f"row {row + 1}")
        row, column = row + 1, 0
    return cells
