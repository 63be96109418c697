"""A rollup pickles its windows as plain tuples (compact): it resumes with the same windows,
order, bookkeeping and later output as the rollup it was taken from, and a rollup pickled
in the form before (Python's default state of a slotted object) still loads."""

from __future__ import annotations

import pickle

from cloud.logic.rollup import MINUTE_NS, SensorRollup, Window

T0 = 1_795_000_000_000_000_000


def _rollup() -> SensorRollup:
    r = SensorRollup(MINUTE_NS, 10 * MINUTE_NS)
    for i, ts in enumerate([T0, T0 + 5, T0 + 3 * MINUTE_NS, T0 + MINUTE_NS, T0 + 2]):
        window = r.window(ts)
        assert window is not None
        if window.count == 0:
            window.hold(ts, {"pm25": 1.5 + i, "pm10": -0.0})
        else:
            window.add(ts, {"pm25": 1.5 + i, "pm10": 0})
    r.too_late = 3
    return r


def _state(r: SensorRollup) -> dict[str, object]:
    """Its slots but the bytes it keeps of its last pickling (`pickled`)."""
    return {name: getattr(r, name) for name in SensorRollup.__slots__ if name != "_pickled"}


def _texts(r: SensorRollup) -> list[tuple[int, str]]:
    return [(start, w.field_text()) for start, w in r.windows.items()]


def test_a_compact_snapshot_resumes_the_same_rollup() -> None:
    r = _rollup()
    assert not r.ordered  # a window made out of order
    resumed: SensorRollup = pickle.loads(pickle.dumps(r, protocol=pickle.HIGHEST_PROTOCOL))
    held = T0 + 3 * MINUTE_NS - (T0 + 3 * MINUTE_NS) % MINUTE_NS
    assert r.windows[held].first is not None
    assert resumed.windows[held].first is not None  # a held reading stays held
    assert _state(resumed) == _state(r)  # (comparing windows reads their fields: settles them)
    assert list(resumed.windows) == list(r.windows)
    for rollup in (r, resumed):
        window = rollup.window(T0 + 12 * MINUTE_NS)
        assert window is not None
        window.hold(T0 + 12 * MINUTE_NS, {"pm25": 9.0})
        rollup.evict()
    assert _texts(resumed) == _texts(r)
    assert _state(resumed) == _state(r)


def test_a_rollup_pickled_in_the_form_before_still_loads() -> None:
    r = _rollup()
    old = SensorRollup.__new__(SensorRollup)
    old.__setstate__((None, {name: getattr(r, name) for name in SensorRollup.__slots__
                             if name != "_pickled"}))
    assert _state(old) == {**_state(r), "oldest_ns": old.oldest_ns, "ordered": False}
    assert _texts(old) == _texts(r)


def test_windows_shared_values_stay_shared_in_a_snapshot() -> None:
    """A reading held by its minute and its hour window is one dict in both, and stays one
    after a snapshot (pickle's memo), so a snapshot is no bigger than the state."""
    values = {"occupied": 1}
    minute, hour = SensorRollup(MINUTE_NS, MINUTE_NS), SensorRollup(60 * MINUTE_NS, MINUTE_NS)
    for rollup in (minute, hour):
        window = rollup.window(T0)
        assert isinstance(window, Window)
        window.hold(T0, values)
    m, h = pickle.loads(pickle.dumps((minute, hour)))
    first_m, first_h = next(iter(m.windows.values())).first, next(iter(h.windows.values())).first
    assert first_m is not None
    assert first_h is not None
    assert first_m[1] is first_h[1]


def test_a_node_snapshot_holds_its_rollups_pickled_and_ones_holding_tuples_or_objects_load() -> None:
    """Since session 27 a node's snapshot holds each rollup's tuple pickled apart (the bytes
    kept while the rollup does not change: `SensorRollup.pickled`); from session 25 the
    tuples in the node's pickle, and before that the objects: all resume the same rollups.
    A reading held by a minute and an hour window (the first of both) was one dict in both
    after a resume of the two layouts before; pickled apart it is one in each."""
    from cloud.logic.node import NodeState

    node = NodeState(60 * MINUTE_NS)
    node.minute["s1"], node.hour["s1"] = _rollup(), SensorRollup(60 * MINUTE_NS, 60 * MINUTE_NS)
    values = {"occupied": 1}
    node.minute["s2"], node.hour["s2"] = SensorRollup(MINUTE_NS, MINUTE_NS), SensorRollup(
        60 * MINUTE_NS, MINUTE_NS)
    for rollup in (node.minute["s2"], node.hour["s2"]):
        window = rollup.window(T0)
        assert window is not None
        window.hold(T0, values)
    state = node.__getstate__()
    assert all(type(held) is bytes for held in (*state["minute"].values(), *state["hour"].values()))
    tuples = {**state, "minute": {s: r.__getstate__() for s, r in node.minute.items()},
              "hour": {s: r.__getstate__() for s, r in node.hour.items()}}
    objects = {**state, "minute": dict(node.minute), "hour": dict(node.hour)}
    # (all pickled before any comparison: comparing windows settles their held readings)
    pickled = [pickle.dumps(held, protocol=pickle.HIGHEST_PROTOCOL)
               for held in (state, tuples, objects)]
    for snapshot, shared in zip(pickled, (False, True, True), strict=True):
        resumed = NodeState.__new__(NodeState)
        resumed.__setstate__(pickle.loads(snapshot))
        minute_first = next(iter(resumed.minute["s2"].windows.values())).first
        hour_first = next(iter(resumed.hour["s2"].windows.values())).first
        assert minute_first is not None
        assert hour_first is not None
        assert minute_first[1] == hour_first[1] == values
        assert (minute_first[1] is hour_first[1]) is shared
        for rollups, original in ((resumed.minute, node.minute), (resumed.hour, node.hour)):
            assert list(rollups) == ["s1", "s2"]
            for sensor in ("s1", "s2"):
                assert type(rollups[sensor]) is SensorRollup
                assert _state(rollups[sensor]) == _state(original[sensor])
                assert _texts(rollups[sensor]) == _texts(original[sensor])
