"""The relay payload of a site gateway (urbanpulse.wire.relay): what it carries comes out
byte for byte, a broken envelope is one error, a broken item only itself."""

from __future__ import annotations

import json

import pytest

from urbanpulse.wire import relay
from urbanpulse.wire.payload import MAX_PAYLOAD_BYTES, WireError, batch_id_of
from urbanpulse.wire.relay import (
    MAX_RELAY_BYTES,
    MAX_RELAY_MESSAGES,
    RelayedMessage,
    decode_relay,
    encode_relay,
    relay_item_bytes,
)
from urbanpulse.wire.topics import parse_topic, relay_topic

DATA = b'{"v":1,"site":"hn-bm","node":"ward-a","batch":"ab.7","units":{},"readings":[]}'


def _relay(messages: list[RelayedMessage], batch: str = "9f3c.12") -> bytes:
    return encode_relay("hn-bm", "gw-1", batch, messages)


def test_messages_come_out_as_they_went_in_text_or_not() -> None:
    sent = [RelayedMessage("ward-a", "data", DATA),
            RelayedMessage("ward-a", "status",
                           b'{"v":1,"state":"online","ts":"2026-11-30T01:00:00.000000Z"}'),
            RelayedMessage("door-2", "data", b"\xff\xfe not utf-8 \x00"),
            RelayedMessage("door-2", "data", '{"q":"\u00e9\\"\\u0000"}'.encode())]
    parsed = decode_relay(_relay(sent), site="hn-bm", gateway="gw-1")
    assert parsed.messages == sent
    assert parsed.rejected == []
    assert (parsed.site, parsed.gateway, parsed.batch) == ("hn-bm", "gw-1", "9f3c.12")
    assert json.loads(_relay(sent))["messages"][2] == {
        "node": "door-2", "stream": "data", "payload_b64": "//4gbm90IHV0Zi04IAA="}


def test_the_ingest_finds_the_relays_batch_not_a_relayed_messages() -> None:
    payload = _relay([RelayedMessage("ward-a", "data", DATA)], batch="77.1")
    assert b'"batch":"ab.7"' not in payload  # the node's, escaped inside its text
    assert batch_id_of(payload) == "77.1"


def test_the_topic_is_the_gateways_own() -> None:
    topic = relay_topic("hn-bm", "gw-1")
    assert topic == "urbanpulse/v1/hn-bm/gw-1/relay"
    parsed = parse_topic(topic)
    assert (parsed.site, parsed.node, parsed.stream) == ("hn-bm", "gw-1", "relay")


@pytest.mark.parametrize(("body", "code"), [
    (b"[1]", "not_object"),
    (b"{", "not_json"),
    (b'{"v":2,"site":"hn-bm","gateway":"gw-1","batch":"1.1","messages":[]}', "bad_version"),
    (b'{"v":1,"site":"hn-xx","gateway":"gw-1","batch":"1.1","messages":[]}', "site_mismatch"),
    (b'{"v":1,"site":"hn-bm","gateway":"gw-2","batch":"1.1","messages":[]}', "gateway_mismatch"),
    (b'{"v":1,"site":"hn-bm","gateway":"GW","batch":"1.1","messages":[]}', "bad_gateway"),
    (b'{"v":1,"site":"hn-bm","gateway":"gw-1","batch":"x","messages":[]}', "bad_batch"),
    (b'{"v":1,"site":"hn-bm","gateway":"gw-1","batch":"1.1","messages":{}}', "bad_messages"),
])
def test_a_broken_envelope_is_one_error_naming_why(body: bytes, code: str) -> None:
    with pytest.raises(WireError) as caught:
        decode_relay(body, site="hn-bm", gateway="gw-1")
    assert caught.value.code == code


def test_too_large_and_too_many_are_refused_both_ways() -> None:
    with pytest.raises(WireError, match="too_large"):
        decode_relay(b" " * (MAX_RELAY_BYTES + 1), site="hn-bm", gateway="gw-1")
    many = [RelayedMessage("ward-a", "data", b"{}")] * (MAX_RELAY_MESSAGES + 1)
    with pytest.raises(WireError, match="too_many"):
        _relay(many)
    body = {"v": 1, "site": "hn-bm", "gateway": "gw-1", "batch": "1.1",
            "messages": [{"node": "a", "stream": "data", "payload": "{}"}] * (MAX_RELAY_MESSAGES + 1)}
    with pytest.raises(WireError, match="too_many"):
        decode_relay(json.dumps(body).encode(), site="hn-bm", gateway="gw-1")


def test_a_broken_item_is_rejected_alone_naming_its_place() -> None:
    items = [
        {"node": "ward-a", "stream": "data", "payload": "{}"},
        {"node": "Ward A", "stream": "data", "payload": "{}"},
        {"node": "ward-a", "stream": "ack", "payload": "{}"},
        {"node": "ward-a", "stream": "data"},
        {"node": "ward-a", "stream": "data", "payload": "{}", "payload_b64": "e30="},
        {"node": "ward-a", "stream": "data", "payload_b64": "not base64!"},
        {"node": "ward-a", "stream": "data", "payload": "x" * (MAX_PAYLOAD_BYTES + 1)},
        {"node": "ward-a", "stream": "data", "payload": "{}", "extra": 1},
        "ward-a",
        {"node": "ward-b", "stream": "status", "payload_b64": "e30="},
    ]
    body = {"v": 1, "site": "hn-bm", "gateway": "gw-1", "batch": "1.1", "messages": items}
    parsed = decode_relay(json.dumps(body).encode(), site="hn-bm", gateway="gw-1")
    assert parsed.messages == [RelayedMessage("ward-a", "data", b"{}"),
                               RelayedMessage("ward-b", "status", b"{}")]
    assert [(r.index, r.code) for r in parsed.rejected] == [
        (1, "bad_node"), (2, "bad_stream"), (3, "bad_payload"), (4, "bad_payload"),
        (5, "bad_payload"), (6, "too_large"), (7, "bad_item"), (8, "bad_item")]
    assert parsed.rejected[0].detail.startswith("messages[1].node: node 'Ward A' is not a valid id")
    assert parsed.rejected[2].raw == items[3]


def test_a_lone_surrogate_is_a_bad_payload_not_a_crash() -> None:
    body = b'{"v":1,"site":"hn-bm","gateway":"gw-1","batch":"1.1","messages":' \
           b'[{"node":"a","stream":"data","payload":"\\ud800"}]}'
    parsed = decode_relay(body, site="hn-bm", gateway="gw-1")
    assert [r.code for r in parsed.rejected] == ["bad_payload"]


def test_item_bytes_add_up_to_the_relays_size() -> None:
    sent = [RelayedMessage("ward-a", "data", DATA), RelayedMessage("door-2", "data", b"\xff"),
            RelayedMessage("ward-a", "status", b'{"v":1}')]
    envelope = len(_relay(sent[:1])) - relay_item_bytes(sent[0]) + 1
    assert envelope <= relay.RELAY_OVERHEAD_BYTES
    assert len(_relay(sent)) == envelope + sum(relay_item_bytes(m) for m in sent) - 1


def test_encode_refuses_what_decode_would() -> None:
    with pytest.raises(WireError, match="bad_messages"):
        _relay([])
    with pytest.raises(WireError, match="bad_stream"):
        _relay([RelayedMessage("ward-a", "ack", b"{}")])
    with pytest.raises(WireError, match="bad_batch"):
        _relay([RelayedMessage("ward-a", "data", b"{}")], batch="nope")
