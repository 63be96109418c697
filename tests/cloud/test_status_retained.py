"""A node's retained status on the cloud broker is history to the cloud: the session's real
Mosquitto, the real ingest and journal, and the processor's own decoding of the journal
(`expand_relays`, `decode_record`) into the `node_status` points Grafana's node status
panel reads (`last("state")`: the point with the latest stamp, the ingest's reception).

A node moved behind a site gateway leaves its last direct status (its will, "offline")
retained on the cloud broker; the broker hands it to every ingest that subscribes again (a
reconnect, a restarted ingest, a new ingest of a cluster), after the node's live statuses
relayed by its gateway. Journaled, it was the node's newest point: "offline" until the
node's next heartbeat, at each reconnect (docs/gateway.md, "A node that moves")."""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from cloud.config import CloudMqtt
from cloud.ingest import Ingest
from cloud.journal import Journal, JournalRecord, journal_path
from cloud.logic.records import decode_record, expand_relays
from tests.cloud.ingest_parts import cloud_mqtt, ingest_log
from urbanpulse.clock import to_epoch_ns
from urbanpulse.mqtt import close_client, connect_and_wait, make_client
from urbanpulse.stack import MqttCredentials, StackInfo
from urbanpulse.testing import wait_for
from urbanpulse.wire import Reading, encode_batch, encode_status, status_topic
from urbanpulse.wire.relay import RelayedMessage, encode_relay
from urbanpulse.wire.topics import relay_topic

pytestmark = pytest.mark.stack

GW = "gw-1"
NODE = "ward-a"
_STATE = re.compile(rb'state="(\w+)"')


def _states(records: list[JournalRecord], site: str, node: str) -> list[tuple[int, str]]:
    """(stamp, state) of the node's node_status points that the processor writes for
    `records`, in stamp order: the last is what the node status panel shows."""
    out: list[tuple[int, str]] = []
    for rec in expand_relays(records):
        _, points = decode_record(rec, 1000)
        for _, text in points:
            if text.startswith(f"node_status,node={node},site={site} "):
                found = _STATE.search(text.encode())
                assert found is not None
                out.append((int(text.rsplit(" ", 1)[1]), found.group(1).decode()))
    return sorted(out)


def _health(run: str, uptime_s: float) -> dict[str, Any]:
    return {"run_id": run, "uptime_s": uptime_s, "outbox_depth": 0, "clock": {"jumps": 0}}


class Ingests:
    """The cloud's ingests of one test: each its own journal; `start(instance)` waits for
    its subscriptions."""

    def __init__(self, cfg: CloudMqtt, state: Path) -> None:
        self.cfg, self.state = cfg, state
        self.running: list[tuple[Ingest, Journal]] = []

    def start(self, instance: str, cfg: CloudMqtt | None = None) -> tuple[Ingest, Journal]:
        journal = Journal(journal_path(self.state, instance), instance).open()
        ingest = Ingest(cfg or self.cfg, journal, instance=instance, min_free_bytes=0)
        ingest.start()
        self.running.append((ingest, journal))
        assert ingest.wait_subscribed(10)
        return ingest, journal

    def stop(self, ingest: Ingest) -> None:
        for i, (running, journal) in enumerate(self.running):
            if running is ingest:
                ingest.stop()
                journal.close()
                del self.running[i]
                return

    def close(self) -> None:
        for ingest, _ in list(self.running):
            self.stop(ingest)


@pytest.fixture
def ingests(stack: StackInfo, tmp_path: Path) -> Iterator[Callable[[str], Ingests]]:
    made: list[Ingests] = []

    def make(site: str) -> Ingests:
        made.append(Ingests(cloud_mqtt(stack, tmp_path, site), tmp_path / "state" / "journal"))
        return made[-1]

    yield make
    for m in made:
        m.close()


