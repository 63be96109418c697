"""`urbanpulse edge run --log-level` takes the level in any case and lists the choices in
its help. Before, `--log-level debug` ended in a traceback (`ValueError: Unknown level:
'debug'`, exit code 1): only `DEBUG` worked, and the help named no value."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from edge.cli import EXIT_CONFIG, EXIT_OK
from urbanpulse.cli import main
from urbanpulse.testing import wait_for

REPO = Path(__file__).resolve().parents[2]
SAMPLE = REPO / "edge/drivers/sds011/sample.toml"


def _node(tmp_path: Path) -> Path:
    """The sds011 sample on this machine: a port that is not there (the driver fails and is
    restarted), a broker port nothing listens on, the clock check off."""
    text = (SAMPLE.read_text()
            .replace('state_dir = "/var/lib/urbanpulse"', f'state_dir = "{tmp_path / "state"}"')
            .replace('host = "mqtt.example.org"', 'host = "127.0.0.1"')
            .replace("port = 8883", "port = 9\ntls = false", 1)
            .replace('port = "/dev/', f'port = "{tmp_path}/no-such-', 1))
    path = tmp_path / "node.toml"
    (tmp_path / "mqtt.password").write_text("x" * 24)
    path.write_text(text.replace('password_file = "/etc/urbanpulse/mqtt.password"',
                                 f'password_file = "{tmp_path / "mqtt.password"}"')
                    + '\n[agent]\nclock_check = "off"\n')
    return path


@pytest.mark.parametrize("level", ["debug", "Debug", "DEBUG"])
def test_edge_run_takes_the_level_in_any_case(tmp_path: Path, level: str) -> None:
    log = tmp_path / "agent.log"
    with log.open("wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "urbanpulse.cli", "edge", "run", "--config",
                                 str(_node(tmp_path)), "--log-level", level],
                                cwd=REPO, stdout=out, stderr=subprocess.STDOUT)
    try:
        def started() -> bool:
            return proc.poll() is not None or '"msg": "agent started"' in log.read_text()

        wait_for(started, 30, "the agent's start")
        assert proc.poll() is None, log.read_text()
        records = [json.loads(line) for line in log.read_text().splitlines() if line.startswith("{")]
        assert any(r["level"] == "debug" for r in records), log.read_text()
    finally:
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(30)
    assert code == EXIT_OK, log.read_text()
    assert "Traceback" not in log.read_text()


def test_an_unknown_level_is_a_usage_error_listing_the_choices(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as done:
        main(["edge", "run", "--config", str(_node(tmp_path)), "--log-level", "verbose"])
    assert done.value.code == EXIT_CONFIG
    assert "(choose from 'DEBUG', 'INFO', 'WARNING', 'ERROR', 'CRITICAL')" in capsys.readouterr().err


def test_the_help_lists_the_levels(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["edge", "run", "--help"])
    help_text = " ".join(capsys.readouterr().out.split())
    assert "--log-level LEVEL" in help_text
    assert "DEBUG, INFO, WARNING, ERROR, CRITICAL, in any case (default INFO)" in help_text
