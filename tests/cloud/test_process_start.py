"""The process start's source (cloud.flow.ProcessStart): an empty batch for the process's
own sink partition (and, from the first worker, each retired one) at start, then again every
`every_s` until the processor drains, so that the sink partitions reach an epoch end, where
their held requests run, without data coming. Its clock is injected; Bytewax's own runs of
it are the flow tests'."""

from __future__ import annotations

import threading

import pytest
from bytewax.inputs import AbortExecution

from cloud.flow import AbortStop, ProcessStart, RetiredPartition, sink_part


class _Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_an_empty_batch_at_start_then_every_interval_until_drained() -> None:
    clock, drain = _Clock(), threading.Event()
    start = ProcessStart(sink_part(0), [sink_part(2), sink_part(3)], drain, every_s=5.0, monotonic=clock)
    first = start.build("process_start", 0, 1)
    others = start.build("process_start", 1, 2)
    assert first.next_batch() == [(sink_part(0), []), (sink_part(2), []), (sink_part(3), [])]
    assert others.next_batch() == [(sink_part(0), [])]  # retired ones from the first worker only
    assert first.next_batch() == []
    clock.now += 4.9
    assert first.next_batch() == []
    clock.now += 0.1
    assert first.next_batch() == [(sink_part(0), []), (sink_part(2), []), (sink_part(3), [])]
    assert first.next_awake() is not None  # woken often: every epoch waits for a source
    drain.set()
    with pytest.raises(StopIteration):
        first.next_batch()


def test_a_processor_drained_before_it_started_still_sends_the_start_batch() -> None:
    drain = threading.Event()
    drain.set()
    part = ProcessStart(sink_part(1), [], drain, every_s=5.0, monotonic=_Clock()).build("p", 0, 1)
    assert part.next_batch() == [(sink_part(1), [])]
    with pytest.raises(StopIteration):
        part.next_batch()


def test_with_an_abort_stop_every_source_leaves_the_run_by_abort() -> None:
    """flow.stop = "abort": each of the dataflow's sources raises Bytewax's AbortExecution
    once the stop is set, so that every worker leaves (a worker leaves only on its own
    sources' abort), and says so for the stop's wait (cloud/cli.py)."""
    stop = AbortStop()
    start = ProcessStart(sink_part(0), [], stop, every_s=5.0, monotonic=_Clock()).build("p", 0, 1)
    retired = RetiredPartition(stop)
    assert start.next_batch() == [(sink_part(0), [])]
    assert retired.next_batch() == []
    stop.set()
    assert not stop.raised
    for source in (start, retired):
        with pytest.raises(AbortExecution):
            source.next_batch()
    assert stop.raised
