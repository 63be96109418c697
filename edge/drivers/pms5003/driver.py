"""PMS5003 driver: frames from firmware_bridge become `air.pm` readings.

Active mode (default): the sensor reports by itself (every 1-2.3 s) and the driver
listens. Passive mode: the driver switches the sensor to passive and asks for one frame
every `query_interval_s`. Readings while the sensor warms up (`warmup_s` after the port
is opened) and all-zero frames before the first real one are flagged `warmup`; an
all-zero frame is always flagged (a stopped fan, not clean air).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from edge.drivers.base import DriverContext, Emit, Sample
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
from firmware_bridge.protocols.pms5003 import (
    Mode,
    Pms5003Ack,
    Pms5003Decoder,
    Pms5003Measurement,
    Pms5003tDecoder,
    Pms5003tMeasurement,
)
from firmware_bridge.protocols.pms5003 import commands as cmd
from firmware_bridge.protocols.pms5003.emulator import WARMUP_S
from firmware_bridge.transport import SerialLink, open_link, raise_if_cancelled
from firmware_bridge.warmup import WarmupTracker
from urbanpulse.errors import ConfigError

KIND = "air.pm"
MODELS = ("pms5003", "pms5003t")
MODES = ("active", "passive")

Measurement = Pms5003Measurement | Pms5003tMeasurement
Frame = Measurement | Pms5003Ack


@dataclass(frozen=True, slots=True)
class Pms5003Params:
    port: str
    model: str = "pms5003"
    mode: str = "active"
    query_interval_s: float = 5.0
    reply_timeout_s: float = 1.0
    silence_timeout_s: float = 10.0
    warmup_s: float = WARMUP_S
    pm1_scale: float = 1.0
    pm25_scale: float = 1.0
    pm10_scale: float = 1.0


def _number(raw: Mapping[str, Any], key: str, name: str, *, zero_ok: bool = False) -> float:
    return number(raw, key, name, default_of(Pms5003Params, name), zero_ok=zero_ok)


def parse_params(raw: Mapping[str, Any], key: str) -> Pms5003Params:
    known = set(Pms5003Params.__dataclass_fields__) | {"baudrate"}
    check_known(raw, known, key, "pms5003")
    port = serial_port(raw, key)
    model = raw.get("model", "pms5003")
    if model not in MODELS:
        raise ConfigError(f"{key}.model", f"must be 'pms5003' or 'pms5003t', got {model!r}")
    mode = raw.get("mode", "active")
    if mode not in MODES:
        raise ConfigError(f"{key}.mode", f"must be 'active' or 'passive', got {mode!r}")
    fixed_baudrate(raw, key, "PMS5003")
    if mode == "active":
        for name in ("query_interval_s", "reply_timeout_s"):
            if name in raw:
                raise ConfigError(f"{key}.{name}", "only used with mode = \"passive\"")
    p = Pms5003Params(
        port=port, model=model, mode=mode,
        query_interval_s=_number(raw, key, "query_interval_s"),
        reply_timeout_s=_number(raw, key, "reply_timeout_s"),
        silence_timeout_s=_number(raw, key, "silence_timeout_s"),
        warmup_s=_number(raw, key, "warmup_s", zero_ok=True),
        pm1_scale=_number(raw, key, "pm1_scale"),
        pm25_scale=_number(raw, key, "pm25_scale"),
        pm10_scale=_number(raw, key, "pm10_scale"),
    )  # fmt: skip
    if mode == "passive":
        check_query_timing(key, p.query_interval_s, p.reply_timeout_s, p.silence_timeout_s)
    return p


class Pms5003Driver:
    def __init__(self, sensor_id: str, params: Pms5003Params, ctx: DriverContext) -> None:
        self.sensor_id = sensor_id
        self.params = params
        self.ctx = ctx
        self.decoder: Pms5003Decoder | Pms5003tDecoder = (
            Pms5003tDecoder() if params.model == "pms5003t" else Pms5003Decoder())
        self.warmup = WarmupTracker(params.warmup_s, ctx.clock)
        self.queries = 0
        self.missed_replies = 0
        self.late_replies = 0
        self.sensor_errors = 0
        self.last: dict[str, float] | None = None

    def describe(self) -> dict[str, Any]:
        p = self.params
        out: dict[str, Any] = {"port": p.port, "model": p.model, "mode": p.mode,
                               "warming_up": self.warmup.in_window, "last": self.last,
                               "sensor_errors": self.sensor_errors, **self.decoder.stats.as_dict()}
        if p.mode == "passive":
            out.update(queries=self.queries, missed_replies=self.missed_replies,
                       late_replies=self.late_replies)
        return out

    def bad_input(self) -> dict[str, int]:
        """The decoder's counts of bytes that made no frame, and frames the sensor says it
        made in error (edge/drivers/base.py `Counting`)."""
        return {**self.decoder.stats.bad_input(), "sensor_errors": self.sensor_errors}

    def _sample(self, m: Measurement) -> Sample:
        p = self.params
        values = {"pm25": m.pm25 * p.pm25_scale, "pm10": m.pm10 * p.pm10_scale,
                  "pm1": m.pm1 * p.pm1_scale}
        if isinstance(m, Pms5003tMeasurement):
            values.update(temperature_c=m.temperature_c, humidity_pct=m.humidity_pct)
        if m.error_code:
            self.sensor_errors += 1
        warming = self.warmup.warming_up(m) or m.suspect_zero
        self.last = values
        return Sample(self.sensor_id, KIND, values, self.ctx.clock.now(), ("warmup",) if warming else ())

    def _fail(self, reason: str) -> DriverError:
        return DriverError(f"pms5003 {self.sensor_id} on {self.params.port}: {reason}")

    async def run(self, emit: Emit) -> None:
        p = self.params
        try:
            link = await open_link(p.port, 9600, timeout_s=max(p.reply_timeout_s, 1.0))
        except BridgeError as exc:
            raise self._fail(str(exc)) from exc
        self.warmup.restart()
        try:
            # A sensor left asleep by a technician's tool would stay silent: wake it first.
            await link.write(cmd.wake())
            if p.mode == "active":
                await link.write(cmd.set_mode(Mode.ACTIVE))
                await self._listen(link, emit)
            else:
                await self._poll(link, emit)
        except BridgeError as exc:
            raise self._fail(str(exc)) from exc
        finally:
            with contextlib.suppress(BridgeError):  # the adapter is gone; the next run reopens it
                await link.close()

    async def _listen(self, link: SerialLink, emit: Emit) -> None:
        def take(frame: object) -> bool:
            if isinstance(frame, Pms5003Measurement | Pms5003tMeasurement):
                emit(self._sample(frame))
                return True
            return False

        await listen(link, self.decoder.feed, take, self.params.silence_timeout_s, self._fail)

    async def _poll(self, link: SerialLink, emit: Emit) -> None:
        """Passive mode: one read every query_interval_s, a single attempt each. Between
        reads the driver listens: an answer that comes after reply_timeout_s is emitted
        when it comes (counted in late_replies), so that the next read gets its own."""
        p = self.params
        loop = asyncio.get_running_loop()

        def on_other(frame: Frame) -> None:  # a frame sent before the sensor went passive
            if not isinstance(frame, Pms5003Ack):
                emit(self._sample(frame))

        def is_mode_ack(frame: Frame) -> bool:
            return isinstance(frame, Pms5003Ack) and frame.command == 0xE1

        await self._request(link, cmd.set_mode(Mode.PASSIVE), is_mode_ack, on_other)
        last_ok = next_query = loop.time()

        def late(frame: Frame) -> None:
            if not isinstance(frame, Pms5003Ack):
                nonlocal last_ok
                self.late_replies += 1
                last_ok = loop.time()
                emit(self._sample(frame))

        decoder: Any = self.decoder
        while True:
            self.queries += 1
            frame = await self._request(link, cmd.read_passive(), _is_measurement, on_other)
            if frame is None:
                self.missed_replies += 1
                if loop.time() - last_ok >= p.silence_timeout_s:
                    raise self._fail(f"no reply to passive reads for {p.silence_timeout_s:g} s")
            else:
                assert not isinstance(frame, Pms5003Ack)
                emit(self._sample(frame))
                last_ok = loop.time()
            raise_if_cancelled()  # only after the answer read is emitted
            next_query += p.query_interval_s
            now = loop.time()
            if next_query < now:  # fell behind (slow replies): keep the cadence from now
                next_query = now
            await link.listen_until(next_query, decoder, late)
            raise_if_cancelled()  # stopped while a read rested: no query sent, none counted

    async def _request(self, link: SerialLink, command: bytes, match: Callable[[Frame], bool],
                       on_other: Callable[[Frame], None]) -> Frame | None:
        decoder: Any = self.decoder
        try:
            found: Frame = await link.request(command, decoder, match, retries=0,
                                              timeout_s=self.params.reply_timeout_s, on_other=on_other)
        except ProtocolError:
            return None
        # A stop while the answer was read: returned all the same, emitted by the caller
        # before it stops (raise_if_cancelled there, or the next write's).
        return found


def _is_measurement(frame: Frame) -> bool:
    return not isinstance(frame, Pms5003Ack)


def build(sensor_id: str, params: Pms5003Params, ctx: DriverContext) -> Pms5003Driver:
    return Pms5003Driver(sensor_id, params, ctx)
