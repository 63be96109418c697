"""While the cloud does not confirm (ingest down or cut off, the node's own link up), a node
sends its unconfirmed batches again later each time: after ack_timeout_s, then about twice
that, four times... up to ack_timeout_max_s; and as soon as the cloud confirms anything,
within ack_timeout_s again.

The node's publisher runs on the session's real Mosquitto; the test plays the cloud (it
sees every data message and confirms only when told to) and drives the publisher's
resend timing with a FakeClock, stepping it and waiting for the publisher to have looked
at each step before the next.
"""

from __future__ import annotations

import itertools
import math
import threading
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any

import pytest

from edge import publisher as publisher_module
from edge.config import load_config, parse_config
from edge.drivers.base import Sample
from edge.mqtt_client import make_client as make_node_client
from edge.outbox import Outbox
from edge.publisher import REPLACED_WINDOWS, RESEND_JITTER, Publisher
from urbanpulse.clock import FakeClock, to_epoch_ns
from urbanpulse.errors import ConfigError
from urbanpulse.mqtt import close_client, connect_and_wait, make_client
from urbanpulse.stack import StackInfo
from urbanpulse.testing import wait_for
from urbanpulse.wire import ack_topic, data_topic, decode_batch, encode_ack
from urbanpulse.wire.payload import batch_id_of

SITE = "hn-backoff"
NODE = "aq-backoff"
T = 10.0  # ack_timeout_s, in FakeClock seconds
CAP = 8 * T  # ack_timeout_max_s by default
STEP = T / 4
READINGS = 5


class PlayedCloud:
    """Every data message of the node, with the FakeClock time of the step it came in."""

    def __init__(self, stack: StackInfo) -> None:
        self.sent: list[tuple[float, str, list[int]]] = []  # (step time, batch id, seqs)
        self.now = 0.0
        self._lock = threading.Lock()
        self.client = make_client("played-cloud", stack.mqtt("cloud"), clean_start=True)
        self.client.on_message = self._on_message

    def _on_message(self, client: Any, userdata: Any, msg: Any) -> None:
        batch = decode_batch(msg.payload, site=SITE, node=NODE)
        with self._lock:
            self.sent.append((self.now, batch_id_of(msg.payload) or "",
                              [r.seq for r in batch.readings]))

    def start(self) -> None:
        subscribed = threading.Event()
        self.client.on_subscribe = lambda *a: subscribed.set()
        connect_and_wait(self.client)
        self.client.subscribe(data_topic(SITE, NODE), qos=1)
        assert subscribed.wait(10), "subscription not acknowledged"

    def confirm(self, *batches: str) -> None:
        self.client.publish(ack_topic(SITE, NODE), encode_ack(list(batches)),
                            qos=1).wait_for_publish(10)

    def count(self) -> int:
        with self._lock:
            return len(self.sent)

    def seen(self) -> list[tuple[float, str, list[int]]]:
        with self._lock:
            return list(self.sent)

    def stop(self) -> None:
        close_client(self.client)


@pytest.fixture(autouse=True)
def _quick_pumps(monkeypatch: pytest.MonkeyPatch) -> None:
    """The publisher looks at the outbox and the FakeClock every 10 ms, not 100 ms: each of
    the hundreds of clock steps here waits for a look. Only how soon it looks after a step
    changes; what it does at each look is driven by the FakeClock alone."""
    monkeypatch.setattr(publisher_module, "PUMP_INTERVAL_S", 0.01)


@pytest.fixture
def cloud(stack: StackInfo) -> Iterator[PlayedCloud]:
    played = PlayedCloud(stack)
    played.start()
    yield played
    played.stop()


@pytest.fixture
def node(make_node_config: Callable[..., Path], tmp_path: Path
         ) -> Iterator[tuple[Publisher, Outbox, FakeClock]]:
    path = make_node_config(SITE, NODE, '[[sensors]]\nid = "pm-1"\ndriver = "sds011"\n'
                            'port = "/dev/null"\n', delivery="cloud", ack_timeout_s=T)
    config = load_config(path)
    clock = FakeClock(datetime(2026, 11, 29, 6, 0, tzinfo=UTC))
    outbox = Outbox(tmp_path / "outbox.sqlite3").open()
    publisher = Publisher(config, outbox, lambda: make_node_client(f"edge-{SITE}.{NODE}",
                                                                   config.mqtt),
                          clock, lambda: {})
    publisher.start()
    try:
        yield publisher, outbox, clock
    finally:
        publisher.stop()
        outbox.close()
    assert publisher.failure is None


