"""End to end: the agent on the real broker reads a PMS5003T, an MH-Z19B and a kiosk board,
each emulated on its own pseudo-terminal; an unplugged sensor is restarted by the agent
and its sequence numbers continue."""

from __future__ import annotations

import functools
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from firmware_bridge.protocols.mhz19b.emulator import Mhz19bEmulator
from firmware_bridge.protocols.pms5003.emulator import Pms5003tEmulator, reading_t
from firmware_bridge.protocols.upfw import DeviceKind
from firmware_bridge.protocols.upfw.emulator import UpfwEmulator
from tests.agent_thread import agent_in_thread
from urbanpulse.testing import wait_for


def _sensors(pms: str, mhz: str, kiosk: str) -> str:
    return f"""
[[sensors]]
id = "pm-1"
driver = "pms5003"
port = "{pms}"
model = "pms5003t"
warmup_s = 0
silence_timeout_s = 2.0

[[sensors]]
id = "co2-1"
driver = "mhz19b"
port = "{mhz}"
abc = false
warmup_s = 0
query_interval_s = 0.2
reply_timeout_s = 0.15
silence_timeout_s = 1.0

[[sensors]]
id = "kiosk"
driver = "upfw"
port = "{kiosk}"
silence_timeout_s = 2.0
"""


def _has_five(seen: Any, sensor: str) -> bool:
    return len(seen.seqs(sensor)) >= 5


@pytest.fixture
def devices(tmp_path: Path) -> Iterator[tuple[Pms5003tEmulator, Mhz19bEmulator, UpfwEmulator]]:
    pms = Pms5003tEmulator(lambda: reading_t(18, 31, temperature_c=30.5, humidity_pct=81.0),
                           period_s=0.1, warmup_s=0.0)
    mhz = Mhz19bEmulator(lambda: 812.0, warmup_s=0.0, link_path=str(tmp_path / "usb-mhz19b"))
    kiosk = UpfwEmulator(kind=DeviceKind.KIOSK, device_id="kiosk-opd", channels=1, period_s=0.1, seed=7)
    for emu in (pms, mhz, kiosk):
        emu.start()
    yield pms, mhz, kiosk
    for emu in (pms, mhz, kiosk):
        emu.stop()


def test_serial_sensors_through_the_agent_and_broker(devices, make_node_config, collector) -> None:  # type: ignore[no-untyped-def]
    pms, mhz, kiosk = devices
    path = make_node_config("hn-serial", "mixed-1", _sensors(pms.port, mhz.port, kiosk.port))
    seen = collector("hn-serial", "mixed-1")
    with agent_in_thread(path) as agent:
        for sensor in ("pm-1", "co2-1", "kiosk-a"):
            wait_for(functools.partial(_has_five, seen, sensor), 20, f"5 readings of {sensor}")
        by_sensor = {r.sensor: r for r in seen.readings}
        pm, co2, queue = by_sensor["pm-1"], by_sensor["co2-1"], by_sensor["kiosk-a"]
        assert (pm.kind, dict(pm.values)) == ("air.pm", {"pm25": 18.0, "pm10": 31.0, "pm1": 13.0,
                                                         "temperature_c": 30.5, "humidity_pct": 81.0})
        assert (co2.kind, dict(co2.values)) == ("air.co2", {"co2": 812.0, "temperature_c": 28.0})
        assert queue.kind == "hospital.queue"
        assert mhz.call(lambda: mhz.abc_enabled) is False

        # the CO2 sensor's adapter is pulled and plugged back under its stable name
        before = len(seen.seqs("co2-1"))
        mhz.unplug()
        wait_for(lambda: agent.drivers["co2-1"].restarts >= 1, 10, "the co2 driver to fail")
        mhz.replug()
        wait_for(lambda: len(seen.seqs("co2-1")) >= before + 5, 20, "co2 readings after the replug")
        assert agent.drivers["co2-1"].state == "running"
        assert agent.drivers["pm-1"].restarts == 0
    for sensor in ("pm-1", "co2-1", "kiosk-a"):
        seqs = seen.seqs(sensor)
        assert seqs == list(range(len(seqs))), sensor  # no gap, no duplicate, across the restart
