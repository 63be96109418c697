"""The site gateway's logic, without MQTT: node messages in, relays out; cloud acks in, node
acks out. One thread calls it (the gateway's pump); its clock is injected.

- A node message waits in the open relay. The open relay is cut when its oldest message
  has waited `max_delay_s`, or as soon as the next message would take it past
  `max_bytes` (each item's `relay_item_bytes` plus RELAY_OVERHEAD_BYTES) or
  `max_messages`: that message starts the next relay.
- A relay cut is in flight until the cloud acknowledges its batch id. At most
  `max_inflight` relays are; further cut relays wait, and with them their messages.
- Waiting messages are bounded by `max_waiting_bytes`: past it a node message is not
  taken (counted as refused). Nothing is lost: a node behind a gateway runs with
  `delivery = "cloud"`, so it keeps each batch in its outbox until the cloud's ack comes
  back through the gateway, and sends it again after its `ack_timeout_s` otherwise.
- The cloud's ack of a relay gives the node acks to publish on the site broker: per node,
  the batch ids (`batch_id_of`) of the data messages the relay carried.
- A relay the cloud broker took (PUBACK) but the cloud did not acknowledge within
  `ack_timeout_s` is dropped, not published again: its nodes send their batches again
  (docs/gateway.md, "Why a relay is not published again"). Its node acks are remembered
  for a while (`REMEMBERED_WINDOWS` x `max_inflight` relays) so that a late cloud ack still
  confirms them. A relay the broker has not taken yet is never dropped for time: the MQTT
  client sends it again at each reconnect, and it holds its slot meanwhile (which is what
  bounds the memory while the cloud broker is away).
"""

from __future__ import annotations

import enum
import logging
import secrets
from collections import OrderedDict, deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from edge.errors import GatewayError
from urbanpulse.clock import Clock
from urbanpulse.wire.payload import MAX_PAYLOAD_BYTES, WireError, batch_id_of, encode_ack
from urbanpulse.wire.relay import (
    MAX_RELAY_BYTES,
    MAX_RELAY_MESSAGES,
    RELAY_OVERHEAD_BYTES,
    RelayedMessage,
    encode_relay,
    relay_item_bytes,
)

log = logging.getLogger("urbanpulse.edge.gateway")

# Relays dropped for want of a cloud ack whose node acks are kept, times max_inflight:
# a late ack (the cloud far behind, not down) still confirms their batches to the nodes.
REMEMBERED_WINDOWS = 4


@dataclass(frozen=True, slots=True)
class RelayLimits:
    max_delay_s: float = 1.0
    max_bytes: int = MAX_RELAY_BYTES
    max_messages: int = MAX_RELAY_MESSAGES
    max_inflight: int = 10
    max_waiting_bytes: int = 4 * MAX_RELAY_BYTES
    ack_timeout_s: float = 120.0

    def __post_init__(self) -> None:
        # The config validates these with the key's name (edge/gateway/config.py); this
        # guards the logic's own assumptions for any other caller.
        if not (self.max_delay_s > 0 and RELAY_OVERHEAD_BYTES < self.max_bytes <= MAX_RELAY_BYTES
                and 0 < self.max_messages <= MAX_RELAY_MESSAGES and self.max_inflight > 0
                and self.max_waiting_bytes >= self.max_bytes and self.ack_timeout_s > 0):
            raise ValueError(f"relay limits out of range: {self}")


@dataclass(frozen=True, slots=True)
class Relay:
    """A relay to publish on the gateway's relay topic."""

    batch: str
    payload: bytes
    messages: int


@dataclass(frozen=True, slots=True)
class NodeAck:
    """An ack to publish on `ack_topic(site, node)` of the site broker."""

    node: str
    batches: tuple[str, ...]
    payload: bytes


class Taken(enum.Enum):
    TAKEN = "taken"
    REFUSED = "refused"  # memory full: the node sends it again after its ack_timeout_s
    TOO_LARGE = "too_large"  # no relay can carry it: dropped, logged


