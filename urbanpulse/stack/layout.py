"""Where the local stack keeps its files inside the state directory (the "home")."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Layout:
    home: Path

    @property
    def lock(self) -> Path:
        return self.home / ".lock"

    @property
    def state(self) -> Path:
        """The endpoints of the last `up`, so that status/down/add-node find them."""
        return self.home / "stack.json"

    # TLS: the CA key never leaves this directory.
    @property
    def tls_dir(self) -> Path:
        return self.home / "tls"

    @property
    def ca_cert(self) -> Path:
        return self.tls_dir / "ca.pem"

    @property
    def ca_key(self) -> Path:
        return self.tls_dir / "ca.key"

    @property
    def server_cert(self) -> Path:
        return self.tls_dir / "server.pem"

    @property
    def server_key(self) -> Path:
        return self.tls_dir / "server.key"

    # The cloud's client certificate (certificate mode only, docs/stack.md), from a CA of its
    # own that signs nothing else; all four 0600.
    @property
    def client_ca_cert(self) -> Path:
        return self.tls_dir / "cloud-clients-ca.pem"

    @property
    def client_ca_key(self) -> Path:
        return self.tls_dir / "cloud-clients-ca.key"

    @property
    def cloud_client_cert(self) -> Path:
        return self.tls_dir / "cloud-client.pem"

    @property
    def cloud_client_key(self) -> Path:
        return self.tls_dir / "cloud-client.key"

    # Credentials: one password per file, 0600.
    @property
    def credentials_dir(self) -> Path:
        return self.home / "credentials"

    def mqtt_password(self, username: str) -> Path:
        return self.credentials_dir / "mqtt" / f"{username}.password"

    def mqtt_password_files(self) -> dict[str, Path]:
        folder = self.credentials_dir / "mqtt"
        if not folder.is_dir():
            return {}
        return {p.name.removesuffix(".password"): p for p in folder.glob("*.password")}

    # A site gateway's user (`add-node --gateway`): this empty file beside its password lets
    # it write its relay topic (the ACL is regenerated from these).
    def mqtt_gateway_mark(self, username: str) -> Path:
        return self.credentials_dir / "mqtt" / f"{username}.gateway"

    def mqtt_gateways(self) -> set[str]:
        folder = self.credentials_dir / "mqtt"
        if not folder.is_dir():
            return set()
        return {p.name.removesuffix(".gateway") for p in folder.glob("*.gateway")}

    def influx_password(self, role: str) -> Path:
        return self.credentials_dir / "influx" / f"{role}.password"

    # Mosquitto
    @property
    def mosquitto_dir(self) -> Path:
        return self.home / "mosquitto"

    @property
    def mosquitto_conf(self) -> Path:
        return self.mosquitto_dir / "mosquitto.conf"

    # One password file and ACL per listener: the nodes' and the cloud's.
    @property
    def mosquitto_passwd(self) -> Path:
        return self.mosquitto_dir / "passwd-nodes"

    @property
    def mosquitto_acl(self) -> Path:
        return self.mosquitto_dir / "acl-nodes"

    @property
    def mosquitto_cloud_passwd(self) -> Path:
        return self.mosquitto_dir / "passwd-cloud"

    @property
    def mosquitto_cloud_acl(self) -> Path:
        return self.mosquitto_dir / "acl-cloud"

    # Certificate mode: one ACL for both listeners (the password file is the nodes').
    @property
    def mosquitto_acl_all(self) -> Path:
        return self.mosquitto_dir / "acl-all"

    @property
    def mosquitto_log(self) -> Path:
        return self.mosquitto_dir / "mosquitto.log"

    @property
    def mosquitto_stderr(self) -> Path:
        return self.mosquitto_dir / "stderr.log"

    @property
    def mosquitto_data(self) -> Path:
        return self.mosquitto_dir / "data"

    @property
    def mosquitto_pid(self) -> Path:
        return self.mosquitto_dir / "mosquitto.pid"

    # InfluxDB
    @property
    def influx_dir(self) -> Path:
        return self.home / "influxdb"

    @property
    def influx_conf(self) -> Path:
        return self.influx_dir / "influxdb.conf"

    @property
    def influx_log(self) -> Path:
        return self.influx_dir / "influxd.log"

    @property
    def influx_pid(self) -> Path:
        return self.influx_dir / "influxd.pid"
