"""A node's messages fed to `NodeState` as the dataflow runs it, for the restart and silence
tests: each message decoded from its journal record, received 10 ms after it was sent (the
node's clock is right), a tick after a message when 30 s have passed since the last one
(`cloud.flow.TICK`), at the message's reception (the node keeps up); the silence events
written are collected as (sensor, detail, start in s since `t0`, delay s)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import ClassVar

from cloud.journal import JournalRecord
from cloud.logic.node import NodeState
from cloud.logic.records import decode_record
from cloud.logic.rollup import HOUR_NS
from urbanpulse.clock import from_epoch_ns, to_epoch_ns
from urbanpulse.wire import Reading, data_topic, encode_batch, encode_status, status_topic

TICK = timedelta(seconds=30)  # cloud.flow.TICK


@dataclass
class FedNode:
    """One node of `site`/`node` whose agent runs from `t0`: `heartbeat` as the agent sends
    it every 30 s of its run (`run`, started at `run_start`), `send` a data message."""

    site: ClassVar[str]
    node: ClassVar[str]
    t0: ClassVar[datetime]

    state: NodeState = field(default_factory=lambda: NodeState(HOUR_NS))
    t: float = 0.0  # seconds since t0
    run: int = 1
    run_start: float = 0.0
    offset: int = 0
    next_tick: datetime | None = None
    silences: list[tuple[str, str, float, float]] = field(default_factory=list)

    def _feed(self, topic: str, payload: bytes, at: float) -> None:
        self.offset += 1
        received = to_epoch_ns(self.t0 + timedelta(seconds=at + 0.01))
        data, points = decode_record(JournalRecord("i1", self.offset, received, topic, payload), 1 << 16)
        assert data is not None
        points += self.state.process(data)
        now = from_epoch_ns(received) + timedelta(milliseconds=1)
        if self.next_tick is None or now >= self.next_tick:
            self.next_tick = now + TICK
            points += self.state.tick(now)
        for _, ln in points:
            if ln.startswith("events,") and "type=silence" in ln:
                sensor = ln.split("sensor=")[1].split(",")[0]
                delay = float(ln.split("delay_s=")[1].split(",")[0])
                stamp = int(ln.rsplit(" ", 1)[1]) / 1e9 - self.t0.timestamp()
                self.silences.append((sensor, ln.split('detail="')[1].split('"')[0], stamp, delay))

    def heartbeat(self, at: float, skew: float = 0.0) -> None:
        health = {"uptime_s": at - self.run_start, "run_id": f"run{self.run:04d}",
                  "clock": {"jumps": 0, "synchronised": True}}
        self._feed(status_topic(self.site, self.node),
                   encode_status("online", self.t0 + timedelta(seconds=at), health), at + skew)

    def send(self, reading: Reading, at: float, skew: float = 0.0) -> None:
        """A data message of one reading, sent at `at`; `skew`: its ingest stamps it that
        much later (two ingests)."""
        self._feed(data_topic(self.site, self.node),
                   encode_batch(self.site, self.node, [reading]), at + skew)
