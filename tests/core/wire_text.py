"""Data-message payloads written as text, for tests that feed the contract's decoders
what json.dumps would not write (a value spelt as given, envelope keys spliced in)."""

from __future__ import annotations

import json
from typing import Any


def reading_text(seq: int, base: dict[str, Any], part: dict[str, Any] | None, value: str | None,
                 ts: str) -> str:
    """One reading of `base`'s sensor, kind and values with `seq` and `ts`, updated by
    `part`; its first value's text replaced by `value` when given."""
    r: dict[str, Any] = {"sensor": base["sensor"], "kind": base["kind"], "ts": ts, "seq": seq,
                         "values": dict(base["values"])}
    if part is not None:
        r.update(part)
    text = json.dumps(r)
    if value is not None and isinstance(r.get("values"), dict) and r["values"]:
        name = next(iter(r["values"]))
        text = text.replace(f'"{name}": {json.dumps(r["values"][name])}', f'"{name}": {value}', 1)
    return text


def payload_text(readings: list[str], units: Any, site: str, node: str, envelope: str = "") -> bytes:
    """A data message of `readings` (texts) with `envelope` spliced before the units."""
    return (f'{{"v":1,"site":"{site}","node":"{node}",{envelope}"units":{json.dumps(units)},'
            f'"readings":[{",".join(readings)}]}}').encode()
