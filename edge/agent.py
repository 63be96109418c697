"""The agent: runs the drivers, commits their readings to the outbox, hands the outbox to the
publisher, and tells the world how the node is doing."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import random
import secrets
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from edge.clock_sync import ClockSync, SyncWatch, clock_sync_for
from edge.config import AgentConfig, SensorConfig, check_gpio_backend
from edge.driver_state import StagedState
from edge.drivers.base import Counting, Driver, DriverContext, Sample, Supervised, load_driver
from edge.errors import EdgeError, OutboxError, PublisherError
from edge.outbox import Outbox
from edge.publisher import Publisher
from firmware_bridge.errors import PortNotFoundError, SerialLinkError
from urbanpulse.clock import Clock, SystemClock, to_epoch_ns
from urbanpulse.wire import Refusal, reading_problem

if TYPE_CHECKING:
    from paho.mqtt.client import Client

log = logging.getLogger("urbanpulse.edge.agent")

FLUSH_INTERVAL_S = 0.2  # readings wait at most this long in memory before their commit
CLOCK_JUMP_TOLERANCE_S = 2.0
# What a driver's pure supervision logic (or its count of bad input) can raise besides the
# drivers' EdgeError (its arithmetic on times and levels, lookups by line, a None where a
# value was due): contained to the driver's entry.
SUPERVISION_ERRORS = (ValueError, ArithmeticError, LookupError, TypeError, AttributeError)
# Readings held in memory while the outbox cannot commit (its disk full): past this many,
# the outbox's oldest rows are evicted to make room for them (counted, as max_rows does),
# and if that does not help, the oldest held readings are dropped (counted).
MAX_UNCOMMITTED = 10_000
# Room held back on the state disk for the outbox's deletions and its opening, given up
# when the disk is full (edge/outbox.py, "The reserve"): a few WAL checkpoints' worth.
OUTBOX_RESERVE_BYTES = 8 * 1024 * 1024
# How long the stop waits for the cancelled drivers (a GPIO driver settles its last pulse
# for up to 2.5 s, a serial one closes its port within its timeout) before it commits
# without them: within systemd's TimeoutStopSec (30 s) with the publisher's 10 s.
DRIVER_STOP_S = 10.0
# Sensors a driver's refused samples are counted by in its heartbeat entry (`refused_sensors`,
# for a driver serving several): a upfw board has up to 255 channels, and a bug in its
# firmware may touch them all; 16 ids of up to 64 characters keep the entry within 1.3 KB.
REFUSED_SENSORS_MAX = 16
RESTART_MIN_S = 1.0
RESTART_MAX_S = 60.0
STATE_FILE = "agent-state.json"
OUTBOX_FILE = "outbox.sqlite3"


@dataclass
class DriverState:
    sensor: str
    driver: str
    state: str = "starting"
    restarts: int = 0
    readings: int = 0
    last_error: str | None = None
    info: dict[str, Any] = field(default_factory=dict)
    # Samples the wire contract refuses (`reading_problem`: what the cloud would dead-letter),
    # dropped before the outbox: in all, and by the contract's code (bad_value, bad_count, ...;
    # replaced whole, never changed, as the publisher's thread reads it for the heartbeat)
    refused: int = 0
    refused_reasons: dict[str, int] = field(default_factory=dict)
    # ... and by the sensor each sample was of, for a driver serving several (a upfw board's
    # channels, `<id>-<channel>`): the first REFUSED_SENSORS_MAX sensors refused, a sensor
    # after them in `refused` only (replaced whole, as refused_reasons)
    refused_sensors: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class InputCounts:
    """A sensor's counts of bad input (edge/drivers/base.py `Counting`): summed over its
    drivers whose run ended (each restart builds a new driver, whose counts start from 0),
    and the driver running, if any. Replaced whole, never changed: the publisher's thread
    reads it for the heartbeat while the event loop's replaces it."""

    ended: Mapping[str, int]
    running: Counting | None = None

    def total(self) -> dict[str, int]:
        """Since the agent started; may raise what the running driver's count raises."""
        now = {} if self.running is None else self.running.bad_input()
        out = dict(now)
        for name, n in self.ended.items():
            out[name] = out.get(name, 0) + n
        return out