@dataclass
class RelayStats:
    messages_taken: int = 0
    refused: int = 0  # node messages not taken: max_waiting_bytes reached
    too_large: int = 0  # node messages no relay can carry (dropped, logged)
    oversized_relayed: int = 0  # over MAX_PAYLOAD_BYTES, relayed: the cloud dead-letters them
    relays_sent: int = 0  # relays cut and handed to the cloud broker
    messages_relayed: int = 0  # node messages in them
    relays_acked: int = 0
    relays_expired: int = 0  # the broker took them, the cloud never acknowledged them in time
    relays_refused: int = 0  # the broker refused them (PUBACK with a failure reason)
    late_acks: int = 0  # acks of expired relays, still passed on to their nodes
    unknown_acks: int = 0  # acks of relays not known (another run of the gateway, long gone)
    node_acks: int = 0  # node batch ids acknowledged to their nodes


@dataclass(slots=True)
class _Open:
    """Messages waiting for their relay."""

    items: list[RelayedMessage] = field(default_factory=list)
    size: int = RELAY_OVERHEAD_BYTES
    first_at: float = 0.0  # clock.monotonic() when its first message was taken


@dataclass(slots=True)
class _InFlight:
    messages: int
    acks: tuple[NodeAck, ...]
    taken_at: float | None = None  # clock.monotonic() of the broker's PUBACK


