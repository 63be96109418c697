"""The site gateway's configuration file (TOML), validated once at start-up into typed
objects. Validation (parse_config) does no I/O: paths are checked for shape, not
existence, so that a config can be checked on a laptop. Every error names the exact key
(docs/gateway.md, "Configuration")."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edge.config import HEARTBEAT_MAX_S, KEEPALIVE_MAX_S, config_path, mqtt_host
from edge.gateway.relayer import RelayLimits
from urbanpulse.config_fields import (
    finite_seconds,
    only_known,
    plaintext_only_on_loopback,
    read_toml,
    typed,
    typed_id,
)
from urbanpulse.errors import ConfigError
from urbanpulse.wire.payload import MAX_PAYLOAD_BYTES
from urbanpulse.wire.relay import (
    MAX_RELAY_BYTES,
    MAX_RELAY_MESSAGES,
    RELAY_OVERHEAD_BYTES,
    RelayedMessage,
    relay_item_bytes,
)

# A relay must carry any message a node sends: a node message no relay can carry is
# dropped at the gateway each time its node sends it again, and never reaches the cloud.
# A node's batch is up to MAX_PAYLOAD_BYTES of ASCII JSON (its publisher halves it only
# when the encoder refuses it: 500 readings make 60-80 kB, 2,000 nearly all of it); as a
# relay item each quote and backslash of it is escaped, at most twice its size, plus the
# item's keys (a node id of 32) and the relay's envelope: 512 KiB and 275 bytes.
RELAY_MIN_BYTES = (RELAY_OVERHEAD_BYTES + 2 * MAX_PAYLOAD_BYTES
                   + relay_item_bytes(RelayedMessage("n" * 32, "status", b"")))
RELAY_MAX_DELAY_MAX_S = 60.0  # well below a node's ack_timeout_s (120 s by default)
MAX_INFLIGHT_RELAYS_MAX = 1000  # MQTT packet ids are 16 bits; each relay up to 1 MiB


@dataclass(frozen=True)
class LinkConfig:
    """One MQTT link: to the site's broker or to the cloud's."""

    host: str
    port: int
    username: str
    client_id: str
    password_file: Path | None
    ca_file: Path | None
    cert_file: Path | None
    key_file: Path | None
    tls: bool
    keepalive_s: int


@dataclass(frozen=True)
class GatewayConfig:
    site: str
    id: str
    limits: RelayLimits
    heartbeat_s: float
    site_mqtt: LinkConfig
    cloud_mqtt: LinkConfig


def load_config(path: Path) -> GatewayConfig:
    return parse_config(read_toml(path))


def _positive_seconds(table: Mapping[str, Any], key: str, prefix: str, default: float) -> float:
    full = f"{prefix}.{key}"
    value = finite_seconds(typed(table, key, prefix, float, default), full)
    if value <= 0:
        raise ConfigError(full, f"must be > 0, got {value!r}")
    return value


def _int_in(table: Mapping[str, Any], key: str, prefix: str, default: int, low: int, high: int,
            why: str) -> int:
    value = typed(table, key, prefix, int, default)
    if not low <= value <= high:
        raise ConfigError(f"{prefix}.{key}", f"must be {low}-{high} ({why}), got {value}")
    return value


LINK_KEYS = {"host", "port", "username", "client_id", "password_file", "ca_file", "cert_file",
             "key_file", "tls", "keepalive_s"}


def _link(raw: Mapping[str, Any], prefix: str, default_user: str) -> LinkConfig:
    table = raw.get(prefix)
    if not isinstance(table, dict):
        raise ConfigError(prefix, "missing table" if table is None else "must be a table")
    only_known(table, LINK_KEYS, prefix)
    link = LinkConfig(
        host=mqtt_host(typed(table, "host", prefix, str), prefix),
        port=_int_in(table, "port", prefix, 8883, 1, 65535, "a TCP port"),
        username=typed(table, "username", prefix, str, default_user),
        client_id=typed(table, "client_id", prefix, str, default_user),
        password_file=config_path(table, "password_file", prefix),
        ca_file=config_path(table, "ca_file", prefix),
        cert_file=config_path(table, "cert_file", prefix),
        key_file=config_path(table, "key_file", prefix),
        tls=typed(table, "tls", prefix, bool, True),
        keepalive_s=_int_in(table, "keepalive_s", prefix, 30, 1, KEEPALIVE_MAX_S,
                            "MQTT's keep alive is 16 bits of seconds"),
    )
    if not link.client_id or len(link.client_id.encode()) > 65535:
        raise ConfigError(f"{prefix}.client_id", "must be 1-65535 bytes of UTF-8")
    if link.password_file is None and link.cert_file is None:
        raise ConfigError(f"{prefix}.password_file", "give password_file, or cert_file and "
                                                     "key_file (each broker knows the gateway "
                                                     "by its own credentials)")
    if (link.cert_file is None) != (link.key_file is None):
        raise ConfigError(f"{prefix}.key_file", "cert_file and key_file go together")
    if link.tls and link.ca_file is None:
        raise ConfigError(f"{prefix}.ca_file", "missing: TLS is on (set tls = false only for a "
                                               "broker on this machine)")
    plaintext_only_on_loopback(link.tls, link.host, f"{prefix}.tls")
    return link


def parse_config(raw: Mapping[str, Any]) -> GatewayConfig:
    only_known(raw, {"gateway", "site_mqtt", "cloud_mqtt"}, "")
    g = raw.get("gateway")
    if not isinstance(g, dict):
        raise ConfigError("gateway", "missing table" if g is None else "must be a table")
    only_known(g, {"site", "id", "relay_max_delay_s", "relay_max_bytes", "relay_max_messages",
                   "max_inflight_relays", "max_waiting_bytes", "relay_ack_timeout_s",
                   "heartbeat_s"}, "gateway")
    site = typed_id(g, "site", "gateway", "site")
    gateway_id = typed_id(g, "id", "gateway", "node")
    delay = _positive_seconds(g, "relay_max_delay_s", "gateway", 1.0)
    if delay > RELAY_MAX_DELAY_MAX_S:
        raise ConfigError("gateway.relay_max_delay_s",
                          f"must be <= {RELAY_MAX_DELAY_MAX_S:g}, got {delay:g}: a node sends a "
                          "batch again when its ack has not come within its ack_timeout_s")
    max_bytes = _int_in(g, "relay_max_bytes", "gateway", MAX_RELAY_BYTES, RELAY_MIN_BYTES,
                        MAX_RELAY_BYTES, "from what carries a node's largest message, "
                        "escaped, to the wire contract's relay limit; the cloud broker's "
                        "message_size_limit must take it")
    max_messages = _int_in(g, "relay_max_messages", "gateway", MAX_RELAY_MESSAGES, 1,
                           MAX_RELAY_MESSAGES, "the wire contract's limit")
    inflight = _int_in(g, "max_inflight_relays", "gateway", 10, 1, MAX_INFLIGHT_RELAYS_MAX,
                       "relays awaiting the cloud's ack, each up to relay_max_bytes in memory "
                       "until the cloud broker takes it")
    waiting = _int_in(g, "max_waiting_bytes", "gateway", 4 * MAX_RELAY_BYTES, max_bytes, 2**40,
                      "node messages waiting for a relay; at least gateway.relay_max_bytes, "
                      "so that a full relay can wait")
    heartbeat = _positive_seconds(g, "heartbeat_s", "gateway", 30.0)
    if heartbeat > HEARTBEAT_MAX_S:
        raise ConfigError("gateway.heartbeat_s", f"must be <= {HEARTBEAT_MAX_S:g}, got {heartbeat:g}: "
                          "the cloud's \"Node offline\" alert fires after 5 minutes without an "
                          "online heartbeat")
    limits = RelayLimits(max_delay_s=delay, max_bytes=max_bytes, max_messages=max_messages,
                         max_inflight=inflight, max_waiting_bytes=waiting,
                         ack_timeout_s=_positive_seconds(g, "relay_ack_timeout_s", "gateway", 120.0))
    user = f"{site}.{gateway_id}"
    site_mqtt = _link(raw, "site_mqtt", user)
    cloud_mqtt = _link(raw, "cloud_mqtt", user)
    if (site_mqtt.host, site_mqtt.port) == (cloud_mqtt.host, cloud_mqtt.port):
        raise ConfigError("cloud_mqtt.port", f"{cloud_mqtt.host}:{cloud_mqtt.port} is the site "
                          "broker's too (site_mqtt): the gateway relays from the site's broker "
                          "to the cloud's, two brokers")
    return GatewayConfig(site, gateway_id, limits, heartbeat, site_mqtt, cloud_mqtt)
