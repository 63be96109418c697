"""The rest of the city in the simulator's lightweight mode: wire-contract batches made
straight from the models and published over MQTT (QoS 1), each node with its own
credentials, paced at real time.

Sensors that run live (see live.py) are left out, so no sensor is reported twice. Each
sensor's sequence numbers continue from the previous demo run (kept in a small JSON file
in the demo directory), as an edge agent's outbox keeps them, so the cloud's delivery
ledger sees neither duplicates nor gaps across runs. The same file keeps the name of that
numbering (the contract's `numbering`, as an outbox keeps it): a demo directory wiped
numbers from 0 again under a new name, as a node that lost its state does.

Each run is a restart of every lightweight node, as of an edge agent: a status heartbeat
under a new run id (`run_id`, `uptime_s`, `clock.jumps`), sent on connecting before any
data and then every HEARTBEAT_S, and an "offline" status at a clean stop. Its uptime dates
the node's start (the heartbeat's stamp less its uptime) just after what the run before
published, and the run sends no reading stamped before that start: the cloud's forward
clock rule takes the gap across two runs for a restart, as it does an agent's. Before, the
nodes sent no heartbeat, and a sensor reporting once a minute, read by the new run's
simulation at other seconds of the minute, showed a gap longer than any it had (87.5 s
against 60 s): a false `clock_jump`.

Both files are written (atomically, synced) before each publish, not when the demo stops:
a demo killed outright (SIGKILL, the OOM killer, a power cut) would otherwise leave the
next run numbering again from the last clean stop under the same name, and the cloud would
drop its first readings as redeliveries of what the killed run sent. After a kill the
numbers of what never reached the broker are skipped: gaps the ledger counts as missing.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import threading
import time
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

from urbanpulse.clock import from_epoch_ns, to_epoch_ns
from urbanpulse.errors import ConfigError
from urbanpulse.simulate import NodeBatch, SimClock, Simulation
from urbanpulse.wire import Reading, encode_batch, encode_status
from urbanpulse.wire.payload import NUMBERING_ID
from urbanpulse.wire.topics import data_topic, status_topic

if TYPE_CHECKING:
    import paho.mqtt.client as paho

STEP_S = 1.0  # how often the publisher catches up with the simulation clock
MAX_BATCH = 500
HEARTBEAT_S = 30.0  # the edge agent's default `heartbeat_s`
# A run's nodes start this long after the newest stamp the run before published (or before
# the simulation's start, on a first run), and their first reading comes at least
# FIRST_READING_NS after that start: their heartbeats' start (stamp less uptime, to the
# microsecond) falls strictly between the last reading before and the first after.
START_AFTER_NS = 1_000_000_000
FIRST_READING_NS = 1_000_000
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


def until_file(seq_file: Path) -> Path:
    """Beside the sequence file: the newest stamp the lightweight nodes published."""
    return seq_file.with_name("city_published_until")


def save_published_until(path: Path, stamp_ns: int, sync: bool = True) -> None:
    _replace(path, f"{stamp_ns}\n", sync)


def save_seq(path: Path, seq: Mapping[SensorKey, int], numbering: str, sync: bool = True) -> None:
    body: dict[str, int | str] = {NUMBERING_KEY: numbering}
    body.update(("/".join(k), v) for k, v in sorted(seq.items()))
    _replace(path, json.dumps(body, indent=0), sync)


def _replace(path: Path, text: str, sync: bool) -> None:
    """Write-then-rename, the data synced before the rename: a crash leaves the old file or
    the new one, never an empty or a partial one (`sync`: the directory is synced by the
    caller, once for both files)."""
    tmp = path.with_suffix(".tmp")
    with tmp.open("w", encoding="utf-8") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    tmp.replace(path)
    if sync:
        _sync_dir(path.parent)


def _sync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class CityPublisher(threading.Thread):
    """Publishes the lightweight readings of [position, clock offset) every STEP_S.

    The sequence numbers go on from `seq_file` (load_seq), and readings stamped at or
    before what an earlier run published (until_file(seq_file): the demo back-fills minutes
    before its start) are left out, the numbers going on without them: a sensor's stamps
    never go back against its numbers, which the cloud would take for a clock set back or
    for redeliveries. Both files are saved before each publish (`publish_until`)."""

    def __init__(self, sim: Simulation, clock: SimClock,
                 clients: Mapping[tuple[str, str], paho.Client],
                 live: frozenset[SensorKey], seq_file: Path) -> None:
        super().__init__(name="demo-city", daemon=True)
        self.sim = sim
        self.clock = clock
        self.clients = clients
        self.live = live
        self.seq_file = seq_file
        self.until_file = until_file(seq_file)
        seq_base, self.numbering = load_seq(seq_file)
        not_before_ns = load_published_until(self.until_file)
        self.seq_base = dict(seq_base)
        self.next_seq = dict(seq_base)
        self.not_before_ns = not_before_ns
        self.published_until_ns = not_before_ns
        # This run's restart of the nodes: when they started (the simulation's offset, and
        # epoch ns on the simulation's clock), under a run id of their own.
        sim_start_ns = to_epoch_ns(sim.start)
        self.start_ns = max(sim_start_ns - START_AFTER_NS, not_before_ns + START_AFTER_NS)
        self.start_offset = (self.start_ns - sim_start_ns) / 1e9
        self.first_ns = self.start_ns + FIRST_READING_NS
        self.run_id = secrets.token_hex(8)
        self._skews = {key: sim.clock_skew(*key) for key in clients}
        self._next_status: float | None = None
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
            if r.ts_ns <= self.not_before_ns or r.ts_ns < self.first_ns:
                self._skipped[key] = self._skipped.get(key, 0) + 1
                continue
            # the simulation's own gaps kept: only the readings left out are not numbered
            seq = r.seq - self._skipped.get(key, 0) + base.get(key, 0)
            self.next_seq[key] = seq + 1
            self.published_until_ns = max(self.published_until_ns, r.ts_ns)
            out.append(replace(r, seq=seq))
        return out

    def publish_until(self, until: float) -> None:
        """Publish everything up to offset `until` (QoS 1; delivery is awaited in close),
        the numbers and the newest stamp saved first: killed at any point, the demo leaves
        the next run numbers and minutes that follow what it may have sent."""
        with self._lock:
            if self._next_status is None or until >= self._next_status:
                self._status("online", until)  # the first on connecting, before any data
                self._next_status = until + HEARTBEAT_S
            due: list[tuple[paho.Client, NodeBatch, list[Reading]]] = []
            for batch in self.generator.advance(max(until, self.generator.position)):
                readings = self._keep(batch)
                client = self.clients.get((batch.site, batch.node))
                if readings and client is not None:
                    due.append((client, batch, readings))
            if due:
                self._save()
            for client, batch, readings in due:
                info = client.publish(data_topic(batch.site, batch.node),
                                      encode_batch(batch.site, batch.node, readings,
                                                   numbering=self.numbering), qos=1)
                self._pending.append(info)
                self.readings += len(readings)
                self.batches += 1
            self._pending = [i for i in self._pending if _state(i) == "pending"]

    def _status(self, state: str, at: float) -> None:
        """Every node's status at offset `at`, as an agent's heartbeat: stamped by the node's
        clock, with this run's id and the uptime since the nodes' start (QoS 1, retained)."""
        uptime = round(at - self.start_offset, 6)
        health = {"run_id": self.run_id, "uptime_s": uptime, "clock": {"jumps": 0}}
        base_ns = to_epoch_ns(self.sim.at(at))
        for (site, node), client in self.clients.items():
            ts = from_epoch_ns(base_ns + round(self._skews[(site, node)](at) * 1e9))
            self._pending.append(client.publish(status_topic(site, node),
                                                encode_status(state, ts, health), qos=1,
                                                retain=True))

    def _save(self) -> None:
        save_seq(self.seq_file, self.next_seq, self.numbering, sync=False)
        save_published_until(self.until_file, self.published_until_ns, sync=False)
        _sync_dir(self.seq_file.parent)  # both renames durable before anything is sent

    def run(self) -> None:
        while not self.stop_event.wait(STEP_S):
            self.publish_until(self.clock.offset())

    def stop(self, wait_s: float) -> int:
        """Publish up to now, then wait up to `wait_s` for the broker's PUBACKs; returns
        how many batches were not acknowledged."""
        self.stop_event.set()
        self.join(10)
        until = self.clock.offset()
        self.publish_until(until)
        with self._lock:
            self._status("offline", until)  # as an agent's clean stop
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
