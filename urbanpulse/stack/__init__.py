"""The local stack: the project's own Mosquitto (TLS, per-node ACL) and InfluxDB (auth on),
started as plain processes with configs under a state directory."""

from urbanpulse.stack.config import (
    InfluxCredentials,
    MqttCredentials,
    StackConfig,
    StackInfo,
)
from urbanpulse.stack.errors import BinaryMissing, PortInUse, StackError, StartFailed
from urbanpulse.stack.lifecycle import add_node, down, resolve_config, status, up

__all__ = [
    "BinaryMissing",
    "InfluxCredentials",
    "MqttCredentials",
    "PortInUse",
    "StackConfig",
    "StackError",
    "StackInfo",
    "StartFailed",
    "add_node",
    "down",
    "resolve_config",
    "status",
    "up",
]
