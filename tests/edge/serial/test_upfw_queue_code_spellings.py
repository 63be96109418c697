"""Two queue codes of one kiosk that differ only by case or leading zeros ("A" and "a",
"7" and "007") are two queues: PROTOCOL.md's QT takes a code as the characters sent, and
the reference encoder and decoder keep them as sent. The driver cannot give them two
sensor ids (sensor ids are lower case, so both "A" and "a" derive `<id>-a`; a `names`
key ignores case and leading zeros, so `7 = "lab-7"` names "007" too), and it put both
queues' tickets under one sensor, mixing their ticket numbers and calls (wrong waiting
times), without a word. It now refuses the second code at its first ticket, naming the
board and both codes, as it refuses a queue whose `<id>-<code>` is another sensor's.
Real pseudo-terminal, upfw board emulator."""

from __future__ import annotations

import asyncio
import re
from typing import Any

import pytest

from edge.drivers.base import DriverContext
from edge.drivers.upfw.driver import build, parse_params
from edge.drivers.upfw.mapping import UpfwMapper
from edge.errors import DriverError
from firmware_bridge.protocols.upfw import DeviceKind, Hello, TicketIssued, TicketServed
from firmware_bridge.protocols.upfw.emulator import UpfwEmulator
from tests.edge.serial.conftest import DriverRun
from tests.edge.serial.test_serial_upfw import Script

UNTOLD = ("two queues (a code is its characters as sent: firmware_bridge/PROTOCOL.md, QT), "
          "but sensor ids are lower case and names keys ignore case and leading zeros: their "
          "tickets would be mixed under one sensor id (wrong waiting times); not sent. Give "
          "the board's queues codes that differ in more than case and leading zeros")


def _kiosk(emulated: Any, script: Script) -> UpfwEmulator:
    emu: UpfwEmulator = emulated(UpfwEmulator(script, kind=DeviceKind.KIOSK, device_id="kiosk-xr",
                                              channels=2, period_s=0.02))
    return emu


async def _refused(port: str, names: dict[str, str], script: Script,
                   first: Any, second: Any) -> tuple[list[tuple[str, float]], BaseException]:
    params = parse_params({"port": port, "names": names}, "sensors[0]")
    run = DriverRun(build("kiosk", params, DriverContext()))
    await run.wait_for(lambda s: run.driver.describe()["board"] is not None, 5, "the board's HI")
    script.put(first)
    await run.count(1)
    script.put(second)
    try:
        exc = await run.failure(5.0)
    finally:
        await run.stop()
    return [(s.sensor, s.values["ticket"]) for s in run.samples], exc


def test_queue_codes_differing_only_by_case_are_refused(emulated) -> None:  # type: ignore[no-untyped-def]
    script = Script()
    emu = _kiosk(emulated, script)
    sent, exc = asyncio.run(_refused(emu.port, {}, script, TicketIssued(0, 0, "A", 11, 0),
                                     TicketServed(0, 0, "a", 21, 2, 40)))
    assert sent == [("kiosk-a", 11.0)]  # the second queue's ticket is not sent
    assert isinstance(exc, DriverError)
    assert str(exc) == ("sensors[0].id: board 'kiosk-xr' sends kiosk queue codes 'A' and 'a', "
                        f"which would both publish as 'kiosk-a' (<id>-<queue code>): {UNTOLD}")


def test_digit_codes_one_name_gives_are_refused(emulated) -> None:  # type: ignore[no-untyped-def]
    script = Script()
    emu = _kiosk(emulated, script)
    sent, exc = asyncio.run(_refused(emu.port, {"7": "lab-7"}, script,
                                     TicketIssued(0, 0, "007", 31, 0), TicketIssued(0, 0, "7", 41, 0)))
    assert sent == [("lab-7", 31.0)]
    assert isinstance(exc, DriverError)
    assert str(exc) == ("sensors[0].id: board 'kiosk-xr' sends kiosk queue codes '007' and '7', "
                        f"which would both publish as 'lab-7' (sensors[0].names.7): {UNTOLD}")


