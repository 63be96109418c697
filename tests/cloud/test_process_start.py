"""The process start's source (cloud.flow.ProcessStart): an empty batch for the process's
own sink partition (and, from the first worker, each retired one) at start, then again every
`every_s` until the processor drains, so that the sink partitions reach an epoch end, where
their held requests run, without data coming. Its clock is injected; Bytewax's own runs of
it are the flow tests'."""

from __future__ import annotations

import threading

import pytest

from cloud.flow import ProcessStart, sink_part


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
