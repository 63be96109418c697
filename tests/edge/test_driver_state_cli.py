"""`urbanpulse edge driver-state`: a technician lists the drivers' saved state in the outbox
(kiosk queue codes, door totals, ticket numbers) and clears one driver's, never the
readings not yet sent, and never while an agent holds the outbox open. Before, there was no
command: after a kiosk board was swapped or its codes renamed, the only remedies were an
hour's wait or deleting the outbox, with its unsent readings. Real SQLite files; the
running agent's refusal with a real agent process is in
tests/edge/serial/test_upfw_codes_cleared.py."""

from __future__ import annotations

import json
import signal
import sqlite3
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from edge import driver_state
from edge.agent import OUTBOX_FILE
from edge.drivers.base import Sample
from edge.errors import DriverStateError, OutboxInUseError
from edge.outbox import Outbox, clear_states
from urbanpulse.cli import main

NOW = datetime(2026, 11, 30, 8, 0, tzinfo=UTC)
NS = 1_795_852_800_000_000_000
CODES = '{"boards": [["kiosk-xr", "1.0.0", ["A", "a"]]], "heard": [["kiosk-xr", "a", 1795852800.0]]}'
KIOSK_DOORS = '{"device_id": "kiosk-xr", "last": [3, 5000], "doors": {}}'
DOORS = '{"device_id": "door-7", "last": [9, 9000], "doors": {"1": [120, 8000]}}'
TICKETS = '{"issued": 12, "called": 10}'


def _config(tmp_path: Path) -> tuple[str, Path]:
    state_dir = tmp_path / "state"
    path = tmp_path / "node.toml"
    path.write_text(f"""
[node]
id = "n1"
site = "s1"
state_dir = "{state_dir}"

[mqtt]
host = "127.0.0.1"
tls = false
password_file = "{tmp_path / 'password'}"

[[sensors]]
id = "kiosk"
driver = "upfw"
port = "/dev/ttyUSB0"

[[sensors]]
id = "door"
driver = "upfw"
port = "/dev/ttyUSB1"
""")
    return str(path), state_dir / OUTBOX_FILE


def _door(count: float) -> Sample:
    return Sample("door-1", "hospital.door", {"count": count, "interval_s": 60.0}, NOW)


def _saved_outbox(path: Path) -> None:
    """An outbox with readings not yet sent and three keys of state (two drivers' and a
    ticket kiosk's)."""
    outbox = Outbox(path).open()
    outbox.append([_door(1.0), _door(2.0)], NS, {"upfw/kiosk/queues": CODES,
                                                  "upfw/kiosk/doors": KIOSK_DOORS})
    outbox.append([_door(3.0)], NS + 60, {"upfw/door/doors": DOORS,
                                           "queue_kiosk/opd-1/tickets": TICKETS})
    outbox.close()


def _everything_but_the_state(path: Path) -> dict[str, list[Any]]:
    """The outbox's readings, sequence numbers and meta (numbering, evicted), read as rows."""
    db = sqlite3.connect(path)
    try:
        return {table: db.execute(f"SELECT * FROM {table} ORDER BY 1").fetchall()
                for table in ("outbox", "seq", "meta")}
    finally:
        db.close()


def _run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(["edge", "driver-state", *args])
    out, err = capsys.readouterr()
    return code, out, err


