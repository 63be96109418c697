"""The pipeline benchmark's relay mode (`bench.pipeline.run --relay SECONDS`): each site's node
messages due in a window go as one relay of its gateway; a small run delivers every reading
once through the real gateway path. No timing is asserted."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

from bench.pipeline.case import CaseSpec, run_case
from bench.pipeline.workload import GATEWAY, generate, relayed, schedule
from urbanpulse.wire.relay import decode_relay
from urbanpulse.wire.topics import relay_topic


def test_relays_carry_every_node_message_of_their_site_and_window_once_in_order() -> None:
    workload = generate(3000, now=datetime(2026, 6, 1, 12, tzinfo=UTC), live_s=1.0)
    plan = schedule(workload.messages, 500.0)
    relays = relayed(plan, 1.0)
    assert [t for t, _ in relays] == sorted(t for t, _ in relays)
    assert len(relays) < len(plan) / 3
    carried = []
    for t, m in relays:
        assert (m.node, m.topic) == (GATEWAY, relay_topic(m.site, GATEWAY))
        relay = decode_relay(m.payload, site=m.site, gateway=GATEWAY)
        assert relay.rejected == []
        assert m.readings == sum(len(json.loads(r.payload)["readings"]) for r in relay.messages)
        carried += [(m.site, r.node, r.payload, t) for r in relay.messages]
    by_site = sorted(((m.site, m.node, m.payload, int(t) + 1.0) for t, m in plan), key=lambda x: (x[0], x[3]))
    assert sorted(carried, key=lambda x: (x[0], x[3])) == by_site
    assert sum(m.readings for _, m in relays) == workload.readings


@pytest.mark.stack
@pytest.mark.slow
def test_a_small_relayed_run_delivers_every_reading_exactly_once(tmp_path: Path) -> None:
    workload = generate(3000, live_s=1.0)
    spec = CaseSpec(rate=1500.0, duration_s=2.0, detect=False, publishers=2, window=5, drain_s=60.0,
                    relay_s=1.0)
    result = run_case(spec, workload, tmp_path / "case")
    assert result.error is None, result.error
    assert result.complete
    assert result.node_messages == len(workload.messages) > result.messages
    assert result.journaled == workload.readings
    assert result.journal_duplicate_rows == 0
    assert result.points_written == result.points_expected
    assert result.dead_letters == 0


@pytest.mark.stack
@pytest.mark.slow
def test_a_small_relayed_run_on_a_two_process_cluster_delivers_every_reading_once(tmp_path: Path) -> None:
    """Two ingests journal the relays; the one source expands them and the keying sends each
    node's messages to the process of its node: every reading once."""
    workload = generate(3000, live_s=1.0)
    spec = CaseSpec(rate=1500.0, duration_s=2.0, detect=False, publishers=2, window=5, drain_s=60.0,
                    relay_s=1.0, processes=2)
    result = run_case(spec, workload, tmp_path / "case")
    assert result.error is None, result.error
    assert result.complete
    assert result.journaled == workload.readings
    assert result.points_written == result.points_expected
    assert result.dead_letters == 0
