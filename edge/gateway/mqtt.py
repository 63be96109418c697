"""Builds the gateway's two paho clients from their links' config: MQTT 5, TLS, the
gateway's own credentials on each broker. No socket is opened here."""

from __future__ import annotations

from typing import TYPE_CHECKING

from edge.deferred_imports import PAHO_UNUSED, defer
from edge.errors import CredentialsError
from edge.gateway.config import LinkConfig
from urbanpulse.mqtt import MqttError, tls_context

if TYPE_CHECKING:
    from paho.mqtt.client import Client


def make_client(link: LinkConfig, prefix: str) -> Client:
    """A client for `link` (the `[site_mqtt]` or `[cloud_mqtt]` table: `prefix`, named in
    errors); CredentialsError if its password or TLS files cannot be used."""
    defer(*PAHO_UNUSED)
    from paho.mqtt.client import Client
    from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion

    client = Client(CallbackAPIVersion.VERSION2, client_id=link.client_id,
                    protocol=MQTTProtocolVersion.MQTTv5)
    if link.password_file is not None:
        try:
            password = link.password_file.read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise CredentialsError(f"{prefix}.password_file {link.password_file}: "
                                   f"{exc.strerror}") from exc
        client.username_pw_set(link.username, password)
    else:
        client.username_pw_set(link.username)
    if link.tls:
        try:
            context = tls_context(link.ca_file, link.cert_file, link.key_file)
        except MqttError as exc:
            raise CredentialsError(f"{prefix} TLS files: {exc}") from exc
        client.tls_set_context(context)
    return client
