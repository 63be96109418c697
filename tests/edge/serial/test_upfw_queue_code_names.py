"""A kiosk's queue code is 1-8 of letters, digits, '.', '_', '-' (firmware_bridge/PROTOCOL.md,
QT and QS): "0", "300" and "007" are codes a board sends, and `names` names them. Before,
a `names` key of digits outside 1..255 was refused as a channel number ("the key must be a
channel number 1..255 or a queue code (1-8 of A-Z, 0-9, ...)", which "300" is), so a
kiosk whose counters are numbered 0 or 300 could not be given its queue's sensor ids."""

from __future__ import annotations

import asyncio

import pytest

from edge.config import parse_config
from edge.drivers.base import DriverContext
from edge.drivers.upfw.driver import build, parse_params
from firmware_bridge.protocols.upfw import DeviceKind, TicketIssued, TicketServed
from firmware_bridge.protocols.upfw.emulator import UpfwEmulator
from tests.edge.serial.conftest import DriverRun
from tests.edge.serial.test_serial_upfw import Script
from urbanpulse.errors import ConfigError


def test_a_kiosk_whose_queue_codes_are_0_300_and_007_gets_its_names(emulated) -> None:  # type: ignore[no-untyped-def]
    script = Script()
    emu = emulated(UpfwEmulator(script, kind=DeviceKind.KIOSK, device_id="kiosk-xr", channels=3,
                                period_s=0.02))
    params = parse_params({"port": emu.port, "names": {"0": "opd-info", "300": "xray-300",
                                                       "007": "lab-7"}}, "sensors[0]")

    async def scenario() -> None:
        run = DriverRun(build("kiosk", params, DriverContext()))
        await run.wait_for(lambda s: run.driver.describe()["board"] is not None, 5, "the board's HI")
        script.put(TicketIssued(0, 0, "0", 11, 2), TicketIssued(0, 0, "300", 12, 0),
                   TicketServed(0, 0, "007", 13, 4, 90), TicketIssued(0, 0, "301", 14, 0))
        samples = await run.count(4)
        await run.stop()
        assert [(s.sensor, s.values["ticket"]) for s in samples] == [
            ("opd-info", 11.0), ("xray-300", 12.0), ("lab-7", 13.0), ("kiosk-301", 14.0)]

    asyncio.run(scenario())


def test_the_config_check_takes_them_and_holds_their_ids() -> None:
    raw = {"node": {"id": "n1", "site": "s1"},
           "mqtt": {"password_file": "/p", "host": "127.0.0.1", "tls": False},
           "sensors": [{"id": "kiosk", "driver": "upfw", "port": "/dev/ttyUSB0",
                        "names": {"0": "opd-info", "300": "xray-300"}}]}
    assert parse_config(raw).sensors[0].params.names == {"0": "opd-info", "300": "xray-300"}
    raw["sensors"].append({"id": "xray-300", "driver": "bed_pad", "pin": 17})
    with pytest.raises(ConfigError, match=r"^sensors\[1\]\.id: sensor id 'xray-300' is already "
                                          r"used by sensors\[0\]\.names\.300 "):
        parse_config(raw)


@pytest.mark.parametrize("key", ["123456789", "a b", "queue-abc", "$A"])
def test_a_key_no_board_can_send_says_what_a_key_may_be(key: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_params({"port": "/dev/x", "names": {key: "q-x"}}, "sensors[2]")
    assert info.value.key == f"sensors[2].names.{key}"
    assert str(info.value) == (
        f"sensors[2].names.{key}: no board sends it: a key is a channel number (1..255: "
        "loops, beds, doors) or a kiosk's queue code (1-8 of A-Z, a-z, 0-9, '.', '_', '-', "
        f"digits included: 0, 300, 007; firmware_bridge/PROTOCOL.md, QT), got {key!r}")
