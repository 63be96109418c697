"""The agent on a real broker, reading an SDS011 emulated on a real pseudo-terminal."""

from __future__ import annotations

import asyncio
import json
import os
import random
import re
import signal
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from edge.agent import OUTBOX_FILE, Agent
from edge.config import load_config
from edge.outbox import Outbox
from firmware_bridge.protocols.sds011.emulator import Sds011Emulator
from tests.agent_thread import agent_in_thread
from tests.conftest import Collector
from urbanpulse.cli import main
from urbanpulse.clock import to_epoch_ns
from urbanpulse.testing import wait_for


def sds011_sensor(port: str) -> str:
    return f"""
[[sensors]]
id = "pm-1"
driver = "sds011"
port = "{port}"
silence_timeout_s = 3.0
"""


@pytest.fixture
def sds011() -> Iterator[Sds011Emulator]:
    counter = iter(range(10**9))

    def values() -> tuple[float, float]:
        n = next(counter)
        return 20.0 + n % 50 / 10, 40.0 + n % 7

    emu = Sds011Emulator(values, period_s=0.05, warmup_s=0.0)
    emu.start()
    yield emu
    emu.stop()


def _wait_until_every_number_arrived(seen: Collector, assigned: int) -> None:
    """Every sequence number below `assigned` reaches the subscriber, none other. Polled: the
    agent is done with a batch at the broker's PUBACK, which says nothing of when the
    broker's copy reaches another client, so the last batches may still be on their way to
    the subscriber when the agent has stopped."""
    try:
        wait_for(lambda: set(seen.seqs("pm-1")) == set(range(assigned)), 10,
                 f"the {assigned} numbers assigned at the subscriber")
    except AssertionError:
        got = set(seen.seqs("pm-1"))
        raise AssertionError(f"missing: {sorted(set(range(assigned)) - got)[:20]}; "
                             f"unexpected: {sorted(got - set(range(assigned)))[:20]}") from None


def _run_agent_in_thread(config_path: Path) -> tuple[Agent, threading.Thread, asyncio.Event,
                                                     asyncio.AbstractEventLoop]:
    loop = asyncio.new_event_loop()
    stop = asyncio.Event()
    agent = Agent(load_config(config_path))

    def target() -> None:
        asyncio.set_event_loop(loop)
        loop.run_until_complete(agent.run(stop))
        loop.close()

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    return agent, thread, stop, loop


def test_readings_arrive_in_order_with_their_sequence_numbers(
        sds011, make_node_config, collector) -> None:  # type: ignore[no-untyped-def]
    path = make_node_config("hn-edge", "aq-seq", sds011_sensor(sds011.port))
    seen = collector("hn-edge", "aq-seq")
    agent, thread, stop, loop = _run_agent_in_thread(path)
    try:
        seqs = wait_for(lambda: (lambda s: s if len(s) >= 30 else None)(seen.seqs("pm-1")), 30,
                        "30 readings at the subscriber")
        assert seqs == list(range(len(seqs)))
        r = seen.readings[0]
        assert r.kind == "air.pm"
        assert set(r.values) == {"pm25", "pm10"}
        assert 20.0 <= r.values["pm25"] <= 25.0
        mqtt = agent.health()["mqtt"]  # what `edge status` shows of the link
        assert mqtt["connected"]
        assert 0 < mqtt["last_publish_ns"] <= to_epoch_ns(datetime.now(UTC))
    finally:
        loop.call_soon_threadsafe(stop.set)
        thread.join(20)
    assert not thread.is_alive()
    # The agent stops once the broker has its offline status; the subscriber gets its copy
    # after that, at a moment MQTT does not tie to the agent's.
    wait_for(lambda: seen.first_status("offline", after=0.0) is not None, 10,
             "the offline status of a clean stop at the subscriber")
    assert seen.first_status("online", after=0.0) is not None
    assert agent.drivers["pm-1"].restarts == 0
    assert agent.outbox.stats().depth == 0
    assert seen.numberings == {agent.outbox.numbering()}  # every batch names the numbering


def test_the_outbox_keeps_its_numbering_name_and_a_new_outbox_gets_another(tmp_path: Path) -> None:
    path = tmp_path / "state" / OUTBOX_FILE
    first = Outbox(path).open()
    name = first.numbering()
    assert re.fullmatch("[0-9a-f]{16}", name)
    first.close()
    assert Outbox(path).open().numbering() == name  # a restart keeps it
    path.unlink()
    assert Outbox(path).open().numbering() != name  # a node that lost its state: a new name


