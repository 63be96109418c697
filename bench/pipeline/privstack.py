"""A private stack for one measured run: Mosquitto and InfluxDB on free 127.0.0.1 ports in
a fresh home, one MQTT user per simulated node, the database with its retention policies,
and the processor (`urbanpulse cloud run`) as its own process."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.pipeline.errors import PipelineBenchError
from bench.pipeline.workload import GATEWAY
from cloud.config import parse_cloud_config
from cloud.initdb import init_db
from cloud.stack_config import cloud_config_for_stack, to_toml
from urbanpulse.influx_http import InfluxHTTP
from urbanpulse.stack import MqttCredentials, StackConfig, StackInfo, add_node, down, influxd, mosquitto, up
from urbanpulse.stack.layout import Layout
from urbanpulse.stack.process import free_ports

SUBSCRIBE_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 20.0


@dataclass
class PrivateStack:
    config: StackConfig
    info: StackInfo
    nodes: dict[str, MqttCredentials] = field(default_factory=dict)

    @classmethod
    def start(cls, home: Path, nodes: list[tuple[str, str]]) -> PrivateStack:
        mqtt_port, cloud_port, influx_port, rpc_port = free_ports(4)
        config = StackConfig(home=home, mqtt_port=mqtt_port, mqtt_cloud_port=cloud_port,
                             influx_port=influx_port, influx_rpc_port=rpc_port)
        try:
            stack = cls(config, up(config))
            for site, node in nodes:
                # a site's gateway (workload.relayed) is the only user that may write a relay
                creds = add_node(config, site, node, gateway=node == GATEWAY)
                stack.nodes[creds.username] = creds
        except BaseException:
            down(config)
            raise
        return stack

    def init_database(self, cloud_config: dict[str, Any]) -> None:
        retention = parse_cloud_config(cloud_config).retention
        creds = self.info.influx("admin")
        with InfluxHTTP(creds.url, creds.username, creds.password()) as admin:
            init_db(admin, self.info.database, retention)

    def reader(self) -> InfluxHTTP:
        creds = self.info.influx("reader")
        return InfluxHTTP(creds.url, creds.username, creds.password(), timeout_s=60)

    def pids(self) -> dict[str, int]:
        layout = Layout(self.config.home)
        out = {}
        for name, pid in (("mosquitto", mosquitto.running_pid(layout)),
                          ("influxd", influxd.running_pid(layout))):
            if pid is None:
                raise PipelineBenchError(f"{name} of {self.config.home} is not running")
            out[name] = pid
        return out

    def stop(self) -> None:
        down(self.config)


def cloud_config(info: StackInfo, state_dir: Path, *, detect: bool,
                 flow: dict[str, Any] | None = None) -> dict[str, Any]:
    config = cloud_config_for_stack(info, state_dir, detect=detect, **(flow or {}))
    # The simulated weeks lie in the past: keep every raw point (the default 30 days would
    # refuse the oldest ones and make the count lie).
    config["retention"] = {"raw": "INF"}
    return config


class Processor:
    """`python -m urbanpulse.cli cloud run --config FILE` in its own session."""

    def __init__(self, config: dict[str, Any], workdir: Path, name: str = "cloud",
                 extra_args: tuple[str, ...] = ()) -> None:
        self.config_path = workdir / f"{name}.toml"
        self.log_path = workdir / f"{name}.log"
        self.config_path.write_text(to_toml(config))
        self.extra_args = extra_args
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int:
        if self.proc is None:
            raise PipelineBenchError("the processor is not started")
        return self.proc.pid

    def start(self) -> None:
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "urbanpulse.cli", "cloud", "run", "--config",
                 str(self.config_path), *self.extra_args],
                stdout=log, stderr=subprocess.STDOUT, start_new_session=True)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def wait_subscribed(self) -> None:
        deadline = time.monotonic() + SUBSCRIBE_TIMEOUT_S
        while "ingest subscribed" not in self.log():
            if self.proc is None or self.proc.poll() is not None:
                raise PipelineBenchError(f"the processor exited:\n{self.log()[-3000:]}")
            if time.monotonic() > deadline:
                raise PipelineBenchError(f"the ingest did not subscribe:\n{self.log()[-3000:]}")
            time.sleep(0.1)

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(STOP_TIMEOUT_S)