def test_resends_back_off_while_the_cloud_is_silent_and_recover_when_it_answers(
        node: tuple[Publisher, Outbox, FakeClock], cloud: PlayedCloud) -> None:
    publisher, outbox, clock = node
    state = publisher.state
    wait_for(lambda: state.connected, 15, "the publisher to connect")
    others = 0  # batches of other readings, sent once each

    def settle(awaiting: int = 1) -> None:
        """Wait until the publisher has looked at the clock's time, and what it sent then is
        with the broker (so its wait was measured from this time) and with the cloud."""
        now = clock.monotonic()
        wait_for(lambda: (state.pumped_at or 0) >= now and state.inflight == 0
                 and state.awaiting_cloud == awaiting
                 and cloud.count() == 1 + others + state.resent_batches,
                 10, f"the publisher to settle at {now} ({state})", every_s=0.01)

    def step_until_sent(limit: float) -> float | None:
        """Step the clock until the node sends again (its time) or `limit` passed (None)."""
        seen = cloud.count()
        while clock.monotonic() < limit:
            clock.advance(STEP)
            cloud.now = clock.monotonic()
            settle()
            if cloud.count() > seen:
                return cloud.now
        return None

    outbox.append([Sample("pm-1", "air.pm", {"pm25": 12.0, "pm10": 20.0}, clock.now())
                   for _ in range(READINGS)], to_epoch_ns(clock.now()))
    clock.advance(1.0)  # past the node's batch_max_delay_s: the batch is due
    start = cloud.now = clock.monotonic()
    settle()

    # The cloud silent for 20 x ack_timeout_s: the node's sends, each with every reading.
    sends = [start]
    while (sent_at := step_until_sent(start + 20 * T)) is not None:
        sends.append(sent_at)
    assert all(seqs == list(range(READINGS)) for _, _, seqs in cloud.sent)
    gaps = [round(b - a, 6) for a, b in itertools.pairwise(sends)]
    assert gaps[0] == T, gaps
    for tries, gap in enumerate(gaps[1:], start=1):
        longest = min(CAP, T * 2 ** tries)
        shortest = max(T, longest * RESEND_JITTER[0])
        assert shortest <= gap < longest + STEP, (tries, gaps)
    # Every ack_timeout_s that would be 20 sends again; doubling up to 8 x: 4 or 5.
    assert 4 <= len(gaps) <= 5, gaps
    # What `edge status` shows of the backoff: the wait now set (after 4 or 5 sends, the
    # longest), and when it ends.
    assert state.resend_wait_s is not None
    assert CAP * RESEND_JITTER[0] - 0.1 <= state.resend_wait_s <= CAP
    assert state.next_resend_in_s is not None
    assert 0 < state.next_resend_in_s <= state.resend_wait_s

    # The cloud is back: it confirms a batch of new readings, not the waiting ones (the
    # broker may have dropped their copies). The node sends those again within
    # ack_timeout_s, not after its long wait.
    outbox.append([Sample("pm-1", "air.pm", {"pm25": 12.0, "pm10": 20.0}, clock.now())],
                  to_epoch_ns(clock.now()))
    clock.advance(STEP)  # past the node's batch_max_delay_s
    others = 1
    settle(awaiting=2)
    cloud.now = clock.monotonic()
    (new_batch,) = [batch for _, batch, seqs in cloud.seen() if seqs == [READINGS]]
    cloud.confirm(new_batch)
    wait_for(lambda: state.cloud_acks == 1 and state.awaiting_cloud == 1, 10,
             "the node to get the cloud's ack")
    answered = clock.monotonic()
    resent = step_until_sent(answered + T)
    assert resent is not None, (answered, sends)
    assert resent - answered <= T, (answered, sends)
    # ... but its tries stay: the wait after that is the longest again, not 2 x T (a cloud
    # still far behind the broker's queue does not get the window again every few T).
    again = step_until_sent(resent + CAP + STEP)
    assert again is not None, resent
    assert CAP * RESEND_JITTER[0] <= again - resent, (resent, again)

    # The cloud confirms what the node sent last: every reading leaves the outbox.
    cloud.confirm(cloud.sent[-1][1])
    wait_for(lambda: state.awaiting_cloud == 0 and outbox.stats().depth == 0, 10,
             f"every reading confirmed ({state})")
    assert state.readings_acked == READINGS + 1
    assert state.acked_by_replaced_copy == 0
    print(f"\nresends with the cloud silent, ack_timeout_s {T:g}: at "
          f"{[round(s - start, 1) for s in sends[1:]]} (every {T:g} s before the backoff: "
          f"20 sends); after the cloud's first ack: {resent - answered:g} s, "
          f"then {again - resent:g} s")


