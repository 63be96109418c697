"""Frames as plain rows, for cell-by-cell comparison with hand-written values."""

from __future__ import annotations

from typing import Any

import pandas as pd


def rows(frame: pd.DataFrame) -> list[dict[str, Any]]:
    """Each row as {"time": Timestamp, column: value}, missing cells as None."""
    out = []
    for t, row in zip(frame.index, frame.to_dict("records"), strict=True):
        cells = {k: (None if v is None or (not isinstance(v, str) and pd.isna(v)) else v)
                 for k, v in row.items()}
        out.append({"time": t, **cells})
    return out
