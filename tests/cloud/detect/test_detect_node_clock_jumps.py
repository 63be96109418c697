"""One CLOCK_JUMP per node and jump (`NodeClockJumps`): a step of a ward node's clock raised
one event per bed pad and field, plus the heartbeat rule's (62 for one step), and Grafana's
"Sensor fault" alert fired once per (site, node, sensor, type)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from cloud.detect import FaultEvent, FaultType
from cloud.detect.faults import CLOCK_EPISODE_S, NodeClockJumps

T = datetime(2026, 3, 2, tzinfo=UTC)


def _jump(sensor: str, field: str = "occupied") -> FaultEvent:
    detail = "clock_jumps" if not sensor else "stamps moved 7500 s: clock set forward"
    return FaultEvent(sensor, field, FaultType.CLOCK_JUMP, T, T, 1.0, detail)


def test_the_sensors_of_one_jump_raise_one_event_of_the_node_naming_them() -> None:
    jumps = NodeClockJumps()
    first = jumps.fold(_jump("bed-03"), T)
    assert first is not None
    assert first.sensor == ""
    assert first.detail.startswith("bed-03: ")
    for k in range(1, 31):
        assert jumps.fold(_jump(f"bed-{k + 3:02}"), T + timedelta(seconds=10 * k)) is None
    assert jumps.fold(_jump(""), T + timedelta(seconds=20)) is None  # the node counted it too
    assert jumps.changed
    assert jumps.detail().endswith(
        "(seen by bed-04, bed-05, bed-06 and 27 other sensors; counted by the node)")
    other = FaultEvent("bed-03", "occupied", FaultType.SILENCE, T, T, None, "")
    assert jumps.fold(other, T) is other  # only clock jumps fold


def test_a_jump_seen_by_one_sensor_only_is_raised_and_a_later_jump_again() -> None:
    jumps = NodeClockJumps()
    assert jumps.fold(_jump("door-er", "count"), T) is not None
    assert jumps.fold(_jump("door-er", "interval_s"), T) is None  # its other field
    assert not jumps.changed
    assert jumps.detail().startswith("door-er: ")
    later = T + timedelta(seconds=CLOCK_EPISODE_S + 1)
    assert jumps.fold(_jump("door-er", "count"), later) is not None


def test_a_second_jump_the_node_counted_is_another_event() -> None:
    jumps = NodeClockJumps()
    assert jumps.fold(_jump(""), T) is not None
    assert jumps.fold(_jump("pm-1", "pm25"), T + timedelta(seconds=5)) is None
    assert jumps.fold(_jump(""), T + timedelta(seconds=30)) is not None  # set back again
