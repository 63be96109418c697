"""A kiosk board that sends two queue codes publishing as one sensor id ("A" and "a") is
refused at the second code's first ticket (tests/edge/serial/test_upfw_queue_code_spellings.py).
The driver the agent restarts then started without the codes heard: it published whichever
of the two it heard first and refused again at the other's, so between restarts tickets of
the second queue went out under the shared id, mixed with the first queue's (wrong waiting
times). The codes a board sent are now kept with the driver's state (committed with the
outbox), so after a driver or agent restart the first ticket of either code is refused.
Real pseudo-terminal with the upfw emulator; the agent's StagedState over a real outbox."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from edge.agent import Agent
from edge.driver_state import StagedState
from edge.drivers.base import DriverContext
from edge.drivers.upfw import queue_codes
from edge.drivers.upfw.driver import build, parse_params
from edge.drivers.upfw.mapping import MAX_BOARDS, MAX_CODES, UpfwMapper
from edge.errors import DriverError
from edge.outbox import Outbox
from firmware_bridge.protocols.upfw import DeviceKind, Hello, TicketIssued, TicketServed
from firmware_bridge.protocols.upfw.emulator import UpfwEmulator
from tests.agent_thread import agent_in_thread
from tests.edge.serial.conftest import DriverRun
from tests.edge.serial.test_serial_upfw import Script
from urbanpulse.clock import FakeClock
from urbanpulse.testing import wait_for

KIOSK = """
[[sensors]]
id = "kiosk"
driver = "upfw"
port = "{port}"
"""


def _kiosk(emulated: Any, script: Script, firmware: str = "1.0.0") -> UpfwEmulator:
    emu: UpfwEmulator = emulated(UpfwEmulator(script, kind=DeviceKind.KIOSK, device_id="kiosk-xr",
                                              firmware=firmware, channels=2, period_s=0.02))
    return emu


def _tickets(seen: Any, sensor: str) -> list[float]:
    return [r.values["ticket"] for r in list(seen.readings) if r.sensor == sensor]


def _listening(agent: Agent, before: list[Any]) -> bool:
    """A driver other than those in `before` runs and has heard the board's HI. The drivers
    themselves are kept, not their id(): a replaced driver is freed and a new one can take
    its address (this test timed out so in CI, the new driver taken for an old one)."""
    d = agent._running.get("kiosk")
    return d is not None and all(d is not b for b in before) and d.describe()["board"] is not None


def test_through_the_agent_no_ticket_of_the_clashing_queues_leaks_after_a_restart(  # type: ignore[no-untyped-def]
        emulated, make_node_config, collector) -> None:
    script = Script()
    emu = _kiosk(emulated, script)
    path = make_node_config("hn-opd", "kiosk-1", KIOSK.format(port=emu.port))
    seen = collector("hn-opd", "kiosk-1")
    drivers: list[Any] = []

    def next_driver(agent: Agent) -> None:
        wait_for(lambda: _listening(agent, drivers), 20, "a new driver hearing the board's HI")
        drivers.append(agent._running["kiosk"])

    with agent_in_thread(path) as agent:
        next_driver(agent)
        script.put(TicketIssued(0, 0, "A", 1, 0))
        wait_for(lambda: _tickets(seen, "kiosk-a") == [1.0], 20, "queue A's ticket at the broker")
        script.put(TicketIssued(0, 0, "a", 2, 0))  # the second queue: refused, not sent
        wait_for(lambda: agent.drivers["kiosk"].restarts == 1, 20, "the refusal")
        next_driver(agent)
        # The restarted driver: the second queue's ticket first. It went out under kiosk-a.
        script.put(TicketIssued(0, 0, "a", 3, 0), TicketServed(0, 0, "A", 1, 1, 60))
        wait_for(lambda: agent.drivers["kiosk"].restarts == 2, 20, "the refusal after the restart")
        assert agent.drivers["kiosk"].readings == 1  # queue a's ticket 3 not sent
        assert "codes 'A' and 'a', which would both publish as 'kiosk-a'" in str(
            agent.drivers["kiosk"].last_error)
        next_driver(agent)
        script.put(TicketIssued(0, 0, "B", 4, 0))  # a queue of its own: goes on
        wait_for(lambda: _tickets(seen, "kiosk-b") == [4.0], 20, "queue B's ticket at the broker")
    assert _tickets(seen, "kiosk-a") == [1.0]

    # The agent restarted: the codes were committed with the outbox.
    drivers.clear()
    with agent_in_thread(path) as agent:
        next_driver(agent)
        script.put(TicketIssued(0, 0, "A", 5, 0))
        wait_for(lambda: agent.drivers["kiosk"].restarts == 1, 20, "the refusal after the agent's restart")
        next_driver(agent)
        script.put(TicketIssued(0, 0, "B", 6, 0))
        wait_for(lambda: _tickets(seen, "kiosk-b") == [4.0, 6.0], 20, "queue B's next ticket")

        def in_a_heartbeat() -> bool:
            return any("sends kiosk queue codes 'A' and 'a'" in str(
                (json.loads(p).get("health") or {}).get("drivers", {}).get("kiosk", {}).get(
                    "last_error")) for p in list(seen.statuses))

        wait_for(in_a_heartbeat, 20, "a heartbeat naming the clash")
    assert _tickets(seen, "kiosk-a") == [1.0]


# -- the driver alone, restarted as the agent restarts it (a new driver, the same state) ------

def _state(tmp_path: Path) -> tuple[Outbox, StagedState]:
    outbox = Outbox(tmp_path / "outbox.db", max_rows=1000)
    outbox.open()
    return outbox, StagedState(outbox)


async def _run(port: str, state: StagedState | None, script: Script, *messages: Any,
               names: dict[str, str] | None = None, clock: FakeClock | None = None
               ) -> tuple[list[tuple[str, float]], BaseException | None]:
    """One driver run: after the board's HI, `messages` one at a time; what it sent and
    the error it ended with (None: it went on, stopped after the last message's sample)."""
    params = parse_params({"port": port, "names": names or {}}, "sensors[0]")
    ctx = DriverContext(state=state) if clock is None else DriverContext(clock=clock, state=state)
    run = DriverRun(build("kiosk", params, ctx))
    exc: BaseException | None = None
    try:
        await run.wait_for(lambda s: run.driver.describe()["board"] is not None, 5, "the board's HI")
        for i, m in enumerate(messages, 1):
            script.put(m)
            await run.wait_for(lambda s, i=i: len(s) >= i or run.task.done(), 5, f"message {i}")
            if run.task.done():
                exc = run.task.exception()
                break
    finally:
        await run.stop()
    return [(s.sensor, s.values["ticket"]) for s in run.samples], exc


def test_a_restarted_driver_refuses_the_first_ticket_of_either_code(emulated, tmp_path) -> None:  # type: ignore[no-untyped-def]
    script = Script()
    emu = _kiosk(emulated, script)
    outbox, state = _state(tmp_path)

    def run(*messages: Any) -> tuple[list[tuple[str, float]], BaseException | None]:
        return asyncio.run(_run(emu.port, state, script, *messages))

    sent, exc = run(TicketIssued(0, 0, "A", 1, 0), TicketIssued(0, 0, "a", 2, 0))
    assert sent == [("kiosk-a", 1.0)]
    assert isinstance(exc, DriverError)
    for code in ("a", "A", "a"):  # staged state: a restart before the agent's next commit
        sent, exc = run(TicketIssued(0, 0, code, 3, 0))
        assert sent == []
        assert isinstance(exc, DriverError)
        assert ("board 'kiosk-xr' sends kiosk queue codes 'A' and 'a', which would both publish "
                "as 'kiosk-a' (<id>-<queue code>): ") in str(exc)
        assert str(exc).endswith("leading zeros (codes heard before the driver restarted: a "
                                 "code the board no longer sends is let go an hour after its "
                                 "last ticket, or at once when the board says HI with another "
                                 "firmware version)")
    outbox.append([], 0, state.take())  # committed, as the agent's flush does
    _, exc = run(TicketServed(0, 0, "A", 1, 1, 60))
    assert isinstance(exc, DriverError)
    outbox.close()


def test_a_code_heard_alone_before_the_restart_refuses_the_other_after_it(emulated, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """Only "7" was heard (named lab-7), and the driver restarted: "007", which `7 = "lab-7"`
    names too, is refused at its first ticket, not sent as the first queue heard."""
    script = Script()
    emu = _kiosk(emulated, script)
    outbox, state = _state(tmp_path)
    names = {"7": "lab-7"}
    sent, exc = asyncio.run(_run(emu.port, state, script, TicketIssued(0, 0, "7", 1, 0),
                                 TicketIssued(0, 0, "C", 2, 0), names=names))
    assert sent == [("lab-7", 1.0), ("kiosk-c", 2.0)]
    assert exc is None
    sent, exc = asyncio.run(_run(emu.port, state, script, TicketIssued(0, 0, "007", 3, 0), names=names))
    assert sent == []
    assert isinstance(exc, DriverError)
    assert "sends kiosk queue codes '7' and '007', which would both publish as 'lab-7' " \
           "(sensors[0].names.7)" in str(exc)
    # Without the name, "7" and "007" are two ids: both go on.
    sent, exc = asyncio.run(_run(emu.port, state, script, TicketIssued(0, 0, "007", 4, 0),
                                 TicketIssued(0, 0, "7", 5, 0)))
    assert sent == [("kiosk-007", 4.0), ("kiosk-7", 5.0)]
    assert exc is None
    outbox.close()


def test_another_firmware_starts_afresh_and_old_state_loads(emulated, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """The codes are the firmware's: a board flashed with another version (its codes made
    to differ) is taken as it is. State kept before the codes were (door totals only, or
    nothing) is nothing heard."""
    script = Script()
    outbox, state = _state(tmp_path)
    state.stage("upfw/kiosk/doors", '{"device_id": "kiosk-xr", "last": [3, 5000], "doors": {}}')
    emu = _kiosk(emulated, script)
    sent, exc = asyncio.run(_run(emu.port, state, script, TicketIssued(0, 0, "a", 1, 0),
                                 TicketIssued(0, 0, "A", 2, 0)))
    assert sent == [("kiosk-a", 1.0)]
    assert isinstance(exc, DriverError)
    emu.stop()
    emu = _kiosk(emulated, script, firmware="1.1.0")
    sent, exc = asyncio.run(_run(emu.port, state, script, TicketIssued(0, 0, "A", 3, 0),
                                 TicketIssued(0, 0, "b", 4, 0)))
    assert sent == [("kiosk-a", 3.0), ("kiosk-b", 4.0)]
    assert exc is None
    outbox.close()


def test_a_code_the_board_no_longer_sends_is_let_go_an_hour_after_its_last_ticket(  # type: ignore[no-untyped-def]
        emulated, tmp_path) -> None:
    """The board's codes changed to differ ("a" became "B") without a new firmware version:
    the kept "a" refuses "A" for an hour after its last ticket, by the node's clock, then is
    let go; a board still sending both is refused again at the other's first ticket."""
    script = Script()
    emu = _kiosk(emulated, script)
    outbox, state = _state(tmp_path)
    clock = FakeClock(datetime(2026, 11, 30, 8, 0, 30, tzinfo=UTC))
    sent, exc = asyncio.run(_run(emu.port, state, script, TicketIssued(0, 0, "A", 1, 0),
                                 TicketIssued(0, 0, "a", 2, 0), clock=clock))
    assert sent == [("kiosk-a", 1.0)]
    assert isinstance(exc, DriverError)
    clock.advance(3540)  # 59 min after "a"'s last ticket: still kept
    sent, exc = asyncio.run(_run(emu.port, state, script, TicketIssued(0, 0, "A", 3, 0), clock=clock))
    assert sent == []
    assert isinstance(exc, DriverError)
    assert "sends kiosk queue codes 'A' and 'a'" in str(exc)
    clock.advance(180)  # over an hour: "a" let go, "A" (heard at the refusal) goes on
    sent, exc = asyncio.run(_run(emu.port, state, script, TicketIssued(0, 0, "A", 4, 0),
                                 TicketIssued(0, 0, "B", 5, 0), TicketIssued(0, 0, "a", 6, 0),
                                 clock=clock))
    assert sent == [("kiosk-a", 4.0), ("kiosk-b", 5.0)]
    assert isinstance(exc, DriverError)  # a board that still sends "a": refused again
    assert "sends kiosk queue codes 'A' and 'a'" in str(exc)
    outbox.close()


def test_damaged_codes_stop_the_driver_naming_the_key(emulated, tmp_path) -> None:  # type: ignore[no-untyped-def]
    script = Script()
    emu = _kiosk(emulated, script)
    outbox, state = _state(tmp_path)
    state.stage("upfw/kiosk/queues", '{"boards": [["kiosk-xr", "1.0.0", "A"]]}')
    with pytest.raises(DriverError, match=r"^kiosk queue codes 'upfw/kiosk/queues' are damaged"):
        asyncio.run(_run(emu.port, state, script))
    outbox.close()


# -- the mapper: what is kept, and its bound -----------------------------------------------

def test_the_codes_kept_are_bounded_per_board_and_in_boards() -> None:
    m = UpfwMapper("kiosk", key="sensors[0]")
    m.on_message(Hello(0, 10, DeviceKind.KIOSK, "k-0", "1.0.0", 2), 0.0)
    m.on_message(TicketIssued(1, 20, "A", 1, 0), 0.0)
    with pytest.raises(DriverError):
        m.on_message(TicketIssued(2, 30, "a", 1, 0), 0.0)
    for n in range(MAX_CODES + 5):  # a board sending more codes than are kept
        m.on_message(TicketIssued(3, 40, f"q{n}", 1, 0), 0.0)
    kept = m.queue_codes()
    assert kept.boards[-1][0] == "k-0"
    codes = kept.boards[-1][2]
    assert len(codes) == MAX_CODES
    assert codes[:2] == ("A", "a")  # the clash is kept; the oldest codes without one go
    assert codes[-1] == f"q{MAX_CODES + 4}"
    for b in range(1, MAX_BOARDS + 2):
        m.on_message(Hello(4, 50, DeviceKind.KIOSK, f"k-{b}", "1.0.0", 2), 0.0)
        m.on_message(TicketIssued(5, 60, "A", 1, 0), 0.0)
    boards = m.queue_codes().boards
    assert [b[0] for b in boards] == [f"k-{b}" for b in range(2, MAX_BOARDS + 2)]
    text = queue_codes.encode(m.queue_codes())
    assert queue_codes.decode(text, "k") == m.queue_codes()
    resumed = UpfwMapper("kiosk", key="sensors[0]")
    resumed.resume_codes(queue_codes.decode(text, "k"))
    last = f"k-{MAX_BOARDS + 1}"
    with pytest.raises(DriverError, match=rf"board '{last}' \(last heard; no HI yet\) sends kiosk "
                                          r"queue codes 'A' and 'a'"):
        resumed.on_message(TicketIssued(0, 70, "a", 1, 0), 0.0)
