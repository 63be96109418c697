"""A site gateway's relays through the real cloud: the session's Mosquitto, `urbanpulse cloud
run` (its ingest and dataflow), InfluxDB. The same node messages sent directly and relayed
give the same points; a relay is acknowledged to its gateway once journaled; a relay
delivered twice adds duplicates and no point; what the contract refuses becomes the
documented dead letters; a processor SIGKILLed while relays flow loses and doubles nothing."""

from __future__ import annotations

import json
import random
import threading
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from cloud.ingest import Ingest
from cloud.journal import Journal, journal_path
from tests.cloud.ingest_parts import NO_LIMIT, cloud_mqtt, fill_journal, journal_rows
from urbanpulse.clock import to_epoch_ns
from urbanpulse.influx_http import InfluxHTTP
from urbanpulse.mqtt import close_client, connect_and_wait, make_client
from urbanpulse.stack import MqttCredentials, StackInfo
from urbanpulse.testing import wait_for
from urbanpulse.wire import Reading, ack_topic, data_topic, decode_ack, encode_batch
from urbanpulse.wire.relay import RelayedMessage, encode_relay, relay_item
from urbanpulse.wire.topics import relay_topic

pytestmark = pytest.mark.stack

GW = "gw-1"


class Client:
    """An MQTT client of a node or gateway user: publishes at QoS 1, hears its acks."""

    def __init__(self, creds: MqttCredentials, site: str, node: str,
                 on_ack: Callable[[list[str]], None] | None = None) -> None:
        self.acked: list[str] = []
        self._lock = threading.Lock()
        self._on_ack = on_ack
        self.client = make_client(f"t-{site}-{node}", creds, clean_start=True)
        self.client.on_message = self._message
        connect_and_wait(self.client)
        self.client.subscribe(ack_topic(site, node), qos=1)

    def _message(self, client: Any, userdata: Any, msg: Any) -> None:
        ids = decode_ack(msg.payload)
        if self._on_ack is not None:
            self._on_ack(ids)
        with self._lock:
            self.acked.extend(ids)

    def acks(self) -> list[str]:
        with self._lock:
            return list(self.acked)

    def publish(self, topic: str, payload: bytes) -> None:
        info = self.client.publish(topic, payload, qos=1)
        info.wait_for_publish(10)
        assert info.is_published()

    def close(self) -> None:
        close_client(self.client)


@pytest.fixture
def clients() -> Iterator[list[Client]]:
    made: list[Client] = []
    yield made
    for c in made:
        c.close()


def _readings(sensor: str, n: int, start: datetime, seq0: int = 0) -> list[Reading]:
    """PM readings every 2 s from `start`, every 17th out of the physical range (an event)."""
    return [Reading(sensor, "air.pm", to_epoch_ns(start + timedelta(seconds=2 * (seq0 + i))), seq0 + i,
                    {"pm25": 1500.0 if (seq0 + i) % 17 == 5 else 10.0 + (seq0 + i) * 7 % 23,
                     "pm10": 30.0 + (seq0 + i) % 5}) for i in range(n)]


def _node_messages(site: str, nodes: list[str], start: datetime) -> list[tuple[str, bytes]]:
    """Each node's batches of 1-3 readings, interleaved as live nodes send them."""
    out: list[tuple[str, bytes]] = []
    seq = dict.fromkeys(nodes, 0)
    rng = random.Random(5)
    for k in range(40):
        node = nodes[k % len(nodes)]
        n = rng.randint(1, 3)
        out.append((node, encode_batch(site, node, _readings("pm-a", n, start, seq[node]),
                                       batch=f"b{k % len(nodes)}.{seq[node]}")))
        seq[node] += n
    return out


def _relays(site: str, messages: list[tuple[str, bytes]], per_relay: int, first: int = 0) -> list[bytes]:
    return [encode_relay(site, GW, f"9a.{first + j}",
                         [RelayedMessage(node, "data", p) for node, p in messages[i:i + per_relay]])
            for j, i in enumerate(range(0, len(messages), per_relay))]


