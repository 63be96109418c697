"""The rest of the city in the simulator's lightweight mode: wire-contract batches made
straight from the models and published over MQTT (QoS 1), each node with its own
credentials, paced at real time.

Sensors that run live (see live.py) are left out, so no sensor is reported twice. Each
sensor's sequence numbers continue from the previous demo run (kept in a small JSON file
in the demo directory), as an edge agent's outbox keeps them, so the cloud's delivery
ledger sees neither duplicates nor gaps across runs. The same file keeps the name of that
numbering (the contract's `numbering`, as an outbox keeps it): a demo directory wiped
numbers from 0 again under a new name, as a node that lost its state does.
"""

from __future__ import annotations

import contextlib
import json
import secrets
import threading
import time
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

from urbanpulse.errors import ConfigError
from urbanpulse.simulate import NodeBatch, SimClock, Simulation
from urbanpulse.wire import Reading, encode_batch
from urbanpulse.wire.payload import NUMBERING_ID
from urbanpulse.wire.topics import data_topic

if TYPE_CHECKING:
    import paho.mqtt.client as paho

STEP_S = 1.0  # how often the publisher catches up with the simulation clock
MAX_BATCH = 500
SensorKey = tuple[str, str, str]


NUMBERING_KEY = "numbering"  # beside the "site/node/sensor" keys, which always hold two slashes


def load_seq(path: Path) -> tuple[dict[SensorKey, int], str]:
    """Next sequence number per sensor from an earlier run, and the name of that numbering;
    none and a new name when there is no file (a file from before names gets a new name:
    its numbers continue, which the cloud takes as the numbering being named)."""
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}, new_numbering()
    except (OSError, ValueError) as exc:
        raise ConfigError(str(path), f"not a sequence file: {exc}") from exc
    if not isinstance(raw, dict):
        raise ConfigError(str(path), "not a sequence file: expected {\"site/node/sensor\": next}")
    numbering = raw.pop(NUMBERING_KEY, None)
    if numbering is None:
        numbering = new_numbering()
    elif not isinstance(numbering, str) or not NUMBERING_ID.fullmatch(numbering):
        raise ConfigError(str(path), f"not a sequence file: {NUMBERING_KEY} {numbering!r:.40} "
                                     "is not 16 hex digits")
    if not all(isinstance(k, str) and k.count("/") == 2 and type(v) is int and v >= 0
               for k, v in raw.items()):
        raise ConfigError(str(path), "not a sequence file: expected {\"site/node/sensor\": next}")
    out: dict[SensorKey, int] = {}
    for k, v in raw.items():
        site, node, sensor = k.split("/")
        out[(site, node, sensor)] = v
    return out, numbering


def new_numbering() -> str:
    return secrets.token_hex(8)


def load_published_until(path: Path) -> int:
    """The newest stamp (epoch ns) an earlier run published, 0 without one."""
    try:
        text = path.read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        return 0
    except OSError as exc:
        raise ConfigError(str(path), f"cannot read: {exc}") from exc
    if not text.isdigit():
        raise ConfigError(str(path), f"not a stamp in epoch nanoseconds: {text[:40]!r}")
    return int(text)


def save_published_until(path: Path, stamp_ns: int) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(f"{stamp_ns}\n", encoding="utf-8")
    tmp.replace(path)


def save_seq(path: Path, seq: Mapping[SensorKey, int], numbering: str) -> None:
    body: dict[str, int | str] = {NUMBERING_KEY: numbering}
    body.update(("/".join(k), v) for k, v in sorted(seq.items()))
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(body, indent=0), encoding="utf-8")
    tmp.replace(path)


class CityPublisher(threading.Thread):
    """Publishes the lightweight readings of [position, clock offset) every STEP_S.

    Readings stamped at or before `not_before_ns` (what an earlier run already published:
    the demo back-fills minutes before its start) are left out, and the sequence numbers go
    on without them: a sensor's stamps never go back against its numbers, which the cloud
    would take for a clock set back."""

    def __init__(self, sim: Simulation, clock: SimClock,
                 clients: Mapping[tuple[str, str], paho.Client],
                 live: frozenset[SensorKey], seq_base: Mapping[SensorKey, int],
                 numbering: str, not_before_ns: int = 0) -> None:
        super().__init__(name="demo-city", daemon=True)
        self.sim = sim
        self.clock = clock
        self.clients = clients
        self.live = live
        self.seq_base = dict(seq_base)
        self.next_seq = dict(seq_base)
        self.numbering = numbering
        self.not_before_ns = not_before_ns
        self.published_until_ns = not_before_ns
        self._skipped: dict[SensorKey, int] = {}
        self.generator = sim.readings(MAX_BATCH)
        self.stop_event = threading.Event()
        self.readings = 0
        self.batches = 0
        self._pending: list[paho.MQTTMessageInfo] = []
        self._lock = threading.Lock()

    def _keep(self, batch: NodeBatch) -> list[Reading]:
        base = self.seq_base
        out: list[Reading] = []
        for r in batch.readings:
            key = (batch.site, batch.node, r.sensor)
            if key in self.live:
                continue
            if r.ts_ns <= self.not_before_ns:
                self._skipped[key] = self._skipped.get(key, 0) + 1
                continue
            # the simulation's own gaps kept: only the readings left out are not numbered
            seq = r.seq - self._skipped.get(key, 0) + base.get(key, 0)
            self.next_seq[key] = seq + 1
            self.published_until_ns = max(self.published_until_ns, r.ts_ns)
            out.append(replace(r, seq=seq))
        return out

    def publish_until(self, until: float) -> None:
        """Publish everything up to offset `until` (QoS 1; delivery is awaited in close)."""
        with self._lock:
            for batch in self.generator.advance(max(until, self.generator.position)):
                readings = self._keep(batch)
                client = self.clients.get((batch.site, batch.node))
                if not readings or client is None:
                    continue
                info = client.publish(data_topic(batch.site, batch.node),
                                      encode_batch(batch.site, batch.node, readings,
                                                   numbering=self.numbering), qos=1)
                self._pending.append(info)
                self.readings += len(readings)
                self.batches += 1
            self._pending = [i for i in self._pending if _state(i) == "pending"]

    def run(self) -> None:
        while not self.stop_event.wait(STEP_S):
            self.publish_until(self.clock.offset())

    def stop(self, wait_s: float) -> int:
        """Publish up to now, then wait up to `wait_s` for the broker's PUBACKs; returns
        how many batches were not acknowledged."""
        self.stop_event.set()
        self.join(10)
        self.publish_until(self.clock.offset())
        deadline = time.monotonic() + wait_s
        for info in self._pending:
            with contextlib.suppress(ValueError, RuntimeError):  # counted just below
                info.wait_for_publish(max(0.0, deadline - time.monotonic()))
        return sum(1 for i in self._pending if _state(i) != "acked")


def _state(info: paho.MQTTMessageInfo) -> str:
    try:
        return "acked" if info.is_published() else "pending"
    except (ValueError, RuntimeError):  # not queued, or the publish failed
        return "failed"
