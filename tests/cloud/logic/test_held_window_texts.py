"""A window holding one reading of one value takes its field text from a cache keyed by
(field, value). 0, 0.0 and -0.0 are one key (-0.0 is 0.0 in the windows), and 1 == 1.0:
whatever order the values come in, each window's text is the one `line` makes of its
fields."""

from __future__ import annotations

import pytest

from cloud.logic.lines import line
from cloud.logic.rollup import Window

VALUES = [0, -0.0, 0.0, 1, 1.0, -1, 2.5, 2**70, -0.0, 0]


@pytest.mark.parametrize("order", [VALUES, VALUES[::-1]])
def test_held_one_value_texts_follow_the_value_and_its_sign(order: list[float]) -> None:
    for value in order:
        held, added = Window(0, 0, {}), Window(0, 0, {})
        held.hold(5, {"occupied": value})
        added.add(5, {"occupied": value})
        assert f"m {held.field_text()} 0" == line("m", {}, added.as_fields(), 0)
        assert held.field_text() == added.field_text()
    zero = Window(0, 0, {})
    zero.hold(5, {"occupied": -0.0})  # 0.0 in the windows (tests/cloud/logic/test_window_sums.py)
    assert "occupied_min=0.0" in zero.field_text()
