"""Shared fixtures: a PRIVATE local stack (real Mosquitto and InfluxDB) for the test session.

It runs the same code as `urbanpulse stack up`, in a temporary home on free ports, and
never touches ./.urbanpulse. If mosquitto or influxd is missing, the fixture fails loudly
(BinaryMissing); nothing is skipped.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import pytest

from cloud.config import CloudConfig, parse_cloud_config
from cloud.initdb import init_db
from cloud.stack_config import cloud_config_for_stack, to_toml
from urbanpulse.influx_http import InfluxHTTP
from urbanpulse.mqtt import close_client, connect_and_wait, make_client
from urbanpulse.stack import MqttCredentials, StackConfig, StackInfo, add_node, down, up
from urbanpulse.stack.process import RESERVED_PORTS_ENV, free_ports
from urbanpulse.wire import Reading, decode_batch, parse_topic


def _reserved_ports_range() -> str:
    """The 12,768 ports below the kernel's ephemeral ones (20000-32767 on Debian's default)."""
    low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    return f"{max(1024, low - 12768)}-{low - 1}"


def pytest_configure(config: pytest.Config) -> None:
    # free_ports of every test process (pytest-xdist's workers too) and of what the tests
    # start takes ports from this range, each reserved for all of them: two workers never get
    # one port, and no socket bound to port 0 meanwhile takes it (urbanpulse/stack/process.py).
    os.environ.setdefault(RESERVED_PORTS_ENV, _reserved_ports_range())


def private_stack_config(home: Path) -> StackConfig:
    mqtt_port, cloud_port, influx_port, rpc_port = free_ports(4)
    return StackConfig(home=home, mqtt_port=mqtt_port, mqtt_cloud_port=cloud_port,
                       influx_port=influx_port, influx_rpc_port=rpc_port)


@pytest.fixture(scope="session")
def stack_config(tmp_path_factory: pytest.TempPathFactory) -> StackConfig:
    return private_stack_config(tmp_path_factory.mktemp("urbanpulse-home"))


@pytest.fixture
def own_stack_config(tmp_path: Path) -> Iterator[StackConfig]:
    """A fresh private home on free ports, not started; whatever the test starts in it
    is stopped at teardown. For tests that stop, kill or restart servers."""
    config = private_stack_config(tmp_path / "urbanpulse-home")
    try:
        yield config
    finally:
        down(config)


@pytest.fixture(scope="session")
def stack(stack_config: StackConfig) -> Iterator[StackInfo]:
    """The session's own Mosquitto and InfluxDB, started once and stopped at the end."""
    try:
        info = up(stack_config)
    except BaseException:
        down(stack_config)
        raise
    try:
        yield info
    finally:
        down(stack_config)


@pytest.fixture(scope="session")
def add_stack_node(stack: StackInfo, stack_config: StackConfig) -> Callable[..., MqttCredentials]:
    """add_stack_node(site, node, gateway=False) -> MqttCredentials of a node user on the
    session stack; gateway=True: a site gateway's, which may write its relay topic."""

    def add(site: str, node: str, gateway: bool = False) -> MqttCredentials:
        return add_node(stack_config, site, node, gateway=gateway)

    return add


@pytest.fixture
def influx_client(stack: StackInfo) -> Iterator[Callable[[str | None], InfluxHTTP]]:
    """influx_client("admin" | "writer" | "reader" | None) -> InfluxHTTP; None = anonymous."""
    with ExitStack() as clients:

        def make(role: str | None) -> InfluxHTTP:
            if role is None:
                return clients.enter_context(InfluxHTTP(stack.influx_url))
            creds = stack.influx(role)
            client = InfluxHTTP(creds.url, creds.username, creds.password())
            return clients.enter_context(client)

        yield make


# -- the edge agent on the session stack --------------------------------------------

class Collector:
    """Subscribes to a node's data as the cloud user and keeps every reading it sees, and
    its status messages with the time each arrived (the broker publishes the node's will,
    "offline", when it gives the node's connection up)."""

    def __init__(self, info: StackInfo, site: str, node: str) -> None:
        self.readings: list[Reading] = []
        self.numberings: set[str | None] = set()  # the data batches' numbering ids
        self.statuses: list[bytes] = []
        self._status_arrivals: list[float] = []  # time.monotonic() of each of `statuses`
        self._lock = threading.Lock()
        # A persistent session: the broker keeps the subscription and queues for it while
        # the collector reconnects after a broker restart.
        self.client = make_client(f"collector-{site}-{node}", info.mqtt("cloud"), clean_start=False)
        self.client.on_message = self._on_message
        self.topic = f"urbanpulse/v1/{site}/{node}/+"

    def _on_message(self, client: Any, userdata: Any, msg: Any) -> None:
        t = parse_topic(msg.topic)
        with self._lock:
            if t.stream == "data":
                batch = decode_batch(msg.payload)
                self.readings.extend(batch.readings)
                self.numberings.add(batch.numbering)
            else:
                self.statuses.append(msg.payload)
                self._status_arrivals.append(time.monotonic())

    def start(self) -> None:
        subscribed = threading.Event()
        self.client.on_subscribe = lambda *a: subscribed.set()
        connect_and_wait(self.client)
        self.client.subscribe(self.topic, qos=1)
        assert subscribed.wait(10), "subscription not acknowledged"

    def seqs(self, sensor: str) -> list[int]:
        with self._lock:
            return sorted(r.seq for r in self.readings if r.sensor == sensor)

    def first_status(self, state: str, after: float) -> float | None:
        """When the first status of `state` ("online" or "offline") arrived after `after`."""
        with self._lock:
            return next((t for t, payload in zip(self._status_arrivals, self.statuses, strict=True)
                         if t > after and f'"{state}"'.encode() in payload), None)

    def stop(self) -> None:
        close_client(self.client)


