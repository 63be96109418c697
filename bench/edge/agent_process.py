"""The real agent, `python -m urbanpulse.cli edge run`, as a child process."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

from bench.edge.errors import BenchError
from urbanpulse.stack import MqttCredentials
from urbanpulse.stack.process import tail

# What the outbox file is called in the agent's state dir (edge.agent.OUTBOX_FILE; not
# imported, so that the benchmark process does not load the agent's modules itself).
OUTBOX_FILE = "outbox.sqlite3"


def node_config(creds: MqttCredentials, site: str, node: str, state_dir: Path,
                sensors_toml: str, *, broker_delivery: bool = True, clock_check_off: bool = True) -> str:
    """A production-shaped config: TLS, the node's own user, default outbox and heartbeat.
    `broker_delivery`: readings leave the outbox on the broker's PUBACK (no cloud
    processor runs here to acknowledge them end to end). `clock_check_off`: readings are
    not flagged `clock_unsynced` on a machine without NTP (this VM's kernel says its clock
    is unsynchronised for good), so the benchmark measures what a synchronised node sends."""
    delivery = 'delivery = "broker"\n' if broker_delivery else ""
    agent = '[agent]\nclock_check = "off"\n\n' if clock_check_off else ""
    return f"""{agent}
[node]
id = "{node}"
site = "{site}"
location = "benchmark"
state_dir = "{state_dir}"

[mqtt]
host = "{creds.host}"
port = {creds.port}
ca_file = "{creds.ca_file}"
username = "{creds.username}"
password_file = "{creds.password_file}"
{delivery}{sensors_toml}"""


def write_node_config(path: Path, creds: MqttCredentials, site: str, node: str,
                      state_dir: Path, sensors_toml: str, python: str = sys.executable) -> None:
    """Write the config, checked by `urbanpulse edge check-config`. An agent that predates
    the `mqtt.delivery` key (it always waited for the broker's PUBACK) gets it without, and
    one that predates `agent.clock_check` (it never flagged readings) without that."""
    options = {"broker_delivery": True, "clock_check_off": True}
    path.write_text(node_config(creds, site, node, state_dir, sensors_toml, **options))
    check = _check_config(path, python)
    newer = {"agent.clock_check": "clock_check_off", "mqtt.delivery": "broker_delivery"}
    # an agent names one unknown key at a time, in the order it reads its tables
    while check.returncode != 0 and (key := next((k for k in newer if k in check.stderr), None)):
        options[newer.pop(key)] = False
        path.write_text(node_config(creds, site, node, state_dir, sensors_toml, **options))
        check = _check_config(path, python)
    if check.returncode != 0:
        raise BenchError(f"the agent refuses the benchmark's config {path}: {check.stderr}")


def _check_config(path: Path, python: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([python, "-m", "urbanpulse.cli", "edge", "check-config",
                           str(path)], capture_output=True, text=True, timeout=60,
                          stdin=subprocess.DEVNULL)


def _query_outbox(state_dir: Path, sql: str) -> int:
    """One number from the agent's outbox, read beside the running agent (WAL lets a
    reader in while it writes)."""
    path = state_dir / OUTBOX_FILE
    try:
        db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=10)
        try:
            (value,) = db.execute(sql).fetchone()
        finally:
            db.close()
    except sqlite3.Error as exc:
        raise BenchError(f"cannot read the outbox {path}: {exc}") from exc
    return int(value)


def outbox_depth(state_dir: Path) -> int:
    """Readings committed and not yet acknowledged by the broker."""
    return _query_outbox(state_dir, "SELECT COUNT(*) FROM outbox")


def committed_total(state_dir: Path) -> int:
    """Readings the agent ever committed: the sum of its per-sensor next sequence numbers."""
    return _query_outbox(state_dir, "SELECT COALESCE(SUM(next), 0) FROM seq")


class AgentProcess:
    """`python`: the interpreter of the environment the agent runs in (a node's venv)."""

    def __init__(self, config: Path, log: Path, state_dir: Path,
                 python: str = sys.executable) -> None:
        self.python = python
        self.config = config
        self.log = log
        self.state_dir = state_dir
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int:
        if self._proc is None:
            raise BenchError("the agent is not running")
        return self._proc.pid

    def start(self) -> int:
        with self.log.open("ab") as out:
            self._proc = subprocess.Popen(
                [self.python, "-m", "urbanpulse.cli", "edge", "run", "--config",
                 str(self.config)],
                stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                start_new_session=True)
        return self._proc.pid

    def check_alive(self) -> None:
        if self._proc is not None and self._proc.poll() is not None:
            raise BenchError(f"the agent exited with {self._proc.returncode}:\n{tail(self.log)}")

    def stop(self, timeout_s: float = 30.0) -> int:
        """SIGTERM (the agent flushes and exits); SIGKILL if it does not within timeout_s."""
        proc = self._proc
        if proc is None:
            return 0
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(10)
                raise BenchError(f"the agent ignored SIGTERM for {timeout_s} s:\n"
                                 f"{tail(self.log)}") from None
        self._proc = None
        return proc.returncode
