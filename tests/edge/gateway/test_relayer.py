"""The site gateway's logic on a fake clock: when relays are cut, what they carry, what the
cloud's acks give back to the nodes, and the bounds on what it holds."""

from __future__ import annotations

import logging
import random
from datetime import UTC, datetime

import pytest

from edge.gateway.relayer import REMEMBERED_WINDOWS, Relayer, RelayLimits, Taken
from urbanpulse.clock import FakeClock
from urbanpulse.wire.payload import MAX_PAYLOAD_BYTES, decode_ack
from urbanpulse.wire.relay import (
    MAX_RELAY_BYTES,
    RELAY_OVERHEAD_BYTES,
    RelayedMessage,
    decode_relay,
    relay_item_bytes,
)

SITE, GW = "hn-test", "gw-1"


def data(node: str, batch: str | None, filler: int = 20) -> RelayedMessage:
    head = f'{{"v":1,"site":"{SITE}","node":"{node}"'
    if batch is not None:
        head += f',"batch":"{batch}"'
    return RelayedMessage(node, "data", (head + f',"readings":[],"x":"{"a" * filler}"}}').encode())


def status(node: str, state: str = "online") -> RelayedMessage:
    return RelayedMessage(node, "status",
                          f'{{"v":1,"state":"{state}","ts":"2026-11-30T06:00:00.000000Z"}}'.encode())


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(datetime(2026, 11, 30, 6, 0, tzinfo=UTC))


def relayer(clock: FakeClock, **limits: float) -> Relayer:
    return Relayer(SITE, GW, RelayLimits(**limits), clock, boot="5e1d0c7a")  # type: ignore[arg-type]


def test_a_relay_is_cut_when_its_oldest_message_has_waited_the_delay(clock: FakeClock) -> None:
    r = relayer(clock, max_delay_s=1.0)
    sent = [data("ward-a", "ab.1"), status("door-2"), data("ward-a", "ab.2")]
    for i, m in enumerate(sent):
        assert r.offer(m) is Taken.TAKEN
        clock.advance(0.45 if i == 0 else 0.5)  # 0.45, then 0.95 since the first
        if i < 2:
            assert r.cut() == []
    # 1.45 s after the first: due since 1.0 s, not before (the pump asks next_due)
    assert r.next_due() == pytest.approx(clock.monotonic() - 0.45)
    (relay,) = r.cut()
    assert relay.batch == "5e1d0c7a.1"
    assert relay.messages == 3
    parsed = decode_relay(relay.payload, site=SITE, gateway=GW)
    assert parsed.batch == relay.batch
    assert parsed.rejected == []
    assert parsed.messages == sent  # in the order taken, exactly as the nodes sent them
    assert r.cut() == []
    assert r.next_due() is None
    assert r.inflight == 1
    r.offer(status("door-2"))
    clock.advance(1.0)
    assert [x.batch for x in r.cut()] == ["5e1d0c7a.2"]  # numbered <boot>.<counter>


