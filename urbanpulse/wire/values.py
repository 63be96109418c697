"""What the contract refuses in a reading's values: one rule for the cloud, which rejects
such a reading when it decodes a batch (`decode_batch`, a dead letter with the code), and
for the edge, which refuses it before it enters the outbox (edge/agent.py) and again when
it encodes a batch (`encode_batch`).

A refused value refuses its whole reading, as the cloud does: the reading's other values
and the batch's other readings go on.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, NamedTuple

from urbanpulse.wire.kinds import BOOL_UNIT, COUNT_UNITS, KINDS, KindSpec, count_problem


class Refusal(NamedTuple):
    """Why the contract refuses a reading: `code` short and stable (the cloud's dead-letter
    code, the node's count), `detail` where from the reading on (`.values.pm25: ...`)."""

    code: str
    detail: str


# Every code a `Refusal` carries (each one given below; a test reads them off this module):
# what the node counts its refused samples by, and the cloud stores as `refused_<code>`.
REFUSAL_CODES = frozenset({"bad_value", "bad_count", "unknown_field", "missing_field",
                           "wrong_unit", "unknown_kind", "bad_values"})

# Each kind's fields with the units the contract gives them: what `encode_batch` declares.
CONTRACT_UNITS: dict[str, dict[str, str]] = {k.name: k.units for k in KINDS.values()}


def finite(value: int | float) -> bool:
    """math.isfinite for JSON numbers: an integer too large for a float is not finite."""
    try:
        return math.isfinite(value)
    except OverflowError:
        return False


def values_problem(spec: KindSpec, values: Mapping[str, Any], units: Mapping[str, Any]
                   ) -> Refusal | None:
    """Why the contract refuses a reading of `spec` with these `values`, sent in `units`
    (field -> unit), or None. Each value, in the values' order, must be a field of the
    kind, an int or a float (not a bool, which JSON tells apart) and finite (JSON has no
    NaN), in the contract's unit, 0 or 1 in a bool field, and a whole number in [0, 2^53]
    in a count field (`count_problem`); then every required field must be there. The first
    broken rule answers. (One loop, no call per field: the cloud runs it on the first
    reading of each shape in every batch it decodes.)"""
    for name, value in values.items():
        fspec = spec.fields.get(name)
        if fspec is None:
            return Refusal("unknown_field", f".values.{name}: not a field of {spec.name}")
        if type(value) not in (int, float) or not finite(value):
            return Refusal("bad_value", f".values.{name}: must be a finite number, got {value!r:.40}")
        unit = fspec.unit
        if units.get(name) != unit:
            return Refusal("wrong_unit",
                           f".values.{name}: unit {units.get(name)!r}, contract says {unit!r}")
        if unit == BOOL_UNIT and value not in (0, 1):
            return Refusal("bad_value", f".values.{name}: a bool must be 0 or 1, got {value!r:.40}")
        if unit in COUNT_UNITS:
            problem = count_problem(value)
            if problem is not None:
                return Refusal("bad_count", f".values.{name}: a count of {unit} must be a whole "
                                            f"number in [0, 2^53]; {value!r:.40} {problem}")
    for name, fspec in spec.fields.items():
        if fspec.required and name not in values:
            return Refusal("missing_field", f".values.{name}: required for {spec.name}")
    return None


def reading_problem(kind: str, values: Any) -> Refusal | None:
    """Why the contract refuses a reading of `kind` with these `values`, its units the
    contract's (as `encode_batch` declares them), or None: a kind it does not know
    (`unknown_kind`), values that are no non-empty mapping (`bad_values`), or what
    `values_problem` says."""
    spec = KINDS.get(kind)
    if spec is None:
        return Refusal("unknown_kind", f".kind: {kind!r:.40} is not in contract v1")
    if not isinstance(values, Mapping) or not values:
        return Refusal("bad_values", ".values: must be a non-empty object")
    return values_problem(spec, values, CONTRACT_UNITS[kind])
