"""Builds the node's paho client from its config: TLS, per-node credentials, MQTT 5.

No socket is opened here; the publisher connects.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from edge.config import MqttConfig
from edge.deferred_imports import PAHO_UNUSED, defer
from edge.errors import CredentialsError
from urbanpulse.mqtt import MqttError, tls_context

if TYPE_CHECKING:
    from paho.mqtt.client import Client


def make_client(client_id: str, cfg: MqttConfig) -> Client:
    defer(*PAHO_UNUSED)
    from paho.mqtt.client import Client
    from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion

    client = Client(CallbackAPIVersion.VERSION2, client_id=client_id,
                    protocol=MQTTProtocolVersion.MQTTv5)
    if cfg.password_file is not None:
        try:
            password = cfg.password_file.read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise CredentialsError(f"mqtt.password_file {cfg.password_file}: {exc.strerror}") from exc
        client.username_pw_set(cfg.username, password)
    if cfg.tls:
        files = (("mqtt.ca_file", cfg.ca_file), ("mqtt.cert_file", cfg.cert_file),
                 ("mqtt.key_file", cfg.key_file))
        for key, path in files:
            if path is None:
                continue
            try:  # named by its key, as the password file is (not just "CA file ...")
                with path.open("rb"):
                    pass
            except OSError as exc:
                raise CredentialsError(f"{key} {path}: {exc.strerror}") from exc
        try:
            context = tls_context(cfg.ca_file, cfg.cert_file, cfg.key_file)
        except MqttError as exc:  # a file that is there but holds no usable certificate or key
            keys = "mqtt.ca_file" if str(exc).startswith("CA file") else "mqtt.cert_file, mqtt.key_file"
            raise CredentialsError(f"{keys}: {exc}") from exc
        client.tls_set_context(context)
    return client
