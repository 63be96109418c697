"""Readings made while the node's wall clock is not synchronised carry `clock_unsynced`:
the probe (the kernel's adjtimex, or the package's FixedClockSync), its cache in the agent,
the flag through the outbox and the wire, the config key and what the node reports."""

from __future__ import annotations

import asyncio
import ctypes
import errno
import json
import logging
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from edge.agent import OUTBOX_FILE, Agent
from edge.cli import EXIT_CONFIG
from edge.clock_sync import (
    CLOCK_UNSYNCED,
    TIMEX_BUFFER_BYTES,
    ClockSyncError,
    FixedClockSync,
    KernelClockSync,
    SyncWatch,
    clock_sync_for,
    flag_unsynced,
)
from edge.config import load_config, parse_config
from edge.drivers.base import Sample
from edge.outbox import Outbox
from urbanpulse.cli import main
from urbanpulse.clock import FakeClock
from urbanpulse.errors import ConfigError
from urbanpulse.wire import encode_batch
from urbanpulse.wire.payload import FLAGS, decode_batch

REPO = Path(__file__).resolve().parents[2]
SAMPLE = REPO / "edge/drivers/sds011/sample.toml"
T0 = datetime(2026, 5, 1, 6, 0, tzinfo=UTC)


def _config_text(tmp_path: Path, agent_table: str = "") -> str:
    text = SAMPLE.read_text().replace('state_dir = "/var/lib/urbanpulse"', f'state_dir = "{tmp_path}"')
    assert "[agent]" not in text
    return f"{text}\n[agent]\n{agent_table}\n" if agent_table else text


def _config_path(tmp_path: Path, agent_table: str = "") -> Path:
    path = tmp_path / "node.toml"
    path.write_text(_config_text(tmp_path, agent_table))
    return path


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(T0)


@pytest.fixture
def probe() -> FixedClockSync:
    return FixedClockSync(False)


@pytest.fixture
def agent(tmp_path: Path, clock: FakeClock, probe: FixedClockSync) -> Iterator[Agent]:
    agent = Agent(load_config(_config_path(tmp_path)), clock=clock, clock_sync=probe)
    agent.outbox.open()
    yield agent
    agent.outbox.close()


def _pm(clock: FakeClock, *flags: str) -> Sample:
    return Sample("pm-1", "air.pm", {"pm25": 12.0, "pm10": 20.0}, clock.now(), tuple(flags))


# -- the probes ------------------------------------------------------------------------

def test_the_kernel_answers_here_with_a_bool() -> None:
    # Which one depends on this machine's NTP; that it answers without raising does not.
    assert isinstance(KernelClockSync().synchronised(), bool)


def _adjtimex_returning(rc: int, seen: list[bytes]) -> Any:
    def adjtimex(buf: Any) -> int:
        seen.append(bytes(buf))
        return rc

    return adjtimex


@pytest.mark.parametrize(("rc", "synced"), [(0, True), (1, True), (4, True), (5, False)])
def test_the_kernel_s_clock_states_read_as_synchronised_but_time_error(rc: int, synced: bool) -> None:
    """A stand-in for the C function: the kernel here gives one state only."""
    seen: list[bytes] = []
    assert KernelClockSync(_adjtimex_returning(rc, seen)).synchronised() is synced
    # modes = 0 (the first field): the call asks and changes nothing
    assert seen == [bytes(TIMEX_BUFFER_BYTES)]


def test_a_failing_adjtimex_is_an_edge_error_naming_errno() -> None:
    """A stand-in that fails as the C library reports it (errno): seccomp or a kernel
    without the call cannot be had here."""
    def adjtimex(buf: Any) -> int:
        ctypes.set_errno(errno.EPERM)
        return -1

    with pytest.raises(ClockSyncError, match=r"errno 1 \(EPERM"):
        KernelClockSync(adjtimex).synchronised()
    with pytest.raises(ClockSyncError, match="returned 17"):
        KernelClockSync(_adjtimex_returning(17, [])).synchronised()


def test_the_config_names_the_probe(tmp_path: Path) -> None:
    assert isinstance(clock_sync_for(load_config(_config_path(tmp_path))), KernelClockSync)
    assert clock_sync_for(load_config(_config_path(tmp_path, 'clock_check = "off"'))) is None


