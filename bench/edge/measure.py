"""The two agent phases: idle (connected, ports open, no readings) and under load."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from bench.edge.agent_process import (
    AgentProcess,
    committed_total,
    outbox_depth,
    write_node_config,
)
from bench.edge.delivered import DeliveredCounter
from bench.edge.errors import BenchError
from bench.edge.procfs import CpuTimes, cpu_times, memory, thread_cpu
from bench.edge.sensors import sds011_sensors, sensors_toml
from urbanpulse.stack import MqttCredentials

STATE_FILE = "agent-state.json"  # edge.agent.STATE_FILE


@dataclass(frozen=True, slots=True)
class IdleResult:
    window_s: float
    cpu_s: float
    loop_thread_cpu_s: float
    rss_kb: int
    hwm_kb: int
    exit_code: int

    @property
    def core_pct(self) -> float:
        return 100 * self.cpu_s / self.window_s


@dataclass(frozen=True, slots=True)
class LoadResult:
    sensors: int
    paced: bool
    target_rate: float
    window_s: float
    delivered: int
    cpu_s: float
    loop_thread_cpu_s: float
    user_s: float
    system_s: float
    hwm_kb: int
    rss_max_kb: int
    rss_end_kb: int
    anon_end_kb: int
    file_end_kb: int
    outbox_depth_end: int
    outbox_depth_after_stop: int
    committed_total: int
    delivered_total: int
    duplicates: int
    messages_in_window: int
    lifetime_cpu_s: float
    threads: int
    exit_code: int

    @property
    def rate(self) -> float:
        return self.delivered / self.window_s

    @property
    def cpu_ms_per_1000(self) -> float:
        return 1e6 * self.cpu_s / self.delivered if self.delivered else float("inf")

    @property
    def core_pct(self) -> float:
        return 100 * self.cpu_s / self.window_s


def _wait(check: Callable[[], bool], timeout_s: float, what: str,
          alive: Callable[[], None]) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        alive()
        if time.monotonic() > deadline:
            raise BenchError(f"timed out after {timeout_s} s waiting for {what}")
        time.sleep(0.1)


def _drivers_running(state_dir: Path, count: int) -> bool:
    try:
        body = json.loads((state_dir / STATE_FILE).read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return False
    drivers = body.get("drivers", {})
    return len(drivers) == count and all(d.get("state") == "running" for d in drivers.values())


def _window(agent: AgentProcess, seconds: float) -> int:
    """Let `seconds` pass (the measurement window) while watching the agent; max VmRSS."""
    end = time.monotonic() + seconds
    rss_max = 0
    while (left := end - time.monotonic()) > 0:
        agent.check_alive()
        rss_max = max(rss_max, memory(agent.pid).rss_kb)
        time.sleep(min(0.5, left))
    return rss_max


def idle_phase(workdir: Path, creds: MqttCredentials, site: str, node: str, sensors: int,
               window_s: float, counter: DeliveredCounter, python: str) -> IdleResult:
    """The agent with every port open and the broker connected, but sensors that stay
    silent (an hour between reports): its memory before any reading, its fixed CPU cost."""
    state_dir = workdir / "state-idle"
    config = workdir / "idle.toml"
    with sds011_sensors(sensors, period_s=3600.0) as emulators:
        write_node_config(config, creds, site, node, state_dir,
                          sensors_toml(emulators, silence_timeout_s=7200), python)
        agent = AgentProcess(config, workdir / "agent-idle.log", state_dir, python)
        agent.start()
        try:
            _wait(lambda: counter.saw_status(b'"online"') and _drivers_running(state_dir, sensors)
                  and all(e.attached for e in emulators), 60,
                  "the idle agent online with every port open", agent.check_alive)
            cpu0, threads0 = cpu_times(agent.pid), thread_cpu(agent.pid)
            t0 = time.monotonic()
            _window(agent, window_s)
            cpu1, threads1 = cpu_times(agent.pid), thread_cpu(agent.pid)
            loop_cpu = _delta(threads0.get(agent.pid), threads1.get(agent.pid))
            elapsed = time.monotonic() - t0
            mem = memory(agent.pid)
        finally:
            code = agent.stop()
    return IdleResult(elapsed, cpu1.total_s - cpu0.total_s, loop_cpu, mem.rss_kb, mem.hwm_kb,
                      code)


def load_phase(workdir: Path, creds: MqttCredentials, site: str, node: str, sensors: int,
               rate: float, warmup_s: float, window_s: float,
               counter: DeliveredCounter, python: str, *, paced: bool = True) -> LoadResult:
    state_dir = workdir / "state"
    config = workdir / "load.toml"
    with sds011_sensors(sensors, period_s=sensors / rate, paced=paced) as emulators:
        write_node_config(config, creds, site, node, state_dir, sensors_toml(emulators), python)
        agent = AgentProcess(config, workdir / "agent.log", state_dir, python)
        agent.start()
        try:
            _wait(lambda: counter.sensors_seen() == sensors, 60,
                  f"readings from all {sensors} sensors at the cloud", agent.check_alive)
            _window(agent, warmup_s)
            before, threads0 = cpu_times(agent.pid), thread_cpu(agent.pid)
            delivered0, messages0 = counter.unique, counter.messages
            t0 = time.monotonic()
            rss_max = _window(agent, window_s)
            after, threads1 = cpu_times(agent.pid), thread_cpu(agent.pid)
            delivered1, messages1 = counter.unique, counter.messages
            elapsed = time.monotonic() - t0
            mem = memory(agent.pid)
            depth_end = outbox_depth(state_dir)
            lifetime = after.total_s
            loop_cpu = _delta(threads0.get(agent.pid), threads1.get(agent.pid))
        finally:
            code = agent.stop()
    committed = committed_total(state_dir)
    # A clean stop drains the outbox; give its last batches time to reach the subscriber.
    deadline = time.monotonic() + 15
    while counter.unique < committed and time.monotonic() < deadline:
        time.sleep(0.1)
    return LoadResult(
        sensors=sensors, paced=paced, target_rate=rate, window_s=elapsed, delivered=delivered1 - delivered0,
        cpu_s=after.total_s - before.total_s, loop_thread_cpu_s=loop_cpu,
        user_s=after.user_s - before.user_s, system_s=after.system_s - before.system_s,
        hwm_kb=mem.hwm_kb, rss_max_kb=max(rss_max, mem.rss_kb), rss_end_kb=mem.rss_kb,
        anon_end_kb=mem.anon_kb, file_end_kb=mem.file_kb,
        outbox_depth_end=depth_end, outbox_depth_after_stop=outbox_depth(state_dir),
        committed_total=committed, delivered_total=counter.unique,
        duplicates=counter.duplicates, messages_in_window=messages1 - messages0,
        lifetime_cpu_s=lifetime, threads=len(threads1), exit_code=code)


def _delta(a: CpuTimes | None, b: CpuTimes | None) -> float:
    if a is None or b is None:
        return 0.0
    return b.total_s - a.total_s