MEASUREMENTS = (("raw", "air_pm"), ("agg_1m", "air_pm"), ("agg_1h", "air_pm"), ("agg_1h", "ledger"),
                ("raw", "events"))


def _site_rows(reader: InfluxHTTP, site: str) -> dict[str, list[tuple[Any, ...]]]:
    """Every point of `site` that the readings make, without the site tag, sorted; of the
    events not `delay_s`, how long after its stamp the cloud received the reading (a relay
    comes when its gateway sends it)."""
    out: dict[str, list[tuple[Any, ...]]] = {}
    for rp, m in MEASUREMENTS:
        rows = reader.query_points(f"SELECT * FROM {rp}.{m} WHERE site = '{site}'", db="urbanpulse")
        out[f"{rp}.{m}"] = sorted(tuple(sorted((k, v) for k, v in r.items()
                                                if k not in ("site", "delay_s") and v is not None))
                                  for r in rows)
    return out


def _raw_count(reader: InfluxHTTP, site: str) -> int:
    rows = reader.query_points(f"SELECT count(pm25) FROM raw.air_pm WHERE site = '{site}'", db="urbanpulse")
    return int(rows[0]["count"]) if rows else 0


def _ledger(rows: dict[str, list[tuple[Any, ...]]]) -> dict[str, int]:
    total: dict[str, int] = {}
    for row in rows["agg_1h.ledger"]:
        for k, v in row:
            if k in ("received", "duplicates", "missing"):
                total[k] = total.get(k, 0) + v
    return total


def test_relayed_messages_store_what_direct_ones_do_and_a_redelivered_relay_adds_only_duplicates(
        cloud_factory: Any, add_stack_node: Any, reader: InfluxHTTP, clients: list[Client]) -> None:
    direct_site, relay_site, nodes = "hn-rl-direct", "hn-rl-relay", ["aq-1", "aq-2", "aq-3"]
    cloud = cloud_factory("relay-same")
    cloud.start()
    wait_for(lambda: "ingest subscribed" in cloud.log(), 30, "the ingest to subscribe")
    start = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=3)
    direct = _node_messages(direct_site, nodes, start)
    relayed = _node_messages(relay_site, nodes, start)
    readings = sum(len(json.loads(p)["readings"]) for _, p in direct)
    by_node = {node: Client(add_stack_node(direct_site, node), direct_site, node) for node in nodes}
    clients.extend(by_node.values())
    gateway = Client(add_stack_node(relay_site, GW, gateway=True), relay_site, GW)
    clients.append(gateway)
    for node, payload in direct:
        by_node[node].publish(data_topic(direct_site, node), payload)
    relays = _relays(relay_site, relayed, 7)
    for relay in relays:
        gateway.publish(relay_topic(relay_site, GW), relay)
    wait_for(lambda: _raw_count(reader, direct_site) == readings == _raw_count(reader, relay_site), 60,
             "every raw point of both sites")

    def same() -> bool:
        a, b = _site_rows(reader, direct_site), _site_rows(reader, relay_site)
        return a == b and all(a.values())

    wait_for(same, 30, "the relayed site's points equal to the direct one's")
    before = _site_rows(reader, relay_site)
    assert _ledger(before) == {"received": readings, "duplicates": 0, "missing": 0}
    assert len(before["raw.events"]) >= 4  # out_of_range, stamped at the readings
    wait_for(lambda: sorted(gateway.acks()) == sorted(f"9a.{i}" for i in range(len(relays))), 10,
             "the gateway's acks of its relays")

    # A relay delivered again (its ack lost: the nodes send again, the gateway relays again).
    again = relays[1]
    again_readings = sum(len(json.loads(m["payload"])["readings"]) for m in json.loads(again)["messages"])
    gateway.publish(relay_topic(relay_site, GW), again)
    wait_for(lambda: _ledger(_site_rows(reader, relay_site))["duplicates"] == again_readings, 30,
             "the redelivered readings counted as duplicates")
    after = _site_rows(reader, relay_site)
    assert {k: v for k, v in after.items() if k != "agg_1h.ledger"} == \
        {k: v for k, v in before.items() if k != "agg_1h.ledger"}
    assert _ledger(after) == {"received": readings + again_readings, "duplicates": again_readings,
                              "missing": 0}