def test_a_sample_is_flagged_once_and_keeps_its_other_flags(clock: FakeClock) -> None:
    assert CLOCK_UNSYNCED in FLAGS  # the wire contract's own flag
    assert flag_unsynced(_pm(clock)).flags == (CLOCK_UNSYNCED,)
    assert flag_unsynced(_pm(clock, "warmup")).flags == ("warmup", CLOCK_UNSYNCED)
    already = _pm(clock, CLOCK_UNSYNCED, "backlog")
    assert flag_unsynced(already) == already


# -- config ----------------------------------------------------------------------------

def test_clock_check_defaults_to_kernel_and_may_be_off(tmp_path: Path) -> None:
    assert load_config(_config_path(tmp_path)).clock_check == "kernel"
    assert load_config(_config_path(tmp_path, 'clock_check = "off"')).clock_check == "off"
    assert load_config(_config_path(tmp_path, 'clock_check = "kernel"')).clock_check == "kernel"


@pytest.mark.parametrize(("value", "reason"), [('"ntp"', "must be one of kernel, off, got 'ntp'"),
                                               ('"Kernel"', "must be one of kernel, off"),
                                               ("false", "must be str, got bool")])
def test_a_bad_clock_check_is_refused_by_its_key(tmp_path: Path, value: str, reason: str) -> None:
    import tomllib

    raw = tomllib.loads(_config_text(tmp_path, f"clock_check = {value}"))
    with pytest.raises(ConfigError, match=r"agent\.clock_check") as err:
        parse_config(raw)
    assert reason in str(err.value)


# -- the agent -------------------------------------------------------------------------

def test_readings_are_flagged_exactly_while_the_clock_is_unsynchronised(
        agent: Agent, clock: FakeClock, probe: FixedClockSync) -> None:
    emit = agent.emitter(agent.drivers["pm-1"])
    emit(_pm(clock))
    emit(_pm(clock, "warmup"))
    probe.set(True)  # NTP answers; the agent learns it at its next probe
    clock.advance(1.0)
    emit(_pm(clock))
    emit(_pm(clock, "warmup"))
    probe.set(False)  # the kernel gave up on a time daemon that stopped correcting
    clock.advance(1.0)
    emit(_pm(clock))
    assert agent.flush() == 5
    rows = agent.outbox.fetch(10)
    assert [r.reading.flags for r in rows] == [
        (CLOCK_UNSYNCED,), ("warmup", CLOCK_UNSYNCED), (), ("warmup",), (CLOCK_UNSYNCED,)]
    assert agent.drivers["pm-1"].readings == 5

    # The flag goes on the wire and comes back from it as the cloud decodes it.
    payload = encode_batch("hn-test", "aq-01", [r.reading for r in rows])
    decoded = decode_batch(payload, site="hn-test", node="aq-01")
    assert decoded.rejected == []
    assert [r.flags for r in decoded.readings] == [r.reading.flags for r in rows]


def test_the_flag_survives_the_outbox_being_reopened(agent: Agent, clock: FakeClock,
                                                      tmp_path: Path) -> None:
    agent.emitter(agent.drivers["pm-1"])(_pm(clock, "backlog"))
    agent.flush()
    agent.outbox.close()
    reopened = Outbox(tmp_path / OUTBOX_FILE).open()
    try:
        assert [r.reading.flags for r in reopened.fetch(10)] == [("backlog", CLOCK_UNSYNCED)]
    finally:
        reopened.close()
    agent.outbox.open()


def test_the_probe_is_asked_at_most_once_a_second(agent: Agent, clock: FakeClock,
                                                  probe: FixedClockSync) -> None:
    emit = agent.emitter(agent.drivers["pm-1"])
    for _ in range(32):
        emit(_pm(clock))
        clock.advance(1 / 64)  # exact in binary: 32 of them make 0.5 s
    assert probe.probes == 1
    probe.set(True)
    emit(_pm(clock))  # the cached answer, 0.5 s old
    assert probe.probes == 1
    clock.advance(0.5)
    emit(_pm(clock))
    assert probe.probes == 2
    agent.flush()
    flags = [r.reading.flags for r in agent.outbox.fetch(100)]
    assert flags == [(CLOCK_UNSYNCED,)] * 33 + [()]


