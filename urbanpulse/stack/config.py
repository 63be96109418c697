"""What the local stack is told (StackConfig) and what it reports (StackInfo)."""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from urbanpulse.errors import ConfigError
from urbanpulse.stack.errors import StackError
from urbanpulse.stack.layout import Layout
from urbanpulse.stack.state import CloudAuth

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
    # The cloud user's client certificate and key when the broker runs in certificate mode
    # (docs/stack.md): the broker then takes the certificate's name as the user and reads
    # no password. None for a node, and for the cloud in password mode.
    cert_file: Path | None = None
    key_file: Path | None = None

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
    # How the broker knows the cloud user: "password", or "certificate" on the Mosquitto
    # versions that lose queued messages with per-listener users; None: never started.
    mqtt_cloud_auth: CloudAuth | None = None

    def mqtt(self, username: str) -> MqttCredentials:
        """The credentials of `username`, on the cloud's listener for the cloud user and on
        the nodes' listener for a node (each listener knows its own users only)."""
        password_file = Layout(self.home).mqtt_password(username)
        if not password_file.is_file():
            raise StackError(
                f"no MQTT user {username!r} in {self.home}: nodes are added with "
                "`urbanpulse stack add-node --site S --node N`"
            )
        if username != CLOUD_USER:
            return MqttCredentials(self.mqtt_host, self.mqtt_port, self.ca_file, username,
                                   password_file)
        if self.mqtt_cloud_port is None:
            raise StackError(f"the cloud's MQTT port of {self.home} is not known yet: "
                             "run `urbanpulse stack up`")
        creds = MqttCredentials(self.mqtt_host, self.mqtt_cloud_port, self.ca_file, username,
                                password_file)
        if self.mqtt_cloud_auth != "certificate":
            return creds
        cert, key = self.cloud_client_files()
        for path in (cert, key):
            if not path.is_file():
                raise StackError(f"the cloud's client certificate {path} is missing: run "
                                 "`urbanpulse stack down`, then `urbanpulse stack up`")
        # The password is still given: the processor's config requires one; the broker
        # ignores it on the cloud's listener, and no listener takes it.
        return dataclasses.replace(creds, cert_file=cert, key_file=key)

    def cloud_client_files(self) -> tuple[Path, Path]:
        """Where certificate mode keeps the cloud user's client certificate and key."""
        layout = Layout(self.home)
        return layout.cloud_client_cert, layout.cloud_client_key

    def influx(self, role: str) -> InfluxCredentials:

        if role not in INFLUX_ROLES:
            raise StackError(f"unknown InfluxDB role {role!r}; expected one of {INFLUX_ROLES}")
        password_file = Layout(self.home).influx_password(role)
        if not password_file.is_file():
            raise StackError(f"no InfluxDB credentials in {self.home}: run `urbanpulse stack up`")
        return InfluxCredentials(self.influx_url, self.database, role, password_file)

    def to_json(self) -> dict[str, Any]:

        layout = Layout(self.home)
        cert_file = key_file = None
        if self.mqtt_cloud_auth == "certificate":
            cert_file, key_file = (str(p) for p in self.cloud_client_files())
        return {
            "home": str(self.home),
            "running": dict(self.running),
            "mqtt": {
                "host": self.mqtt_host,
                "port": self.mqtt_port,
                "cloud_port": self.mqtt_cloud_port,
                "tls": True,
                "ca_file": str(self.ca_file),
                # the cloud user's client certificate and key, in certificate mode only
                "cloud_auth": self.mqtt_cloud_auth,
                "cloud_cert_file": cert_file,
                "cloud_key_file": key_file,
                "users": {
                    user: str(path) for user, path in sorted(layout.mqtt_password_files().items())
                },
                # the node users that are site gateways (add-node --gateway): they may write
                # their relay topic
                "gateways": sorted(layout.mqtt_gateways() & set(layout.mqtt_password_files())),
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