def test_the_longest_resend_wait_is_a_validated_setting() -> None:
    def mqtt(**values: Any) -> Any:
        return parse_config({
            "node": {"id": "n1", "site": "s1"},
            "mqtt": {"host": "127.0.0.1", "password_file": "/p", "tls": False, **values},
            "sensors": [{"id": "pm-1", "driver": "sds011", "port": "/dev/null"}]}).mqtt

    assert mqtt().ack_timeout_s == 120.0
    assert mqtt().resend_wait_max_s == 960.0
    assert mqtt(ack_timeout_s=5).resend_wait_max_s == 40.0
    assert mqtt(ack_timeout_max_s=300).resend_wait_max_s == 300.0
    assert mqtt(ack_timeout_s=30, ack_timeout_max_s=30).resend_wait_max_s == 30.0  # no backoff
    with pytest.raises(ConfigError, match=r"mqtt\.ack_timeout_max_s: must be >= mqtt\.ack_timeout_s \(120\)"):
        mqtt(ack_timeout_max_s=60)
    with pytest.raises(ConfigError, match=r"mqtt\.ack_timeout_max_s: must be float"):
        mqtt(ack_timeout_max_s="10m")
    with pytest.raises(ConfigError, match=r"mqtt\.ack_timeout_max_s: must be float, got bool"):
        mqtt(ack_timeout_max_s=True)
    # TOML has nan and inf. A nan wait is never over (no comparison with it is true) and an
    # infinite one neither: the batch would never be sent again. Before, both were taken.
    for bad in (math.nan, math.inf):
        with pytest.raises(ConfigError, match=r"mqtt\.ack_timeout_max_s: must be a finite"):
            mqtt(ack_timeout_max_s=bad)
        with pytest.raises(ConfigError, match=r"mqtt\.ack_timeout_s: must be a finite"):
            mqtt(ack_timeout_s=bad)
    with pytest.raises(ConfigError, match=r"mqtt\.ack_timeout_s: must be > 0"):
        mqtt(ack_timeout_s=0)


def test_acks_of_new_batches_do_not_bring_back_a_resend_every_ack_timeout(
        node: tuple[Publisher, Outbox, FakeClock], cloud: PlayedCloud) -> None:
    """The cloud confirms every batch of new readings but never the first one (the broker
    dropped its copies, or the cloud is far behind): its acks are no sign that the first
    batch got through, and must not cut that batch's wait back to ack_timeout_s each time.
    Before, every such ack reset it: the first readings went out every 1.25-1.5 x T again,
    18-19 times in 20 T, nearly as often as with no backoff at all."""
    publisher, outbox, clock = node
    state = publisher.state
    wait_for(lambda: state.connected, 15, "the publisher to connect")
    confirmed: set[str] = set()

    def step() -> None:
        """One more reading, the clock a step on; once the node has sent what is due, the
        cloud confirms every batch it has not confirmed yet, except those with reading 0."""
        outbox.append([Sample("pm-1", "air.pm", {"pm25": 12.0, "pm10": 20.0}, clock.now())],
                      to_epoch_ns(clock.now()))
        clock.advance(T / 2)
        now = cloud.now = clock.monotonic()
        wait_for(lambda: (state.pumped_at or 0) >= now and state.inflight == 0
                 and cloud.count() == state.sent_batches,
                 10, f"the publisher to settle at {now} ({state})", every_s=0.01)
        new = [batch for _, batch, seqs in cloud.seen() if 0 not in seqs and batch not in confirmed]
        if new:
            acks = state.cloud_acks
            cloud.confirm(*new)
            confirmed.update(new)
            wait_for(lambda: state.cloud_acks > acks, 10, "the node to get the cloud's ack")

    outbox.append([Sample("pm-1", "air.pm", {"pm25": 12.0, "pm10": 20.0}, clock.now())
                   for _ in range(READINGS)], to_epoch_ns(clock.now()))
    start = clock.monotonic()
    while clock.monotonic() < start + 20 * T:
        step()

    first_sends = [at - start for at, _, seqs in cloud.seen() if 0 in seqs]
    assert len(confirmed) >= 30, confirmed  # the cloud kept answering throughout
    # Silent, the cloud would have had 5-6 sends of it (the first test); the cloud's acks
    # may bring one send forward once per ack_timeout_max_s (2 here): at most 8 in all.
    assert 4 <= len(first_sends) <= 8, first_sends
    print(f"\nthe unconfirmed readings sent at {first_sends} while the cloud confirmed "
          f"{len(confirmed)} other batches")
    # Confirmed at last, so that the publisher's stop does not wait 5 s for it in vain.
    cloud.confirm(*{batch for _, batch, seqs in cloud.seen() if 0 in seqs})
    wait_for(lambda: state.awaiting_cloud == 0, 10, "the node to have nothing awaiting the cloud")


