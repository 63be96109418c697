"""MQTT clients for the local stack: paho 2.x, TLS with the stack's CA, user and password;
and the TLS context every urbanpulse MQTT client uses (node, ingest, alerts, stack).

paho is imported inside the functions: the core has no hard dependencies, paho comes with
the `edge` and `cloud` extras.
"""

from __future__ import annotations

import ssl
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from urbanpulse.errors import UrbanpulseError

if TYPE_CHECKING:
    import paho.mqtt.client as paho

    from urbanpulse.stack.config import MqttCredentials

MQTTV311 = 4
MQTTV5 = 5


class MqttError(UrbanpulseError):
    pass


class MqttConnectError(MqttError):
    """The broker was unreachable, the TLS handshake failed, or the CONNECT was refused."""


class SocketClosedOnFailedHandshake(ssl.SSLSocket):
    """paho drops the TLS socket unclosed when the handshake fails (a broker behind a dead
    link, or one that accepts TCP and never answers, times it out): its descriptor would
    stay open until the garbage collector finds the exception's reference cycle, one more
    for every reconnection attempt. Sockets of this class close themselves then."""

    def do_handshake(self, block: bool = False) -> None:
        try:
            super().do_handshake(block)
        except (ssl.SSLWantReadError, ssl.SSLWantWriteError):
            raise  # a non-blocking handshake not done yet: not a failure
        except BaseException:
            self.close()
            raise


def tls_context(ca_file: Path | None, cert_file: Path | None = None,
                key_file: Path | None = None) -> ssl.SSLContext:
    """A client TLS context (certificate and host name checked against `ca_file`, or the
    system's CAs when None), with a client certificate if both files are given, whose
    sockets close themselves when their handshake fails. For `Client.tls_set_context`.
    MqttError names the file that cannot be used."""
    try:
        context = ssl.create_default_context(cafile=str(ca_file) if ca_file else None)
    except (OSError, ssl.SSLError) as exc:
        raise MqttError(f"CA file {ca_file}: {exc}") from exc
    context.sslsocket_class = SocketClosedOnFailedHandshake
    if cert_file is not None and key_file is not None:
        try:
            context.load_cert_chain(str(cert_file), str(key_file))
        except (OSError, ssl.SSLError) as exc:
            raise MqttError(f"client certificate {cert_file} / key {key_file}: {exc}") from exc
    return context


def make_client(
    client_id: str,
    creds: MqttCredentials,
    *,
    clean_start: bool = False,
    session_expiry_s: int = 7 * 86400,
    protocol: int = MQTTV5,
    keepalive_s: int = 30,
    manual_ack: bool = False,
) -> paho.Client:
    """A paho client (CallbackAPIVersion.VERSION2) set up for `creds`, not yet connected.

    Host, port, clean start and (MQTT 5) the session expiry are stored with
    `connect_async`, which opens no socket: start it with `client.loop_start()`,
    `client.loop_forever()`, `client.reconnect()` or `connect_and_wait(client)`. Calling
    `client.connect(host, port)` instead would replace the session settings.
    """
    import paho.mqtt.client as mqtt
    from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion
    from paho.mqtt.packettypes import PacketTypes
    from paho.mqtt.properties import Properties

    if protocol not in (MQTTV311, MQTTV5):
        raise MqttError(f"protocol must be 4 (MQTT 3.1.1) or 5 (MQTT 5), got {protocol!r}")
    if not client_id:
        raise MqttError("a fixed, non-empty client id is needed for a persistent session")
    if protocol == MQTTV5:
        client = mqtt.Client(
            callback_api_version=CallbackAPIVersion.VERSION2,
            client_id=client_id,
            protocol=MQTTProtocolVersion.MQTTv5,
            manual_ack=manual_ack,
        )
    else:
        client = mqtt.Client(
            callback_api_version=CallbackAPIVersion.VERSION2,
            client_id=client_id,
            clean_session=clean_start,
            protocol=MQTTProtocolVersion.MQTTv311,
            manual_ack=manual_ack,
        )
    client.username_pw_set(creds.username, creds.password())
    client.tls_set_context(tls_context(creds.ca_file, creds.cert_file, creds.key_file))
    if protocol == MQTTV5:
        properties = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
        properties.SessionExpiryInterval = 0 if clean_start else session_expiry_s
        client.connect_async(
            creds.host, creds.port, keepalive_s, clean_start=clean_start, properties=properties
        )
    else:
        client.connect_async(creds.host, creds.port, keepalive_s)
    return client


def close_client(client: paho.Client) -> None:
    """Disconnect, stop the network thread if one runs, and close every socket the client
    holds. paho closes the socket pair that `loop_start` and `loop` make (two connected TCP
    sockets on 127.0.0.1) only when the client is collected, and a client in a reference
    cycle (a callback bound to its owner) waits for the garbage collector:
    eclipse-paho/paho.mqtt.python#627. Safe to call on a client that never connected."""
    client.disconnect()
    client.loop_stop()
    client._reset_sockets()


def connect_and_wait(client: paho.Client, *, timeout_s: float = 10.0) -> None:
    """Connect a client from `make_client`, start its network thread and wait for the
    CONNACK. MqttConnectError if it fails or is refused (the thread is stopped then)."""
    connected = threading.Event()
    outcome: dict[str, Any] = {}
    previous = cast("Callable[..., None] | None", client.on_connect)

    def on_connect(c: paho.Client, userdata: Any, flags: Any, reason: Any, props: Any) -> None:
        outcome["reason"] = reason
        connected.set()
        if previous is not None:
            previous(c, userdata, flags, reason, props)

    client.on_connect = on_connect
    try:
        try:
            client.reconnect()
        except (OSError, ValueError) as exc:
            raise MqttConnectError(f"cannot connect to the broker: {exc}") from exc
        client.loop_start()
        if not connected.wait(timeout_s):
            close_client(client)
            raise MqttConnectError(f"no CONNACK within {timeout_s} s")
        reason = outcome["reason"]
        if reason.is_failure:
            close_client(client)
            raise MqttConnectError(f"the broker refused the connection: {reason}")
    finally:
        client.on_connect = previous
