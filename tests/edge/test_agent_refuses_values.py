"""A driver's bug (a NaN, 2.5 vehicles) is refused on the node, with the cloud's own rule
(urbanpulse.wire.values), where the sample enters the outbox: before, it travelled to the
cloud, which dead-lettered it (`bad_count`, `bad_value`). The refused samples are counted
by reason in the heartbeat and logged once per sensor and reason; every other sample goes
on, to the real broker. A row the contract refuses that an older agent committed before it
checked is deleted unsent by the publisher, which goes on with the others.

The real agent, outbox, publisher and Mosquitto, and a real SDS011 driver on a
pseudo-terminal; the buggy samples are emitted through that driver's own emit (the agent's
`emitter`), on the agent's event loop, as a driver's would be: no driver in the tree makes
such values from its device's bytes."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import threading
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from edge.agent import OUTBOX_FILE, Agent
from edge.config import load_config
from edge.drivers.base import Sample
from edge.outbox import Outbox
from firmware_bridge.protocols.sds011.emulator import Sds011Emulator
from urbanpulse.clock import to_epoch_ns
from urbanpulse.testing import wait_for

SITE, NODE = "hn-refuse", "refuse-1"
LOOP = {"count": 7, "interval_s": 60.0}


@contextlib.contextmanager
def _running(path: Path) -> Iterator[tuple[Agent, asyncio.AbstractEventLoop]]:
    """The agent on its own loop in a thread (as tests/agent_thread.py), with its loop."""
    agent = Agent(load_config(path))
    loop = asyncio.new_event_loop()
    stop = asyncio.Event()
    thread = threading.Thread(target=lambda: loop.run_until_complete(agent.run(stop)), daemon=True)
    thread.start()
    try:
        yield agent, loop
    finally:
        loop.call_soon_threadsafe(stop.set)
        thread.join(30)
        loop.close()
    assert not thread.is_alive(), "the agent did not stop"


def _heartbeat_driver(statuses: list[bytes], sensor: str) -> dict[str, Any] | None:
    for status in reversed(list(statuses)):
        entry = (json.loads(status).get("health") or {}).get("drivers", {}).get(sensor)
        if entry and entry.get("refused_reasons"):
            return dict(entry)
    return None


def _mqtt(statuses: list[bytes]) -> dict[str, Any]:
    health = json.loads(list(statuses)[-1]).get("health") or {}
    return health.get("mqtt") or {}


def test_bad_values_are_refused_on_the_node_counted_and_logged_once(
        steady_sds011: Sds011Emulator, make_node_config: Callable[..., Path],
        collector: Callable[..., Any], caplog: pytest.LogCaptureFixture) -> None:
    path = make_node_config(SITE, NODE, f'[[sensors]]\nid = "pm-1"\ndriver = "sds011"\n'
                                        f'port = "{steady_sds011.port}"\nwarmup_s = 0\n')
    now = datetime.now(UTC)
    # What an agent before this check committed: a good row and one the cloud would refuse.
    state_dir = load_config(path).node.state_dir
    state_dir.mkdir(parents=True)
    old = Outbox(state_dir / OUTBOX_FILE).open()
    old.append([Sample("loop-0", "traffic.loop", {"count": 2.5, "interval_s": 60.0}, now),
                Sample("loop-0", "traffic.loop", LOOP, now)], to_epoch_ns(now))
    old.close()
    seen = collector(SITE, NODE)
    with caplog.at_level(logging.ERROR, logger="urbanpulse.edge"), _running(path) as (agent, loop):
        wait_for(lambda: seen.seqs("pm-1"), 20, "the SDS011's readings")
        emit = agent.emitter(agent.drivers["pm-1"])

        def buggy_driver() -> None:
            for _ in range(3):
                emit(Sample("loop-1", "traffic.loop", {**LOOP, "count": 2.5}, now))
                emit(Sample("loop-1", "traffic.loop", LOOP, now))
                emit(Sample("pm-9", "air.pm", {"pm25": float("nan"), "pm10": 20.0}, now))
                emit(Sample("pm-9", "air.pm", {"pm25": 12.0, "pm10": 20.0}, now))

        loop.call_soon_threadsafe(buggy_driver)
        wait_for(lambda: seen.seqs("loop-1") == [0, 1, 2] and seen.seqs("pm-9") == [0, 1, 2]
                 and seen.seqs("loop-0") == [1], 20, "the good samples at the broker")
        entry = wait_for(lambda: _heartbeat_driver(seen.statuses, "pm-1"), 20,
                         "a heartbeat with the refusals")
        wait_for(lambda: _mqtt(seen.statuses).get("unsendable") == 1, 20,
                 "a heartbeat with the old row deleted unsent")
        assert agent.publisher is not None
        assert agent.publisher.failure is None  # the old row stopped it before
    got: dict[str, list[dict[str, float]]] = {}
    for r in seen.readings:
        got.setdefault(r.sensor, []).append(dict(r.values))
    assert got["loop-1"] == [LOOP] * 3  # no 2.5 left the node, no seq spent on one
    assert got["pm-9"] == [{"pm25": 12.0, "pm10": 20.0}] * 3
    assert got["loop-0"] == [LOOP]
    assert entry["refused"] == 6
    assert entry["refused_reasons"] == {"bad_count": 3, "bad_value": 3}
    said = [(r.__dict__["sensor"], r.__dict__["reason"]) for r in caplog.records
            if "the wire contract refuses" in r.getMessage()]
    assert sorted(said) == [("loop-0", "bad_count"), ("loop-1", "bad_count"), ("pm-9", "bad_value")]
    detail = next(r.__dict__["detail"] for r in caplog.records
                  if r.__dict__.get("sensor") == "pm-9" and r.__dict__.get("reason") == "bad_value")
    assert detail == "values.pm25: must be a finite number, got nan"
