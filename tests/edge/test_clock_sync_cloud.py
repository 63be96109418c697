"""A node whose clock is not synchronised yet, end to end: its flagged readings reach
InfluxDB raw and no minute aggregate (real agent on an emulated SDS011, real broker, the
cloud processor, real InfluxDB). The probe is the package's FixedClockSync: this machine's
kernel says "not synchronised" forever, and the test must switch it."""

from __future__ import annotations

from typing import Any

import pytest

from edge.agent import Agent
from edge.clock_sync import CLOCK_UNSYNCED, FixedClockSync
from edge.config import load_config
from firmware_bridge.protocols.sds011.emulator import Sds011Emulator
from tests.agent_thread import agent_in_thread
from urbanpulse.influx_http import InfluxHTTP
from urbanpulse.testing import wait_for

pytestmark = [pytest.mark.stack, pytest.mark.slow]

NODE = "aq-unsynced"
BEFORE_NTP_PM25 = 500.0  # what the sensor reads while the clock is wrong: no window may see it
AFTER_PM25 = 20.0


def _raw(reader: InfluxHTTP) -> dict[int, dict[str, Any]]:
    rows = reader.query_points(f"SELECT seq, pm25, flags FROM raw.air_pm WHERE node = '{NODE}'",
                               db="urbanpulse")
    return {int(r["seq"]): r for r in rows}


def test_readings_made_before_ntp_are_stored_raw_and_in_no_aggregate(  # type: ignore[no-untyped-def]
        make_node_config, cloud_factory, reader) -> None:
    pm25 = [BEFORE_NTP_PM25]
    emu = Sds011Emulator(lambda: (pm25[0], 40.0), period_s=0.05, warmup_s=0.0)
    port = emu.start()
    path = make_node_config("hn-e2e", NODE, f'[[sensors]]\nid = "pm-1"\ndriver = "sds011"\n'
                            f'port = "{port}"\nsilence_timeout_s = 5.0\nwarmup_s = 0\n',
                            delivery="cloud", ack_timeout_s=5.0)
    cloud = cloud_factory("unsynced")
    cloud.start()
    wait_for(lambda: "ingest subscribed" in cloud.log(), 30, "the ingest to subscribe")
    probe = FixedClockSync(False)  # a Pi booted on its last shutdown's time
    agent = Agent(load_config(path), clock_sync=probe)
    state = agent.drivers["pm-1"]
    try:
        with agent_in_thread(agent):
            wait_for(lambda: state.readings >= 10, 20, "readings before NTP answers")
            # The values change first; readings made since still count as unsynchronised, and
            # come after every BEFORE_NTP reading (one serial line, in order).
            pm25[0] = AFTER_PM25
            seen = state.readings
            wait_for(lambda: state.readings >= seen + 5, 20, "readings of the new value")
            probe.set(True)
            seen = state.readings
            wait_for(lambda: state.readings >= seen + 40, 20, "readings after NTP answered")
    finally:
        emu.stop()
    assigned = agent.outbox.next_seq("pm-1")
    raw = wait_for(lambda: (lambda r: r if len(r) == assigned else None)(_raw(reader)), 60,
                   f"all {assigned} readings raw")
    flagged = sorted(s for s, r in raw.items() if r["flags"] == CLOCK_UNSYNCED)
    unflagged = sorted(s for s, r in raw.items() if r["flags"] is None)
    assert len(flagged) + len(unflagged) == assigned
    # Flagged exactly while unsynchronised: the first readings, then none.
    assert flagged == list(range(len(flagged)))
    assert unflagged, "no reading after the clock was synchronised"
    assert {raw[s]["pm25"] for s in flagged} == {BEFORE_NTP_PM25, AFTER_PM25}
    assert {raw[s]["pm25"] for s in unflagged} == {AFTER_PM25}

    def aggregates() -> list[dict[str, Any]] | None:
        rows = reader.query_points(f"SELECT * FROM agg_1m.air_pm WHERE node = '{NODE}'",
                                   db="urbanpulse")
        return rows if sum(r["count"] for r in rows) >= len(unflagged) else None

    # The BEFORE_NTP readings were processed first: an aggregate that took them would show
    # them by the time it holds every unflagged one.
    rows = wait_for(aggregates, 60, "minute aggregates of the unflagged readings")
    assert sum(r["count"] for r in rows) == len(unflagged)
    assert max(r["pm25_max"] for r in rows) == AFTER_PM25
