"""Brings the demo city up: stack, database, cloud processor, emulated devices, agents."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path
from typing import Any

from cloud.initdb import init_db
from cloud.stack_config import cloud_config_for_stack, to_toml
from edge.agent import Agent
from edge.config import load_config
from edge.logs import JsonFormatter
from firmware_bridge.protocols.sds011.emulator import Sds011Emulator
from urbanpulse.demo.city import DemoNode, PinDriver, air_values, city_nodes
from urbanpulse.demo.summary import collect, render
from urbanpulse.influx_http import InfluxHTTP
from urbanpulse.stack import StackInfo, add_node, up
from urbanpulse.stack.lifecycle import resolve_config

REFRESH_S = 2.0


def _node_config(info: StackInfo, node: DemoNode, creds: Any, state_dir: Path) -> str:
    return (f'[node]\nid = "{node.node}"\nsite = "{node.site}"\nlocation = "{node.label}"\n'
            f'state_dir = "{state_dir}"\n\n[mqtt]\nhost = "{creds.host}"\nport = {creds.port}\n'
            f'ca_file = "{creds.ca_file}"\nusername = "{creds.username}"\n'
            f'password_file = "{creds.password_file}"\n\n[outbox]\nbatch_max_delay_s = 0.5\n\n'
            f'[gpio]\nbackend = "mock"\n\n[agent]\nheartbeat_s = 10.0\n\n{node.sensors_toml}')


class _Agents(threading.Thread):
    def __init__(self, agents: list[Agent]) -> None:
        super().__init__(name="demo-agents", daemon=True)
        self.agents = agents
        self.loop = asyncio.new_event_loop()
        self.stop_event = asyncio.Event()

    def run(self) -> None:
        asyncio.set_event_loop(self.loop)

        async def all_agents() -> None:
            await asyncio.gather(*(a.run(self.stop_event) for a in self.agents))

        self.loop.run_until_complete(all_agents())

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.stop_event.set)
        self.join(30)


def run_demo(duration_s: float | None, seed: int = 1) -> int:
    from gpiozero.pins.mock import MockFactory

    config = resolve_config()
    print(f"urbanpulse demo: starting the local stack in {config.home} ...", flush=True)
    info = up(config)
    admin = info.influx("admin")
    with InfluxHTTP(admin.url, admin.username, admin.password()) as client:
        from cloud.config import Retention

        init_db(client, info.database, Retention("30d", "400d", "INF"))
    demo_dir = config.home / "demo"
    demo_dir.mkdir(parents=True, exist_ok=True)
    logging.getLogger().handlers[:] = []
    handler = logging.FileHandler(demo_dir / "agents.log")
    handler.setFormatter(JsonFormatter())
    logging.getLogger().addHandler(handler)
    logging.getLogger().setLevel(logging.INFO)

    with ExitStack() as cleanup:
        ports: dict[str, str] = {}
        for i, (sensor, base) in enumerate((("pm-hoankiem", 48.0), ("pm-caugiay", 36.0))):
            emu = Sds011Emulator(air_values(seed + i, base), period_s=1.0, warmup_s=0.0)
            ports[sensor] = emu.start()
            cleanup.callback(emu.stop)
        nodes = city_nodes(ports)

        cloud_toml = demo_dir / "cloud.toml"
        cloud_toml.write_text(to_toml(cloud_config_for_stack(info, demo_dir / "cloud")))
        with (demo_dir / "cloud.log").open("ab") as log:
            cloud = subprocess.Popen(
                [sys.executable, "-m", "urbanpulse.cli", "cloud", "run", "--config", str(cloud_toml)],
                stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        cleanup.callback(_stop_process, cloud)

        pins = PinDriver(seed)
        agents = []
        for node in nodes:
            creds = add_node(config, node.site, node.node)
            path = demo_dir / f"{node.site}.{node.node}.toml"
            path.write_text(_node_config(info, node, creds, demo_dir / "state" / f"{node.site}.{node.node}"))
            factory = MockFactory()
            for sensor, pin in node.pins.items():
                if sensor == "lane-1":
                    pins.add_loop_pair_on(factory, pin, node.pins["lane-1.down"])
                elif sensor.startswith("bed-"):
                    pins.add_bed(factory, pin)
                elif sensor.endswith("-door"):
                    pins.add_door(factory, pin)
            agents.append(Agent(load_config(path), pin_factory=_constant(factory)))
        runner = _Agents(agents)
        runner.start()
        cleanup.callback(runner.stop)
        pins.start()
        cleanup.callback(pins.stop_event.set)

        reader = info.influx("reader")
        started = time.monotonic()
        print(f"cloud processor log: {demo_dir / 'cloud.log'}; agents log: {demo_dir / 'agents.log'}")
        with InfluxHTTP(reader.url, reader.username, reader.password()) as client:
            try:
                while duration_s is None or time.monotonic() - started < duration_s:
                    if cloud.poll() is not None:
                        print(f"the cloud processor exited ({cloud.returncode}); see its log",
                              file=sys.stderr)
                        return 1
                    text = render(collect(client, info.database), time.monotonic() - started,
                                  duration_s)
                    if sys.stdout.isatty():
                        sys.stdout.write("\x1b[H\x1b[2J")
                    print(text, flush=True)
                    time.sleep(REFRESH_S)
            except KeyboardInterrupt:
                print("\nstopping ...")
    print(f"done. The data stays in InfluxDB at {info.influx_url} (database {info.database}); "
          f"reader credentials: {reader.password_file}. `urbanpulse stack down` stops the stack.")
    return 0


def _constant(value: Any) -> Callable[[], Any]:
    return lambda: value


def _stop_process(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