def _start_agent_process(config: Path, log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        return subprocess.Popen([sys.executable, "-m", "urbanpulse.cli", "edge", "run", "--config",
                                 str(config)], stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True)


def test_sigkill_at_random_moments_loses_nothing_committed(
        sds011, make_node_config, collector, tmp_path) -> None:  # type: ignore[no-untyped-def]
    path = make_node_config("hn-edge", "aq-kill", sds011_sensor(sds011.port))
    seen = collector("hn-edge", "aq-kill")
    outbox_path = load_config(path).node.state_dir / OUTBOX_FILE
    rng = random.Random(7)
    log = tmp_path / "agent.log"
    for round_ in range(4):
        proc = _start_agent_process(path, log)
        before = len(seen.seqs("pm-1"))
        wait_for(lambda b=before: len(seen.seqs("pm-1")) > b + rng.randint(3, 15), 30,
                 f"readings in round {round_}")
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(10)
    before = len(seen.seqs("pm-1"))
    proc = _start_agent_process(path, log)
    wait_for(lambda: len(seen.seqs("pm-1")) > before + 5, 30, "the last agent to publish")
    os.killpg(proc.pid, signal.SIGTERM)
    assert proc.wait(30) == 0, log.read_text()

    outbox = Outbox(outbox_path).open()
    try:
        assigned = outbox.next_seq("pm-1")
        depth = outbox.stats().depth
    finally:
        outbox.close()
    assert depth == 0, "a clean stop drains the outbox"
    # Every sequence number ever assigned was committed with its reading: all must arrive.
    _wait_until_every_number_arrived(seen, assigned)


def test_broker_down_for_a_while_then_back_every_reading_arrives(
        sds011, make_node_config, collector, stack_config) -> None:  # type: ignore[no-untyped-def]
    from urbanpulse.stack import mosquitto, up
    from urbanpulse.stack.layout import Layout

    path = make_node_config("hn-edge", "aq-outage", sds011_sensor(sds011.port))
    seen = collector("hn-edge", "aq-outage")
    agent, thread, stop, loop = _run_agent_in_thread(path)
    restarted = False
    try:
        wait_for(lambda: len(seen.seqs("pm-1")) >= 10, 30, "readings before the outage")
        assert mosquitto.stop(Layout(stack_config.home))
        wait_for(lambda: agent.outbox.stats().depth >= 40, 30, "a backlog in the outbox")
        assert agent.publisher is not None
        assert not agent.publisher.state.connected
        up(stack_config)
        restarted = True
        wait_for(lambda: agent.outbox.stats().depth == 0 and len(seen.seqs("pm-1")) > 60, 60,
                 "the backlog to drain")
    finally:
        if not restarted:
            up(stack_config)
        loop.call_soon_threadsafe(stop.set)
        thread.join(20)
    assigned = agent.outbox.next_seq("pm-1")
    _wait_until_every_number_arrived(seen, assigned)
    assert agent.publisher.state.disconnects >= 1


def test_edge_status_shows_the_resend_backoff_while_the_cloud_is_silent(
        sds011: Sds011Emulator, make_node_config: Callable[..., Path],
        capsys: pytest.CaptureFixture[str]) -> None:
    """The real agent with delivery = "cloud" and no cloud to confirm: its batches wait, are
    sent again at doubling waits, and `edge status` (the heartbeat's `mqtt` part, from the
    agent's state file) says how many wait, the wait now set and when the next resend is."""
    path = make_node_config("hn-edge", "aq-backoff-status", sds011_sensor(sds011.port),
                            delivery="cloud", ack_timeout_s=0.5)
    path.write_text(path.read_text().replace("ack_timeout_s = 0.5",
                                             "ack_timeout_s = 0.5\nack_timeout_max_s = 4.0"))
    with agent_in_thread(path) as agent:
        wait_for(lambda: agent.publisher is not None
                 and agent.publisher.state.resent_batches >= 20, 30, "batches sent again")
        agent.write_state()
        mqtt = agent.health()["mqtt"]
        assert mqtt["awaiting_cloud"] > 0
        assert 0.5 < mqtt["resend_wait_s"] <= 4.0  # doubled from ack_timeout_s
        assert 0 <= mqtt["next_resend_in_s"] <= mqtt["resend_wait_s"]
        assert mqtt["refused"] == 0
        config = str(path)
        assert main(["edge", "status", "--config", config]) == 0
        out = capsys.readouterr().out
        assert main(["edge", "status", "--config", config, "--json"]) == 0
        status = json.loads(capsys.readouterr().out)
    shown = status["agent"]["health"]["mqtt"]
    line = next(line for line in out.splitlines() if line.startswith("resend:"))
    assert line == (f"resend:    {shown['awaiting_cloud']} batches await the cloud's ack, 0 refused "
                    f"by the broker; resend wait now {shown['resend_wait_s']:g} s, next resend in "
                    f"{shown['next_resend_in_s']:g} s")
    assert shown["resend_wait_s"] > 0.5
