"""A site gateway's relay in the dataflow's read path (cloud.logic.records.expand_relays):
each relayed message becomes the record it would have been on its node's own topic, with a
reception of its own; what the contract refuses becomes the documented dead letters; the
journal leaves the relayed messages' receptions free; nothing a relay holds makes the
expansion or the node step raise."""

from __future__ import annotations

import json
import pickle
import random
from datetime import UTC, datetime
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bench.pipeline.workload import generate
from cloud.flow import NodeLogic, NodeOut, node_key
from cloud.ingest import acked_batch
from cloud.journal import RECEIVED_STEP_NS, Journal, JournalRecord, journal_path, received_steps
from cloud.logic.node import NodeState
from cloud.logic.records import Record, RelayedReject, decode_record, expand_relay, expand_relays
from urbanpulse.clock import to_epoch_ns
from urbanpulse.wire import Reading, data_topic, encode_batch, status_topic
from urbanpulse.wire.relay import (
    MAX_RELAY_MESSAGES,
    RelayedMessage,
    encode_relay,
    relay_item,
)
from urbanpulse.wire.topics import relay_topic

NOW = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)
RX = to_epoch_ns(NOW)
SITE, GW = "hn-relay", "gw-1"
MAX_DL = 4096
HORIZON_NS = 2 * 3600 * 10**9


def _batch(node: str, seq0: int, n: int = 3, site: str = SITE) -> bytes:
    readings = [Reading("co2-1", "air.co2", RX - (60 - seq0 - i) * 10**9, seq0 + i, {"co2": 400.0 + i})
                for i in range(n)]
    return encode_batch(site, node, readings, batch=f"a1.{seq0}")


def _status(state: str = "online") -> bytes:
    return json.dumps({"v": 1, "state": state, "ts": "2026-11-30T11:59:00Z"}).encode()


def _relay_record(payload: bytes, offset: int = 7, received_ns: int = RX) -> JournalRecord:
    return JournalRecord("i0", offset, received_ns, relay_topic(SITE, GW), payload)


def _run(records: list[Record]) -> dict[str, list[NodeOut]]:
    """The node step of every key, fed record by record in order, as the keyed flow does."""
    logics: dict[str, NodeLogic] = {}
    out: dict[str, list[NodeOut]] = {}
    for rec in records:
        key = node_key(rec)
        logic = logics.setdefault(key, NodeLogic(NodeState(HORIZON_NS, True), MAX_DL, drift=True))
        got, _ = logic.on_batch([rec])
        out.setdefault(key, []).extend(got)
    return out


def test_a_relays_messages_are_the_records_they_would_have_been_on_their_nodes_topics() -> None:
    messages = [RelayedMessage("ward-a", "data", _batch("ward-a", 0)),
                RelayedMessage("door-2", "status", _status()),
                RelayedMessage("ward-a", "data", _batch("ward-a", 3)),
                RelayedMessage("door-2", "data", b"\xff\xfe not utf-8")]
    rec = _relay_record(encode_relay(SITE, GW, "5e1d.311", messages))
    expanded = expand_relays([JournalRecord("i0", 6, RX - 10**9, data_topic(SITE, "n0"), b"x"), rec])
    assert expanded[1:] == [
        JournalRecord("i0", 7, RX, data_topic(SITE, "ward-a"), messages[0].payload),
        JournalRecord("i0", 7, RX + RECEIVED_STEP_NS, status_topic(SITE, "door-2"), messages[1].payload),
        JournalRecord("i0", 7, RX + 2 * RECEIVED_STEP_NS, data_topic(SITE, "ward-a"), messages[2].payload),
        JournalRecord("i0", 7, RX + 3 * RECEIVED_STEP_NS, data_topic(SITE, "door-2"), messages[3].payload)]
    assert [node_key(r) for r in expanded] == [f"{SITE}/n0", f"{SITE}/ward-a", f"{SITE}/door-2",
                                               f"{SITE}/ward-a", f"{SITE}/door-2"]
    assert expand_relay(rec) == expanded[1:]  # a replay of the journal expands it the same
    plain = [JournalRecord("i0", 1, RX, data_topic(SITE, "n0"), b"x")]
    assert expand_relays(plain) is plain  # no relay: the batch as read, not a copy


