"""Snapshots taken before an upgrade must resume: detector state of another code version
loads without raising, and the dataflow's node state drops it unread."""

from __future__ import annotations

import math
import pickle
import pickletools
import random
from dataclasses import fields, replace
from datetime import UTC, datetime, timedelta

import pytest

from cloud.detect.detector import AnomalyDetector, DetectorSettings
from cloud.detect.faults import FAULT_SETTINGS, FaultSettings, Heartbeat, HeartbeatMonitor
from cloud.detect.novelty import ContextNovelty
from cloud.detect.profiles import ROAD_TRAFFIC
from cloud.detect.tail import TailHistory
from cloud.logic.node import NodeState
from urbanpulse.wire import KINDS
from urbanpulse.wire.kinds import FieldSpec

# TailHistory(4, 1.0, min_count=2) after 1.0, 2.0, 3.0, pickled by the code of 77631b9 (a
# slotted class without __getstate__: pickle's default `(None, {slot: value})` form, the
# ring a numpy array). The code after it crashed on this when a demo resumed.
OLD_TAIL_PICKLE = (
    b"\x80\x05\x95\xf9\x00\x00\x00\x00\x00\x00\x00\x8c\x11cloud.detect.tail\x94\x8c\x0bTailHistory"
    b"\x94\x93\x94)\x81\x94N}\x94(\x8c\x06_count\x94K\x03\x8c\x05_next\x94K\x03\x8c\x07_values\x94"
    b"\x8c\x13numpy._core.numeric\x94\x8c\x0b_frombuffer\x94\x93\x94(\x96\x10\x00\x00\x00\x00\x00"
    b"\x00\x00\x00\x00\x80?\x00\x00\x00@\x00\x00@@\x00\x00\x00\x00\x94\x8c\x05numpy\x94\x8c\x05dtype"
    b"\x94\x93\x94\x8c\x02f4\x94\x89\x88\x87\x94R\x94(K\x03\x8c\x01<\x94NNNJ\xff\xff\xff\xffJ\xff\xff"
    b"\xff\xffK\x00t\x94bK\x04\x85\x94\x8c\x01C\x94t\x94R\x94\x8c\tmin_count\x94K\x02\x8c\rrecord_weight"
    b"\x94G?\xf0\x00\x00\x00\x00\x00\x00u\x86\x94b.")


def test_a_tail_history_of_an_older_layout_loads() -> None:
    old = pickle.loads(OLD_TAIL_PICKLE)
    assert isinstance(old, TailHistory)
    assert len(old) == 3


def test_slotted_default_forms_load_for_every_detector_part() -> None:
    tail = TailHistory.__new__(TailHistory)
    tail.__setstate__((None, {"_count": 0, "min_count": 2}))  # no ring at all
    assert list(tail._sorted) == []
    novelty = ContextNovelty.__new__(ContextNovelty)
    novelty.__setstate__((None, {"learn": 150}))  # no memory
    assert novelty._memory == {}


def test_node_state_of_another_detector_version_drops_its_detectors_unread() -> None:
    state = NodeState(3_600 * 10**9, detect=True).__getstate__()
    state["detect_version"] = "another version"
    state["watch"] = b"not a pickle: would raise if it were read"
    resumed = NodeState.__new__(NodeState)
    resumed.__setstate__(state)
    assert resumed.watch == {}


def test_node_state_of_this_version_keeps_its_detectors() -> None:
    from cloud.detect import FaultMonitor
    from cloud.logic.events import FieldWatch, SensorWatch, new_detector

    node = NodeState(3_600 * 10**9, detect=True)
    detector = new_detector("air.pm", "pm25", "pm-1")
    assert detector is not None
    for i, v in enumerate((1.0, 2.0, 3.0)):
        detector.update(i * 60 * 10**9, v)
    faults = FaultMonitor("air.pm", "pm25", "pm-1")
    node.watch["pm-1"] = SensorWatch({"pm25": FieldWatch(detector, faults, 7, 0.0, 1000.0),
                                      "pm10": None})
    resumed: NodeState = pickle.loads(pickle.dumps(node))
    assert list(resumed.watch) == ["pm-1"]
    fields = resumed.watch["pm-1"].fields
    assert list(fields) == ["pm25", "pm10"]
    assert fields["pm10"] is None
    kept = fields["pm25"]
    assert kept is not None
    assert (kept.last_ts_ns, kept.low, kept.high) == (7, 0.0, 1000.0)
    assert type(kept.faults) is FaultMonitor
    assert kept.faults.__getstate__() == faults.__getstate__()
    assert pickle.dumps(kept.detector) == pickle.dumps(detector)


