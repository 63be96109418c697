"""The processor's garbage-collector policy (cloud/gc_policy.py, flow.gc_tuning): fewer
collections, but cyclic garbage is still reclaimed without anybody calling gc.collect()."""

from __future__ import annotations

import gc
import weakref
from collections.abc import Iterator

import pytest

from cloud.config import parse_cloud_config
from cloud.gc_policy import STREAM_THRESHOLDS, tune_for_streaming
from urbanpulse.errors import ConfigError

BASE = {"mqtt": {"password_file": "p", "ca_file": "c"}, "influx": {"password_file": "p"}}


class Node:
    def __init__(self) -> None:
        self.me = self  # a reference cycle: only the cyclic collector frees it


@pytest.fixture
def streaming_gc() -> Iterator[None]:
    old = tune_for_streaming()
    try:
        yield
    finally:
        gc.unfreeze()
        gc.set_threshold(*old)


def test_tuning_raises_the_thresholds_and_freezes_what_start_up_allocated(streaming_gc: None) -> None:
    assert gc.get_threshold() == STREAM_THRESHOLDS
    assert gc.get_freeze_count() > 0


def test_cycles_made_after_tuning_are_still_collected_by_allocation_alone(streaming_gc: None) -> None:
    cycle = Node()
    gone = weakref.ref(cycle)
    del cycle
    assert gone() is not None, "a cycle outlives its last name until the collector runs"
    kept: list[list[int]] = []
    for _ in range(50 * STREAM_THRESHOLDS[0]):  # bounded: far more than one young generation
        kept.append([])
        if gone() is None:
            break
    assert gone() is None, "no collection ran after 50 young generations of allocations"


def test_gc_tuning_is_on_by_default_and_typed() -> None:
    assert parse_cloud_config(BASE).flow.gc_tuning is True
    assert parse_cloud_config({**BASE, "flow": {"gc_tuning": False}}).flow.gc_tuning is False
    with pytest.raises(ConfigError, match=r"flow\.gc_tuning"):
        parse_cloud_config({**BASE, "flow": {"gc_tuning": "yes"}})
