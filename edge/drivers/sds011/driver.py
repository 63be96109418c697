"""SDS011 driver: frames from firmware_bridge become `air.pm` readings.

Active mode (default): the sensor reports on its own every `period` and the driver only
listens. Query mode: the driver puts the sensor in query mode and asks every
`query_interval_s`. Reporting mode and working period live in the sensor's flash: the
driver reads them at start and writes only what differs (edge.drivers.flash_settings).
Readings during `warmup_s` after the driver woke the sensor (every start sends the wake
command) are flagged `warmup` (the cloud stores them but leaves them out of aggregates):
the datasheet gives the data 30 s to settle after sleep/work. All-zero frames before the
first real one are flagged too, and an all-zero frame always: it is not clean air.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from edge.drivers.base import DriverContext, Emit, Sample
from edge.drivers.flash_settings import FlashSettings
from edge.drivers.serial_listen import listen
from edge.drivers.serial_params import (
    check_known,
    check_query_timing,
    default_of,
    fixed_baudrate,
    number,
    serial_port,
)
from edge.errors import DriverError
from firmware_bridge.errors import BridgeError, ProtocolError
from firmware_bridge.protocols.sds011 import (
    ReportMode,
    Sds011Decoder,
    Sds011Frame,
    Sds011Measurement,
    Sds011ReportModeReply,
    Sds011WorkingPeriodReply,
    WorkState,
)
from firmware_bridge.protocols.sds011 import commands as cmd
from firmware_bridge.protocols.sds011.emulator import WARMUP_S
from firmware_bridge.transport import SerialLink, open_link, raise_if_cancelled
from firmware_bridge.warmup import WarmupTracker
from urbanpulse.errors import ConfigError

KIND = "air.pm"


@dataclass(frozen=True)
class Sds011Params:
    port: str
    baudrate: int = 9600
    mode: str = "active"
    query_interval_s: float = 5.0
    reply_timeout_s: float = 1.0
    silence_timeout_s: float = 10.0
    warmup_s: float = WARMUP_S
    pm25_scale: float = 1.0
    pm10_scale: float = 1.0


def parse_params(raw: Mapping[str, Any], key: str) -> Sds011Params:
    known = set(Sds011Params.__dataclass_fields__)
    check_known(raw, known, key, "sds011")
    port = serial_port(raw, key)
    mode = raw.get("mode", "active")
    if mode not in ("active", "query"):
        raise ConfigError(f"{key}.mode", f"must be 'active' or 'query', got {mode!r}")
    numbers = {name: number(raw, key, name, default_of(Sds011Params, name))
               for name in ("query_interval_s", "reply_timeout_s", "silence_timeout_s",
                            "pm25_scale", "pm10_scale")}
    warmup_s = number(raw, key, "warmup_s", default_of(Sds011Params, "warmup_s"), zero_ok=True)
    fixed_baudrate(raw, key, "SDS011")
    p = Sds011Params(port=port, mode=mode, query_interval_s=numbers["query_interval_s"],
                     reply_timeout_s=numbers["reply_timeout_s"],
                     silence_timeout_s=numbers["silence_timeout_s"], warmup_s=warmup_s,
                     pm25_scale=numbers["pm25_scale"], pm10_scale=numbers["pm10_scale"])
    if mode == "query":
        check_query_timing(key, p.query_interval_s, p.reply_timeout_s, p.silence_timeout_s)
    return p


class Sds011Driver:
    def __init__(self, sensor_id: str, params: Sds011Params, ctx: DriverContext) -> None:
        self.sensor_id = sensor_id
        self.params = params
        self.ctx = ctx
        self.decoder = Sds011Decoder()
        self.warmup = WarmupTracker(params.warmup_s, ctx.clock)
        self.queries = 0
        self.missed_replies = 0
        self.late_replies = 0
        self.flash = FlashSettings(ctx.state, f"sds011/{sensor_id}/flash", ctx.clock)
        self.flash_writes = 0
        self.unanswered_setting_queries = 0
        self.settings: dict[str, str] = {}

    def describe(self) -> dict[str, Any]:
        out: dict[str, Any] = {"port": self.params.port, "mode": self.params.mode,
                               "warming_up": self.warmup.in_window,
                               "settings": dict(self.settings), "flash_writes": self.flash_writes,
                               "unanswered_setting_queries": self.unanswered_setting_queries,
                               **self.decoder.stats.as_dict()}
        if self.params.mode == "query":
            out.update(queries=self.queries, missed_replies=self.missed_replies,
                       late_replies=self.late_replies)
        return out

    def bad_input(self) -> dict[str, int]:
        """The decoder's counts of bytes that made no frame (edge/drivers/base.py `Counting`)."""
        return self.decoder.stats.bad_input()

    def _sample(self, frame: Sds011Measurement) -> Sample:
        p = self.params
        warming = self.warmup.warming_up(frame) or frame.suspect_zero
        return Sample(self.sensor_id, KIND,
                      {"pm25": frame.pm25 * p.pm25_scale, "pm10": frame.pm10 * p.pm10_scale},
                      self.ctx.clock.now(), ("warmup",) if warming else ())

    def _fail(self, reason: str) -> DriverError:
        return DriverError(f"sds011 {self.sensor_id} on {self.params.port}: {reason}")

    async def run(self, emit: Emit) -> None:
        p = self.params
        try:
            link = await open_link(p.port, p.baudrate, timeout_s=p.silence_timeout_s)
        except BridgeError as exc:
            raise self._fail(str(exc)) from exc
        try:
            # Sleep lasts until a power cycle and the working period is kept in flash: a
            # sensor left asleep, or reporting every n minutes, by another tool (or an
            # earlier run) would stay silent here. Wake it (sleep is not in flash: no wear)
            # and make it report continuously.
            await self._wake(link)
            await self._keep(link, emit, "working_period", 0)
            mode = ReportMode.ACTIVE if p.mode == "active" else ReportMode.QUERY
            await self._keep(link, emit, "report_mode", mode)
            if p.mode == "active":
                await self._listen(link, emit)
            else:
                await self._poll(link, emit)
        except BridgeError as exc:
            raise self._fail(str(exc)) from exc
        finally:
            with contextlib.suppress(BridgeError):  # the adapter is gone; the next run reopens it
                await link.close()

    async def _wake(self, link: SerialLink) -> None:
        """Send 'work' and start the warm-up window: a sensor that was asleep (or just
        powered with the adapter) gives stable data 30 s after it starts working."""
        await link.write(cmd.set_work_state(WorkState.WORK))
        self.warmup.restart()

    async def _keep(self, link: SerialLink, emit: Emit, name: str, wanted: int) -> None:
        """Read setting `name` (the query form, two attempts) and write `wanted` only if it
        differs. A sensor that does not answer gets the write unless the driver state says
        the same value was written recently (FlashSettings)."""
        reply_type: type[Sds011ReportModeReply | Sds011WorkingPeriodReply]
        if name == "report_mode":
            query, write = cmd.get_report_mode(), cmd.set_report_mode(ReportMode(wanted))
            reply_type = Sds011ReportModeReply
        else:
            query, write = cmd.get_working_period(), cmd.set_working_period(wanted)
            reply_type = Sds011WorkingPeriodReply

        def answers(frame: Sds011Frame) -> bool:
            return isinstance(frame, reply_type) and not frame.is_set

        try:
            reply = await link.request(query, self.decoder, answers, retries=1,
                                       timeout_s=self.params.reply_timeout_s,
                                       on_other=self._on_other(emit))
        except ProtocolError:
            self.unanswered_setting_queries += 1
            if self.flash.recently_written(name, wanted):
                self.settings[name] = "unconfirmed"
                return
            status = "written_unconfirmed"
        else:
            if _value_of(reply) == wanted:
                self.settings[name] = "kept"
                return
            status = "written"
        await link.write(write)
        self.flash_writes += 1
        self.flash.record(name, wanted)
        self.settings[name] = status

    def _on_other(self, emit: Emit) -> Callable[[Sds011Frame], None]:
        """A report that crossed a command on the line is a reading like any other."""
        def on_other(frame: Sds011Frame) -> None:
            if isinstance(frame, Sds011Measurement):
                emit(self._sample(frame))

        return on_other

    async def _listen(self, link: SerialLink, emit: Emit) -> None:
        def take(frame: object) -> bool:
            if isinstance(frame, Sds011Measurement):
                emit(self._sample(frame))
                return True
            return False

        await listen(link, self.decoder.feed, take, self.params.silence_timeout_s, self._fail)

    async def _poll(self, link: SerialLink, emit: Emit) -> None:
        """Query mode: one 'query data' every query_interval_s, a single attempt each (the
        next query is the retry); no reply for silence_timeout_s fails the driver. Between
        queries the driver listens: an answer that comes after reply_timeout_s is emitted
        when it comes (counted in late_replies), so that the next query gets its own."""
        p = self.params
        loop = asyncio.get_running_loop()
        on_other = self._on_other(emit)  # a report sent before query mode was set
        last_ok = next_query = loop.time()

        def late(frame: Sds011Frame) -> None:
            if isinstance(frame, Sds011Measurement):
                nonlocal last_ok
                self.late_replies += 1
                last_ok = loop.time()
                emit(self._sample(frame))

        while True:
            self.queries += 1
            try:
                frame = await link.request(cmd.query_data(), self.decoder, _is_measurement,
                                           retries=0, timeout_s=p.reply_timeout_s,
                                           on_other=on_other)
            except ProtocolError as exc:
                self.missed_replies += 1
                if loop.time() - last_ok >= p.silence_timeout_s:
                    raise self._fail(f"no reply to 'query data' for {p.silence_timeout_s:g} s") from exc
            else:
                assert isinstance(frame, Sds011Measurement)
                emit(self._sample(frame))
                last_ok = loop.time()
            finally:
                raise_if_cancelled()
            next_query += p.query_interval_s
            now = loop.time()
            if next_query < now:  # fell behind (slow replies): keep the cadence from now
                next_query = now
            await link.listen_until(next_query, self.decoder, late)
            raise_if_cancelled()  # stopped while a read rested: no query sent, none counted


def _is_measurement(frame: Sds011Frame) -> bool:
    return isinstance(frame, Sds011Measurement)


def _value_of(frame: Sds011Frame) -> int:
    if isinstance(frame, Sds011ReportModeReply):
        return int(frame.mode)
    assert isinstance(frame, Sds011WorkingPeriodReply)
    return frame.minutes


def build(sensor_id: str, params: Sds011Params, ctx: DriverContext) -> Sds011Driver:
    return Sds011Driver(sensor_id, params, ctx)