def test_resend_counts_of_rows_evicted_meanwhile_are_not_kept(
        make_node_config: Callable[..., Path], tmp_path: Path) -> None:
    """A long central outage with a full outbox: the oldest rows are evicted, among them rows
    of batches still waiting for the cloud. Such a row is never sent again, so a count of
    its tries kept until it is would be kept for ever: one per evicted reading, for as long
    as the outage lasts (150 MB a day at 20 readings a second). The counts kept stay within
    what the window holds (20 x max_inflight batches). The broker is the session's; no one
    confirms; the counts are read from the publisher's own map, which nothing else shows."""
    path = make_node_config(SITE, "aq-evicting", '[[sensors]]\nid = "pm-1"\ndriver = "sds011"\n'
                            'port = "/dev/null"\n', delivery="cloud", ack_timeout_s=T,
                            batch_max_readings=5, max_inflight=1)
    config = load_config(path)
    window_rows = 20 * config.outbox.max_inflight * config.outbox.batch_max_readings
    clock = FakeClock(datetime(2026, 11, 29, 6, 0, tzinfo=UTC))
    outbox = Outbox(tmp_path / "outbox.sqlite3", max_rows=10).open()
    publisher = Publisher(config, outbox, lambda: make_node_client(f"edge-{SITE}.aq-evicting",
                                                                   config.mqtt),
                          clock, lambda: {})
    state = publisher.state

    def settled_at(now: float) -> bool:
        return (state.pumped_at or 0) >= now and state.inflight == 0

    publisher.start()
    try:
        wait_for(lambda: state.connected, 15, "the publisher to connect")
        most = most_replaced = 0
        for _ in range(40):
            outbox.append([Sample("pm-1", "air.pm", {"pm25": 12.0, "pm10": 20.0}, clock.now())
                           for _ in range(5)], to_epoch_ns(clock.now()))
            clock.advance(T / 2)
            wait_for(partial(settled_at, clock.monotonic()), 10,
                     f"the publisher to settle at {clock.monotonic()} ({state})", every_s=0.01)
            most = max(most, len(publisher._tries))
            most_replaced = max(most_replaced, len(publisher._replaced))
        assert outbox.stats().evicted >= 150
        assert state.resent_batches >= 20  # rows were waiting for their resend throughout
        assert most <= window_rows, (most, window_rows)
        # The ids of replaced copies, kept for their late acks, are bounded the same way.
        assert most_replaced == REPLACED_WINDOWS * config.outbox.max_inflight
    finally:
        publisher.stop()
        outbox.close()
    assert publisher.failure is None


def test_a_late_ack_for_a_replaced_copy_confirms_its_readings(
        node: tuple[Publisher, Outbox, FakeClock], cloud: PlayedCloud) -> None:
    """The node sent readings 0-4 as batch A, the cloud stayed silent, so after
    ack_timeout_s they went again as batch B with reading 5. Then the cloud's ack for A
    arrives (late, or the cloud got A only after a heal). Before, it found nothing: readings
    0-4 stayed in the outbox and went out again with every resend of B until B's own ack.
    Now A's ack confirms them, and B's later resends carry reading 5 only."""
    publisher, outbox, clock = node
    state = publisher.state
    wait_for(lambda: state.connected, 15, "the publisher to connect")

    def pm() -> Sample:
        return Sample("pm-1", "air.pm", {"pm25": 12.0, "pm10": 20.0}, clock.now())

    def settle() -> None:
        now = clock.monotonic()
        wait_for(lambda: (state.pumped_at or 0) >= now and state.inflight == 0
                 and cloud.count() == state.sent_batches,
                 10, f"the publisher to settle at {now}", every_s=0.01)

    outbox.append([pm() for _ in range(READINGS)], to_epoch_ns(clock.now()))
    clock.advance(1.0)
    settle()
    outbox.append([pm()], to_epoch_ns(clock.now()))  # not due before the clock moves on
    clock.advance(T)
    settle()
    (_, batch_a, seqs_a), (_, batch_b, seqs_b) = cloud.seen()
    assert (seqs_a, seqs_b) == (list(range(READINGS)), list(range(READINGS + 1)))
    assert state.awaiting_cloud == 1

    cloud.confirm(batch_a)
    wait_for(lambda: state.cloud_acks == 1, 10, "the node to get the cloud's ack for A")
    assert outbox.stats().depth == 1
    assert state.acked_by_replaced_copy == state.readings_acked == READINGS
    assert state.awaiting_cloud == 1  # B, for reading 5

    acked_at = clock.monotonic()
    while cloud.count() == 2:  # B's wait, about 2 x T
        clock.advance(STEP)
        settle()
        assert clock.monotonic() < acked_at + 3 * T, "B was not sent again"
    assert cloud.seen()[-1][2] == [READINGS]  # reading 5 alone
    cloud.confirm(batch_b)  # B's own ack, late as well: confirms reading 5, nothing twice
    wait_for(lambda: outbox.stats().depth == 0 and state.awaiting_cloud == 0, 10,
             f"reading 5 confirmed ({state})")
    assert state.readings_acked == READINGS + 1
    assert publisher._replaced == {}  # A's and B's remembered ids, used up by their acks