def _dead_letters(reader: InfluxHTTP, site: str) -> list[tuple[str, str, str]]:
    rows = reader.query_points(f"SELECT * FROM raw.dead_letter WHERE site = '{site}'", db="urbanpulse")
    return sorted((r["node"], r["reason"], r["payload"]) for r in rows)


def test_a_relays_refused_parts_are_the_documented_dead_letters_and_the_rest_is_stored(
        cloud_factory: Any, add_stack_node: Any, reader: InfluxHTTP, clients: list[Client]) -> None:
    site = "hn-rl-bad"
    cloud = cloud_factory("relay-bad")
    cloud.start()
    wait_for(lambda: "ingest subscribed" in cloud.log(), 30, "the ingest to subscribe")
    gateway = Client(add_stack_node(site, GW, gateway=True), site, GW)
    clients.append(gateway)
    start = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=2)
    good = encode_batch(site, "aq-1", _readings("pm-a", 5, start), batch="b1.0")
    other_site = encode_batch("hn-elsewhere", "aq-2", _readings("pm-a", 3, start), batch="b2.0")
    bad_node = {"node": "AQ 9", "stream": "data", "payload": "{}"}
    bad_payload = {"node": "aq-3", "stream": "data", "payload_b64": "not base64!"}
    items = [relay_item(RelayedMessage("aq-1", "data", good)), bad_node, bad_payload,
             relay_item(RelayedMessage("aq-2", "data", other_site))]
    relay = json.dumps({"v": 1, "site": site, "gateway": GW, "batch": "9b.1", "messages": items}).encode()
    broken = b'{"v":1,"site":"' + site.encode() + b'","gateway":"gw-1","batch":"9b.2","messages":[{'
    gateway.publish(relay_topic(site, GW), broken)
    gateway.publish(relay_topic(site, GW), relay)
    wait_for(lambda: _raw_count(reader, site) == 5 and len(_dead_letters(reader, site)) == 4, 60,
             "the good item's points and four dead letters")
    letters = _dead_letters(reader, site)
    assert [(node, reason) for node, reason, _ in letters] == [
        ("aq-2", "site_mismatch"),  # a gateway speaks for its own site only
        ("aq-3", "bad_payload"), (GW, "bad_node"), (GW, "not_json")]
    assert json.loads(letters[1][2]) == bad_payload
    assert json.loads(letters[2][2]) == bad_node
    assert letters[3][2] == broken.decode()
    assert letters[0][2] == other_site.decode()
    wait_for(lambda: sorted(gateway.acks()) == ["9b.1", "9b.2"], 10, "both relays acknowledged")


