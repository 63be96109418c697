""""A corrupt serial frame is counted and skipped": the counts must reach the technician.
Each serial driver counts the input it could not use (the decoder's checksum errors,
skipped bytes and malformed frames; a upfw board's lost sentences, door gaps, ignored and
refused loop messages), but only `describe()` held them, which nothing on a deployed node
shows: the heartbeat's `health.drivers.<id>` and `urbanpulse edge status` said nothing of
them. Here four serial sensors on real pseudo-terminals send corrupt frames through the
real agent to the real broker; the heartbeat carries each driver's counts in
`bad_input`, summed over a restart (the upfw board's refused interval fails its driver,
whose next run starts from zero), and `edge status` shows them."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from edge.cli import main
from firmware_bridge.protocols.mhz19b.emulator import Mhz19bEmulator
from firmware_bridge.protocols.pms5003.emulator import Pms5003Emulator, reading
from firmware_bridge.protocols.sds011.emulator import Sds011Emulator
from firmware_bridge.protocols.upfw import DeviceKind, DoorCount, LoopInterval, LoopVehicle
from firmware_bridge.protocols.upfw.emulator import UpfwEmulator
from tests.agent_thread import agent_in_thread
from tests.edge.serial.test_serial_upfw import Script
from urbanpulse.testing import wait_for

DECODER = ("checksum_errors", "bytes_skipped", "malformed")
UPFW = (*DECODER, "lost_sentences", "door_gaps", "ignored", "uneven_intervals")


def _sensors(sds: str, pms: str, mhz: str, board: str) -> str:
    return f"""
[[sensors]]
id = "pm-a"
driver = "sds011"
port = "{sds}"
warmup_s = 0
silence_timeout_s = 3.0

[[sensors]]
id = "pm-b"
driver = "pms5003"
port = "{pms}"
warmup_s = 0
silence_timeout_s = 3.0

[[sensors]]
id = "co2-1"
driver = "mhz19b"
port = "{mhz}"
abc = false
warmup_s = 0
query_interval_s = 0.2
reply_timeout_s = 0.15
silence_timeout_s = 3.0

[[sensors]]
id = "doors"
driver = "upfw"
port = "{board}"
silence_timeout_s = 30.0
"""


@pytest.fixture
def devices() -> Iterator[tuple[Sds011Emulator, Pms5003Emulator, Mhz19bEmulator, UpfwEmulator, Script]]:
    script = Script()
    emus = (Sds011Emulator(lambda: (12.0, 20.0), period_s=0.1, warmup_s=0.0),
            Pms5003Emulator(lambda: reading(18, 31), period_s=0.1, warmup_s=0.0),
            Mhz19bEmulator(lambda: 812.0, warmup_s=0.0),
            UpfwEmulator(script, kind=DeviceKind.DOOR, device_id="dc-hn-004", channels=2,
                         period_s=0.02))
    for emu in emus:
        emu.start()
    yield (*emus, script)
    for emu in emus:
        emu.stop()


def _bad_input(status: bytes, sensor: str) -> dict[str, Any]:
    health = json.loads(status).get("health") or {}
    entry = health.get("drivers", {}).get(sensor, {})
    return entry.get("bad_input") or {}


def test_corrupt_serial_frames_are_counted_in_the_heartbeat_and_edge_status(  # type: ignore[no-untyped-def]
        devices, make_node_config, collector, capsys) -> None:
    sds, pms, mhz, board, script = devices
    path = make_node_config("hn-serial", "bad-input-1",
                            _sensors(sds.port, pms.port, mhz.port, board.port))
    seen = collector("hn-serial", "bad-input-1")
    with agent_in_thread(path) as agent:
        for sensor in ("pm-a", "pm-b", "co2-1"):
            wait_for(lambda s=sensor: len(seen.seqs(s)) >= 3, 20, f"readings of {sensor}")
        wait_for(lambda: "doors" in agent._running
                 and agent._running["doors"].describe()["board"] is not None, 20, "the board's HI")
        def heard() -> int:
            described = agent._running["doors"].describe()
            return sum(described["messages"].values()) + described["checksum_errors"]

        def send(message: Any, *, damaged: bool = False) -> None:
            """One sentence a board report (its own t_ms), heard before the next."""
            before = heard()
            if damaged:
                board.inject_bad_checksum()
            script.put(message)
            wait_for(lambda: heard() > before, 20, f"the board's {message}")

        send(DoorCount(0, 0, 1, 10, 0))  # a baseline
        send(DoorCount(0, 0, 1, 11, 0))
        wait_for(lambda: seen.seqs("doors-1"), 20, "the first door count")

        for emu in (sds, pms, mhz):
            emu.inject_bad_checksum()
        sds.inject_garbage(64)
        send(DoorCount(0, 0, 1, 12, 0), damaged=True)  # skipped
        send(DoorCount(0, 0, 1, 15, 0))  # its seq says one sentence was lost
        send(DoorCount(0, 0, 1, 4, 0))  # a total that falls: a door gap
        send(LoopVehicle(0, 0, 1, 780, 1))  # left out in intervals mode: ignored
        script.put(LoopInterval(0, 0, 1, 2400, 5, 1.0))  # refused: the driver fails
        wait_for(lambda: agent.drivers["doors"].restarts >= 1, 20, "the board's driver failing")
        wait_for(lambda: agent.drivers["doors"].state == "running"
                 and agent._running["doors"].describe()["board"] is not None, 20, "its restart")

        def counted() -> bool:
            for status in list(seen.statuses):
                doors = _bad_input(status, "doors")
                if [doors.get(k) for k in UPFW[3:]] == [1, 1, 1, 1] and all(
                        _bad_input(status, s).get("checksum_errors", 0) >= 1
                        for s in ("pm-a", "pm-b", "co2-1", "doors")):
                    return True
            return False

        wait_for(counted, 20, "a heartbeat with every driver's bad input")
        last = [s for s in seen.statuses if _bad_input(s, "doors")][-1]
    for sensor, names in (("pm-a", DECODER), ("pm-b", (*DECODER, "sensor_errors")),
                          ("co2-1", DECODER)):
        assert sorted(_bad_input(last, sensor)) == sorted(names), sensor
    doors = _bad_input(last, "doors")
    assert sorted(doors) == sorted(UPFW)
    # one damaged sentence; its bytes skipped, summed over the restart
    assert [doors[k] for k in UPFW[3:]] == [1, 1, 1, 1]
    assert doors["checksum_errors"] == 1
    assert doors["bytes_skipped"] > 0
    assert _bad_input(last, "pm-a")["bytes_skipped"] >= 10  # the bad frame's and the garbage

    assert main(["status", "--config", str(path)]) == 0
    out = capsys.readouterr().out
    lines = {line.split(":")[0]: line for line in out.splitlines() if line.startswith("driver ")}
    assert "bad input: checksum_errors 1, bytes_skipped " in lines["driver doors"], out
    assert "lost_sentences 1, door_gaps 1, ignored 1, uneven_intervals 1" in lines["driver doors"]
    for sensor in ("pm-a", "pm-b", "co2-1"):
        assert "bad input: checksum_errors " in lines[f"driver {sensor}"], out