def node_config(info: StackInfo, creds: Any, site: str, node: str, state_dir: Path,
                sensors: str, delivery: str = "broker", ack_timeout_s: float = 120.0,
                **outbox: Any) -> str:
    outbox_lines = "\n".join(f"{k} = {v!r}" for k, v in outbox.items())
    return f"""
[node]
id = "{node}"
site = "{site}"
state_dir = "{state_dir}"

[mqtt]
host = "{creds.host}"
port = {creds.port}
ca_file = "{creds.ca_file}"
username = "{creds.username}"
password_file = "{creds.password_file}"
delivery = "{delivery}"
ack_timeout_s = {ack_timeout_s}

[outbox]
batch_max_delay_s = 0.2
{outbox_lines}

[gpio]
backend = "mock"

[agent]
heartbeat_s = 2.0
clock_check = "off"  # no NTP on a test machine: the kernel would say unsynchronised forever

{sensors}
"""


@pytest.fixture
def collector(stack: StackInfo) -> Iterator[Callable[[str, str], Collector]]:
    made: list[Collector] = []

    def make(site: str, node: str) -> Collector:
        c = Collector(stack, site, node)
        c.start()
        made.append(c)
        return c

    yield make
    for c in made:
        c.stop()


@pytest.fixture
def make_node_config(stack: StackInfo, add_stack_node: Callable[..., Any], tmp_path: Path
                     ) -> Callable[..., Path]:
    """make_node_config(site, node, sensors_toml, **outbox) -> path of a node config file
    on the session stack, with a fresh state dir."""

    def make(site: str, node: str, sensors: str, delivery: str = "broker",
             ack_timeout_s: float = 120.0, **outbox: Any) -> Path:
        # "broker" unless a test runs the cloud processor: nothing else sends the cloud's acks.
        creds = add_stack_node(site, node)
        path = tmp_path / f"{node}.toml"
        path.write_text(node_config(stack, creds, site, node, tmp_path / f"state-{node}", sensors,
                                    delivery, ack_timeout_s, **outbox))
        return path

    return make


# -- the cloud processor on the session stack ---------------------------------------

@pytest.fixture(scope="session")
def db_ready(stack: StackInfo) -> StackInfo:
    creds = stack.influx("admin")
    with InfluxHTTP(creds.url, creds.username, creds.password()) as admin:
        init_db(admin, stack.database, parse_cloud_config(
            {"mqtt": {"password_file": "x", "ca_file": "x"}, "influx": {"password_file": "x"}}).retention)
    return stack


def _influx_as(db_ready: StackInfo, user: str) -> Iterator[InfluxHTTP]:
    creds = db_ready.influx(user)
    with InfluxHTTP(creds.url, creds.username, creds.password()) as client:
        yield client


@pytest.fixture
def reader(db_ready: StackInfo) -> Iterator[InfluxHTTP]:
    yield from _influx_as(db_ready, "reader")


@pytest.fixture
def admin(db_ready: StackInfo) -> Iterator[InfluxHTTP]:
    """The session stack's InfluxDB admin (users, grants, databases)."""
    yield from _influx_as(db_ready, "admin")


class CloudProcess:
    """`urbanpulse cloud run` in a child process, as an operator would start it."""

    def __init__(self, config_path: Path, log_path: Path, extra_args: tuple[str, ...] = ()) -> None:
        self.config_path = config_path
        self.extra_args = extra_args
        self.log_path = log_path
        self.proc: subprocess.Popen[bytes] | None = None
        self.config: CloudConfig | None = None

    def start(self) -> None:
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "urbanpulse.cli", "cloud", "run", "--config",
                 str(self.config_path), *self.extra_args],
                stdout=log, stderr=subprocess.STDOUT, start_new_session=True)

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.kill()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


@pytest.fixture
def cloud_factory(db_ready: StackInfo, tmp_path: Path) -> Iterator[Callable[..., CloudProcess]]:
    started: list[CloudProcess] = []

    def make(name: str = "cloud", extra_args: tuple[str, ...] = (), log_name: str | None = None,
             topic: str | None = None, **flow: Any) -> CloudProcess:
        config = cloud_config_for_stack(db_ready, tmp_path / name, **flow)
        if topic is not None:
            config["mqtt"]["node_filter"] = topic
        # Each test gets its own shared-subscription group and session.
        config["mqtt"]["shared_group"] = f"g-{tmp_path.name[-20:]}-{name}".replace("_", "-")
        config["mqtt"]["client_id"] = f"ingest-{tmp_path.name[-20:]}-{name}"
        path = tmp_path / f"{name}.toml"
        path.write_text(to_toml(config))
        proc = CloudProcess(path, tmp_path / f"{log_name or name}.log", extra_args)
        started.append(proc)
        return proc

    yield make
    for proc in started:
        proc.stop()