class Relayer:
    def __init__(self, site: str, gateway: str, limits: RelayLimits, clock: Clock,
                 boot: str | None = None) -> None:
        self.site = site
        self.gateway = gateway
        self.limits = limits
        self.clock = clock
        self.boot = boot if boot is not None else secrets.token_hex(8)
        self.stats = RelayStats()
        self._counter = 0
        self._open = _Open()
        self._full: deque[_Open] = deque()  # cut by size or count, waiting for a slot
        self._waiting_bytes = 0  # of the messages in _open and _full, as relay items
        self._inflight: dict[str, _InFlight] = {}  # batch id -> relay, until the cloud's ack
        self._expired: OrderedDict[str, tuple[NodeAck, ...]] = OrderedDict()
        self._refusing = False  # node messages refused since the last one taken
        self.last_refusal: str | None = None  # the cloud broker's reason, e.g. "Not authorized"

    # -- node messages in ---------------------------------------------------------------

    def offer(self, message: RelayedMessage) -> Taken:
        """Take a node message for a relay, or say why not."""
        size = relay_item_bytes(message)
        if RELAY_OVERHEAD_BYTES + size > self.limits.max_bytes:
            self.stats.too_large += 1
            log.error("a node message no relay can carry: dropped (the node's own message "
                      "would be refused by a broker too)",
                      extra={"node": message.node, "stream": message.stream,
                             "bytes": len(message.payload), "relay_max_bytes": self.limits.max_bytes})
            return Taken.TOO_LARGE
        if self._waiting_bytes + size > self.limits.max_waiting_bytes:
            if not self._refusing:
                log.warning("waiting messages at their bound: node messages not taken (the "
                            "nodes keep them and send them again)",
                            extra={"waiting_bytes": self._waiting_bytes,
                                   "inflight": len(self._inflight)})
            self._refusing = True  # logged once per episode
            self.stats.refused += 1
            return Taken.REFUSED
        self._refusing = False
        if len(message.payload) > MAX_PAYLOAD_BYTES:
            self.stats.oversized_relayed += 1
        now = self.clock.monotonic()
        group = self._open
        if group.items and (group.size + size > self.limits.max_bytes
                            or len(group.items) >= self.limits.max_messages):
            self._full.append(group)
            group = self._open = _Open()
        if not group.items:
            group.first_at = now
        group.items.append(message)
        group.size += size
        self._waiting_bytes += size
        self.stats.messages_taken += 1
        return Taken.TAKEN

    # -- relays out ---------------------------------------------------------------------

    def cut(self, flush: bool = False) -> list[Relay]:
        """The relays due now (`flush`: all that wait, at a clean stop), as many as the
        in-flight bound lets go; each is in flight from now until the cloud acknowledges it."""
        relays: list[Relay] = []
        now = self.clock.monotonic()
        while len(self._inflight) < self.limits.max_inflight:
            if self._full:
                group = self._full.popleft()
            elif self._open.items and (flush or now - self._open.first_at >= self.limits.max_delay_s):
                group, self._open = self._open, _Open()
            else:
                break
            relays.append(self._relay(group))
        return relays

    def _relay(self, group: _Open) -> Relay:
        self._counter += 1
        batch = f"{self.boot}.{self._counter}"
        try:
            payload = encode_relay(self.site, self.gateway, batch, group.items)
        except WireError as exc:  # the cut keeps within the contract: a bug if not
            raise GatewayError(f"relay {batch} of {len(group.items)} messages does not encode: "
                               f"{exc}") from exc
        self._waiting_bytes -= group.size - RELAY_OVERHEAD_BYTES
        per_node: dict[str, list[str]] = {}
        for m in group.items:
            if m.stream == "data":
                node_batch = batch_id_of(m.payload)
                if node_batch is not None:
                    per_node.setdefault(m.node, []).append(node_batch)
        acks = tuple(NodeAck(node, tuple(ids), encode_ack(ids)) for node, ids in per_node.items())
        self._inflight[batch] = _InFlight(len(group.items), acks)
        self.stats.relays_sent += 1
        self.stats.messages_relayed += len(group.items)
        return Relay(batch, payload, len(group.items))

    def published(self, batch: str, accepted: bool, reason: str = "") -> None:
        """The cloud broker's PUBACK of a relay: taken (the ack timer starts) or refused (the
        relay is dropped: its nodes send their batches again)."""
        relay = self._inflight.get(batch)
        if relay is None:
            return
        if accepted:
            relay.taken_at = self.clock.monotonic()
            return
        del self._inflight[batch]
        self.stats.relays_refused += 1
        self.last_refusal = reason
        log.error("the cloud broker refused a relay; its nodes send their batches again",
                  extra={"batch": batch, "reason": reason, "messages": relay.messages})

    def expire(self) -> list[str]:
        """Drops the relays the broker took and the cloud did not acknowledge within
        ack_timeout_s; returns their batch ids."""
        now = self.clock.monotonic()
        gone = [b for b, r in self._inflight.items()
                if r.taken_at is not None and now - r.taken_at >= self.limits.ack_timeout_s]
        for batch in gone:
            self._remember(batch, self._inflight.pop(batch).acks)
        if gone:
            self.stats.relays_expired += len(gone)
            log.warning("no cloud ack in time: relays dropped, their nodes send their batches "
                        "again", extra={"relays": len(gone)})
        return gone

    def _remember(self, batch: str, acks: tuple[NodeAck, ...]) -> None:
        self._expired[batch] = acks
        while len(self._expired) > REMEMBERED_WINDOWS * self.limits.max_inflight:
            self._expired.popitem(last=False)

    # -- cloud acks in, node acks out ---------------------------------------------------

    def acked(self, batches: Iterable[str]) -> list[NodeAck]:
        """The cloud journaled these relays: the acks to give their nodes."""
        out: list[NodeAck] = []
        for batch in batches:
            relay = self._inflight.pop(batch, None)
            if relay is not None:
                self.stats.relays_acked += 1
                acks = relay.acks
            elif batch in self._expired:
                self.stats.late_acks += 1
                acks = self._expired.pop(batch)
            else:
                self.stats.unknown_acks += 1
                continue
            out.extend(acks)
            self.stats.node_acks += sum(len(a.batches) for a in acks)
        return out

    # -- for the pump and the heartbeat ------------------------------------------------

    def next_due(self) -> float | None:
        """clock.monotonic() at which cut() or expire() may have something to do, or None
        when only a message or an ack can bring work."""
        times: list[float] = []
        if len(self._inflight) < self.limits.max_inflight:
            if self._full:
                return self.clock.monotonic()
            if self._open.items:
                times.append(self._open.first_at + self.limits.max_delay_s)
        times.extend(r.taken_at + self.limits.ack_timeout_s
                     for r in self._inflight.values() if r.taken_at is not None)
        return min(times, default=None)

    @property
    def inflight(self) -> int:
        return len(self._inflight)

    @property
    def waiting_bytes(self) -> int:
        return self._waiting_bytes

    @property
    def waiting_messages(self) -> int:
        return len(self._open.items) + sum(len(g.items) for g in self._full)

    def health(self) -> dict[str, Any]:
        s = self.stats
        return {"relays_sent": s.relays_sent, "relays_in_flight": self.inflight,
                "relays_acked": s.relays_acked, "relays_expired": s.relays_expired,
                "relays_refused": s.relays_refused, "messages_relayed": s.messages_relayed,
                "messages_waiting": self.waiting_messages, "waiting_bytes": self.waiting_bytes,
                "refused": s.refused, "too_large": s.too_large,
                "oversized_relayed": s.oversized_relayed, "node_acks": s.node_acks,
                "late_acks": s.late_acks, "unknown_acks": s.unknown_acks}
