"""A window whose start is older than the horizon while some of its readings are not: the
readings before the horizon go to a rebuild from the raw points, so the rest must not start
a fresh window in memory, whose aggregate (without the first ones) would overwrite the
rebuilt one. Checked on what InfluxDB would finally hold, with the sink's order: raw and
aggregate points of a message first, then its rebuilds, from every raw point so far."""

from __future__ import annotations

from datetime import UTC, datetime

from cloud.logic.node import NodeState
from cloud.logic.recompute import RECOMPUTE, Recompute
from cloud.logic.records import NodeData
from cloud.logic.rollup import HOUR_NS, MINUTE_NS, SensorRollup
from urbanpulse.clock import to_epoch_ns
from urbanpulse.wire import Reading

T0 = to_epoch_ns(datetime(2026, 11, 28, 0, 0, tzinfo=UTC))
S = 10**9


def _reading(i: int) -> Reading:
    return Reading("pm-1", "air.pm", T0 + 60 * S * i, i, {"pm25": float(i % 13), "pm10": 3.0})


def _row(line: str) -> dict[str, object]:
    head, fields, ts = line.rsplit(" ", 2)
    row: dict[str, object] = {}
    for tag in head.split(",")[1:]:
        key, value = tag.split("=", 1)
        row[key] = value
    row["time"] = int(ts)
    for field in fields.split(","):
        key, text = field.split("=", 1)
        row[key] = int(text[:-1]) if text.endswith("i") else text.strip('"') if text.startswith('"') \
            else float(text)
    return row


class Store:
    """What InfluxDB holds: the last line of each series and time, and the raw rows."""

    def __init__(self) -> None:
        self.lines: dict[tuple[str, str], str] = {}
        self.raw: list[dict[str, object]] = []

    def _put(self, rp: str, line: str) -> None:
        head, _fields, ts = line.rsplit(" ", 2)
        self.lines[(rp, f"{head} {ts}")] = line

    def write(self, points: list[tuple[str, str]]) -> None:
        asks = [Recompute.decode(text) for rp, text in points if rp == RECOMPUTE]
        for rp, line in points:
            if rp == RECOMPUTE:
                continue
            self._put(rp, line)
            if rp == "raw":
                self.raw.append(_row(line))
        for ask in sorted(set(asks), key=lambda a: a.encode()):
            rows = [r for r in self.raw if r["sensor"] == ask.sensor
                    and ask.start_ns <= int(str(r["time"])) < ask.start_ns + ask.width_ns]
            rebuilt = ask.rebuild(rows)
            if rebuilt is not None:
                self._put(ask.rp, rebuilt)

    def aggregates(self, rp: str) -> dict[str, str]:
        return {key: line for (policy, key), line in self.lines.items()
                if policy == rp and line.startswith("air_pm,")}


def test_a_backlog_across_the_horizon_ends_with_every_window_complete() -> None:
    readings = [_reading(i) for i in range(60, 201)]  # 01:00 to 03:20, one a minute
    in_order = Store()
    state = NodeState(HOUR_NS, detect=False)
    for i in range(0, len(readings), 20):
        in_order.write(state.process(NodeData("s/n", "s", "n", T0, readings[i:i + 20])))
    # The node comes back at 03:20: its fresh reading first, then its backlog, in order.
    late = Store()
    state = NodeState(HOUR_NS, detect=False)
    late.write(state.process(NodeData("s/n", "s", "n", T0, readings[-1:])))
    backlog = readings[:-1]
    for i in range(0, len(backlog), 20):
        late.write(state.process(NodeData("s/n", "s", "n", T0, backlog[i:i + 20])))
    # 02:00-03:00 straddles the horizon (02:20): rebuilt for 02:00-02:19, in memory after.
    assert late.aggregates("agg_1h") == in_order.aggregates("agg_1h")
    assert late.aggregates("agg_1m") == in_order.aggregates("agg_1m")
    hour = in_order.aggregates("agg_1h")
    assert len(hour) == 3
    assert any(" count=60i," in line for line in hour.values())


def test_a_rollup_starts_no_window_older_than_its_horizon() -> None:
    rollup = SensorRollup(HOUR_NS, HOUR_NS)
    assert rollup.window(T0 + 200 * 60 * S) is not None  # 03:20: the horizon is 02:20
    assert rollup.window(T0 + 130 * 60 * S) is None  # 02:10: older than the horizon
    assert rollup.window(T0 + 150 * 60 * S) is None  # 02:30 in the window of 02:00
    assert rollup.too_late == 2
    minutes = SensorRollup(MINUTE_NS, HOUR_NS)
    minutes.window(T0 + 200 * 60 * S)
    assert minutes.window(T0 + 150 * 60 * S) is not None  # its minute starts after 02:20
