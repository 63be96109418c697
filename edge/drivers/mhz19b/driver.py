"""MH-Z19B driver: 'read CO2' every `query_interval_s` becomes an `air.co2` reading.

The module answers only when asked. At start the driver sets automatic baseline
correction (ABC) on or off as configured (and the range, if given): those commands
have no reply. Readings during the preheat (`warmup_s`, 3 minutes, after the port is
opened) are flagged `warmup`: the module answers 0 ppm, or on some firmware a fixed
400-500 ppm, while it preheats.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from edge.drivers.base import DriverContext, Emit, Sample
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
from firmware_bridge.protocols.mhz19b import Mhz19bDecoder, Mhz19bReading
from firmware_bridge.protocols.mhz19b import commands as cmd
from firmware_bridge.protocols.mhz19b.emulator import WARMUP_S
from firmware_bridge.transport import SerialLink, open_link, raise_if_cancelled
from firmware_bridge.warmup import WarmupTracker
from urbanpulse.errors import ConfigError

KIND = "air.co2"


@dataclass(frozen=True, slots=True)
class Mhz19bParams:
    port: str
    abc: bool = True
    range_ppm: int | None = None
    query_interval_s: float = 5.0
    reply_timeout_s: float = 1.0
    silence_timeout_s: float = 20.0
    warmup_s: float = WARMUP_S


def _number(raw: Mapping[str, Any], key: str, name: str, *, zero_ok: bool = False) -> float:
    return number(raw, key, name, default_of(Mhz19bParams, name), zero_ok=zero_ok)


def parse_params(raw: Mapping[str, Any], key: str) -> Mhz19bParams:
    known = set(Mhz19bParams.__dataclass_fields__) | {"baudrate"}
    check_known(raw, known, key, "mhz19b")
    port = serial_port(raw, key)
    fixed_baudrate(raw, key, "MH-Z19B")
    abc = raw.get("abc", True)
    if not isinstance(abc, bool):
        raise ConfigError(f"{key}.abc", f"must be true or false, got {abc!r}")
    range_ppm = raw.get("range_ppm")
    if range_ppm is not None and (type(range_ppm) is not int or range_ppm not in cmd.RANGES_PPM):
        raise ConfigError(f"{key}.range_ppm", f"must be one of {cmd.RANGES_PPM}, got {range_ppm!r}")
    p = Mhz19bParams(
        port=port, abc=abc, range_ppm=range_ppm,
        query_interval_s=_number(raw, key, "query_interval_s"),
        reply_timeout_s=_number(raw, key, "reply_timeout_s"),
        silence_timeout_s=_number(raw, key, "silence_timeout_s"),
        warmup_s=_number(raw, key, "warmup_s", zero_ok=True),
    )  # fmt: skip
    check_query_timing(key, p.query_interval_s, p.reply_timeout_s, p.silence_timeout_s)
    return p


class Mhz19bDriver:
    def __init__(self, sensor_id: str, params: Mhz19bParams, ctx: DriverContext) -> None:
        self.sensor_id = sensor_id
        self.params = params
        self.ctx = ctx
        self.decoder = Mhz19bDecoder()
        self.warmup = WarmupTracker(params.warmup_s, ctx.clock)
        self.queries = 0
        self.missed_replies = 0
        self.last: dict[str, float] | None = None

    def describe(self) -> dict[str, Any]:
        p = self.params
        return {"port": p.port, "abc": p.abc, "range_ppm": p.range_ppm,
                "warming_up": self.warmup.in_window, "last": self.last, "queries": self.queries,
                "missed_replies": self.missed_replies, **self.decoder.stats.as_dict()}

    def _fail(self, reason: str) -> DriverError:
        return DriverError(f"mhz19b {self.sensor_id} on {self.params.port}: {reason}")

    async def run(self, emit: Emit) -> None:
        p = self.params
        try:
            link = await open_link(p.port, 9600, timeout_s=max(p.reply_timeout_s, 1.0))
        except BridgeError as exc:
            raise self._fail(str(exc)) from exc
        self.warmup.restart()
        try:
            await link.write(cmd.set_abc(p.abc))
            if p.range_ppm is not None:
                await link.write(cmd.set_range(p.range_ppm))
            await self._poll(link, emit)
        except BridgeError as exc:
            raise self._fail(str(exc)) from exc
        finally:
            with contextlib.suppress(BridgeError):  # the adapter is gone; the next run reopens it
                await link.close()

    async def _poll(self, link: SerialLink, emit: Emit) -> None:
        p = self.params
        loop = asyncio.get_running_loop()
        last_ok = next_query = loop.time()
        while True:
            self.queries += 1
            reading = await self._read(link)
            if reading is None:
                self.missed_replies += 1
                if loop.time() - last_ok >= p.silence_timeout_s:
                    raise self._fail(f"no reply to 'read CO2' for {p.silence_timeout_s:g} s")
            else:
                values = {"co2": float(reading.co2_ppm), "temperature_c": float(reading.temperature_c)}
                self.last = values
                flags = ("warmup",) if self.warmup.warming_up(reading) or reading.suspect_zero else ()
                emit(Sample(self.sensor_id, KIND, values, self.ctx.clock.now(), flags))
                last_ok = loop.time()
            next_query += p.query_interval_s
            now = loop.time()
            if next_query < now:  # fell behind (slow replies): keep the cadence from now
                next_query = now
            await asyncio.sleep(next_query - now)

    async def _read(self, link: SerialLink) -> Mhz19bReading | None:
        try:
            return await link.request(cmd.read_co2(), self.decoder, _is_reading, retries=0,
                                      timeout_s=self.params.reply_timeout_s)
        except ProtocolError:
            return None
        finally:
            raise_if_cancelled()


def _is_reading(frame: Mhz19bReading) -> bool:
    return True


def build(sensor_id: str, params: Mhz19bParams, ctx: DriverContext) -> Mhz19bDriver:
    return Mhz19bDriver(sensor_id, params, ctx)