def _direct_life_ends_with_its_will(creds: MqttCredentials, site: str, now: datetime) -> None:
    """The node on the cloud broker: its will set, its birth retained, then its link lost
    (MQTT 5 disconnect reason 4: the broker publishes the will, as for a dead link)."""
    from paho.mqtt.packettypes import PacketTypes
    from paho.mqtt.reasoncodes import ReasonCode

    client = make_client(f"{site}.{NODE}", creds, clean_start=True)
    client.will_set(status_topic(site, NODE), encode_status("offline", now - timedelta(hours=2)),
                    qos=1, retain=True)
    connect_and_wait(client)
    client.publish(status_topic(site, NODE),
                   encode_status("online", now - timedelta(hours=2), _health("0a", 1.0)),
                   qos=1, retain=True).wait_for_publish(10)
    client.disconnect(reasoncode=ReasonCode(PacketTypes.DISCONNECT, identifier=4))
    client.loop_stop()  # sends that DISCONNECT and closes the link: close_client sends no other
    close_client(client)


def _gateway(creds: MqttCredentials) -> Any:
    client = make_client("gateway", creds, clean_start=True)
    connect_and_wait(client)
    return client


def _relay(gateway: Any, site: str, relay_id: str, messages: list[RelayedMessage]) -> None:
    info = gateway.publish(relay_topic(site, GW), encode_relay(site, GW, relay_id, messages), qos=1)
    info.wait_for_publish(10)
    assert info.is_published()


def _journaled(journal: Journal) -> list[JournalRecord]:
    return journal.read(0, 10_000)


def test_a_node_moved_behind_a_gateway_reads_online_after_the_ingest_subscribes_again(
        add_stack_node: Any, ingests: Callable[[str], Ingests], tmp_path: Path) -> None:
    site = f"mv{tmp_path.name[-6:]}".replace("_", "-").lower()
    node_creds = add_stack_node(site, NODE)
    gateway = _gateway(add_stack_node(site, GW, gateway=True))
    cloud = ingests(site)
    now = datetime.now(UTC)
    try:
        ingest, journal = cloud.start("i0")
        _direct_life_ends_with_its_will(node_creds, site, now)
        wait_for(lambda: [s for _, s in _states(_journaled(journal), site, NODE)]
                 == ["online", "offline"], 10, "the node's direct birth and will journaled")
        # Behind the gateway now: its birth, relayed.
        beat = encode_status("online", now, _health("0b", 5.0))
        _relay(gateway, site, "c0.1", [RelayedMessage(NODE, "status", beat)])
        wait_for(lambda: _states(_journaled(journal), site, NODE)[-1][1] == "online", 10,
                 "the relayed birth journaled")

        # The ingest restarted (cloud run restarts its child; a reconnect subscribes the
        # same way), and an ingest subscribing for the first time (a new session: here of
        # a group of its own, so that it hears the marker below too).
        cloud.stop(ingest)
        ingest, journal = cloud.start("i0")
        _, fresh = cloud.start("i1", replace(cloud.cfg, shared_group=f"{cloud.cfg.shared_group}-new",
                                             client_id=f"{cloud.cfg.client_id}-new"))
        # A relayed reading after the subscriptions: once both journals hold it, whatever
        # the broker handed them on subscribing is journaled before it (MQTT keeps a
        # session's order).
        reading = Reading("pm-a", "air.pm", to_epoch_ns(now), 0, {"pm25": 10.0, "pm10": 12.0})
        data = encode_batch(site, NODE, [reading], batch="c1.0")
        _relay(gateway, site, "c0.2", [RelayedMessage(NODE, "data", data)])
        wait_for(lambda: sum(r.topic.endswith("/relay") for j in (journal, fresh)
                             for r in _journaled(j)) == 3, 10, "the marker relay journaled")

        shown = _states(_journaled(journal) + _journaled(fresh), site, NODE)
        assert shown[-1][1] == "online", f"node status panel reads {shown}"
        assert [s for _, s in shown] == ["online", "offline", "online"]  # live, in order
    finally:
        close_client(gateway)


