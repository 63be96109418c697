"""Loading detector state pickled by other versions of the code.

A slotted class pickles, by default, as `(None, {slot: value})`; ours pickle a dict, or
(names, values): two tuples, the names one object shared by every instance (pickled once
per snapshot), the values in their order.
Either must load without raising, so that a snapshot taken before an upgrade resumes:
the dataflow then drops detector state whose code version differs (cloud.logic.node)."""

from __future__ import annotations

from typing import Any


def slot_state(state: Any) -> dict[str, Any]:
    """The attribute values in any of the forms pickle hands `__setstate__`."""
    if isinstance(state, dict):
        return state
    if isinstance(state, tuple) and len(state) == 2:
        names, values = state
        if type(names) is tuple and type(values) is tuple:  # (names, values): by position
            return dict(zip(names, values, strict=True))
        merged: dict[str, Any] = {}
        for part in state:
            if isinstance(part, dict):
                merged.update(part)
        return merged
    return {}
