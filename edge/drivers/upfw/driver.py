"""upfw driver: our boards' sentences (firmware_bridge/PROTOCOL.md) become contract readings.

One board serves several channels (loops, beds, doors, queues): each channel is a sensor
of its own, named `<sensor id>-<channel>` unless `names` says otherwise (see mapping.py
and README.md for what each message type becomes). Any valid sentence proves the board
alive; after half the silence timeout without one the driver asks for identity (IQ), and
after the whole of it the driver fails.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from edge.drivers.base import DriverContext, Emit, Sample
from edge.drivers.serial_params import check_known, serial_port
from edge.drivers.upfw import mapping, queue_codes, totals
from edge.drivers.upfw.mapping import MAX_INTERVAL_S, DoorTotals, LoopReadings, Out, UpfwMapper
from edge.errors import DriverError
from edge.gpio.intervals import MIN_INTERVAL_S
from edge.gpio.timing import IntervalSchedule
from firmware_bridge.errors import BridgeError, LinkTimeoutError
from firmware_bridge.protocols.upfw import IdentityQuery, LoopInterval, UpfwDecoder
from firmware_bridge.protocols.upfw.commands import identity_query
from firmware_bridge.transport import SerialLink, open_link, raise_if_cancelled
from urbanpulse.errors import ConfigError
from urbanpulse.hour_intervals import HOUR_S, check_divides_hour, whole_hour_divisors_near
from urbanpulse.wire.payload import SENSOR_ID

BAUDRATES = (9600, 19200, 38400, 57600, 115200)
_SENSOR_ID = SENSOR_ID
# A `names` key: a channel number (1..255) or a kiosk's queue code (1-8 of letters, digits,
# '.', '_', '-'; firmware_bridge/PROTOCOL.md, QT), in lower case. A queue code may be all
# digits ("0", "300", "007"), so a key of digits is one whatever its number.
_CHANNEL = re.compile(r"[a-z0-9._-]{1,8}")


@dataclass(frozen=True, slots=True)
class UpfwParams:
    port: str
    baudrate: int = 115200
    loop_readings: LoopReadings = "intervals"
    interval_s: float = 60.0
    bed_heartbeat_s: float = 60.0
    silence_timeout_s: float = 10.0
    names: Mapping[str, str] = field(default_factory=dict)
    # Not TOML keys. The sensor ids other sensors publish under (their ids, upfw channels'
    # ids, `names`) -> the key holding each, set by the config check (edge/config.py): a
    # kiosk queue's `<id>-<code>` among them is refused when the board sends the code.
    taken: Mapping[str, str] = field(default_factory=dict)
    key: str = ""  # this board's `[[sensors]]` key, e.g. "sensors[0]"


NOT_TOML = ("taken", "key")


def _number(raw: Mapping[str, Any], key: str, name: str, low: float, high: float) -> float:
    value = raw.get(name, UpfwParams.__dataclass_fields__[name].default)
    if type(value) not in (int, float) or not low <= value <= high:
        raise ConfigError(f"{key}.{name}", f"must be a number from {low:g} to {high:g}, got {value!r}")
    return float(value)


def _names(raw: Any, key: str) -> dict[str, str]:
    if not isinstance(raw, Mapping):
        raise ConfigError(f"{key}.names", "must be a table: channel or queue code = sensor id")
    names: dict[str, str] = {}
    for channel, sensor in raw.items():
        where = f"{key}.names.{channel}"
        ch = str(channel).lower()
        if not _CHANNEL.fullmatch(ch):
            raise ConfigError(where, "no board sends it: a key is a channel number (1..255: loops, "
                                     "beds, doors) or a kiosk's queue code (1-8 of A-Z, a-z, 0-9, "
                                     "'.', '_', '-', digits included: 0, 300, 007; "
                                     f"firmware_bridge/PROTOCOL.md, QT), got {str(channel)!r}")
        ch = mapping.name_key(ch)  # `01` is channel 1 (TOML bare keys are text)
        if not isinstance(sensor, str) or not _SENSOR_ID.fullmatch(sensor):
            raise ConfigError(where, f"must be a sensor id (1-64 of a-z, 0-9, '_', '.', '-'), got {sensor!r}")
        if ch in names:
            raise ConfigError(where, f"names channel {ch} twice (queue codes ignore case, "
                                     "and numbers leading zeros: '01' is channel 1)")
        if sensor in names.values():
            raise ConfigError(where, f"sensor id {sensor!r} is given to two channels")
        names[ch] = sensor
    return names


def parse_params(raw: Mapping[str, Any], key: str) -> UpfwParams:
    known = set(UpfwParams.__dataclass_fields__) - set(NOT_TOML)
    check_known(raw, known, key, "upfw")
    port = serial_port(raw, key)
    baudrate = raw.get("baudrate", 115200)
    if baudrate not in BAUDRATES or type(baudrate) is not int:
        raise ConfigError(f"{key}.baudrate", f"must be one of {BAUDRATES}, got {baudrate!r}")
    readings = raw.get("loop_readings", "intervals")
    if readings not in ("intervals", "vehicles"):
        raise ConfigError(f"{key}.loop_readings", f"must be 'intervals' or 'vehicles', got {readings!r}")
    if readings == "intervals" and "interval_s" in raw:
        raise ConfigError(f"{key}.interval_s", "only used with loop_readings = \"vehicles\" "
                                               "(the board times its own intervals)")
    interval_s = _number(raw, key, "interval_s", 1.0, 3600.0)
    check_divides_hour(f"{key}.interval_s", interval_s, 1.0)
    return UpfwParams(
        port=port, baudrate=baudrate,
        loop_readings="vehicles" if readings == "vehicles" else "intervals",
        interval_s=interval_s,
        bed_heartbeat_s=_number(raw, key, "bed_heartbeat_s", 1.0, 3600.0),
        silence_timeout_s=_number(raw, key, "silence_timeout_s", 0.2, 3600.0),
        names=_names(raw.get("names", {}), key), key=key,
    )  # fmt: skip


class UpfwDriver:
    def __init__(self, sensor_id: str, params: UpfwParams, ctx: DriverContext) -> None:
        self.sensor_id = sensor_id
        self.params = params
        self.ctx = ctx
        self.decoder = UpfwDecoder()
        self.mapper = UpfwMapper(sensor_id, params.names, params.loop_readings,
                                 params.bed_heartbeat_s, taken=params.taken, key=params.key)
        self.probes = 0
        self._totals_key = totals.state_key(sensor_id)
        self._saved: DoorTotals | None = None
        self._codes_key = queue_codes.state_key(sensor_id)
        self._codes_seen = 0  # mapper.codes_changed when last looked at
        self._codes_stored = False  # codes loaded or staged: changes are staged, even to none

    def describe(self) -> dict[str, Any]:
        m = self.mapper
        return {
            "port": self.params.port, "loop_readings": self.params.loop_readings,
            "board": None if m.hello is None else m.hello.as_record(),
            "messages": dict(m.messages), "reboots": m.reboots, "lost_sentences": m.lost_sentences,
            "door_gaps": m.door_gaps, "ignored": m.ignored,
            "uneven_intervals": m.uneven_intervals, "faults": dict(m.faults),
            "probes": self.probes, "door_totals_kept": self.ctx.state is not None,
            **self.decoder.stats.as_dict(),
        }  # fmt: skip

    def bad_input(self) -> dict[str, int]:
        """The decoder's counts of bytes that made no sentence, and the sentences lost or
        not sent (edge/drivers/base.py `Counting`; README.md, "Liveness and status")."""
        m = self.mapper
        return {**self.decoder.stats.bad_input(), "lost_sentences": m.lost_sentences,
                "door_gaps": m.door_gaps, "ignored": m.ignored,
                "uneven_intervals": m.uneven_intervals}

    def _fail(self, reason: str) -> DriverError:
        return DriverError(f"upfw {self.sensor_id} on {self.params.port}: {reason}")

    async def run(self, emit: Emit) -> None:
        p = self.params
        text = None if self.ctx.state is None else self.ctx.state.load(self._totals_key)
        if text is not None:
            saved = totals.decode(text, self._totals_key)
            self.mapper.resume(saved)
            self._saved = saved
        text = None if self.ctx.state is None else self.ctx.state.load(self._codes_key)
        if text is not None:  # none kept (before they were): no code heard
            self.mapper.resume_codes(queue_codes.decode(text, self._codes_key))
            self._codes_seen, self._codes_stored = self.mapper.codes_changed, True
        try:
            link = await open_link(p.port, p.baudrate, timeout_s=1.0)
        except BridgeError as exc:
            raise self._fail(str(exc)) from exc
        try:
            await link.write(identity_query())
            await self._listen(link, emit)
        except BridgeError as exc:
            raise self._fail(str(exc)) from exc
        finally:
            with contextlib.suppress(BridgeError):  # the adapter is gone; the next run reopens it
                await link.close()

    def _keep_door_totals(self) -> None:
        """Staged before the counts they produce are emitted, with no await in between:
        the agent commits both in one transaction. The last sentence's (seq, t_ms) goes
        with them at every sentence, not only when a total moves: a resumed run measures
        lost sentences and reboots from it, and would otherwise take every sentence heard
        since the last door count for lost."""
        saved, m = self._saved, self.mapper
        if self.ctx.state is None or not m.doors or (
                saved is not None and m.last == saved.last and m.doors == saved.doors):
            return  # every message of every board passes here: compare before copying
        doors = m.door_totals()
        if doors is None:
            return
        self.ctx.state.stage(self._totals_key, totals.encode(doors))
        self._saved = doors

    def _keep_queue_codes(self) -> None:
        """The kiosk queue codes the board sent, staged when they change, before the ticket
        that brought a new one is emitted (the agent commits both in one transaction), and
        also when the code is refused: the restarted driver refuses the first ticket of
        either code. Boards that never sent a code keep nothing."""
        m = self.mapper
        if self.ctx.state is None or m.codes_changed == self._codes_seen:
            return
        self._codes_seen = m.codes_changed
        kept = m.queue_codes()
        if self._codes_stored or any(codes for _, _, codes in kept.boards):
            self.ctx.state.stage(self._codes_key, queue_codes.encode(kept))
            self._codes_stored = True

    def _emit(self, emit: Emit, outs: list[Out], ts: datetime | None = None) -> None:
        stamp = self.ctx.clock.now() if ts is None else ts
        for o in outs:
            emit(Sample(o.sensor, o.kind, o.values, stamp))

    async def _listen(self, link: SerialLink, emit: Emit) -> None:
        p, clock = self.params, self.ctx.clock
        schedule = (IntervalSchedule(p.interval_s, clock.now(), clock.monotonic())
                    if p.loop_readings == "vehicles" else None)
        try:
            await self._read_board(link, emit, schedule)
        finally:
            if schedule is not None:  # stopped or failed: the vehicles summed so far
                self._close_partial(emit, schedule)

    def _close_partial(self, emit: Emit, schedule: IntervalSchedule) -> None:
        """The run ends between two interval ends: [start, now) with its real length,
        stamped now (the next run times intervals of its own: nothing is counted twice)."""
        clock = self.ctx.clock
        now = clock.monotonic()
        while now >= schedule.close_at:
            self._emit(emit, self.mapper.close_loop_interval(schedule.end - schedule.start),
                       schedule.stamp(clock))
            schedule.advance(clock)
        if now - schedule.start >= MIN_INTERVAL_S:
            self._emit(emit, self.mapper.close_loop_interval(now - schedule.start), clock.now())

    async def _read_board(self, link: SerialLink, emit: Emit,
                          schedule: IntervalSchedule | None) -> None:
        p, clock = self.params, self.ctx.clock
        loop = asyncio.get_running_loop()
        last_ok = loop.time()
        probed = False
        while True:
            now = loop.time()
            wait = last_ok + (p.silence_timeout_s / 2 if not probed else p.silence_timeout_s) - now
            if schedule is not None:
                wait = min(wait, schedule.close_at - clock.monotonic())
            try:
                data = await link.read(timeout_s=max(wait, 0.001))
            except LinkTimeoutError:
                data = b""
            for msg in self.decoder.feed(data):
                if isinstance(msg, IdentityQuery):  # another host's command echoed: not the board
                    continue
                last_ok, probed = loop.time(), False
                try:
                    outs = self.mapper.on_message(msg, clock.monotonic(), clock.now().timestamp())
                finally:  # a refused code is kept too
                    self._keep_queue_codes()
                self._keep_door_totals()
                self._emit(emit, outs)
            if self.mapper.uneven is not None:
                raise self._fail(self._uneven_reason(self.mapper.uneven))
            raise_if_cancelled()  # only after what was read is emitted: nothing read is dropped
            while schedule is not None and clock.monotonic() >= schedule.close_at:
                length = schedule.end - schedule.start
                self._emit(emit, self.mapper.close_loop_interval(length), schedule.stamp(clock))
                schedule.advance(clock)
            quiet = loop.time() - last_ok
            if quiet >= p.silence_timeout_s:
                raise self._fail(f"no valid sentence in {p.silence_timeout_s:g} s")
            if not probed and quiet >= p.silence_timeout_s / 2:
                await link.write(identity_query())
                self.probes += 1
                probed = True

    def _uneven_reason(self, msg: LoopInterval) -> str:
        """Why a loop card's intervals are refused, and what to set (the board's interval
        is its firmware's: the config check cannot see it)."""
        hello = self.mapper.hello
        board = "the board (no HI heard yet)" if hello is None else f"board {hello.device_id!r}"
        n = msg.interval_s
        if n > MAX_INTERVAL_S:
            why = (f"over the wire contract's bound of {MAX_INTERVAL_S:g} s (the cloud would "
                   "reject every such reading)")
        else:
            low = HOUR_S // n * n
            why = (f"which do not divide an hour ({HOUR_S} s): the cloud counts each interval "
                   f"in the hour it ends in, so an hour would hold {low / 60:.4g} or "
                   f"{(low + n) / 60:.4g} minutes of counts")
        near = ", ".join(str(d) for d in whole_hour_divisors_near(n))
        return (f"{board} sends loop intervals of {n} s (channel {msg.channel}), {why}; not "
                f"sent. Set the board's interval to one that divides an hour (nearest: {near} "
                f"s), or {self.params.key or 'the sensor'}.loop_readings = \"vehicles\" (the "
                "driver sums the board's vehicles over its own interval_s)")


def build(sensor_id: str, params: UpfwParams, ctx: DriverContext) -> UpfwDriver:
    return UpfwDriver(sensor_id, params, ctx)
