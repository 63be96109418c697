"""An upgrade keeps every deployed detector and fault monitor where it had learnt to, unless
the explicit STATE_VERSION (cloud/detect/version.py) says their pickled state changed; and
a layout or settings change without a bump fails here, saying what to do
(tests/cloud/detect/state_schema.py)."""

from __future__ import annotations

import copy
import json
import pickle
import re
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

import cloud.logic.node as node_module
from cloud.detect import STATE_VERSION
from cloud.detect.tail import TailHistory
from cloud.logic.node import NodeState
from tests.cloud.detect import state_schema
from tests.cloud.detect.state_schema import STEP_S, T0, Layout, fed_node, walk
from urbanpulse.clock import to_epoch_ns


def test_the_version_is_explicit_and_no_fingerprint_of_the_code_before() -> None:
    # The snapshots of the code before carried 16 hex digits of a hash of its source:
    # theirs are dropped once, and no version can ever equal one.
    assert isinstance(STATE_VERSION, str)
    assert STATE_VERSION
    assert not re.fullmatch(r"[0-9a-f]{16}", STATE_VERSION)


def test_the_node_layout_and_settings_are_the_committed_ones_for_this_version() -> None:
    found = state_schema.node_problems(state_schema.committed(), state_schema.current())
    assert not found, "\n\n".join(found)


def test_the_city_layout_is_the_committed_one() -> None:
    found = state_schema.city_problems(state_schema.committed(), state_schema.current())
    assert not found, "\n\n".join(found)


def test_the_feed_fills_every_container_it_walks() -> None:
    # An empty container's items have no type: a change in their layout would go unseen.
    current = state_schema.current()
    empty = [f"{name}.{attribute}: {types}" for part in ("node", "city")
             for name, attributes in current[part].items() for attribute, types in attributes.items()
             if "[]" in types]
    assert empty == []


# -- the guard itself ---------------------------------------------------------------------

def test_a_layout_change_under_the_same_version_says_bump() -> None:
    old = copy.deepcopy(state_schema.current())
    del old["node"]["cloud.detect.faults.FaultMonitor"]["_held"]
    [found] = state_schema.node_problems(old, state_schema.current())
    assert "Bump STATE_VERSION in cloud/detect/version.py" in found
    assert "python -m tests.cloud.detect.state_schema --write" in found
    assert "cloud.detect.faults.FaultMonitor._held: (absent) -> list[" in found


def test_a_settings_change_under_the_same_version_says_bump() -> None:
    old = copy.deepcopy(state_schema.current())
    old["settings"]["detector air.pm/pm25"]["threshold"] = "0.75"
    [found] = state_schema.node_problems(old, state_schema.current())
    assert "would keep the old settings" in found
    assert "detector air.pm/pm25.threshold: 0.75 -> 0.8" in found
    old["settings"]["contract air.co2/co2"]["high"] = "5000"  # a range the monitors keep
    [found] = state_schema.node_problems(old, state_schema.current())
    assert "contract air.co2/co2.high: 5000 -> 10000" in found
    old["settings"]["drift pair"]["scatter"] = "0.25"  # kept by a resumed CityDrift
    [found] = state_schema.node_problems(old, state_schema.current())
    assert "drift pair.scatter: 0.25 -> 0.3" in found


def test_a_bump_without_a_new_schema_says_regenerate() -> None:
    old = dict(state_schema.current(), state_version="0")
    [found] = state_schema.node_problems(old, state_schema.current())
    assert "regenerate it with `python -m tests.cloud.detect.state_schema --write`" in found


def test_a_city_layout_change_says_load_the_old_one() -> None:
    old = copy.deepcopy(state_schema.current())
    old["city"]["cloud.detect.drift._Bin"]["counts"] = "dict[float, int]"
    [found] = state_schema.city_problems(old, state_schema.current())
    assert "bump STATE_VERSION in cloud/detect/version.py" in found
    assert "__setstate__" in found
    assert "cloud.detect.drift._Bin.counts: dict[float, int] -> " in found


