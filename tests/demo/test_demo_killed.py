"""A demo killed without a word (SIGKILL, the OOM killer) takes its processor, its site
broker and its gateway with it, and the next demo is not held up by one that outlived it.
The processor runs in a session of its own (Ctrl-C in the terminal reaches the demo only,
which stops it in order), so it did not end with a demo that could not stop it: it kept
the ingest's instance lock, and the next demo waited 120 s for its own processor's
subscription, then failed."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.conftest import CloudProcess
from urbanpulse.demo.runner import PROCESSOR_PIDFILE, stop_earlier_processor
from urbanpulse.stack import StackConfig
from urbanpulse.stack.process import is_alive
from urbanpulse.testing import wait_for

# Well under the demo's own 120 s wait for the subscription: "promptly".
SECOND_START_S = 90.0


def _pids(matches: Callable[[list[bytes]], bool]) -> list[int]:
    """Pids of the live processes whose command line (its arguments) `matches`."""
    out = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            args = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue  # gone meanwhile
        if matches(args) and is_alive(int(entry.name)):
            out.append(int(entry.name))
    return out


def _processors(cloud_toml: Path) -> list[int]:
    """Pids of `urbanpulse cloud run --config <cloud_toml>` processes."""
    config = os.fsencode(str(cloud_toml))
    return _pids(lambda args: config in args and b"run" in args)


def _site_processes(home: Path) -> list[int]:
    """Pids of the demo's site broker and gateway of `home` (by their config files)."""
    ours = [os.fsencode(str(home / "sites" / "bach-mai" / "mosquitto.conf")),
            os.fsencode(str(home / "demo" / "gateway.toml"))]
    return _pids(lambda args: any(path in args for path in ours))


@contextlib.contextmanager
def _demo(env: dict[str, str], out: Path) -> Iterator[subprocess.Popen[str]]:
    with out.open("w") as sink:
        proc = subprocess.Popen([sys.executable, "-m", "urbanpulse.cli", "demo", "--city-nodes",
                                 "live"], env=env, stdout=sink, stderr=subprocess.STDOUT, text=True)
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(30)


def _started(proc: subprocess.Popen[str], out: Path) -> Callable[[], bool]:
    """True once the demo runs (its processor subscribed); AssertionError if it exited."""
    def check() -> bool:
        if proc.poll() is not None:
            raise AssertionError(f"the demo exited ({proc.returncode}):\n{out.read_text()[-3000:]}")
        return "logs: " in out.read_text()
    return check


def _described(pids: list[int]) -> list[str]:
    """Each pid's state letter (/proc/<pid>/stat: S sleeping, D in a disk wait, T stopped...)
    and command line, for a failure's message."""
    out = []
    for pid in pids:
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
            args = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        out.append(f"{pid} {stat.rsplit(')', 1)[1].split()[0]} {args[:200]}")
    return out


def test_a_demo_killed_by_sigkill_leaves_no_processor_to_hold_the_next_one_up(
        own_stack_config: StackConfig, tmp_path: Path) -> None:
    own = own_stack_config
    env = dict(os.environ, URBANPULSE_HOME=str(own.home),
               URBANPULSE_MQTT_PORT=str(own.mqtt_port),
               URBANPULSE_MQTT_CLOUD_PORT=str(own.mqtt_cloud_port),
               URBANPULSE_INFLUX_PORT=str(own.influx_port),
               URBANPULSE_INFLUX_RPC_PORT=str(own.influx_rpc_port))
    cloud_toml = Path(own.home) / "demo" / "cloud.toml"
    try:
        with _demo(env, tmp_path / "first.out") as first:
            wait_for(_started(first, tmp_path / "first.out"), 180, "the first demo to run",
                     every_s=0.5)
            (orphan,) = _processors(cloud_toml)
            assert len(_site_processes(own.home)) == 2  # the site broker and the gateway
            first.send_signal(signal.SIGKILL)
            first.wait(10)
            try:
                wait_for(lambda: not _site_processes(own.home), 30,
                         "the killed demo's site broker and gateway to end")
            except AssertionError as exc:  # which one, in which state, and what it said last
                gateway_log = Path(own.home) / "demo" / "gateway.log"
                raise AssertionError(
                    f"{exc}; still running: {_described(_site_processes(own.home))}; gateway "
                    f"log: {gateway_log.read_text(errors='replace')[-1500:]}") from exc
        with _demo(env, tmp_path / "second.out") as second:
            wait_for(_started(second, tmp_path / "second.out"), SECOND_START_S,
                     "the second demo's processor to subscribe", every_s=0.5)
            wait_for(lambda: not is_alive(orphan), 30, "the first demo's processor to end")
            (current,) = _processors(cloud_toml)
            assert current != orphan
            second.send_signal(signal.SIGTERM)
            assert second.wait(60) == 0, (tmp_path / "second.out").read_text()[-3000:]
        assert not _processors(cloud_toml), "the processor outlived the demo"
        assert not _site_processes(own.home), "the site broker or gateway outlived the demo"
    finally:
        for pid in _processors(cloud_toml) + _site_processes(own.home):  # this test's own
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pid, signal.SIGKILL)


def test_an_earlier_processor_of_the_demo_is_stopped(
        cloud_factory: Callable[..., CloudProcess], tmp_path: Path) -> None:
    cloud = cloud_factory("cloud")
    cloud.start()
    assert cloud.proc is not None
    pidfile = tmp_path / PROCESSOR_PIDFILE
    pidfile.write_text(f"{cloud.proc.pid}\n")
    assert stop_earlier_processor(pidfile, cloud.config_path)
    assert cloud.proc.poll() is not None
    assert not pidfile.exists()


@pytest.mark.parametrize("argv", [
    ["sleep", "60"],  # an unrelated process that reused the pid
    [sys.executable, "-c", "import time; time.sleep(60)", "--config", "{toml}"],  # names the file
])
def test_a_pid_reused_by_another_process_is_left_alone(tmp_path: Path, argv: list[str]) -> None:
    cloud_toml = tmp_path / "cloud.toml"
    cloud_toml.write_text("")
    proc = subprocess.Popen([a.format(toml=cloud_toml) for a in argv])
    try:
        pidfile = tmp_path / PROCESSOR_PIDFILE
        pidfile.write_text(f"{proc.pid}\n")
        assert not stop_earlier_processor(pidfile, cloud_toml)
        assert proc.poll() is None
    finally:
        proc.kill()
        proc.wait(10)
