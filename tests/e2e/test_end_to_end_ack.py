"""The node keeps readings until the cloud has them durably, not merely until the broker
has: a broker SIGKILLed while it holds messages for a stopped processor loses nothing."""

from __future__ import annotations

import os
import signal

from firmware_bridge.protocols.sds011.emulator import Sds011Emulator
from tests.agent_thread import agent_in_thread
from urbanpulse.influx_http import InfluxHTTP
from urbanpulse.stack import mosquitto, up
from urbanpulse.stack.layout import Layout
from urbanpulse.stack.process import is_alive
from urbanpulse.testing import wait_for


def _stored_seqs(reader: InfluxHTTP, node: str) -> set[int]:
    rows = reader.query_points(f"SELECT seq FROM raw.air_pm WHERE node = '{node}'", db="urbanpulse")
    return {int(r["seq"]) for r in rows}


def test_broker_crash_with_queued_messages_loses_nothing(
        make_node_config, cloud_factory, reader, stack_config) -> None:  # type: ignore[no-untyped-def]
    emu = Sds011Emulator(lambda: (31.0, 52.0), period_s=0.05, warmup_s=0.0)
    port = emu.start()
    node = "aq-e2eack"
    path = make_node_config("hn-e2e", node, f'[[sensors]]\nid = "pm-1"\ndriver = "sds011"\n'
                            f'port = "{port}"\nsilence_timeout_s = 5.0\nwarmup_s = 0\n',
                            delivery="cloud", ack_timeout_s=5.0)
    cloud = cloud_factory("e2eack")
    cloud.start()
    wait_for(lambda: "ingest subscribed" in cloud.log(), 30, "the ingest to subscribe")
    broker_up = True
    try:
        with agent_in_thread(path) as agent:
            wait_for(lambda: len(_stored_seqs(reader, node)) >= 20, 30, "readings through the cloud")
            cloud.kill()  # the ingest is gone; the broker queues for its persistent session
            assert agent.publisher is not None
            wait_for(lambda: agent.publisher.state.awaiting_cloud >= 5, 30,
                     "batches the broker took but the cloud has not confirmed")
            pid = mosquitto.running_pid(Layout(stack_config.home))
            assert pid is not None
            os.kill(pid, signal.SIGKILL)
            broker_up = False
            wait_for(lambda: not is_alive(pid), 10, "the broker to die", every_s=0.02)
            up(stack_config)
            broker_up = True
            cloud.start()
            # Rows leave the outbox only on the cloud's ack: wait until everything read so far
            # has been confirmed (resent where the crash lost it).
            wait_for(lambda: agent.publisher.state.awaiting_cloud == 0 and agent.outbox.stats().depth < 5,
                     60, f"the cloud to confirm every batch ({agent.publisher.state})")
    finally:
        if not broker_up:
            up(stack_config)
        emu.stop()
    assigned = agent.outbox.next_seq("pm-1")
    try:
        wait_for(lambda: _stored_seqs(reader, node) == set(range(assigned)), 60,
                 f"all {assigned} readings in InfluxDB")
    except AssertionError:
        missing = sorted(set(range(assigned)) - _stored_seqs(reader, node))
        raise AssertionError(f"missing {missing}; outbox depth {agent.outbox.stats().depth}; "
                             f"publisher {agent.publisher.state}") from None
