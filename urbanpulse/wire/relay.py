"""Relay payloads of contract v1: a site gateway's bundle of its nodes' messages.

A gateway takes the data and status messages its site's nodes publish on the site's own
broker and sends them to the cloud in one message on its own `relay` topic, at most every
second or so: one cloud message, one journal row and one ack for many node messages. Each
node message travels as the exact text the node sent (`payload`), or as base64 when it is
not UTF-8 (`payload_b64`), so the cloud validates it as if it had come on the node's own
topic, and a broken one becomes a dead letter of its node with its raw bytes.

A broken envelope raises `WireError` (the whole relay is one dead letter of the gateway);
a broken item inside a sound envelope is returned as a `RejectedItem`, the rest go on.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from urbanpulse.errors import UrbanpulseError
from urbanpulse.wire.payload import BATCH_ID, MAX_PAYLOAD_BYTES, WireError
from urbanpulse.wire.topics import CONTRACT_VERSION, validate_id

# A relay holds node messages of up to MAX_PAYLOAD_BYTES each, escaped as JSON text (a
# node's payload grows by about a fifth): the site and cloud brokers' message size limit.
MAX_RELAY_BYTES = 1024 * 1024
MAX_RELAY_MESSAGES = 1000
RELAYED_STREAMS = ("data", "status")


@dataclass(frozen=True, slots=True)
class RelayedMessage:
    """One node message as the node published it: its node id, its stream (`data` or
    `status`) and its payload's bytes."""

    node: str
    stream: str
    payload: bytes


@dataclass(frozen=True, slots=True)
class RejectedItem:
    index: int
    code: str
    detail: str
    raw: Any


@dataclass(frozen=True, slots=True)
class ParsedRelay:
    site: str
    gateway: str
    batch: str
    messages: list[RelayedMessage]
    rejected: list[RejectedItem]


def relay_item(message: RelayedMessage) -> dict[str, str]:
    """The JSON object of one relayed message."""
    item = {"node": message.node, "stream": message.stream}
    try:
        item["payload"] = message.payload.decode()
    except UnicodeDecodeError:
        item["payload_b64"] = base64.b64encode(message.payload).decode()
    return item


def encode_relay(site: str, gateway: str, batch: str, messages: Sequence[RelayedMessage]) -> bytes:
    """Build a relay payload; raises WireError if it would break the contract (a gateway
    cuts its relays to fit: `relay_item_bytes`)."""
    validate_id("site", site)
    validate_id("node", gateway)
    if not BATCH_ID.fullmatch(batch):
        raise WireError("bad_batch", f"batch id {batch!r} is not <hex boot id>.<counter>")
    if not messages:
        raise WireError("bad_messages", "a relay carries at least one message")
    if len(messages) > MAX_RELAY_MESSAGES:
        raise WireError("too_many", f"{len(messages)} messages > {MAX_RELAY_MESSAGES}")
    for m in messages:
        validate_id("node", m.node)
        if m.stream not in RELAYED_STREAMS:
            raise WireError("bad_stream", f"stream {m.stream!r} is not one of {RELAYED_STREAMS}")
    body = {"v": CONTRACT_VERSION, "site": site, "gateway": gateway, "batch": batch,
            "messages": [relay_item(m) for m in messages]}
    payload = json.dumps(body, separators=(",", ":")).encode()
    if len(payload) > MAX_RELAY_BYTES:
        raise WireError("too_large", f"relay of {len(payload)} bytes > {MAX_RELAY_BYTES}")
    return payload


RELAY_OVERHEAD_BYTES = 200  # the envelope without its messages, at most (ids of 32, batch id)


def relay_item_bytes(message: RelayedMessage) -> int:
    """What `message` adds to a relay's size (its item and the comma before it)."""
    return len(json.dumps(relay_item(message), separators=(",", ":")).encode()) + 1


def decode_relay(payload: bytes, *, site: str, gateway: str) -> ParsedRelay:
    """Validate a relay payload that came on `site`/`gateway`'s relay topic. Each item's
    payload is not looked into here: it is validated as a message of its node."""
    if len(payload) > MAX_RELAY_BYTES:
        raise WireError("too_large", f"relay of {len(payload)} bytes > {MAX_RELAY_BYTES}")
    try:
        body = json.loads(payload)
    except (ValueError, RecursionError) as exc:
        raise WireError("not_json", f"relay is not UTF-8 JSON: {str(exc)[:200]}") from exc
    if not isinstance(body, dict):
        raise WireError("not_object", f"relay must be a JSON object, got {type(body).__name__}")
    if body.get("v") != CONTRACT_VERSION:
        raise WireError("bad_version", f"v must be {CONTRACT_VERSION}, got {body.get('v')!r:.40}")
    for key, expected in (("site", site), ("gateway", gateway)):
        value: Any = body.get(key)
        try:
            validate_id(key, value)
        except UrbanpulseError as exc:
            raise WireError(f"bad_{key}", str(exc)) from exc
        if value != expected:
            raise WireError(f"{key}_mismatch", f"body {key} {value!r} != topic {expected!r}")
    batch = body.get("batch")
    if not (isinstance(batch, str) and BATCH_ID.fullmatch(batch)):
        raise WireError("bad_batch", f"batch must be <hex boot id>.<counter>, got {batch!r:.40}")
    items = body.get("messages")
    if not isinstance(items, list):
        raise WireError("bad_messages", "messages must be a list")
    if len(items) > MAX_RELAY_MESSAGES:
        raise WireError("too_many", f"{len(items)} messages > {MAX_RELAY_MESSAGES}")
    messages: list[RelayedMessage] = []
    rejected: list[RejectedItem] = []
    for index, raw in enumerate(items):
        try:
            messages.append(_item(raw))
        except WireError as exc:
            rejected.append(RejectedItem(index, exc.code, f"messages[{index}]{exc.detail}", raw))
    return ParsedRelay(site, gateway, batch, messages, rejected)


def _item(raw: Any) -> RelayedMessage:
    if not isinstance(raw, dict):
        raise WireError("bad_item", f": must be an object, got {type(raw).__name__}")
    node: Any = raw.get("node")
    try:
        validate_id("node", node)
    except UrbanpulseError as exc:
        raise WireError("bad_node", f".node: {exc}") from exc
    stream = raw.get("stream")
    if stream not in RELAYED_STREAMS:
        raise WireError("bad_stream", f".stream: must be one of {RELAYED_STREAMS}, got {stream!r:.40}")
    unknown = set(raw) - {"node", "stream", "payload", "payload_b64"}
    if unknown:
        raise WireError("bad_item", f": unknown keys {sorted(unknown)!r:.80}")
    text, b64 = raw.get("payload"), raw.get("payload_b64")
    if isinstance(text, str) and b64 is None:
        try:
            data = text.encode()
        except UnicodeEncodeError as exc:  # a lone surrogate: no node sent that as UTF-8
            raise WireError("bad_payload", f".payload: not UTF-8 text ({exc.reason})") from exc
    elif isinstance(b64, str) and text is None:
        try:
            data = base64.b64decode(b64, validate=True)
        except (binascii.Error, ValueError) as exc:
            raise WireError("bad_payload", f".payload_b64: not base64 ({exc})") from exc
    else:
        raise WireError("bad_payload", ": needs exactly one of payload (text) and payload_b64")
    if len(data) > MAX_PAYLOAD_BYTES:
        raise WireError("too_large", f".payload: {len(data)} bytes > {MAX_PAYLOAD_BYTES}")
    return RelayedMessage(node, stream, data)
