"""Builds the node's paho client from its config: TLS, per-node credentials, MQTT 5.

No socket is opened here; the publisher connects.
"""

from __future__ import annotations

import ssl
from typing import TYPE_CHECKING

from edge.config import MqttConfig
from edge.deferred_imports import PAHO_UNUSED, defer
from edge.errors import EdgeError

if TYPE_CHECKING:
    from paho.mqtt.client import Client


class _SocketClosedOnFailedHandshake(ssl.SSLSocket):
    """paho drops the TLS socket unclosed when the handshake fails (a broker behind a dead
    link, or one that accepts TCP and never answers, times it out): its descriptor would
    stay open until the garbage collector finds the exception's reference cycle, one more
    for every reconnection attempt."""

    def do_handshake(self, block: bool = False) -> None:
        try:
            super().do_handshake(block)
        except BaseException:
            self.close()
            raise


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
            raise EdgeError(f"mqtt.password_file {cfg.password_file}: {exc.strerror}") from exc
        client.username_pw_set(cfg.username, password)
    if cfg.tls:
        try:
            context = ssl.create_default_context(cafile=str(cfg.ca_file) if cfg.ca_file else None)
            context.sslsocket_class = _SocketClosedOnFailedHandshake
            if cfg.cert_file is not None and cfg.key_file is not None:
                context.load_cert_chain(str(cfg.cert_file), str(cfg.key_file))
        except (OSError, ssl.SSLError) as exc:
            raise EdgeError(f"mqtt TLS files: {exc}") from exc
        client.tls_set_context(context)
    return client