def test_a_relay_is_acknowledged_to_its_gateway_once_journaled_and_never_to_its_nodes(
        stack: StackInfo, add_stack_node: Any, tmp_path: Path, clients: list[Client]) -> None:
    site = f"rl{tmp_path.name[-6:]}".replace("_", "-").lower()
    cfg = cloud_mqtt(stack, tmp_path, site)
    path = journal_path(tmp_path / "state" / "journal", "i0")
    journal = Journal(path, "i0").open()
    ingest = Ingest(cfg, journal, min_free_bytes=0)
    seen_at_ack: list[list[bytes]] = []
    node = Client(add_stack_node(site, "aq-1"), site, "aq-1")
    gateway = Client(add_stack_node(site, GW, gateway=True), site, GW,
                     on_ack=lambda _: seen_at_ack.append(journal_rows(path)))
    clients += [node, gateway]
    # Larger than a SQLite page, so that its append needs pages the full journal lacks.
    start = datetime.now(UTC) - timedelta(minutes=3)
    inner = encode_batch(site, "aq-1", _readings("pm-a", 60, start), batch="c1.0")
    relay = encode_relay(site, GW, "9c.1", [RelayedMessage("aq-1", "data", inner)])
    own = encode_batch(site, "aq-1", _readings("pm-a", 1, start, 60), batch="c1.9")
    ingest.start()
    try:
        assert ingest.wait_subscribed(10)
        assert f"$share/{cfg.shared_group}/urbanpulse/v1/{site}/+/relay" in ingest.subscriptions
        fill_journal(journal)
        gateway.publish(relay_topic(site, GW), relay)
        wait_for(lambda: ingest.stats.received == 1 and ingest.stats.commit_failures >= 2, 20,
                 "the relay taken and its commit failing")
        assert gateway.acks() == []  # not journaled: not acknowledged
        journal.db.execute(f"PRAGMA max_page_count = {NO_LIMIT}")
        wait_for(lambda: gateway.acks() == ["9c.1"], 20, "the relay's ack to the gateway")
        assert seen_at_ack == [[relay]]  # journaled, as one record, when the ack came
        # The node's own message after it: its ack comes, the relayed batch's never does.
        node.publish(data_topic(site, "aq-1"), own)
        wait_for(lambda: node.acks() == ["c1.9"], 10, "the node's direct batch's ack")
    finally:
        ingest.stop()
        journal.close()
    assert journal_rows(path) == [relay, own]
    assert gateway.acks() == ["9c.1"]


def test_processor_sigkilled_while_relays_flow_stores_exactly_the_relayed_readings(
        cloud_factory: Any, add_stack_node: Any, reader: InfluxHTTP, clients: list[Client]) -> None:
    site, nodes = "hn-rl-kill", [f"aq-{k}" for k in range(5)]
    cloud = cloud_factory("relay-kill")
    cloud.start()
    wait_for(lambda: "ingest subscribed" in cloud.log(), 30, "the ingest to subscribe")
    gateway = Client(add_stack_node(site, GW, gateway=True), site, GW)
    clients.append(gateway)
    start = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=50)
    sent: set[tuple[str, int]] = set()
    relays = []
    for r in range(60):  # 60 relays of 5 messages of 10 readings
        messages = []
        for node in nodes:
            readings = _readings("pm-a", 10, start, 10 * r)
            payload = encode_batch(site, node, readings, batch=f"d{r}.{node[-1]}")
            messages.append(RelayedMessage(node, "data", payload))
            sent |= {(node, x.seq) for x in readings}
        relays.append(encode_relay(site, GW, f"9d.{r}", messages))
    done = threading.Event()

    def publish() -> None:
        for relay in relays:
            gateway.publish(relay_topic(site, GW), relay)
            if done.wait(0.04):
                return
        done.set()

    thread = threading.Thread(target=publish)
    thread.start()
    rng = random.Random(16)
    kills = 0
    try:
        while not done.is_set() and kills < 3:
            done.wait(rng.uniform(0.4, 0.9))
            cloud.kill()
            kills += 1
            cloud.start()
    finally:
        thread.join(30)
    assert kills >= 2, "the gateway finished before the processor was killed twice"
    wait_for(lambda: _raw_count(reader, site) >= len(sent), 120, "every raw point")

    def stored() -> set[tuple[str, int]]:
        rows = reader.query_points(f"SELECT seq, node FROM raw.air_pm WHERE site = '{site}'", db="urbanpulse")
        return {(r["node"], r["seq"]) for r in rows}

    assert _raw_count(reader, site) == len(sent)
    assert stored() == sent