def test_a_node_watch_pickled_before_it_kept_the_node_s_clock_jumps_loads() -> None:
    """A `NodeWatch` of the layout before `jumps` (one clock jump per node and jump): its
    pickled state is its __dict__ without it; it loads with none open, and folds as new."""
    from datetime import UTC, datetime, timedelta

    from cloud.detect import FaultEvent, FaultType
    from cloud.detect.faults import NodeClockJumps
    from cloud.logic.events import NodeWatch

    old = NodeWatch()
    del old.__dict__["jumps"]
    state = NodeState(3600 * 10**9)
    state.node_watch = old
    loaded = pickle.loads(pickle.dumps(state, protocol=pickle.HIGHEST_PROTOCOL))
    jumps = loaded.node_watch.jumps
    assert isinstance(jumps, NodeClockJumps)
    assert jumps.event is None
    t = datetime(2026, 3, 2, tzinfo=UTC)
    jump = FaultEvent("pm-1", "pm25", FaultType.CLOCK_JUMP, t, t, 1.0, "clock set forward")
    raised = jumps.fold(jump, t)
    assert raised is not None
    assert raised.sensor == ""
    assert raised.detail.startswith("pm-1: ")
    assert jumps.fold(FaultEvent("pm-2", "pm25", FaultType.CLOCK_JUMP, t, t, 1.0, ""),
                      t + timedelta(seconds=30)) is None


# `ROAD_TRAFFIC` pickled by the code of ce86154, before the road profile's own difference
# orders and capacity and its 700-value tails (session 17): 25 values, the last two
# settings fields unknown to it.
OLD_ROAD_SETTINGS_PICKLE = (
    b"\x80\x05\x95\xcb\x00\x00\x00\x00\x00\x00\x00\x8c\x15cloud.detect.detector\x94\x8c\x10"
    b"DetectorSettings\x94\x93\x94)\x81\x94]\x94(M\xe8\x03K\x96K\x05K\x18G@\x08\x00\x00\x00\x00"
    b"\x00\x00G@\x14\x00\x00\x00\x00\x00\x00K\x08(K\x01K\x02K\x03K\x04K\x05t\x94K\x96G@\x04\x00"
    b"\x00\x00\x00\x00\x00M\xc4\tG?\xe6ffffffG?\xf0\x00\x00\x00\x00\x00\x00G?\xe4\x00\x00\x00\x00"
    b"\x00\x00K\x14G?\xe9\x99\x99\x99\x99\x99\x9aK\x96G?\xef\n=p\xa3\xd7\nK\nMX\x02M,\x01G?\xe0"
    b"\x00\x00\x00\x00\x00\x00G?\xc9\x99\x99\x99\x99\x99\x9aG@4\x00\x00\x00\x00\x00\x00G?\xe9\x99"
    b"\x99\x99\x99\x99\x9aeb.")
OLD_ROAD = replace(ROAD_TRAFFIC, history=1000, difference_orders=None, difference_capacity=None)


def test_road_settings_pickled_before_the_difference_settings_load_as_they_were() -> None:
    old = pickle.loads(OLD_ROAD_SETTINGS_PICKLE)
    assert old == OLD_ROAD
    assert old != ROAD_TRAFFIC
    detector = AnomalyDetector(old)
    differences = detector._differences
    assert differences is not None
    assert differences.orders == (1, 2, 3, 4, 5)
    assert differences.capacity == 2500
    assert detector._value_tail._size == 1000


