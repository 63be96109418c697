"""What the last `up` of a home recorded (`stack.json`): its ports, the mosquitto it started
and how that broker authenticates the cloud, so that status, down and add-node find and
use that broker whoever calls them."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Literal, cast

from urbanpulse.stack.files import write_file
from urbanpulse.stack.layout import Layout

PORT_KEYS = ("mqtt_port", "mqtt_cloud_port", "influx_port", "influx_rpc_port")

# How the broker's cloud listener knows the cloud user (docs/stack.md):
# "password": per_listener_settings true, each listener with its own password file and ACL;
# "certificate": per_listener_settings false, the nodes' password file and one ACL, and the
# cloud's listener requiring a client certificate whose common name is the user.
CloudAuth = Literal["password", "certificate"]
CLOUD_AUTHS: tuple[CloudAuth, ...] = ("password", "certificate")


@dataclass(frozen=True)
class Recorded:
    ports: dict[str, int]
    # The argv the broker was started with (without "-c <conf>"); None: nothing recorded,
    # the system's mosquitto.
    mosquitto_argv: tuple[str, ...] | None = None
    # None: never recorded (a home of an older urbanpulse ran "password").
    mqtt_cloud_auth: CloudAuth | None = None


def read(layout: Layout) -> Recorded:
    """What the last `up` recorded (nothing if it never ran or the file is unreadable)."""
    try:
        raw = json.loads(layout.state.read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return Recorded({})
    if not isinstance(raw, dict):
        return Recorded({})
    ports = {k: raw[k] for k in PORT_KEYS if isinstance(raw.get(k), int)}
    argv = raw.get("mosquitto_argv")
    if not (isinstance(argv, list) and argv and all(isinstance(a, str) for a in argv)):
        argv = None
    auth = raw.get("mqtt_cloud_auth")
    return Recorded(
        ports,
        tuple(argv) if argv is not None else None,
        cast("CloudAuth", auth) if auth in CLOUD_AUTHS else None,
    )


def write(layout: Layout, recorded: Recorded) -> None:
    doc: dict[str, object] = dict(recorded.ports)
    if recorded.mosquitto_argv is not None:
        doc["mosquitto_argv"] = list(recorded.mosquitto_argv)
    if recorded.mqtt_cloud_auth is not None:
        doc["mqtt_cloud_auth"] = recorded.mqtt_cloud_auth
    write_file(layout.state, json.dumps(doc, indent=2) + "\n", mode=0o644)