def test_the_heartbeat_says_whether_the_clock_is_synchronised(
        agent: Agent, clock: FakeClock, probe: FixedClockSync, tmp_path: Path) -> None:
    assert agent.health()["clock"] == {"jumps": 0, "synchronised": None}  # not asked yet
    agent.clock_sync.start()
    assert agent.health()["clock"] == {"jumps": 0, "synchronised": False}
    probe.set(True)
    clock.advance(1.0)
    agent.clock_sync.refresh()
    assert agent.health()["clock"] == {"jumps": 0, "synchronised": True}

    (tmp_path / "off").mkdir()
    off = Agent(load_config(_config_path(tmp_path / "off", 'clock_check = "off"')), clock=clock)
    assert not off.clock_sync.enabled
    off.clock_sync.start()
    off.outbox.open()
    try:
        off.emitter(off.drivers["pm-1"])(_pm(clock))
        off.flush()
        assert [r.reading.flags for r in off.outbox.fetch(10)] == [()]
        assert off.health()["clock"] == {"jumps": 0, "synchronised": None}
    finally:
        off.outbox.close()


def test_edge_status_shows_the_clock(agent: Agent, probe: FixedClockSync, tmp_path: Path,
                                     capsys: pytest.CaptureFixture[str]) -> None:
    agent.clock_sync.start()
    agent.write_state()
    assert main(["edge", "status", "--config", str(tmp_path / "node.toml")]) == 0
    out = capsys.readouterr().out
    assert "clock:     NOT synchronised (readings flagged clock_unsynced), 0 jumps" in out
    assert main(["edge", "status", "--config", str(tmp_path / "node.toml"), "--json"]) == 0
    status = json.loads(capsys.readouterr().out)
    assert status["agent"]["health"]["clock"] == {"jumps": 0, "synchronised": False}


def test_a_clock_that_cannot_be_asked_stops_the_agent_at_start_up_as_a_config_error(
        tmp_path: Path, clock: FakeClock, probe: FixedClockSync) -> None:
    """The kernel will not answer later either: the config asks what this machine cannot do.
    Before, a ClockSyncError (exit code 3), which systemd restarted every 5 s for ever."""
    probe.error = ClockSyncError("adjtimex failed with errno 1 (EPERM: Operation not permitted)")
    agent = Agent(load_config(_config_path(tmp_path)), clock=clock, clock_sync=probe)

    async def run() -> None:
        await asyncio.wait_for(agent.run(asyncio.Event()), timeout=10)

    with pytest.raises(ConfigError, match="EPERM") as err:
        asyncio.run(run())
    assert err.value.key == "agent.clock_check"
    assert isinstance(err.value.__cause__, ClockSyncError)
    assert 'clock_check = "off"' in err.value.reason
    assert agent.publisher is None  # nothing was started
    assert not (tmp_path / OUTBOX_FILE).exists()


def test_edge_run_where_the_kernel_refuses_the_clock_check_exits_2_naming_the_key(
        tmp_path: Path) -> None:
    """`urbanpulse edge run` in a process whose adjtimex and clock_adjtime the kernel
    refuses (a seccomp filter, as systemd's SystemCallFilter= or ProtectClock=yes install):
    exit code 2, which the unit's RestartPreventExitStatus=2 does not restart, and a
    message naming the key. Before: exit code 3, restarted every RestartSec for ever."""
    config = _config_path(tmp_path, 'clock_check = "kernel"')
    script = (f"from tests.edge.seccomp import CLOCK_READS, install_filter\n"
              f"install_filter(CLOCK_READS, allow_listed=False)\n"
              f"import sys\nfrom urbanpulse.cli import main\n"
              f"sys.exit(main(['edge', 'run', '--config', {str(config)!r}]))\n")
    done = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True,
                          text=True, timeout=60, check=False)
    assert done.returncode == EXIT_CONFIG, done.stderr
    assert done.stderr.startswith("config error: agent.clock_check: "), done.stderr
    assert "EPERM" in done.stderr
    assert not (tmp_path / OUTBOX_FILE).exists()  # it stopped before opening anything


def test_a_probe_failing_later_flags_readings_and_is_logged_once(
        clock: FakeClock, caplog: pytest.LogCaptureFixture) -> None:
    probe = FixedClockSync(True)
    watch = SyncWatch(probe, clock)
    watch.start()
    assert watch.stamp(_pm(clock)).flags == ()
    probe.error = ClockSyncError("adjtimex failed")
    with caplog.at_level(logging.WARNING, logger="urbanpulse.edge.clock_sync"):
        for _ in range(3):
            clock.advance(1.0)
            assert watch.stamp(_pm(clock)).flags == (CLOCK_UNSYNCED,)
    assert probe.probes == 4
    assert [r.getMessage() for r in caplog.records] == [
        "cannot tell whether the clock is synchronised; flagging readings",
        "wall clock not synchronised; readings flagged clock_unsynced"]
    probe.error = None
    clock.advance(1.0)
    assert watch.stamp(_pm(clock)).flags == ()
    assert watch.state is True
