"""InfluxDB line protocol, written by hand: it is the hot path of the sink."""

from __future__ import annotations

from collections.abc import Mapping

_TAG = str.maketrans({",": r"\,", "=": r"\=", " ": r"\ "})
_MEAS = str.maketrans({",": r"\,", " ": r"\ "})


def tag(value: str) -> str:
    return value.translate(_TAG)


def string_field(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def line(measurement: str, tags: Mapping[str, str], fields: Mapping[str, float | int | str | bool],
         ts_ns: int) -> str:
    """One point. Floats stay floats, ints get `i`, strings are quoted. Tags sorted by key."""
    tag_part = ",".join(f"{tag(k)}={tag(v)}" for k, v in sorted(tags.items()) if v != "")
    parts = []
    for k, v in fields.items():
        if isinstance(v, bool):
            parts.append(f"{tag(k)}={'true' if v else 'false'}")
        elif isinstance(v, int):
            parts.append(f"{tag(k)}={v}i")
        elif isinstance(v, float):
            parts.append(f"{tag(k)}={v!r}")
        else:
            parts.append(f"{tag(k)}={string_field(v)}")
    head = measurement.translate(_MEAS)
    if tag_part:
        head += "," + tag_part
    return f"{head} {','.join(parts)} {ts_ns}"