def test_a_road_detector_snapshotted_with_the_old_settings_resumes_with_today_s(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A road loop's detector taken in a snapshot before the road settings changed (its
    settings pickled as the code before pickled them) resumes with today's road settings,
    keeping what it learnt: on a daily wave in noise, after 900 values, every score of the
    600 after is the one a detector made with today's settings gives (the first 20, which
    its own last scores decide too, may differ: here they do not), and then it holds what
    that one holds. The state version is kept (docs, "Learnt state across upgrades")."""
    rng = random.Random(17)
    values = [50 + 20 * math.sin(i * 2 * math.pi / 288) + rng.gauss(0, 3) for i in range(1500)]
    stamps = [i * 300 * 10**9 for i in range(len(values))]
    today = AnomalyDetector(ROAD_TRAFFIC)
    expected = [today.update(ts, v) for ts, v in zip(stamps, values, strict=True)]
    first = AnomalyDetector(OLD_ROAD)
    for ts, v in zip(stamps[:900], values[:900], strict=True):
        first.update(ts, v)
    old_layout = len(fields(DetectorSettings)) - 2  # what the code before pickled: 25 values
    with monkeypatch.context() as patch:
        patch.setattr(DetectorSettings, "__getstate__",
                      lambda self: [getattr(self, f.name) for f in fields(self)][:old_layout])
        snapshot = pickle.dumps(first, protocol=pickle.HIGHEST_PROTOCOL)
    resumed = pickle.loads(snapshot)
    assert resumed.settings == ROAD_TRAFFIC
    differences = resumed._differences
    assert differences is not None
    assert (differences.orders, differences.capacity) == ((1, 2, 3), 500)
    assert resumed._value_tail._size == 700
    tail = [resumed.update(ts, v) for ts, v in zip(stamps[900:], values[900:], strict=True)]
    assert tail[20:] == expected[920:]
    assert tail == expected[900:]
    assert max(expected[900:]) > 0.5  # 0.675
    state = {k: pickle.dumps(v) for k, v in today.__getstate__().items()}
    assert {k: pickle.dumps(v) for k, v in resumed.__getstate__().items()} == state


def test_a_snapshot_holds_the_watches_as_tuples_and_one_holding_the_objects_loads() -> None:
    """Since session 25 the watches pickle as tuples (`events.watch_state`); a snapshot of
    the code before pickled the SensorWatch objects: both resume the same watches."""
    from cloud.detect import FaultMonitor
    from cloud.logic.events import FieldWatch, SensorWatch

    node = NodeState(3_600 * 10**9, detect=True)
    node.watch["door-1"] = SensorWatch({"count": FieldWatch(None, FaultMonitor(
        "hospital.door", "count", "door-1"), 5, 0.0, 1e6)})
    state = node.__getstate__()
    assert type(state["watch"]) is bytes
    held = pickle.loads(state["watch"])
    assert type(held["door-1"]) is dict
    assert type(held["door-1"]["count"]) is tuple
    before = {**state, "watch": pickle.dumps(node.watch)}
    for snapshot in (state, before):
        resumed = NodeState.__new__(NodeState)
        resumed.__setstate__(pickle.loads(pickle.dumps(snapshot)))
        kept = resumed.watch["door-1"].fields["count"]
        assert kept is not None
        original = node.watch["door-1"].fields["count"]
        assert original is not None
        assert kept.faults.__getstate__() == original.faults.__getstate__()
        assert (kept.detector, kept.last_ts_ns, kept.low, kept.high) == (None, 5, 0.0, 1e6)


def _heartbeats(run: str | None) -> list[Heartbeat]:
    """Every 30 s, a clock jump counted at the sixth, a restart at the ninth."""
    t0 = datetime(2026, 12, 1, 8, tzinfo=UTC)
    out = []
    for k in range(12):
        at = t0 + timedelta(seconds=30 * k)
        up = 100.0 + 30 * k if k < 8 else 5.0 + 30 * (k - 8)
        name = None if run is None else f"{run}-{'a' if k < 8 else 'b'}"
        out.append(Heartbeat(at, up, 1 if 5 <= k < 8 else 0, run=name,
                             received=at + timedelta(seconds=1)))
    return out


@pytest.mark.parametrize("run", [None, "run"])
def test_a_heartbeat_monitor_pickled_with_its_deques_and_datetimes_goes_on_as_it_would_have(
        run: str | None) -> None:
    """Before session 27 a `HeartbeatMonitor` pickled its __dict__ as it is: its rings as
    deques, the run's start (and the remembered events' stamps) as datetimes. Now lists and
    µs, which pickle writes without a reduce each; the old layout still loads."""
    beats = _heartbeats(run)
    fed = HeartbeatMonitor()
    for hb in beats[:10]:
        fed.update(hb)
    assert fed._raised if run is None else fed._run_start is not None
    old = HeartbeatMonitor.__new__(HeartbeatMonitor)
    old.__setstate__(pickle.loads(pickle.dumps(dict(fed.__dict__), protocol=pickle.HIGHEST_PROTOCOL)))
    pickled = pickle.dumps(fed, protocol=pickle.HIGHEST_PROTOCOL)
    names = {arg for _, arg, _ in pickletools.genops(pickled) if isinstance(arg, str)}
    assert "deque" not in names
    if run is not None:  # (a legacy run's remembered events keep their datetimes)
        assert not names & {"datetime", "timezone"}
    again = pickle.loads(pickled)
    for m in (old, again):
        assert m.__dict__ == fed.__dict__
        assert (m._raised.maxlen, m._gaps.maxlen) == (fed._raised.maxlen, fed._gaps.maxlen)
    for hb in beats[10:]:
        expected = fed.update(hb)
        assert old.update(hb) == expected
        assert again.update(hb) == expected


@pytest.mark.parametrize("made", [FAULT_SETTINGS[("hospital.queue", "ticket")], FaultSettings(),
                                  KINDS["air.pm"].fields["pm25"]])
def test_settings_and_specs_pickled_by_dataclasses_own_getstate_load(
        made: FaultSettings | FieldSpec) -> None:
    """Before session 27 a monitor's settings and spec pickled as dataclasses' own
    `__getstate__` made them (a list of the values); now a tuple of them in one C call."""
    default = [getattr(made, f.name) for f in fields(made)]
    loaded = type(made).__new__(type(made))
    loaded.__setstate__(pickle.loads(pickle.dumps(default, protocol=pickle.HIGHEST_PROTOCOL)))
    assert loaded == made
    pickled = pickle.dumps(made, protocol=pickle.HIGHEST_PROTOCOL)
    assert pickle.loads(pickled) == made
    assert tuple(default) == made.__getstate__()