def test_write_refuses_a_change_under_the_same_version(tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "state_schema.json"
    old = copy.deepcopy(state_schema.current())
    del old["node"]["cloud.detect.faults.FaultMonitor"]["_held"]
    path.write_text(json.dumps(old))
    monkeypatch.setattr(state_schema, "SCHEMA_PATH", path)
    assert state_schema.main(["--write"]) == 1
    assert json.loads(path.read_text()) == old
    assert state_schema.main([]) == 1  # the check
    assert state_schema.main(["--write", "--keep-version"]) == 0
    assert json.loads(path.read_text()) == state_schema.current()
    assert state_schema.main([]) == 0
    path.write_text(json.dumps(dict(old, state_version="0")))  # written for the version before
    assert state_schema.main(["--write"]) == 0


@dataclass(frozen=True, slots=True)
class _Settings:
    a: int = 1
    b: float = 2.0


@dataclass(frozen=True, slots=True)
class _Reordered:
    b: float = 2.0
    a: int = 1


_Reordered.__qualname__ = _Settings.__qualname__  # the same class, its fields reordered


def _layout(value: object) -> dict[str, dict[str, str]]:
    classes: Layout = {}
    walk({"value": value}, classes)
    return state_schema.as_json(classes)


def test_the_walk_sees_what_pickle_keeps(monkeypatch: pytest.MonkeyPatch) -> None:
    tail = TailHistory(4, 1.0)
    tail.surprise_push(1.0)
    before = _layout(tail)
    assert before["cloud.detect.tail.TailHistory"]["_values"] == "array.array[f]"
    assert "_sorted" not in before["cloud.detect.tail.TailHistory"]  # not pickled
    # an attribute more in the pickled state
    getstate = TailHistory.__getstate__
    monkeypatch.setattr(TailHistory, "__getstate__", lambda self: {**getstate(self), "extra": [1.5]})
    assert _layout(tail)["cloud.detect.tail.TailHistory"]["extra"] == "list[float]"
    monkeypatch.undo()
    # a value of another type
    tail.lower = 1
    assert _layout(tail)["cloud.detect.tail.TailHistory"]["lower"] == "int"
    # the fields of a frozen slotted dataclass (pickled by position) in another order
    assert _layout(_Settings()) != _layout(_Reordered())


# -- resuming a node's snapshot -----------------------------------------------------------

def _learnt() -> NodeState:
    state, _ = fed_node(120)  # 10 h of every kind of sensor
    return state


def _scores(state: NodeState, at: float) -> list[float]:
    """The scores of the next reading of each detector of `state`, the same value each."""
    ts = to_epoch_ns(T0 + timedelta(seconds=at))
    return [watch.detector.update(ts, 5.0) for sensor in state.watch.values()
            for watch in sensor.fields.values() if watch is not None and watch.detector is not None]


def _learnt_parts(state: NodeState) -> dict[str, Any]:
    return {f"{sensor}/{name}": (watch.detector.count if watch.detector else None,
                                 watch.faults.expected_interval(), watch.faults._longest)
            for sensor, s in state.watch.items() for name, watch in s.fields.items() if watch}


def test_a_snapshot_of_this_version_resumes_its_learnt_detectors() -> None:
    state = _learnt()
    resumed: NodeState = pickle.loads(pickle.dumps(state, protocol=pickle.HIGHEST_PROTOCOL))
    assert resumed.detect_version == STATE_VERSION
    learnt = _learnt_parts(state)
    assert learnt["pm-1/pm25"] == (120, timedelta(seconds=STEP_S), STEP_S)
    assert _learnt_parts(resumed) == learnt
    assert resumed.node_watch.monitor.heartbeat_interval() == STEP_S
    at = 120 * STEP_S + 10.0
    assert _scores(resumed, at) == _scores(state, at)


def test_a_snapshot_of_another_version_starts_its_detectors_afresh(
        monkeypatch: pytest.MonkeyPatch) -> None:
    state = _learnt()
    snapshot = pickle.dumps(state, protocol=pickle.HIGHEST_PROTOCOL)
    monkeypatch.setattr(node_module, "DETECT_STATE_VERSION", "2")  # the code after a bump
    resumed: NodeState = pickle.loads(snapshot)
    assert (resumed.watch, resumed.detect_version) == ({}, "2")
    assert resumed.node_watch.monitor.heartbeat_interval() == 30.0  # the default until learnt
    assert resumed.seqs.keys() == state.seqs.keys()  # the rest of the node's state resumes
    assert resumed.ledger.keys() == state.ledger.keys()


def test_a_snapshot_of_the_fingerprinted_code_starts_its_detectors_afresh() -> None:
    state = _learnt()
    state.detect_version = "3f9c2a71d4e8b605"  # as the code before stamped its snapshots
    resumed: NodeState = pickle.loads(pickle.dumps(state))
    assert (resumed.watch, resumed.detect_version) == ({}, STATE_VERSION)
