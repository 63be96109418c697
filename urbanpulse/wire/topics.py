"""Topic layout: urbanpulse/v1/<site>/<node>/<stream>; a site gateway is a node that
publishes `relay` instead of `data` (urbanpulse.wire.relay)."""

from __future__ import annotations

import re
from dataclasses import dataclass

from urbanpulse.errors import UrbanpulseError

CONTRACT_VERSION = 1
ROOT = f"urbanpulse/v{CONTRACT_VERSION}"
STREAMS = ("data", "status", "ack", "relay")
ALERTS = "_alerts"

_ID = re.compile(r"[a-z0-9][a-z0-9-]{0,31}")


class TopicError(UrbanpulseError):
    pass


def validate_id(what: str, value: str) -> str:
    """Site and node ids: 1-32 of [a-z0-9-], starting with a letter or digit."""
    if not isinstance(value, str) or not _ID.fullmatch(value):
        raise TopicError(
            f"{what} {value!r} is not a valid id: use 1-32 characters of a-z, 0-9 and '-', "
            "starting with a letter or digit"
        )
    return value


@dataclass(frozen=True, slots=True)
class Topic:
    site: str
    node: str
    stream: str


def data_topic(site: str, node: str) -> str:
    return f"{ROOT}/{validate_id('site', site)}/{validate_id('node', node)}/data"


def status_topic(site: str, node: str) -> str:
    return f"{ROOT}/{validate_id('site', site)}/{validate_id('node', node)}/status"


def relay_topic(site: str, gateway: str) -> str:
    """Where a site gateway sends its nodes' messages, bundled (urbanpulse.wire.relay)."""
    return f"{ROOT}/{validate_id('site', site)}/{validate_id('node', gateway)}/relay"


def ack_topic(site: str, node: str) -> str:
    """Where the cloud tells a node which of its batches are durably stored."""
    return f"{ROOT}/{validate_id('site', site)}/{validate_id('node', node)}/ack"


ACK_FILTER = f"{ROOT}/+/+/ack"


def node_filter(site: str, node: str) -> str:
    """The topic filter a node may publish under (its ACL)."""
    return f"{ROOT}/{validate_id('site', site)}/{validate_id('node', node)}/#"


def alerts_topic(site: str, kind: str) -> str:
    return f"{ROOT}/{ALERTS}/{validate_id('site', site)}/{kind}"


def parse_topic(topic: str) -> Topic:
    parts = topic.split("/")
    if len(parts) != 5 or f"{parts[0]}/{parts[1]}" != ROOT:
        raise TopicError(f"topic {topic!r} is not {ROOT}/<site>/<node>/<stream>")
    _, _, site, node, stream = parts
    validate_id("site", site)
    validate_id("node", node)
    if stream not in STREAMS:
        raise TopicError(f"topic {topic!r}: unknown stream {stream!r}, expected one of {STREAMS}")
    return Topic(site, node, stream)
