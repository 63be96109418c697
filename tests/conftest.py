"""Shared fixtures: a PRIVATE local stack (real Mosquitto and InfluxDB) for the test session.

It runs the same code as `urbanpulse stack up`, in a temporary home on free ports, and
never touches ./.urbanpulse. If mosquitto or influxd is missing, the fixture fails loudly
(BinaryMissing); nothing is skipped.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import ExitStack
from pathlib import Path

import pytest

from urbanpulse.influx_http import InfluxHTTP
from urbanpulse.stack import MqttCredentials, StackConfig, StackInfo, add_node, down, up
from urbanpulse.stack.process import free_ports


def private_stack_config(home: Path) -> StackConfig:
    mqtt_port, influx_port, rpc_port = free_ports(3)
    return StackConfig(
        home=home, mqtt_port=mqtt_port, influx_port=influx_port, influx_rpc_port=rpc_port
    )


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
def add_stack_node(stack: StackInfo, stack_config: StackConfig) -> Callable[[str, str], MqttCredentials]:
    """add_stack_node(site, node) -> MqttCredentials of a node user on the session stack."""

    def add(site: str, node: str) -> MqttCredentials:
        return add_node(stack_config, site, node)

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