def test_list_shows_each_key_its_driver_and_a_short_view(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config, outbox = _config(tmp_path)
    _saved_outbox(outbox)
    code, out, err = _run(capsys, "--config", config)
    assert (code, err) == (0, "")
    lines = out.splitlines()
    assert lines[0] == f"outbox: {outbox} (state as last committed)"
    assert lines[1:] == [
        'queue_kiosk/opd-1/tickets  driver opd-1: {"issued":12,"called":10}',
        'upfw/door/doors            driver door: {"device_id":"door-7","last":[9,9000],'
        '"doors":{"1":[120,8000]}}',
        'upfw/kiosk/doors           driver kiosk: {"device_id":"kiosk-xr","last":[3,5000],"doors":{}}',
        'upfw/kiosk/queues          driver kiosk: {"boards":[["kiosk-xr","1.0.0",["A","a"]]],'
        '"heard":[["kiosk-xr","a",1795852800.0]]}',
    ]
    code, out, _ = _run(capsys, "--config", config, "--driver", "kiosk", "--json")
    assert code == 0
    assert json.loads(out) == {"outbox": str(outbox), "state": {
        "upfw/kiosk/doors": {"driver": "kiosk", "value": KIOSK_DOORS},
        "upfw/kiosk/queues": {"driver": "kiosk", "value": CODES}}}
    code, out, _ = _run(capsys, "--config", config, "--driver", "nobody")
    assert (code, out.splitlines()[1:]) == (0, ["no saved driver state for driver 'nobody'"])


def test_clearing_one_driver_leaves_the_others_state_and_every_reading(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config, outbox = _config(tmp_path)
    _saved_outbox(outbox)
    before = _everything_but_the_state(outbox)
    assert len(before["outbox"]) == 3  # readings not yet sent
    code, out, err = _run(capsys, "--config", config, "--driver", "kiosk", "--clear")
    assert (code, err) == (0, "")
    assert out.splitlines() == [
        'cleared upfw/kiosk/doors: {"device_id":"kiosk-xr","last":[3,5000],"doors":{}}',
        'cleared upfw/kiosk/queues: {"boards":[["kiosk-xr","1.0.0",["A","a"]]],'
        '"heard":[["kiosk-xr","a",1795852800.0]]}',
        "the driver starts without it at the agent's next start"]
    assert driver_state.saved(outbox) == {"queue_kiosk/opd-1/tickets": TICKETS,
                                          "upfw/door/doors": DOORS}
    code, out, _ = _run(capsys, "--config", config, "--key", "upfw/door/doors", "--clear", "--json")
    assert code == 0
    assert json.loads(out) == {"outbox": str(outbox), "cleared": {"upfw/door/doors": DOORS}}
    assert driver_state.saved(outbox) == {"queue_kiosk/opd-1/tickets": TICKETS}
    assert _everything_but_the_state(outbox) == before
    # The agent's way of opening it finds the readings, their numbers and the state left.
    reopened = Outbox(outbox).open()
    try:
        assert [r.reading.values["count"] for r in reopened.fetch(10)] == [1.0, 2.0, 3.0]
        assert reopened.next_seq("door-1") == 3
        assert reopened.load_state("upfw/kiosk/queues") is None
        assert reopened.load_state("queue_kiosk/opd-1/tickets") == TICKETS
    finally:
        reopened.close()


def test_nothing_to_clear_is_an_error_and_clears_nothing(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config, outbox = _config(tmp_path)
    code, out, err = _run(capsys, "--config", config, "--driver", "kiosk", "--clear")
    assert (code, out) == (3, "")
    assert err == (f"urbanpulse edge driver-state: no saved state for driver 'kiosk': there is no "
                   f"outbox at {outbox}\n")
    assert not outbox.exists()  # not made by the command
    code, out, _ = _run(capsys, "--config", config)
    assert (code, out.splitlines()[1:]) == (0, ["no saved driver state"])
    _saved_outbox(outbox)
    code, out, err = _run(capsys, "--config", config, "--driver", "kiosk-a", "--clear")
    assert (code, out) == (3, "")
    assert err == (f"urbanpulse edge driver-state: no saved state for driver 'kiosk-a' in {outbox} "
                   "(saved keys: queue_kiosk/opd-1/tickets, upfw/door/doors, upfw/kiosk/doors, "
                   "upfw/kiosk/queues)\n")
    code, out, err = _run(capsys, "--config", config, "--clear")
    assert (code, out) == (2, "")
    assert "--clear needs --driver SENSOR_ID or --key KEY (nothing cleared)" in err
    assert len(driver_state.saved(outbox)) == 4
    with pytest.raises(DriverStateError, match="name the state to clear"):
        driver_state.clear(outbox)


def test_an_outbox_held_open_is_listed_but_not_cleared(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """An agent holds its outbox open from its start to its stop (here: the agent's Outbox in
    this process; a real agent process in tests/edge/serial/test_upfw_codes_cleared.py)."""
    config, path = _config(tmp_path)
    _saved_outbox(path)
    held = Outbox(path).open()
    try:
        held.append([_door(4.0)], NS + 120, {"upfw/kiosk/queues": CODES})  # frames in the WAL
        code, out, _ = _run(capsys, "--config", config, "--driver", "kiosk")
        assert code == 0
        assert "upfw/kiosk/queues" in out
        code, out, err = _run(capsys, "--config", config, "--driver", "kiosk", "--clear")
        assert (code, out) == (3, "")
        assert err == (f"urbanpulse edge driver-state: the outbox {path} is held open by another "
                       "process: the edge agent is running (it would write its drivers' state "
                       "again at its next commit); stop it first (systemctl stop urbanpulse-edge)\n")
        with pytest.raises(OutboxInUseError):
            clear_states(path, lambda _: True, wait_s=0.1)
        assert held.load_state("upfw/kiosk/queues") == CODES
        held.append([_door(5.0)], NS + 180)  # the agent goes on
    finally:
        held.close()
    # Stopped: cleared, and the readings committed while it was held are all there.
    code, _, _ = _run(capsys, "--config", config, "--driver", "kiosk", "--clear")
    assert code == 0
    assert [r[4] for r in _everything_but_the_state(path)["outbox"]] == [0, 1, 2, 3, 4]  # seq
    assert sorted(driver_state.saved(path)) == ["queue_kiosk/opd-1/tickets", "upfw/door/doors"]


def test_the_view_is_short() -> None:
    long = json.dumps({"boards": [["kiosk-xr", "1.0.0", [f"q{n}" for n in range(64)]]]})
    shown = driver_state.view(long)
    assert shown.startswith('{"boards":[["kiosk-xr","1.0.0",["q0","q1",')
    assert shown.endswith(f"… ({len(long)} chars)")
    assert len(shown) < 120
    assert driver_state.view("not json") == "not json"
    assert driver_state.sensor_of("upfw/kiosk/queues") == "kiosk"
    assert driver_state.sensor_of("legacy-key") is None


def test_an_outbox_left_by_a_killed_agent_is_cleared_and_keeps_its_readings(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A process killed with the outbox open (SIGKILL, a power cut) holds no lock any more:
    the clear goes through, reading the readings it left in the WAL file, and keeps them."""
    config, path = _config(tmp_path)
    _saved_outbox(path)
    script = (
        "import os, signal, sys\n"
        "from datetime import datetime\n"
        "from pathlib import Path\n"
        "from edge.drivers.base import Sample\n"
        "from edge.outbox import Outbox\n"
        "o = Outbox(Path(sys.argv[1])).open()\n"
        "o.append([Sample('door-1', 'hospital.door', {'count': 9.0, 'interval_s': 60.0},"
        " datetime.fromisoformat(sys.argv[2]))], int(sys.argv[3]), {'upfw/kiosk/queues': sys.argv[4]})\n"
        "os.kill(os.getpid(), signal.SIGKILL)\n")
    done = subprocess.run([sys.executable, "-c", script, str(path), NOW.isoformat(), str(NS + 240),
                           CODES.replace("kiosk-xr", "kiosk-yz")],
                          capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == -signal.SIGKILL, done.stderr
    assert path.with_name(path.name + "-wal").stat().st_size > 0  # committed in the WAL only
    code, out, err = _run(capsys, "--config", config, "--driver", "kiosk", "--clear")
    assert (code, err) == (0, "")
    assert "kiosk-yz" in out  # what the killed process committed last
    assert [r[4] for r in _everything_but_the_state(path)["outbox"]] == [0, 1, 2, 3]
    assert sorted(driver_state.saved(path)) == ["queue_kiosk/opd-1/tickets", "upfw/door/doors"]