def test_a_status_cleared_on_the_broker_is_journaled_and_writes_nothing(
        add_stack_node: Any, ingests: Callable[[str], Ingests], tmp_path: Path) -> None:
    """The node's own credentials delete its retained status (an empty retained message, as
    `mosquitto_pub -r -n` sends): the ingest takes it live, the processor writes neither a
    node_status point nor a dead letter for it."""
    site = f"cl{tmp_path.name[-6:]}".replace("_", "-").lower()
    client = make_client(f"{site}.{NODE}", add_stack_node(site, NODE), clean_start=True)
    connect_and_wait(client)
    try:
        _, journal = ingests(site).start("i0")
        client.publish(status_topic(site, NODE), b"", qos=1, retain=True).wait_for_publish(10)
        (rec,) = wait_for(lambda: _journaled(journal), 10, "the deletion journaled")
        assert (rec.topic, rec.payload) == (status_topic(site, NODE), b"")
        assert decode_record(rec, 1000) == (None, [])
    finally:
        close_client(client)


class AckRecorder:
    """Stands in for the ingest's paho client where Mosquitto cannot act: a broker that sends
    a retained message to a subscription that asked for none (Mosquitto honours it)."""

    def __init__(self) -> None:
        self.acked: list[tuple[int, int]] = []

    def ack(self, mid: int, qos: int) -> None:
        self.acked.append((mid, qos))


def test_a_retained_status_the_broker_sends_anyway_is_acknowledged_not_journaled(
        stack: StackInfo, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    from paho.mqtt.client import MQTTMessage

    journal = Journal(journal_path(tmp_path, "i0"), "i0").open()
    recorder = AckRecorder()
    ingest = Ingest(cloud_mqtt(stack, tmp_path, "rt"), journal, min_free_bytes=0,
                    client=recorder)  # type: ignore[arg-type]
    try:
        msg = MQTTMessage(mid=7, topic=b"urbanpulse/v1/rt/n1/status")
        msg.qos, msg.retain, msg.payload = 1, True, encode_status("offline", datetime.now(UTC))
        ingest._on_message(recorder, None, msg)  # type: ignore[arg-type]
        ingest._on_message(recorder, None, msg)  # type: ignore[arg-type]
        assert (ingest.stats.retained_skipped, ingest.stats.received) == (2, 0)
        assert len(ingest_log(caplog, logging.WARNING)) == 1  # logged once
        assert recorder.acked == [(7, 1)] * 2  # else the broker would send it again
        assert ingest._pending == []
        # A data batch is journaled whatever its flag: losing one would cost a reading.
        data = MQTTMessage(mid=8, topic=b"urbanpulse/v1/rt/n1/data")
        data.qos, data.retain, data.payload = 1, True, b"{}"
        ingest._on_message(recorder, None, data)  # type: ignore[arg-type]
        assert (ingest.stats.retained_skipped, ingest.stats.received) == (2, 1)
        assert [p[3] for p in ingest._pending] == ["urbanpulse/v1/rt/n1/data"]
    finally:
        journal.close()


def test_a_status_published_while_the_ingest_is_away_is_journaled_on_its_return(
        add_stack_node: Any, ingests: Callable[[str], Ingests], tmp_path: Path) -> None:
    """A node's retained status published while the ingest's persistent session has no
    connection is queued for it, and Mosquitto forwards it without the retain flag (MQTT 5
    3.3.1.3: the flag is kept only under "Retain As Published", which the ingest does not
    ask for): a real status the node sent meanwhile, journaled, not left out as history."""
    site = f"aw{tmp_path.name[-6:]}".replace("_", "-").lower()
    client = make_client(f"{site}.{NODE}", add_stack_node(site, NODE), clean_start=True)
    connect_and_wait(client)
    cloud = ingests(site)
    try:
        ingest, _ = cloud.start("i0")
        cloud.stop(ingest)
        beat = encode_status("online", datetime.now(UTC), _health("0c", 3.0))
        client.publish(status_topic(site, NODE), beat, qos=1, retain=True).wait_for_publish(10)
        ingest, journal = cloud.start("i0")
        (rec,) = wait_for(lambda: _journaled(journal), 10, "the queued status journaled")
        assert (rec.topic, rec.payload) == (status_topic(site, NODE), beat)
        assert ingest.stats.retained_skipped == 0
    finally:
        close_client(client)