def test_relayed_messages_give_the_node_steps_exactly_what_direct_ones_do() -> None:
    """A city's live messages, grouped per site into relays of up to 40, against the same
    messages journaled one by one at the receptions the relay gives them: every point,
    site update, alert and air reading of every node the same, in the same order."""
    workload = generate(4000, now=NOW, live_s=1.0)
    by_site: dict[str, list[RelayedMessage]] = {}
    for m in workload.messages:
        by_site.setdefault(m.site, []).append(RelayedMessage(m.node, "data", m.payload))
    relays: list[JournalRecord] = []
    direct: list[Record] = []
    base = to_epoch_ns(datetime(2026, 11, 30, 11, 59, tzinfo=UTC))
    for site, msgs in sorted(by_site.items()):
        for i in range(0, len(msgs), 40):
            part = msgs[i:i + 40]
            offset = len(relays) + 1
            payload = encode_relay(site, GW, f"b0.{offset}", part)
            relays.append(JournalRecord("i0", offset, base, relay_topic(site, GW), payload))
            direct += [JournalRecord("i0", offset, base + k * RECEIVED_STEP_NS, data_topic(site, m.node),
                                     m.payload) for k, m in enumerate(part)]
            base += received_steps(relay_topic(site, GW), payload) * RECEIVED_STEP_NS
    assert len(relays) > 5
    relayed = _run(list(expand_relays(relays)))
    assert relayed == _run(direct)
    assert sum(len(p) for outs in relayed.values() for p, *_ in outs) > workload.readings


def _points(outs: list[NodeOut]) -> list[str]:
    return [line for out in outs for _, line in out[0]]


def test_a_broken_envelope_is_one_dead_letter_of_the_gateway_with_the_relay() -> None:
    payload = encode_relay("hn-other", GW, "5e1d.1", [RelayedMessage("ward-a", "data", _batch("ward-a", 0))])
    (reject,) = expand_relays([_relay_record(payload)])
    assert isinstance(reject, RelayedReject)
    assert (reject.key, reject.code, reject.raw, reject.received_ns) == (
        f"{SITE}/{GW}", "site_mismatch", payload, RX)
    (line,) = _points(_run([reject])[f"{SITE}/{GW}"])
    assert line.startswith(f"dead_letter,node={GW},reason=site_mismatch,site={SITE} ")
    assert "offset=7i" in line
    assert f'topic="{relay_topic(SITE, GW)}"' in line
    big = b'{"v":1,' + b" " * 300_000 + b"}"
    (reject,) = expand_relays([_relay_record(big)])
    (line,) = _points(_run([reject])[f"{SITE}/{GW}"])
    assert "truncated=true" in line
    assert len(line) < MAX_DL + 1000  # bounded as a node's


