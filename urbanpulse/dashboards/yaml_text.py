"""A minimal YAML writer for the provisioning files (no YAML library is a dependency).

Block style for mappings and lists; every string double-quoted with JSON escapes, which
YAML's double-quoted scalars accept, so no value can be misread as another type.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any


def _scalar(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return json.dumps(value)
    if isinstance(value, str):
        return json.dumps(value)
    raise TypeError(f"cannot write {type(value).__name__} as YAML")


def _lines(value: Any, indent: int) -> list[str]:
    pad = " " * indent
    if isinstance(value, Mapping):
        if not value:
            return [pad + "{}"]
        out: list[str] = []
        for key, item in value.items():
            head = f"{pad}{json.dumps(str(key)) if not str(key).isidentifier() else key}:"
            if isinstance(item, Mapping | list | tuple) and item:
                out.append(head)
                out.extend(_lines(item, indent + 2))
            else:
                out.append(f"{head} {_inline(item)}")
        return out
    if isinstance(value, Sequence) and not isinstance(value, str):
        if not value:
            return [pad + "[]"]
        out = []
        for item in value:
            nested = _lines(item, indent + 2)
            out.append(pad + "- " + nested[0][indent + 2:])
            out.extend(nested[1:])
        return out
    return [pad + _scalar(value)]


def _inline(value: Any) -> str:
    if isinstance(value, Mapping):
        return "{}"
    if isinstance(value, list | tuple):
        return "[]"
    return _scalar(value)


def dump(value: Mapping[str, Any]) -> str:
    return "\n".join(_lines(value, 0)) + "\n"