def test_codes_with_ids_of_their_own_and_repeated_codes_go_on(emulated) -> None:  # type: ignore[no-untyped-def]
    """Unnamed digit codes keep their spelling (kiosk-7, kiosk-007: two ids, no clash), and a
    code heard again is the same queue."""
    script = Script()
    emu = _kiosk(emulated, script)
    params = parse_params({"port": emu.port, "names": {"b": "opd-b"}}, "sensors[0]")

    async def scenario() -> list[tuple[str, float]]:
        run = DriverRun(build("kiosk", params, DriverContext()))
        await run.wait_for(lambda s: run.driver.describe()["board"] is not None, 5, "the board's HI")
        script.put(TicketIssued(0, 0, "7", 1, 0), TicketIssued(0, 0, "007", 2, 0),
                   TicketIssued(0, 0, "A", 3, 0), TicketServed(0, 0, "A", 3, 1, 5),
                   TicketIssued(0, 0, "B", 4, 0), TicketServed(0, 0, "7", 1, 2, 9),
                   TicketIssued(0, 0, "B", 5, 0))
        samples = await run.count(7)
        assert not run.task.done()
        await run.stop()
        return [(s.sensor, s.values["ticket"]) for s in samples]

    assert asyncio.run(scenario()) == [
        ("kiosk-7", 1.0), ("kiosk-007", 2.0), ("kiosk-a", 3.0), ("kiosk-a", 3.0),
        ("opd-b", 4.0), ("kiosk-7", 1.0), ("opd-b", 5.0)]


def test_the_refusal_comes_again_after_a_restart_at_the_second_code(emulated) -> None:  # type: ignore[no-untyped-def]
    """A restarted driver (the agent builds a new one) starts without the codes heard: it
    publishes the first it hears, whichever, and refuses again at the other's first ticket,
    so the error comes back in the log and the heartbeat while the board sends both."""
    script = Script()
    emu = _kiosk(emulated, script)
    for first, second in (("A", "a"), ("a", "A")):
        sent, exc = asyncio.run(_refused(emu.port, {}, script, TicketIssued(0, 0, first, 1, 0),
                                         TicketIssued(0, 0, second, 2, 0)))
        assert sent == [("kiosk-a", 1.0)]
        assert re.search(rf"codes '{first}' and '{second}', which would both publish", str(exc))


@pytest.mark.parametrize("names", [{}, {"a": "opd-a"}])
def test_the_refusal_names_the_board_before_its_hello(names: dict[str, str]) -> None:
    """Mapper alone: no HI heard yet (the driver started while the board was up)."""
    params = parse_params({"port": "/dev/x", "names": names}, "sensors[3]")
    m = UpfwMapper("kiosk", params.names, key="sensors[3]")
    assert m.on_message(TicketIssued(0, 0, "a", 1, 0), 0.0)[0].sensor == names.get("a", "kiosk-a")
    with pytest.raises(DriverError, match=r"^sensors\[3\]\.id: the board \(no HI heard yet\) "
                                          r"sends kiosk queue codes 'a' and 'A', "):
        m.on_message(TicketIssued(1, 0, "A", 2, 0), 0.0)


def test_another_board_on_the_port_brings_codes_of_its_own() -> None:
    """A HI from another device id (the kiosk replaced): its "a" is no clash with the old
    board's "A"; the same board's hello again changes nothing."""
    m = UpfwMapper("kiosk", key="sensors[0]")
    m.on_message(Hello(0, 10, DeviceKind.KIOSK, "kiosk-1", "1.0.0", 2), 0.0)
    assert m.on_message(TicketIssued(1, 20, "A", 1, 0), 0.0)[0].sensor == "kiosk-a"
    m.on_message(Hello(2, 30, DeviceKind.KIOSK, "kiosk-1", "1.0.0", 2), 0.0)
    with pytest.raises(DriverError, match=r"board 'kiosk-1' sends kiosk queue codes 'A' and 'a'"):
        m.on_message(TicketIssued(3, 40, "a", 2, 0), 0.0)
    m.on_message(Hello(4, 50, DeviceKind.KIOSK, "kiosk-2", "1.0.0", 2), 0.0)
    assert m.on_message(TicketIssued(5, 60, "a", 1, 0), 0.0)[0].sensor == "kiosk-a"
