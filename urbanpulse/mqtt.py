"""MQTT clients for the local stack: paho 2.x, TLS with the stack's CA, user and password.

paho is imported inside the functions: the core has no hard dependencies, paho comes with
the `edge` and `cloud` extras.
"""

from __future__ import annotations

import socket
import ssl
import threading
from collections.abc import Callable
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
    client.tls_set(ca_certs=str(creds.ca_file), tls_version=ssl.PROTOCOL_TLS_CLIENT)
    if protocol == MQTTV5:
        properties = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
        properties.SessionExpiryInterval = 0 if clean_start else session_expiry_s
        client.connect_async(
            creds.host, creds.port, keepalive_s, clean_start=clean_start, properties=properties
        )
    else:
        client.connect_async(creds.host, creds.port, keepalive_s)
    return client


def _close_leaked_sockets(exc: BaseException) -> None:
    # paho 2.2 leaves the TLS socket open when the handshake fails (it is only
    # referenced from the failing frames); close it rather than leak a descriptor.
    tb = exc.__traceback__
    while tb is not None:
        for value in list(tb.tb_frame.f_locals.values()):
            if isinstance(value, socket.socket):
                value.close()
        tb = tb.tb_next


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
            _close_leaked_sockets(exc)
            raise MqttConnectError(f"cannot connect to the broker: {exc}") from exc
        client.loop_start()
        if not connected.wait(timeout_s):
            client.loop_stop()
            raise MqttConnectError(f"no CONNACK within {timeout_s} s")
        reason = outcome["reason"]
        if reason.is_failure:
            client.loop_stop()
            client.disconnect()
            raise MqttConnectError(f"the broker refused the connection: {reason}")
    finally:
        client.on_connect = previous
