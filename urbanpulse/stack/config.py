"""What the local stack is told (StackConfig) and what it reports (StackInfo)."""

from __future__ import annotations

import os
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from urbanpulse.errors import ConfigError
from urbanpulse.stack.errors import StackError
from urbanpulse.stack.layout import Layout

HOME_ENV = "URBANPULSE_HOME"
DEFAULT_HOME = Path(".urbanpulse")
INFLUX_ROLES = ("admin", "writer", "reader")
CLOUD_USER = "cloud"

PORT_ENV = {
    "mqtt_port": "URBANPULSE_MQTT_PORT",
    "mqtt_cloud_port": "URBANPULSE_MQTT_CLOUD_PORT",
    "influx_port": "URBANPULSE_INFLUX_PORT",
    "influx_rpc_port": "URBANPULSE_INFLUX_RPC_PORT",
}


def _check_port(key: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 65535:
        raise ConfigError(key, f"must be an integer port in 1..65535, got {value!r}")
    return value


@dataclass(frozen=True)
class StackConfig:
    home: Path = field(default_factory=lambda: Path(os.environ.get(HOME_ENV) or DEFAULT_HOME))
    mqtt_port: int = 8883  # the nodes' listener
    # The cloud's listener; None: the port of this home's last `up`, else a free one.
    mqtt_cloud_port: int | None = None
    influx_port: int = 8086
    influx_rpc_port: int = 8088
    bind: str = "127.0.0.1"
    database: str = "urbanpulse"

    def __post_init__(self) -> None:
        object.__setattr__(self, "home", Path(self.home).absolute())
        ports = {}
        for key in PORT_ENV:
            if key != "mqtt_cloud_port" or self.mqtt_cloud_port is not None:
                ports[key] = _check_port(key, getattr(self, key))
        if len(set(ports.values())) != len(ports):
            raise ConfigError("ports", f"must be different ports, got {ports}")
        if self.bind != "127.0.0.1":
            raise ConfigError("bind", "the local stack listens on 127.0.0.1 only")
        if not self.database or not self.database.replace("_", "").isalnum():
            raise ConfigError("database", f"must be letters, digits and '_', got {self.database!r}")

    @classmethod
    def from_env(cls, **overrides: Any) -> StackConfig:
        """Defaults, then URBANPULSE_HOME / URBANPULSE_*_PORT, then `overrides` (None = unset)."""
        known = {f.name for f in fields(cls)}
        unknown = set(overrides) - known
        if unknown:
            raise ConfigError(", ".join(sorted(unknown)), "not a StackConfig setting")
        values: dict[str, Any] = {}
        home = os.environ.get(HOME_ENV)
        if home:
            values["home"] = Path(home)
        for key, env in PORT_ENV.items():
            raw = os.environ.get(env)
            if raw:
                try:
                    values[key] = int(raw)
                except ValueError:
                    raise ConfigError(env, f"must be an integer port, got {raw!r}") from None
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)


@dataclass(frozen=True)
class MqttCredentials:
    host: str
    port: int
    ca_file: Path
    username: str
    password_file: Path

    def password(self) -> str:
        return self.password_file.read_text(encoding="utf-8").strip()


@dataclass(frozen=True)
class InfluxCredentials:
    url: str
    database: str
    username: str
    password_file: Path

    def password(self) -> str:
        return self.password_file.read_text(encoding="utf-8").strip()


@dataclass(frozen=True)
class StackInfo:
    home: Path
    mqtt_host: str
    mqtt_port: int  # the nodes' listener
    mqtt_cloud_port: int | None  # the cloud's listener (None: never started)
    ca_file: Path
    influx_url: str
    database: str
    credentials_dir: Path
    running: dict[str, bool]

    def mqtt(self, username: str) -> MqttCredentials:
        """The credentials of `username`, on the cloud's listener for the cloud user and on
        the nodes' listener for a node (each listener knows its own users only)."""
        password_file = Layout(self.home).mqtt_password(username)
        if not password_file.is_file():
            raise StackError(
                f"no MQTT user {username!r} in {self.home}: nodes are added with "
                "`urbanpulse stack add-node --site S --node N`"
            )
        port = self.mqtt_port
        if username == CLOUD_USER:
            if self.mqtt_cloud_port is None:
                raise StackError(f"the cloud's MQTT port of {self.home} is not known yet: "
                                 "run `urbanpulse stack up`")
            port = self.mqtt_cloud_port
        return MqttCredentials(self.mqtt_host, port, self.ca_file, username, password_file)

    def influx(self, role: str) -> InfluxCredentials:

        if role not in INFLUX_ROLES:
            raise StackError(f"unknown InfluxDB role {role!r}; expected one of {INFLUX_ROLES}")
        password_file = Layout(self.home).influx_password(role)
        if not password_file.is_file():
            raise StackError(f"no InfluxDB credentials in {self.home}: run `urbanpulse stack up`")
        return InfluxCredentials(self.influx_url, self.database, role, password_file)

    def to_json(self) -> dict[str, Any]:

        layout = Layout(self.home)
        return {
            "home": str(self.home),
            "running": dict(self.running),
            "mqtt": {
                "host": self.mqtt_host,
                "port": self.mqtt_port,
                "cloud_port": self.mqtt_cloud_port,
                "tls": True,
                "ca_file": str(self.ca_file),
                "users": {
                    user: str(path) for user, path in sorted(layout.mqtt_password_files().items())
                },
            },
            "influx": {
                "url": self.influx_url,
                "database": self.database,
                "users": {
                    role: str(layout.influx_password(role))
                    for role in INFLUX_ROLES
                    if layout.influx_password(role).is_file()
                },
            },
            "credentials_dir": str(self.credentials_dir),
        }
