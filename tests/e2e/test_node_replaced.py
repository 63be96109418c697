"""A node that loses its state (a replaced SD card, a wiped state directory) numbers its
readings from 0 again. The cloud must take them as new readings, not as redeliveries of
the numbers it has already seen: real agent, broker, processor and InfluxDB."""

from __future__ import annotations

import shutil
from pathlib import Path

from edge.config import load_config
from firmware_bridge.protocols.sds011.emulator import Sds011Emulator
from tests.agent_thread import agent_in_thread
from urbanpulse.influx_http import InfluxHTTP
from urbanpulse.testing import wait_for

SITE, NODE = "hn-e2e", "aq-replaced"


def _stored(reader: InfluxHTTP) -> list[tuple[str, int]]:
    rows = reader.query_points(f"SELECT seq FROM raw.air_pm WHERE node = '{NODE}'", db="urbanpulse")
    return [(str(r["time"]), int(r["seq"])) for r in rows]


def _run_agent(config: Path, link: Path, reader: InfluxHTTP, stored: int) -> int:
    """Runs an agent on a fresh SDS011 emulator at `link` until InfluxDB holds `stored`
    readings of the node, stops the sensor, waits for the cloud to confirm every reading, and
    stops the agent; returns how many readings it numbered."""
    emu = Sds011Emulator(lambda: (31.0, 52.0), period_s=0.05, warmup_s=0.0, link_path=str(link))
    emu.start()
    load_config(config).node.state_dir.mkdir(exist_ok=True)  # as systemd's StateDirectory= makes it
    try:
        with agent_in_thread(config) as agent:
            wait_for(lambda: len(_stored(reader)) >= stored, 60, f"{stored} readings stored")
            emu.stop()  # nothing more to read: what was read can all be confirmed
            wait_for(lambda: agent.outbox.stats().depth == 0 and agent.publisher is not None
                     and agent.publisher.state.awaiting_cloud == 0, 60, "the cloud to confirm every reading")
    finally:
        emu.stop()
    return agent.outbox.next_seq("pm-1")


def test_a_node_numbering_from_zero_again_after_losing_its_state_loses_nothing(
        make_node_config, cloud_factory, reader, tmp_path) -> None:  # type: ignore[no-untyped-def]
    link = tmp_path / "ttyPM"
    config = make_node_config(SITE, NODE, f'[[sensors]]\nid = "pm-1"\ndriver = "sds011"\n'
                              f'port = "{link}"\nsilence_timeout_s = 5.0\nwarmup_s = 0\n', delivery="cloud")
    cloud = cloud_factory("replaced")
    cloud.start()
    try:
        wait_for(lambda: "ingest subscribed" in cloud.log(), 30, "the ingest to subscribe")
        first = _run_agent(config, link, reader, 40)
        wait_for(lambda: len(_stored(reader)) == first, 30, f"the first card's {first} readings stored")

        shutil.rmtree(tmp_path / f"state-{NODE}")  # the node's card replaced: outbox and numbers gone
        second = _run_agent(config, link, reader, first + 30)
        # Both cards number from 0: at least 30 of the new card's numbers are the old card's.
        # (How many each numbers depends on how far the pipeline lags, not on the test: the
        # new card's may pass the old card's count by a few.)
        assert min(first, second) >= 30, (first, second)

        wait_for(lambda: len(_stored(reader)) == first + second, 60,
                 f"{first} + {second} readings stored (the new card's are not duplicates)")
        assert sorted(seq for _, seq in _stored(reader)) == sorted([*range(first), *range(second)])
        [ledger] = reader.query_points(f"SELECT sum(restarts) AS restarts FROM agg_1h.ledger "
                                       f"WHERE node = '{NODE}'", db="urbanpulse")
        assert ledger["restarts"] == 1
    finally:
        cloud.stop()
