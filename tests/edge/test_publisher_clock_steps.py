"""The publisher and a wall clock that steps (NTP correcting a node that booted on a wrong
time, an RTC module set ahead): readings stamped with their commit time (`created_ns`)
before the step must not wait for the clock to catch up with that time again.

The node's publisher runs on the session's real Mosquitto with delivery = "broker", on a
FakeClock that the test steps; a collector (as the cloud) sees every reading.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from edge.config import load_config
from edge.drivers.base import Sample
from edge.mqtt_client import make_client as make_node_client
from edge.outbox import Outbox
from edge.publisher import Publisher
from tests.conftest import Collector
from urbanpulse.clock import FakeClock, to_epoch_ns
from urbanpulse.testing import wait_for

SITE = "hn-clockstep"


@pytest.fixture
def node(make_node_config: Callable[..., Path], tmp_path: Path
         ) -> Iterator[Callable[[str], tuple[Publisher, Outbox, FakeClock]]]:
    made: list[tuple[Publisher, Outbox]] = []

    def make(node_id: str) -> tuple[Publisher, Outbox, FakeClock]:
        path = make_node_config(SITE, node_id, '[[sensors]]\nid = "pm-1"\ndriver = "sds011"\n'
                                'port = "/dev/null"\n')
        config = load_config(path)
        clock = FakeClock(datetime(2026, 11, 29, 6, 0, tzinfo=UTC))
        outbox = Outbox(tmp_path / f"{node_id}.sqlite3").open()
        publisher = Publisher(config, outbox, lambda: make_node_client(f"edge-{SITE}.{node_id}",
                                                                       config.mqtt),
                              clock, lambda: {})
        publisher.start()
        made.append((publisher, outbox))
        return publisher, outbox, clock

    yield make
    for publisher, outbox in made:
        publisher.stop()
        outbox.close()
        assert publisher.failure is None


def _append(outbox: Outbox, clock: FakeClock, n: int) -> None:
    outbox.append([Sample("pm-1", "air.pm", {"pm25": 12.0, "pm10": 20.0}, clock.now())
                   for _ in range(n)], to_epoch_ns(clock.now()))


def _pumped(publisher: Publisher, clock: FakeClock) -> None:
    now = clock.monotonic()
    wait_for(lambda: (publisher.state.pumped_at or 0) >= now, 10, f"the publisher to look at {now}",
             every_s=0.01)


@pytest.mark.parametrize("readings_before", [3, 0])
def test_readings_committed_before_the_clock_steps_back_leave_at_once(
        node: Callable[[str], tuple[Publisher, Outbox, FakeClock]],
        collector: Callable[[str, str], Collector], readings_before: int) -> None:
    """Readings committed before an hour's step back, and readings after it, leave within
    batch_max_delay_s (0.2 s), not once the clock has caught up with the hour. Before, the
    live pass waited for the first of them to be batch_max_delay_s old on the stepped clock:
    a node's readings stalled for as long as the step (an RTC set a day ahead: a day)."""
    node_id = f"aq-back-{readings_before}"
    publisher, outbox, clock = node(node_id)
    seen = collector(SITE, node_id)
    wait_for(lambda: publisher.state.connected, 15, "the publisher to connect")
    _append(outbox, clock, 2)  # sent before the step, as usual
    clock.advance(1.0)
    wait_for(lambda: len(seen.seqs("pm-1")) == 2, 10, "the first readings")
    _append(outbox, clock, readings_before)  # committed, not yet due when the clock steps
    clock.jump(-3600)
    _append(outbox, clock, 4)
    for _ in range(10):  # 2 s of the FakeClock, ten times batch_max_delay_s
        clock.advance(0.2)
        _pumped(publisher, clock)
    total = 2 + readings_before + 4
    wait_for(lambda: len(seen.seqs("pm-1")) == total, 10,
             f"every reading at the subscriber (depth {outbox.stats().depth})")
    assert seen.seqs("pm-1") == list(range(total))
    wait_for(lambda: outbox.stats().depth == 0, 10, "the outbox emptied by the PUBACKs")
