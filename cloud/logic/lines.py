"""InfluxDB line protocol, written by hand: it is the hot path of the sink.

A series' head (measurement and sorted tags, escaped) and escaped field keys are cached:
the same few thousand series recur in every batch.
"""

from __future__ import annotations

import numbers
from collections.abc import Mapping

_TAG = str.maketrans({",": r"\,", "=": r"\=", " ": r"\ "})
_MEAS = str.maketrans({",": r"\,", " ": r"\ "})
_CACHE_MAX = 200_000

_heads: dict[tuple[str, tuple[tuple[str, str], ...]], str] = {}
_keys: dict[str, str] = {}
# A float's text: repr is the costly part of a line, and readings repeat their values
# (occupied 0/1, counts, a handful of distinct levels per sensor).
_texts: dict[float, str] = {}
_TEXTS_MAX = 50_000  # a few MB; the values that repeat are far fewer


def tag(value: str) -> str:
    return value.translate(_TAG)


def string_field(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def series_head(measurement: str, tags: Mapping[str, str]) -> str:
    """Measurement and sorted tags, escaped (cached): everything before the fields."""
    key = (measurement, tuple(tags.items()))
    head = _heads.get(key)
    if head is None:
        if len(_heads) >= _CACHE_MAX:
            _heads.clear()
        tag_part = ",".join(f"{tag(k)}={tag(v)}" for k, v in sorted(tags.items()) if v != "")
        head = measurement.translate(_MEAS) + ("," + tag_part if tag_part else "")
        _heads[key] = head
    return head


def field_key(name: str) -> str:
    """A field key, escaped for line protocol (cached)."""
    escaped = _keys.get(name)
    if escaped is None:
        if len(_keys) >= _CACHE_MAX:
            _keys.clear()
        escaped = _keys[name] = name.translate(_TAG)
    return escaped


def float_text(value: float) -> str:
    """repr(float(value)), cached by value. Zero is not cached: 0.0 and -0.0 are one key
    but two texts."""
    text = repr(float(value))
    if value:
        if len(_texts) >= _TEXTS_MAX:
            _texts.clear()
        _texts[value] = text
    return text


def float_texts() -> dict[float, str]:
    """The cache of `float_text` itself, for hot loops: `texts.get(v) or float_text(v)`."""
    return _texts


def field_keys() -> dict[str, str]:
    """The cache of escaped field keys itself, for hot loops: a key missing from it is
    escaped (and cached) by `field_key`."""
    return _keys


def line(measurement: str, tags: Mapping[str, str], fields: Mapping[str, float | int | str | bool],
         ts_ns: int) -> str:
    """One point. Floats stay floats, ints get `i`, strings are quoted. Tags sorted by key."""
    parts = []
    for k, v in fields.items():
        t = type(v)
        if t is float:
            parts.append(f"{field_key(k)}={v!r}")
        elif t is int:
            parts.append(f"{field_key(k)}={v}i")
        elif t is bool:
            parts.append(f"{field_key(k)}={'true' if v else 'false'}")
        elif isinstance(v, numbers.Integral):  # e.g. numpy's int64
            parts.append(f"{field_key(k)}={int(v)}i")
        elif isinstance(v, numbers.Real):  # e.g. numpy's float64
            parts.append(f"{field_key(k)}={float(v)!r}")
        else:
            parts.append(f"{field_key(k)}={string_field(str(v))}")
    return f"{series_head(measurement, tags)} {','.join(parts)} {ts_ns}"


def float_fields(values: Mapping[str, float]) -> str:
    """Numeric reading values as float fields, in their order (what `line` makes of them
    after float()), for the hot path that writes one raw point per reading."""
    keys, texts = _keys, _texts
    return ",".join([f"{keys.get(k) or field_key(k)}={texts.get(v) or float_text(v)}"
                     for k, v in values.items()])