def test_a_refused_item_is_a_dead_letter_of_its_node_and_the_rest_go_on() -> None:
    good = relay_item(RelayedMessage("ward-a", "data", _batch("ward-a", 0)))
    items = [good,
             {"node": "door-2", "stream": "ack", "payload": "{}"},  # its node's: bad_stream
             {"node": "Not A Node", "stream": "data", "payload": "{}"},  # the gateway's: bad_node
             {"node": "door-2", "stream": "data", "payload": "x", "payload_b64": "eA=="},
             relay_item(RelayedMessage("ward-b", "data", _batch("ward-b", 0, site="hn-other"))),
             ["not", "an", "object"]]
    payload = json.dumps({"v": 1, "site": SITE, "gateway": GW, "batch": "5e1d.2", "messages": items}).encode()
    expanded = expand_relays([_relay_record(payload)])
    assert [(node_key(r), type(r).__name__, getattr(r, "code", None)) for r in expanded] == [
        (f"{SITE}/ward-a", "JournalRecord", None),
        (f"{SITE}/door-2", "RelayedReject", "bad_stream"),
        (f"{SITE}/{GW}", "RelayedReject", "bad_node"),
        (f"{SITE}/door-2", "RelayedReject", "bad_payload"),
        (f"{SITE}/ward-b", "JournalRecord", None),
        (f"{SITE}/{GW}", "RelayedReject", "bad_item")]
    assert [r.received_ns for r in expanded] == [RX + k * RECEIVED_STEP_NS for k in range(6)]
    assert json.loads(expanded[1].raw) == items[1]  # type: ignore[union-attr]
    # A cluster's processes exchange the keyed records pickled.
    assert [pickle.loads(pickle.dumps(r)) for r in expanded] == list(expanded)
    out = _run(list(expanded))
    assert len([p for p in _points(out[f"{SITE}/ward-a"]) if p.startswith("air_co2,") and "seq=" in p]) == 3
    # A gateway speaks for its own site only: as on the node's own topic.
    (mismatch,) = _points(out[f"{SITE}/ward-b"])
    assert mismatch.startswith(f"dead_letter,node=ward-b,reason=site_mismatch,site={SITE} ")
    door = _points(out[f"{SITE}/door-2"])
    assert [p.split(" ")[0] for p in door] == [
        f"dead_letter,node=door-2,reason={code},site={SITE}" for code in ("bad_stream", "bad_payload")]
    assert '\\"stream\\": \\"ack\\"' in door[0]  # the item's own JSON
    stamps = [int(p.rsplit(" ", 1)[1]) for p in door]
    assert stamps == [RX + RECEIVED_STEP_NS, RX + 3 * RECEIVED_STEP_NS]  # one reception each


def test_two_status_messages_of_a_node_in_one_relay_stay_two_points() -> None:
    payload = encode_relay(SITE, GW, "5e1d.3", [RelayedMessage("door-2", "status", _status("offline")),
                                                RelayedMessage("door-2", "status", _status("online"))])
    out = _points(_run(list(expand_relays([_relay_record(payload)])))[f"{SITE}/door-2"])
    assert [(p.split(" ")[0], p.rsplit(" ", 1)[1]) for p in out] == [
        (f"node_status,node=door-2,site={SITE}", str(RX)),
        (f"node_status,node=door-2,site={SITE}", str(RX + RECEIVED_STEP_NS))]


def test_the_journal_leaves_a_relays_receptions_free_across_a_reopen(tmp_path: Path) -> None:
    payload = encode_relay(SITE, GW, "5e1d.4", [RelayedMessage(f"n{k}", "data", _batch(f"n{k}", 0))
                                                for k in range(30)])
    steps = received_steps(relay_topic(SITE, GW), payload)
    assert steps == 30  # its items, not the "node" keys of the batches they carry
    assert received_steps(data_topic(SITE, "n1"), _batch("n1", 0)) == 1
    assert received_steps(relay_topic(SITE, GW), b"{not json") == 1
    many = encode_relay(SITE, GW, "5e1d.7", [RelayedMessage("n1", "status", _status())] * MAX_RELAY_MESSAGES)
    assert received_steps(relay_topic(SITE, GW), many) == MAX_RELAY_MESSAGES
    path = journal_path(tmp_path, "i0")
    journal = Journal(path, "i0").open()
    journal.append([(relay_topic(SITE, GW), payload), (data_topic(SITE, "n1"), b"a")], RX)
    journal.close()
    journal = Journal(path, "i0").open()
    journal.append([(relay_topic(SITE, GW), payload)], RX)  # the same instant: a clock step back
    journal.close()
    journal = Journal(path, "i0").open()
    journal.append([(data_topic(SITE, "n1"), b"b")], RX)
    stamps = [r.received_ns for r in journal.read(0, 10)]
    journal.close()
    step = RECEIVED_STEP_NS
    assert stamps == [RX, RX + steps * step, RX + (steps + 1) * step, RX + (2 * steps + 1) * step]
    # The last relayed message's reception is below the next record's.
    last = expand_relay(JournalRecord("i0", 1, RX, relay_topic(SITE, GW), payload))[-1]
    assert last.received_ns < stamps[1]