def test_a_relay_is_cut_at_once_when_the_next_message_would_pass_the_byte_limit(
        clock: FakeClock) -> None:
    limit = 20_000
    r = relayer(clock, max_bytes=limit, max_waiting_bytes=10 * limit)
    messages = [data(f"n{i % 7}", f"ab.{i}", filler=900) for i in range(60)]
    item = relay_item_bytes(messages[0])
    per_relay = (limit - RELAY_OVERHEAD_BYTES) // item  # items are all of one size here
    for m in messages:
        assert r.offer(m) is Taken.TAKEN
    full = r.cut()  # no time passed: only the full relays go
    assert [x.messages for x in full] == [per_relay] * (60 // per_relay)
    for x in full:
        assert len(x.payload) <= limit < len(x.payload) + item  # one more would not fit
    clock.advance(1.0)
    rest = r.cut()
    assert [x.messages for x in rest] == [60 % per_relay]
    got = [m for x in full + rest for m in decode_relay(x.payload, site=SITE, gateway=GW).messages]
    assert got == messages


def test_a_relay_is_cut_at_once_when_it_holds_max_messages(clock: FakeClock) -> None:
    r = relayer(clock, max_messages=3)
    for i in range(7):
        r.offer(status(f"n{i}"))
    assert [x.messages for x in r.cut()] == [3, 3]
    clock.advance(1.0)
    assert [x.messages for x in r.cut()] == [1]


def test_relays_of_any_payloads_stay_within_the_limits_and_carry_every_message(
        clock: FakeClock) -> None:
    """Random sizes, text and binary payloads (base64 in the relay: a third larger), with
    the limits the contract sets: every relay encodes within them, nothing is lost or
    reordered."""
    rng = random.Random(16)
    limit = 64 * 1024
    r = relayer(clock, max_bytes=limit, max_messages=50, max_inflight=1000,
                max_waiting_bytes=100 * limit)
    sent: list[RelayedMessage] = []
    for i in range(2000):
        size = rng.choice((10, 200, 3000, 20_000, 40_000))
        if rng.random() < 0.3:
            m = RelayedMessage(f"n{i % 13}", "data", rng.randbytes(size))
        else:
            m = data(f"n{i % 13}", f"ab.{i}", filler=size)
        if r.offer(m) is Taken.TAKEN:
            sent.append(m)
        clock.advance(rng.choice((0.0, 0.0, 0.3)))
        for x in r.cut():
            assert len(x.payload) <= limit
            assert x.messages <= 50
            sent_so_far = decode_relay(x.payload, site=SITE, gateway=GW)
            assert sent_so_far.rejected == []
            assert sent_so_far.messages == sent[:x.messages]
            del sent[:x.messages]
    clock.advance(1.0)
    rest = r.cut()
    assert sum(x.messages for x in rest) == len(sent)
    assert r.stats.too_large == 0
    assert r.stats.refused == 0


def test_the_clouds_ack_of_a_relay_acks_each_nodes_batches_it_carried(clock: FakeClock) -> None:
    r = relayer(clock)
    for m in (data("ward-a", "aa.1"), data("door-2", "bb.7"), status("door-2"),
              data("ward-a", "aa.2"), data("old-node", None)):  # no batch id: nothing to ack
        r.offer(m)
    clock.advance(1.0)
    (relay,) = r.cut()
    r.published(relay.batch, accepted=True)
    acks = r.acked([relay.batch])
    assert {a.node: a.batches for a in acks} == {"ward-a": ("aa.1", "aa.2"), "door-2": ("bb.7",)}
    for a in acks:
        assert decode_ack(a.payload) == list(a.batches)
    assert r.inflight == 0
    assert r.stats.relays_acked == 1
    assert r.stats.node_acks == 3
    # acked twice (a redelivered ack), or a relay of another run: nothing more to give
    assert r.acked([relay.batch, "0123.9"]) == []
    assert r.stats.unknown_acks == 2


def test_no_more_than_max_inflight_relays_and_then_no_more_than_the_waiting_bytes(
        clock: FakeClock) -> None:
    limit = 20_000
    r = relayer(clock, max_bytes=limit, max_inflight=2, max_waiting_bytes=3 * limit)
    m = data("ward-a", "aa.1", filler=4000)
    size = relay_item_bytes(m)
    taken = 0
    while r.offer(m) is Taken.TAKEN:
        taken += 1
        relays = r.cut()
        assert r.inflight <= 2
        for x in relays:
            r.published(x.batch, accepted=True)
    # 2 relays in flight, then what the waiting bound holds
    assert r.inflight == 2
    assert r.waiting_bytes <= 3 * limit < r.waiting_bytes + size
    assert r.stats.refused == 1
    assert r.offer(m) is Taken.REFUSED
    assert r.stats.refused == 2
    # the cloud acknowledges one: one more relay goes, room for more messages
    (first, *_) = list(r._inflight)
    r.acked([first])
    assert len(r.cut()) == 1
    assert r.inflight == 2
    assert r.offer(m) is Taken.TAKEN


def test_the_waiting_bound_is_logged_once_per_episode(clock: FakeClock,
                                                      caplog: pytest.LogCaptureFixture) -> None:
    r = relayer(clock, max_bytes=20_000, max_inflight=1, max_waiting_bytes=20_000)
    m = data("ward-a", "aa.1", filler=4000)
    with caplog.at_level(logging.WARNING, "urbanpulse.edge.gateway"):
        while r.offer(m) is Taken.TAKEN:
            pass
        for _ in range(5):
            assert r.offer(m) is Taken.REFUSED
    assert sum("not taken" in rec.getMessage() for rec in caplog.records) == 1


def test_a_relay_the_broker_took_and_the_cloud_never_acked_is_dropped_after_the_timeout(
        clock: FakeClock) -> None:
    r = relayer(clock, max_inflight=2, ack_timeout_s=60.0)
    r.offer(data("ward-a", "aa.1"))
    clock.advance(1.0)
    (taken,) = r.cut()
    r.offer(data("ward-a", "aa.2"))
    clock.advance(1.0)
    (_not_taken,) = r.cut()  # the broker away: no PUBACK
    r.published(taken.batch, accepted=True)
    clock.advance(59.0)
    assert r.expire() == []
    clock.advance(1.0)
    assert r.expire() == [taken.batch]
    # The one the broker never took holds its slot for as long as it takes (the MQTT
    # client sends it again at each reconnect): memory stays bounded meanwhile.
    clock.advance(10_000.0)
    assert r.expire() == []
    assert r.inflight == 1
    assert r.stats.relays_expired == 1
    # A late ack of the dropped relay still confirms its node's batch.
    (ack,) = r.acked([taken.batch])
    assert ack.node == "ward-a"
    assert ack.batches == ("aa.1",)
    assert r.stats.late_acks == 1


def test_dropped_relays_are_remembered_for_late_acks_within_a_bound(clock: FakeClock) -> None:
    r = relayer(clock, max_inflight=1, ack_timeout_s=1.0)
    batches = []
    for i in range(REMEMBERED_WINDOWS + 3):
        r.offer(data("ward-a", f"aa.{i}"))
        clock.advance(1.0)
        (x,) = r.cut()
        r.published(x.batch, accepted=True)
        clock.advance(1.0)
        assert r.expire() == [x.batch]
        batches.append(x.batch)
    assert r.acked(batches[:3]) == []  # the oldest forgotten
    assert len(r.acked(batches[3:])) == REMEMBERED_WINDOWS


def test_a_relay_the_broker_refuses_is_dropped_at_once(clock: FakeClock) -> None:
    r = relayer(clock, max_inflight=1)
    r.offer(data("ward-a", "aa.1"))
    clock.advance(1.0)
    (x,) = r.cut()
    r.offer(data("ward-a", "aa.2"))
    clock.advance(1.0)
    assert r.cut() == []  # the one slot is taken
    r.published(x.batch, accepted=False, reason="Not authorized")
    assert r.stats.relays_refused == 1
    assert r.last_refusal == "Not authorized"
    assert [y.messages for y in r.cut()] == [1]


def test_a_message_over_the_contracts_limit_is_relayed_if_a_relay_can_carry_it(
        clock: FakeClock, caplog: pytest.LogCaptureFixture) -> None:
    r = relayer(clock)
    big = data("ward-a", "aa.1", filler=MAX_PAYLOAD_BYTES + 10)
    assert r.offer(big) is Taken.TAKEN
    huge = data("ward-b", "bb.1", filler=MAX_RELAY_BYTES)
    with caplog.at_level(logging.ERROR, "urbanpulse.edge.gateway"):
        assert r.offer(huge) is Taken.TOO_LARGE
    (rec,) = caplog.records
    assert rec.node == "ward-b"
    assert rec.bytes == len(huge.payload)
    clock.advance(1.0)
    (x,) = r.cut()
    parsed = decode_relay(x.payload, site=SITE, gateway=GW)
    # the cloud takes it as the node's message, and dead-letters it as too large
    assert [j.code for j in parsed.rejected] == ["too_large"]
    assert parsed.messages == []
    assert r.stats.oversized_relayed == 1
    assert r.stats.too_large == 1
