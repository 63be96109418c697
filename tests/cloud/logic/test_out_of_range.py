"""A value outside the contract's physical range (valid JSON, a finite number) must not
crash the dataflow: a processor that raises on a reading raises again on every replay of
it. Such a value is stored raw and raises OUT_OF_RANGE; aggregates, domain rollups, AQI,
anomaly scores and the drift step never see it. Found with ±1e308 (AQI breakpoints,
NowCast) and interval_s = 0 (traffic flow)."""

from __future__ import annotations

import pytest

from cloud.logic.domain.city_drift import drift_inputs
from cloud.logic.node import NodeState
from cloud.logic.records import NodeData
from urbanpulse.wire import KINDS, Reading, outside_range

T0 = 1_795_000_000_000_000_000
MIN = 60_000_000_000
HORIZON = 6 * 3600 * 10**9


def _normal(kind: str) -> dict[str, float]:
    values = {"air.pm": {"pm25": 20.0, "pm10": 35.0}, "air.co2": {"co2": 600.0},
              "traffic.loop": {"count": 12.0, "occupancy_pct": 8.0, "interval_s": 60.0},
              "hospital.bed": {"occupied": 1.0}, "hospital.door": {"count": 3.0, "interval_s": 60.0},
              "hospital.queue": {"ticket": 5.0, "called": 0.0}}[kind]
    assert outside_range(kind, values) is None
    return values


CASES = [(kind, name, bad) for kind, spec in KINDS.items() for name, f in spec.fields.items()
         for bad in (-1e308, 1e308, (f.low or 0.0) - 1.0) if name in _normal(kind) or bad > 0]


@pytest.mark.parametrize(("kind", "name", "bad"), CASES)
def test_a_value_outside_the_range_is_stored_flagged_and_kept_out_of_everything(
        kind: str, name: str, bad: float) -> None:
    state = NodeState(HORIZON, detect=True)
    normal = _normal(kind)
    # Three hours of normal readings: enough for hourly means, NowCast and the detectors.
    readings = [Reading("s1", kind, T0 + i * MIN, i, dict(normal)) for i in range(180)]
    state.process(NodeData("hn/n1", "hn", "n1", T0 + 181 * MIN, readings))
    clean = NodeState(HORIZON, detect=True)
    clean.process(NodeData("hn/n1", "hn", "n1", T0 + 181 * MIN, readings))
    poisoned = Reading("s1", kind, T0 + 180 * MIN, 180, {**normal, name: bad})
    follow = Reading("s1", kind, T0 + 181 * MIN, 181, dict(normal))

    out = state.process(NodeData("hn/n1", "hn", "n1", T0 + 182 * MIN, [poisoned, follow]))
    lines = [text for _, text in out if isinstance(text, str)]
    assert any("seq=180i" in text and text.startswith(KINDS[kind].measurement) for text in lines), \
        "the raw point is written"
    assert any(text.startswith("events,") and "type=out_of_range" in text for text in lines)
    assert not any("type=anomaly" in text for text in lines)
    # The aggregates are those of the same stream without the poisoned reading.
    expected = clean.process(NodeData("hn/n1", "hn", "n1", T0 + 182 * MIN, [follow]))
    aggregates = sorted(t for rp, t in out if rp != "raw" and not t.startswith("ledger"))
    assert aggregates == sorted(t for rp, t in expected if rp != "raw" and not t.startswith("ledger"))
    assert drift_inputs("hn", "n1", [poisoned]) == []


def test_a_window_rebuilt_from_raw_points_leaves_out_of_range_values_out_too() -> None:
    from cloud.logic.recompute import Recompute

    job = Recompute("agg_1m", "air_pm", "hn", "n1", "s1", "air.pm", MIN, T0)
    rows: list[dict[str, object]] = [
        {"time": T0 + 1, "pm25": 20.0, "pm10": 30.0, "seq": 1},
        {"time": T0 + 2, "pm25": 1e308, "pm10": 30.0, "seq": 2},
        {"time": T0 + 3, "pm25": 22.0, "pm10": 34.0, "seq": 3}]
    rebuilt = job.rebuild(rows)
    assert rebuilt is not None
    assert "count=2i" in rebuilt
    assert "pm25_max=22.0" in rebuilt
    assert job.rebuild(rows[1:2]) is None


def test_a_watch_from_a_snapshot_taken_before_ranges_were_kept_learns_its_range() -> None:
    import pickle

    from cloud.logic.events import SensorWatch

    watch = SensorWatch()
    for i in range(300):
        watch.check("hn", "n1", Reading("s1", "air.co2", T0 + i * MIN, i, {"co2": 600.0 + i % 7}))
    field = watch.fields["co2"]
    assert field is not None
    del field.low, field.high  # the instance as it was pickled before: no range attributes
    old = pickle.loads(pickle.dumps(watch))
    out = old.check("hn", "n1", Reading("s1", "air.co2", T0 + 300 * MIN, 300, {"co2": 1e308}))
    assert any("type=out_of_range" in text for _, text in out)
    assert not any("type=anomaly" in text for _, text in out), "1e308 is not scored"
    restored = old.fields["co2"]
    assert restored is not None
    assert (restored.low, restored.high) == (0, 10000)


def test_a_node_cannot_grow_its_state_past_the_sensor_cap(monkeypatch: pytest.MonkeyPatch) -> None:
    """A faulty node inventing sensor ids would grow the node's state (sequence ranges,
    rollups, detectors) without end; past the cap a new sensor's reading is a dead letter,
    and the sensors already known go on."""
    import cloud.logic.node as node_module

    monkeypatch.setattr(node_module, "MAX_SENSORS_PER_NODE", 3)
    state = NodeState(HORIZON, detect=False)
    readings = [Reading(f"s{i}", "air.co2", T0 + i * MIN, 1, {"co2": 600.0}) for i in range(5)]
    readings.append(Reading("s0", "air.co2", T0 + 6 * MIN, 2, {"co2": 610.0}))
    out = state.process(NodeData("hn/n1", "hn", "n1", T0 + 7 * MIN, readings))
    refused = [t for _, t in out if t.startswith("dead_letter,")]
    assert len(refused) == 2
    assert all("reason=too_many_sensors" in t for t in refused)
    assert len({t.rsplit(" ", 1)[1] for t in refused}) == 2, "distinct stamps"
    assert sorted(state.seqs) == ["s0", "s1", "s2"]
    assert sum(t.startswith("air_co2,") and "seq=2i" in t for _, t in out) == 1