def test_the_ingest_acknowledges_a_relays_own_batch_to_the_gateway() -> None:
    inner = _batch("ward-a", 0)  # its batch a1.0 is the node's, acknowledged by the gateway
    payload = encode_relay(SITE, GW, "5e1d.9", [RelayedMessage("ward-a", "data", inner)])
    assert acked_batch(relay_topic(SITE, GW), payload) == "5e1d.9"
    assert acked_batch(data_topic(SITE, "ward-a"), inner) == "a1.0"
    assert acked_batch(status_topic(SITE, "ward-a"), _status()) is None
    # Its messages first (another encoder's order): found by parsing, not in a message.
    items = [{"node": "ward-a", "stream": "data", "payload": inner.decode()}, {"batch": "dead.1"}]
    reordered = json.dumps({"messages": items, "v": 1, "site": SITE, "gateway": GW, "batch": "5e1d.10"})
    assert acked_batch(relay_topic(SITE, GW), reordered.encode()) == "5e1d.10"
    assert acked_batch(relay_topic(SITE, GW), b'{"messages": [{"batch":"dead.1"}]}') is None
    assert acked_batch(relay_topic(SITE, GW), b"\xff{not json") is None


def _mutations(payload: bytes, rng: random.Random) -> list[bytes]:
    out = [payload[:rng.randrange(len(payload))]]
    flipped = bytearray(payload)
    for _ in range(rng.randrange(1, 8)):
        flipped[rng.randrange(len(flipped))] = rng.randrange(256)
    out.append(bytes(flipped))
    pos = rng.randrange(len(payload))
    junk = rng.choice([b'"', b"\\", b"{", b"[", b"\\ud800", b"1e999", b"\x00"])
    out.append(payload[:pos] + junk + payload[pos:])
    return out


JSONISH = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
    max_leaves=12)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 2**32), items=st.lists(JSONISH, max_size=4),
       envelope=st.dictionaries(st.sampled_from(["v", "site", "gateway", "batch", "messages", "x"]),
                                JSONISH, max_size=5))
def test_nothing_a_relay_holds_makes_the_read_path_raise(seed: int, items: list[object],
                                                         envelope: dict[str, object]) -> None:
    rng = random.Random(seed)
    sound = encode_relay(SITE, GW, "5e1d.5", [
        RelayedMessage("ward-a", "data", _batch("ward-a", 0)), RelayedMessage("door-2", "status", _status()),
        RelayedMessage("door-2", "data", bytes(rng.randrange(256) for _ in range(20)))])
    mixed = json.dumps({"v": 1, "site": SITE, "gateway": GW, "batch": "5e1d.6",
                        "messages": [*json.loads(sound)["messages"], *items]}).encode()
    payloads = [sound, mixed, json.dumps(envelope).encode(), json.dumps(items).encode(),
                b"[" * 100_000, b'{"v":1,"messages":' + b"[" * 5000 + b"]" * 5000 + b"}",
                *_mutations(sound, rng), *_mutations(mixed, rng)]
    records = [_relay_record(p, offset=k + 1, received_ns=RX + k * 10**8) for k, p in enumerate(payloads)]
    records.append(JournalRecord("i0", 99, RX + 10**10, "urbanpulse/v1/HN/x/relay", sound))
    records.append(JournalRecord("i0", 100, RX + 2 * 10**10, "urbanpulse/v1/hn/x/y/relay", sound))
    expanded = list(expand_relays(records))
    for rec in expanded:
        _, points = decode_record(rec, MAX_DL)
        for _, line in points:
            line.encode()  # the sink writes UTF-8: nothing it cannot encode
    for outs in _run(expanded).values():
        for line in _points(outs):
            line.encode()
