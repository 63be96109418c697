"""InfluxQL text built safely: identifiers double-quoted, tag values single-quoted, each
escaped the way InfluxDB's scanner reads them back (backslash, the quote, newline)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence


def _quoted(text: str, quote: str) -> str:
    escaped = text.replace("\\", "\\\\").replace(quote, "\\" + quote).replace("\n", "\\n")
    return quote + escaped + quote


def ident(name: str) -> str:
    """An identifier (measurement, retention policy, tag or field key)."""
    return _quoted(name, '"')


def literal(value: str) -> str:
    """A string literal (a tag value)."""
    return _quoted(value, "'")


def select(rp: str, measurement: str, fields: Sequence[str] | None,
           tags: Mapping[str, Sequence[str]], start_ns: int, end_ns: int) -> str:
    """Every point of one measurement in [start_ns, end_ns), one series per tag set.
    `tags`: tag key -> accepted values (any of them)."""
    columns = ",".join(ident(f) for f in fields) if fields else "*"
    return (f"SELECT {columns} FROM {ident(rp)}.{ident(measurement)} "
            f"WHERE {_where(tags, start_ns, end_ns)} GROUP BY *")


def grouped(rp: str, measurement: str, selection: str, tags: Mapping[str, Sequence[str]],
            start_ns: int, end_ns: int, by: Sequence[str]) -> str:
    """One row per tag set of `by` over [start_ns, end_ns): `selection` is the SELECT's
    column list (functions of fields), `tags` as for `select`."""
    return (f"SELECT {selection} FROM {ident(rp)}.{ident(measurement)} "
            f"WHERE {_where(tags, start_ns, end_ns)} GROUP BY {','.join(ident(k) for k in by)}")


def _where(tags: Mapping[str, Sequence[str]], start_ns: int, end_ns: int) -> str:
    where = [f"time >= {start_ns}", f"time < {end_ns}"]
    for key, values in tags.items():
        alternatives = " OR ".join(f"{ident(key)} = {literal(v)}" for v in values)
        where.append(f"({alternatives})" if len(values) > 1 else alternatives)
    return " AND ".join(where)


def field_keys(rp: str, measurement: str) -> str:
    return f"SHOW FIELD KEYS FROM {ident(rp)}.{ident(measurement)}"


def schema(rp: str, measurement: str) -> str:
    """The tag keys and the field keys with their types, in two statements."""
    return f"SHOW TAG KEYS FROM {ident(rp)}.{ident(measurement)}; {field_keys(rp, measurement)}"
