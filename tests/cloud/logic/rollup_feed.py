"""Feeding a `SensorRollup` as `NodeState.process` does, and a rollup that never freezes to
compare against: shared by the frozen-window tests (test_rollup_frozen, test_frozen_store)."""

from __future__ import annotations

from cloud.logic.rollup import NO_SEQ, SensorRollup


class NeverFrozen(SensorRollup):
    """The rollup as it was before windows froze: every window it holds stays live."""

    __slots__ = ()

    def _freeze(self, line: int, keep: int | None) -> None:
        pass


def feed(r: SensorRollup, ts: int, values: dict[str, float], seq: int = NO_SEQ) -> str | None:
    """A reading as NodeState.process gives it (hold a new window's first, else add), then
    evict; the text of the point written for its window, None when too late."""
    window = r.window(ts)
    if window is None:
        r.evict()
        return None
    if window.count == 0:
        window.hold(ts, values, seq)
    else:
        window.add(ts, values, seq)
    text = f"{window.field_text()} {window.start_ns}"
    r.evict()
    return text


def texts(r: SensorRollup) -> list[tuple[int, str]]:
    """Each window held (frozen ones thawed to read them): its start and field text."""
    out = []
    for start in r.starts():
        window = r.window_at(start)
        assert window is not None
        out.append((start, window.field_text()))
    return out
