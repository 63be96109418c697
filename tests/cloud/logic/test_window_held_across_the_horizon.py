"""A window still held in memory whose readings come partly before the horizon: the node
went quiet in the middle of an hour and came back a horizon later, so that hour is held
(it holds the readings before the outage) while the backlog's first readings of it are
older than the horizon. Those asked for a rebuild from the raw points; the later ones of
the same hour were added to the held window, which lacks the first ones, and its
aggregate, written by a later message, overwrote the rebuilt one. Checked on what InfluxDB
would finally hold (the sink's order, `test_window_across_the_horizon.Store`), against
the same readings in order."""

from __future__ import annotations

from cloud.logic.node import NodeState
from cloud.logic.records import NodeData
from cloud.logic.rollup import HOUR_NS
from tests.cloud.logic.test_window_across_the_horizon import Store, _reading


def _run(batches: list[list[int]]) -> Store:
    store = Store()
    state = NodeState(HOUR_NS, detect=False)
    for batch in batches:
        store.write(state.process(NodeData("s/n", "s", "n", 0, [_reading(i) for i in batch])))
    return store


def test_a_held_window_reached_by_a_backlog_across_the_horizon_ends_complete() -> None:
    # 00:00-01:30 in order, quiet until 02:40 (horizon 1 h: 01:40), then the backlog.
    before = list(range(0, 91))
    backlog = list(range(91, 160))
    in_order = _run([before[i:i + 20] for i in range(0, len(before), 20)]
                    + [backlog[i:i + 20] for i in range(0, len(backlog), 20)] + [[160]])
    late = _run([before[i:i + 20] for i in range(0, len(before), 20)] + [[160]]
                + [backlog[i:i + 20] for i in range(0, len(backlog), 20)])
    hours = in_order.aggregates("agg_1h")
    assert sum(" count=60i," in line for line in hours.values()) == 2
    assert late.aggregates("agg_1h") == hours
    assert late.aggregates("agg_1m") == in_order.aggregates("agg_1m")