class Agent:
    def __init__(self, config: AgentConfig, *, clock: Clock | None = None,
                 client_factory: Callable[[], Client] | None = None,
                 pin_factory: Callable[[], Any] | None = None,
                 clock_sync: ClockSync | None = None) -> None:
        self.config = config
        self.clock = clock or SystemClock()
        # clock_sync: the probe to ask instead of the one [agent] clock_check names.
        self.clock_sync = SyncWatch(clock_sync if clock_sync is not None else clock_sync_for(config),
                                    self.clock)
        self._client_factory = client_factory
        self._pin_factory = pin_factory
        self._shared_pins: Any = None
        self.outbox = Outbox(config.node.state_dir / OUTBOX_FILE, max_rows=config.outbox.max_rows,
                             reserve_bytes=OUTBOX_RESERVE_BYTES)
        self.drivers = {s.id: DriverState(s.id, s.driver) for s in config.sensors}
        self._input_counts: dict[str, InputCounts] = {}  # each sensor's, since start-up
        self._running: dict[str, Driver] = {}  # each sensor's driver, for its supervision
        self._pending: list[Sample] = []
        self._refusals_logged: set[tuple[str, str]] = set()  # (sensor, code) said once a run
        self.driver_state = StagedState(self.outbox)
        self._committed = 0
        self._commit_error: str | None = None  # why the last commit failed, until one works
        self._evicted_for_room = False  # rows evicted since it did
        self._dropping = False  # readings dropped since it did
        self.readings_dropped = 0  # readings dropped uncommitted, past MAX_UNCOMMITTED
        self._state_file_error: str | None = None
        self._started_mono = self.clock.monotonic()
        # This run's id, in every heartbeat with the uptime it shares its life with: the
        # cloud puts heartbeats in (run, uptime) order, and a new id is a restart.
        self.run_id = secrets.token_hex(8)
        self._clock_offset: float | None = None
        # outbox.max_age's eviction: done once a run; clock.monotonic() of the next try
        self._aged = False
        self._age_again_at = 0.0
        self._aged_through: int | None = None  # the last row it takes, once judged
        self._age_evicted = 0  # rows it took so far
        self.clock_jumps = 0
        self.publisher: Publisher | None = None

    def emitter(self, state: DriverState) -> Callable[[Sample], None]:
        """What a driver calls with each sample: flagged clock_unsynced while the wall
        clock is not synchronised, queued for the next commit and counted for the driver,
        also for drivers that read several sensors (upfw)."""
        def emit(sample: Sample) -> None:
            refusal = reading_problem(sample.kind, sample.values)
            if refusal is not None:
                self._refuse(state, sample, refusal)
                return
            self._pending.append(self.clock_sync.stamp(sample))
            state.readings += 1

        return emit

    def _refuse(self, state: DriverState, sample: Sample, refusal: Refusal) -> None:
        """A sample the cloud would dead-letter (a NaN, 2.5 vehicles, a kind it does not
        know) is dropped here, with the rule the cloud applies (urbanpulse.wire.values),
        counted by reason for the heartbeat, and logged once per sensor and reason: in the
        outbox it would stop every batch it falls in (`encode_batch` refuses it too). The
        driver's other samples go on."""
        state.refused += 1
        state.refused_reasons = {**state.refused_reasons,
                                 refusal.code: state.refused_reasons.get(refusal.code, 0) + 1}
        if sample.sensor in state.refused_sensors or len(state.refused_sensors) < REFUSED_SENSORS_MAX:
            state.refused_sensors = {**state.refused_sensors,
                                     sample.sensor: state.refused_sensors.get(sample.sensor, 0) + 1}
        detail = refusal.detail.removeprefix(".")  # "values.pm25: must be a finite number, ..."
        state.last_error = f"sample refused: {refusal.code}: {detail}"
        said = (sample.sensor, refusal.code)
        if said not in self._refusals_logged:
            self._refusals_logged.add(said)
            log.error("a driver emitted a sample the wire contract refuses; dropped (said once "
                      "per sensor and reason, counted in the heartbeat's drivers.<id>.refused)",
                      extra={"sensor": sample.sensor, "kind": sample.kind,
                             "reason": refusal.code, "detail": detail})

    def flush(self) -> int:
        """Commits the readings emitted since the last flush with the drivers' staged
        state; returns how many. A commit that fails (the disk full) keeps them in memory
        for the next flush: the agent runs on, and the publisher's acks free room."""
        batch, self._pending = self._pending, []
        states = self.driver_state.take()
        try:
            self.outbox.append(batch, to_epoch_ns(self.clock.now()), states)
        except OutboxError as exc:
            self._hold(batch, states, exc)
            return 0
        if self._commit_error is not None:
            log.info("the outbox commits again", extra={"committed": len(batch)})
            self._commit_error = None
            self._evicted_for_room = self._dropping = False
        self._committed += len(batch)
        return len(batch)

    def _hold(self, batch: list[Sample], states: dict[str, str], exc: OutboxError) -> None:
        if self._commit_error is None:
            log.error("cannot commit readings to the outbox; holding them in memory and "
                      "trying again", extra={"error": str(exc), "outbox": str(self.outbox.path)})
        self._commit_error = str(exc)
        self._pending[:0] = batch
        self.driver_state.give_back(states)
        excess = len(self._pending) - MAX_UNCOMMITTED
        if excess <= 0:
            return
        if not self._evicted_for_room:
            self._evicted_for_room = True
            try:
                n = self.outbox.evict_oldest(len(self._pending))
            except OutboxError as evict_exc:
                log.error("cannot evict from the outbox either", extra={"error": str(evict_exc)})
            else:
                if n:
                    log.error("outbox rows evicted to make room for the readings held",
                              extra={"evicted": n, "held": len(self._pending)})
                    return
        if not self._dropping:
            log.error("readings dropped: the outbox cannot commit and memory holds only "
                      f"{MAX_UNCOMMITTED}; the oldest held go first, counted in "
                      "readings_dropped", extra={"error": self._commit_error})
        self._dropping = True
        del self._pending[:excess]
        self.readings_dropped += excess

    def _evict_aged(self, *, at_once: bool = False) -> None:
        """outbox.max_age_days' eviction, once a run: at start-up, or, if the wall clock is
        not synchronised then, once it is (a clock far ahead would make every row look old;
        one far behind, none). Rows whose stamps were made on an unsynchronised clock are
        judged by their place in commit order (Outbox.aged_through). AGE_EVICT_BATCH rows
        a transaction: all of them at start-up (`at_once`, before the drivers and the
        publisher start), one batch a call in the loop, so that the drivers, the commits
        and the publisher's acks do not wait for the whole of it, nor the WAL file grow to
        its size. A deletion the disk refuses (it needs room in SQLite's WAL file) is
        logged and tried again a minute later: a full disk must not stop the agent from
        starting."""
        if self._aged or self.clock_sync.state is False \
                or self.clock.monotonic() < self._age_again_at:
            return
        try:
            if self._aged_through is None:
                cut = to_epoch_ns(self.clock.now()) - int(self.config.outbox.max_age_s * 1e9)
                self._aged_through = self.outbox.aged_through(cut)
            through = self._aged_through
            done = through is None
            while through is not None and not done:
                n, done = self.outbox.evict_through(through)
                self._age_evicted += n
                if not at_once:
                    break
        except OutboxError as exc:
            log.error("cannot evict the outbox's old rows; trying again in a minute",
                      extra={"error": str(exc)})
            self._age_again_at = self.clock.monotonic() + 60.0
            return
        if not done:
            return
        self._aged = True
        if self._age_evicted:
            log.warning("outbox rows evicted: committed more than outbox.max_age_days ago",
                        extra={"evicted": self._age_evicted})

    def health(self) -> dict[str, Any]:
        stats = self.outbox.stats()
        now_ns = to_epoch_ns(self.clock.now())
        uptime = self.clock.monotonic() - self._started_mono
        pub = self.publisher.state if self.publisher else None
        return {
            "run_id": self.run_id,
            "uptime_s": round(uptime, 1),
            "outbox_depth": stats.depth,
            "outbox_oldest_age_s": None if stats.oldest_created_ns is None
            else round((now_ns - stats.oldest_created_ns) / 1e9, 1),
            "outbox_evicted": stats.evicted,
            "readings_per_s": round(self._committed / uptime, 2) if uptime > 0 else 0.0,
            "readings_committed": self._committed,
            # readings not committed yet (those of the last FLUSH_INTERVAL_S, or all held
            # while the outbox cannot commit: outbox_error says why)
            "outbox_uncommitted": len(self._pending),
            "outbox_error": self._commit_error,
            "readings_dropped": self.readings_dropped,
            "drivers": {k: self._driver_health(k, d) for k, d in self.drivers.items()},
            "mqtt": None if pub is None else {
                "connected": pub.connected, "connects": pub.connects, "last_error": pub.last_error,
                "last_publish_ns": pub.last_publish_ns, "last_ack_ns": pub.last_ack_ns,
                "readings_acked": pub.readings_acked,
                "rejected": pub.rejected, "refused": pub.refused, "last_refusal": pub.last_refusal,
                "inflight": pub.inflight, "awaiting_cloud": pub.awaiting_cloud,
                "resent_batches": pub.resent_batches, "unsendable": pub.unsendable,
                "resend_wait_s": pub.resend_wait_s,
                "next_resend_in_s": pub.next_resend_in_s},
            "clock": {"jumps": self.clock_jumps, "synchronised": self.clock_sync.state},
            "cpu_temp_c": _cpu_temperature(),
        }

    def _driver_health(self, sensor: str, d: DriverState) -> dict[str, Any]:
        out: dict[str, Any] = {"driver": d.driver, "state": d.state, "restarts": d.restarts,
                               "last_error": d.last_error}
        # `refused` from the start, 0 included: the cloud reads it as a counter's rises from
        # heartbeat to heartbeat ("Samples refused"), and a count appearing only at the first
        # refusal would hide that first rise
        out["refused"] = d.refused
        if d.refused:
            out["refused_reasons"] = dict(d.refused_reasons)
        if d.refused_sensors.keys() - {sensor}:
            out["refused_sensors"] = dict(d.refused_sensors)
        # What the driver could not use (corrupt frames, ignored messages, glitches), since
        # the agent started: counted and skipped, and shown here (see Counting).
        counts = self._input_counts.get(sensor)
        if counts is not None:
            try:
                out["bad_input"] = counts.total()
            except (EdgeError, *SUPERVISION_ERRORS) as exc:
                out["bad_input_error"] = f"{type(exc).__name__}: {exc}"
        # What a supervised driver's readings cannot carry, for the cloud's fault rules:
        # a kiosk's {"cable": "ok" | "cut", "ready": bool}, a door counter's
        # {"blocked": bool, "self_test": "ok" | "failed"} (see Supervised). A driver that
        # fails to say gets its error here; the other entries and the heartbeat go on.
        driver = self._running.get(sensor)
        if isinstance(driver, Supervised):
            try:
                supervision = driver.supervision()
            except (EdgeError, *SUPERVISION_ERRORS) as exc:
                out["supervision_error"] = f"{type(exc).__name__}: {exc}"
                return out
            if supervision:
                out["supervision"] = dict(supervision)
        return out

    def check_clock(self) -> None:
        offset = self.clock.now().timestamp() - self.clock.monotonic()
        if self._clock_offset is not None and abs(offset - self._clock_offset) > CLOCK_JUMP_TOLERANCE_S:
            self.clock_jumps += 1
            log.warning("wall clock jumped", extra={"jump_s": round(offset - self._clock_offset, 3)})
        self._clock_offset = offset

    def write_state(self) -> None:
        path = self.config.node.state_dir / STATE_FILE
        tmp = path.with_suffix(".tmp")
        body = {"node": self.config.node.id, "site": self.config.node.site,
                "written_at": self.clock.now().isoformat(), "health": self.health(),
                "drivers": {k: asdict(v) for k, v in self.drivers.items()}}
        try:
            tmp.write_text(json.dumps(body, indent=1, default=str), encoding="utf-8")
            os.replace(tmp, path)
        except OSError as exc:
            # The disk full: `edge status` shows an older state meanwhile, the heartbeat
            # the current one; not a reason to stop reading sensors.
            with contextlib.suppress(OSError):
                tmp.unlink()
            if self._state_file_error is None:
                log.warning("cannot write the state file", extra={"path": str(path),
                                                                  "error": str(exc)})
            self._state_file_error = str(exc)
        else:
            self._state_file_error = None

    def _client(self) -> Client:
        if self._client_factory is not None:
            return self._client_factory()
        from edge.mqtt_client import make_client

        client_id = f"edge-{self.config.node.site}.{self.config.node.id}"
        return make_client(client_id, self.config.mqtt)

    def _pins(self) -> Any:
        if self._pin_factory is not None:
            return self._pin_factory()
        if self._shared_pins is None:
            from edge.gpio.factory import SharedPinFactory

            self._shared_pins = SharedPinFactory(self.config.gpio.backend)
        return self._shared_pins()

    async def _supervise(self, sensor: SensorConfig, ctx: DriverContext) -> None:
        state = self.drivers[sensor.id]
        module = load_driver(sensor.driver)
        delay = RESTART_MIN_S
        while True:
            driver: Driver = module.build(sensor.id, sensor.params, ctx)
            self._running[sensor.id] = driver
            before = self._input_counts.get(sensor.id)
            self._input_counts[sensor.id] = InputCounts(
                {} if before is None else before.ended,
                driver if isinstance(driver, Counting) else None)
            state.state = "running"
            started = time.monotonic()
            try:
                await driver.run(self.emitter(state))
                state.state = "stopped"
                return
            except asyncio.CancelledError:
                state.state = "stopped"
                raise
            except Exception as exc:  # any driver failure is counted, logged, restarted
                if _stopping():
                    # An error in place of the stop (a clean-up failing while the driver
                    # was cancelled, gpiozero's close() of a pin): still a stop. Taken for
                    # a failure, the driver was started again, its cancellation spent, and
                    # the agent's stop waited for it until systemd killed it.
                    state.state = "stopped"
                    state.last_error = f"{type(exc).__name__}: {exc}"
                    log.warning("driver failed while stopping", extra={
                        "sensor": sensor.id, "error": state.last_error})
                    raise asyncio.CancelledError from exc
                state.state = "failed"
                state.restarts += 1
                state.last_error = f"{type(exc).__name__}: {exc}{self._port_key(sensor, exc)}"
                log.warning("driver failed; restarting", extra={"sensor": sensor.id,
                                                                "error": state.last_error})
            finally:
                self._input_ended(sensor.id)
            if time.monotonic() - started > RESTART_MAX_S:
                delay = RESTART_MIN_S
            await asyncio.sleep(random.uniform(delay / 2, delay))
            delay = min(RESTART_MAX_S, delay * 2)

    def _port_key(self, sensor: SensorConfig, exc: BaseException) -> str:
        """The config key of the serial port a driver's failure is about (its open or its
        link, firmware_bridge's SerialLinkError on the sensor's `port`), for the driver's
        last error: `sensors[0].port` is what the technician edits. "" for other failures."""
        port = getattr(sensor.params, "port", None)
        cause: BaseException | None = exc
        while cause is not None:
            if isinstance(cause, SerialLinkError) and cause.port == port:
                key = f"sensors[{self.config.sensors.index(sensor)}].port"
                if isinstance(cause, PortNotFoundError):
                    return f" ({key}: no such device on this node)"
                return f" ({key})"
            cause = cause.__cause__ or cause.__context__
        return ""

    def _input_ended(self, sensor: str) -> None:
        """The sensor's driver ended (stopped, failed or cancelled): its counts join those
        of the drivers before it, for the next driver to add to."""
        counts = self._input_counts.get(sensor)
        if counts is None or counts.running is None:
            return
        try:
            ended = counts.total()
        except (EdgeError, *SUPERVISION_ERRORS) as exc:  # the heartbeats said it meanwhile
            log.warning("driver failed to count its bad input; its run's counts are lost",
                        extra={"sensor": sensor, "error": f"{type(exc).__name__}: {exc}"})
            ended = dict(counts.ended)
        self._input_counts[sensor] = InputCounts(ended)

    async def _drivers_stopped(self, tasks: list[asyncio.Task[None]]) -> None:
        """Waits for the cancelled drivers' tasks, DRIVER_STOP_S at most: one that does not
        end (a driver that ignores its cancellation) must not keep the others' last
        readings from their commit until systemd kills the agent (TimeoutStopSec)."""
        if not tasks:
            return
        done, stuck = await asyncio.wait(tasks, timeout=DRIVER_STOP_S)
        for t in done:
            if not t.cancelled():
                t.exception()  # retrieved: a driver's failure is in its state already
        if stuck:
            sensors = sorted(t.get_name().removeprefix("driver-") for t in stuck)
            for sensor in sensors:
                self.drivers[sensor].state = "stuck"
            log.error("drivers did not stop in time; the agent stops without them",
                      extra={"sensors": sensors, "waited_s": DRIVER_STOP_S})

    async def run(self, stop: asyncio.Event) -> None:
        if self._pin_factory is None:
            # A GPIO backend whose module is not installed here (or RPi.GPIO on a Pi 5): a
            # ConfigError naming gpio.backend, exit code 2, before anything is opened. Before,
            # every GPIO driver failed on it and was restarted for ever, reading nothing.
            check_gpio_backend(self.config)
        self.config.node.state_dir.mkdir(parents=True, exist_ok=True)
        self.clock_sync.start()
        self.outbox.open()
        self._evict_aged(at_once=True)
        ctx = DriverContext(clock=self.clock, pin_factory=self._pins,
                            state_dir=self.config.node.state_dir, state=self.driver_state)
        self.publisher = Publisher(self.config, self.outbox, self._client, self.clock, self.health)
        self.publisher.start()
        tasks = [asyncio.create_task(self._supervise(s, ctx), name=f"driver-{s.id}")
                 for s in self.config.sensors]
        log.info("agent started", extra={"node": self.config.node.id, "sensors": len(tasks)})
        next_state = 0.0
        try:
            while not stop.is_set():
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), FLUSH_INTERVAL_S)
                self.flush()
                self.check_clock()
                self.clock_sync.refresh()
                self._evict_aged()
                if self.publisher.failure is not None:
                    raise PublisherError("the MQTT publisher stopped on "
                                         f"{type(self.publisher.failure).__name__}: "
                                         f"{self.publisher.failure}") from self.publisher.failure
                if time.monotonic() >= next_state:
                    self.write_state()
                    next_state = time.monotonic() + min(5.0, self.config.heartbeat_s)
        finally:
            for t in tasks:
                t.cancel()
            await self._drivers_stopped(tasks)
            self.flush()
            if self._pending:
                log.error("readings lost at the stop: the outbox cannot commit them",
                          extra={"readings": len(self._pending), "error": self._commit_error})
            self.publisher.stop()
            try:
                if self._shared_pins is not None:
                    self._shared_pins.close()
            except Exception as exc:  # gpiozero's errors, lgpio.error, OSError, ...
                raise EdgeError("cannot release the GPIO pins at the stop: "
                                f"{type(exc).__name__}: {exc}") from exc
            finally:
                # Also when the pins' release fails (gpiozero's close()): the outbox's clean
                # close empties its WAL file and makes its reserve's opening part again.
                self.write_state()
                self.outbox.close()
                log.info("agent stopped", extra={"node": self.config.node.id})


def _stopping() -> bool:
    """Whether the running task is being cancelled (the agent stops its drivers)."""
    task = asyncio.current_task()
    return task is not None and task.cancelling() > 0


def _cpu_temperature() -> float | None:
    try:
        raw = Path("/sys/class/thermal/thermal_zone0/temp").read_text()
    except OSError:
        return None
    try:
        return round(int(raw.strip()) / 1000, 1)
    except ValueError:
        return None
