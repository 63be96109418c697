"""A kiosk's kept queue codes cleared by the technician (`urbanpulse edge driver-state
--driver ID --clear`): the restarted driver is a fresh one, taking the first code it hears
and refusing the other at its first ticket, where with the codes kept it refuses both. Refused
while the agent runs (a real `urbanpulse edge run` process, the session's Mosquitto), with the
codes then left as they were. Real pseudo-terminals with the upfw emulator; real outboxes."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from edge import driver_state
from edge.agent import OUTBOX_FILE
from edge.config import load_config
from edge.driver_state import StagedState
from edge.errors import DriverError
from edge.outbox import Outbox
from firmware_bridge.protocols.upfw import TicketIssued
from tests.edge.serial.test_serial_upfw import Script
from tests.edge.serial.test_upfw_code_clash_restart import KIOSK, _kiosk, _run, _tickets
from urbanpulse.cli import main
from urbanpulse.testing import wait_for

CLASH = "board 'kiosk-xr' sends kiosk queue codes '{}' and '{}', which would both publish as 'kiosk-a'"
KEY = "upfw/kiosk/queues"


def test_a_driver_whose_codes_were_cleared_starts_as_a_fresh_one(  # type: ignore[no-untyped-def]
        emulated, tmp_path, capsys) -> None:
    script = Script()
    emu = _kiosk(emulated, script)
    state_dir = tmp_path / "state"
    config = tmp_path / "node.toml"
    config.write_text(f'[node]\nid = "n1"\nsite = "s1"\nstate_dir = "{state_dir}"\n'
                      f'[mqtt]\nhost = "127.0.0.1"\ntls = false\npassword_file = "/p"\n'
                      + KIOSK.format(port=emu.port))

    def run(*messages: Any) -> tuple[list[tuple[str, float]], BaseException | None]:
        """A driver run over the agent's StagedState, committed after it as the agent does."""
        outbox = Outbox(state_dir / OUTBOX_FILE).open()
        try:
            state = StagedState(outbox)
            done = asyncio.run(_run(emu.port, state, script, *messages))
            outbox.append([], 0, state.take())
        finally:
            outbox.close()
        return done

    sent, exc = run(TicketIssued(0, 0, "A", 1, 0), TicketIssued(0, 0, "a", 2, 0))
    assert sent == [("kiosk-a", 1.0)]
    assert CLASH.format("A", "a") in str(exc)
    sent, exc = run(TicketIssued(0, 0, "a", 3, 0))  # kept: refused at once, after a restart
    assert sent == []
    assert CLASH.format("A", "a") in str(exc)

    assert main(["edge", "driver-state", "--config", str(config), "--driver", "kiosk",
                 "--clear"]) == 0
    assert capsys.readouterr().out.startswith(f"cleared {KEY}: ")
    # Fresh: the first code heard is published, the other refused at its first ticket, as
    # in the first run above (the other way round).
    sent, exc = run(TicketIssued(0, 0, "a", 4, 0), TicketIssued(0, 0, "A", 5, 0))
    assert sent == [("kiosk-a", 4.0)]
    assert isinstance(exc, DriverError)
    assert CLASH.format("a", "A") in str(exc)


def _agent(config: Path, log: Path) -> subprocess.Popen[bytes]:
    """`urbanpulse edge run` in a child process, as systemd starts it."""
    with log.open("ab") as out:
        return subprocess.Popen([sys.executable, "-m", "urbanpulse.cli", "edge", "run", "--config",
                                 str(config)], stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True)


def _stop(proc: subprocess.Popen[bytes], log: Path) -> None:
    os.killpg(proc.pid, signal.SIGTERM)
    assert proc.wait(30) == 0, log.read_text()


def _clashes(seen: Any, first: str, second: str) -> bool:
    """A heartbeat carries the driver's refusal of `second` after `first`."""
    return any(CLASH.format(first, second) in str(
        (json.loads(p).get("health") or {}).get("drivers", {}).get("kiosk", {}).get("last_error"))
        for p in list(seen.statuses))


def test_a_running_agent_refuses_the_clear_and_after_its_stop_the_codes_go(  # type: ignore[no-untyped-def]
        emulated, make_node_config, collector, tmp_path, capsys: pytest.CaptureFixture[str]) -> None:
    script = Script()
    emu = _kiosk(emulated, script)
    path = make_node_config("hn-opd", "kiosk-clear", KIOSK.format(port=emu.port))
    seen = collector("hn-opd", "kiosk-clear")
    outbox = load_config(path).node.state_dir / OUTBOX_FILE
    clear = ["edge", "driver-state", "--config", str(path), "--driver", "kiosk", "--clear"]
    log = tmp_path / "agent.log"

    def listening(after: int) -> None:
        """A driver opened the port and asked the board who it is."""
        wait_for(lambda: emu.commands_heard > after, 30, "the driver's identity query")

    proc = _agent(path, log)
    try:
        listening(0)
        script.put(TicketIssued(0, 0, "A", 1, 0))
        wait_for(lambda: _tickets(seen, "kiosk-a") == [1.0], 30, "queue A's ticket at the broker")
        script.put(TicketIssued(0, 0, "a", 2, 0))
        # Listed beside the running agent, once committed: both codes.
        wait_for(lambda: '["A","a"]' in driver_state.view(driver_state.saved(outbox).get(KEY, "")),
                 30, "the codes committed")
        assert main(clear) == 3
        out, err = capsys.readouterr()
        assert out == ""
        assert err == (f"urbanpulse edge driver-state: the outbox {outbox} is held open by "
                       "another process: the edge agent is running (it would write its drivers' "
                       "state again at its next commit); stop it first (systemctl stop "
                       "urbanpulse-edge)\n")
        assert KEY in driver_state.saved(outbox)
        wait_for(lambda: _clashes(seen, "A", "a"), 30, "a heartbeat naming the refusal")
    finally:
        _stop(proc, log)
    assert KEY in driver_state.saved(outbox)

    assert main(clear) == 0
    assert KEY not in driver_state.saved(outbox)
    heard = emu.commands_heard
    proc = _agent(path, log)
    try:
        listening(heard)
        script.put(TicketIssued(0, 0, "a", 3, 0))  # kept, it would be refused: now published
        wait_for(lambda: _tickets(seen, "kiosk-a") == [1.0, 3.0], 30, "queue a's ticket at the broker")
        script.put(TicketIssued(0, 0, "A", 4, 0))
        wait_for(lambda: _clashes(seen, "a", "A"), 30, "the fresh driver's refusal of the other code")
    finally:
        _stop(proc, log)
    assert _tickets(seen, "kiosk-a") == [1.0, 3.0]
