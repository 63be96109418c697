"""MH-Z19B driver: 'read CO2' every `query_interval_s` becomes an `air.co2` reading.

The module answers only when asked. At start the driver makes sure of automatic baseline
correction (ABC) on or off as configured (and of the range, if given). Both live in the
module's flash: ABC is read back ('get ABC status', where the firmware answers it) and
written only if it differs; what cannot be read back (the range, ABC on firmware without
the query) is written when the driver state does not say it was written within a day
(edge.drivers.flash_settings). Readings during the preheat (`warmup_s`, 3 minutes, after the port is
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
from edge.drivers.flash_settings import FlashSettings
from edge.drivers.serial_params import (
    check_known,
    check_query_timing,
    default_of,
    fixed_baudrate,
    number,
    serial_port,
)
from edge.errors import DriverError
from firmware_bridge.errors import BridgeError, LinkTimeoutError, ProtocolError
from firmware_bridge.protocols.mhz19b import Mhz19bAbcStatus, Mhz19bDecoder, Mhz19bFrame
from firmware_bridge.protocols.mhz19b import commands as cmd
from firmware_bridge.protocols.mhz19b.emulator import WARMUP_S
from firmware_bridge.transport import SerialLink, open_link, raise_if_cancelled
from firmware_bridge.warmup import WarmupTracker
from urbanpulse.errors import ConfigError

KIND = "air.co2"
# Driver-state prefix of a setting written and read back otherwise right after.
NOT_HELD = "not_held:"


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
        self.late_replies = 0
        self.late_abc_status = 0
        self.last: dict[str, float] | None = None
        self.flash = FlashSettings(ctx.state, f"mhz19b/{sensor_id}/flash", ctx.clock)
        self.flash_writes = 0
        self.unanswered_setting_queries = 0
        self.settings: dict[str, str] = {}

    def describe(self) -> dict[str, Any]:
        p = self.params
        return {"port": p.port, "abc": p.abc, "range_ppm": p.range_ppm,
                "settings": dict(self.settings), "flash_writes": self.flash_writes,
                "unanswered_setting_queries": self.unanswered_setting_queries,
                "warming_up": self.warmup.in_window, "last": self.last, "queries": self.queries,
                "missed_replies": self.missed_replies, "late_replies": self.late_replies,
                "late_abc_status": self.late_abc_status, **self.decoder.stats.as_dict()}

    def bad_input(self) -> dict[str, int]:
        """The decoder's counts of bytes that made no frame (edge/drivers/base.py `Counting`)."""
        return self.decoder.stats.bad_input()

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
            await self._keep_abc(link, emit)
            if p.range_ppm is not None:  # no command reads it back
                await self._write_unless_recent(link, "range_ppm", p.range_ppm,
                                                cmd.set_range(p.range_ppm), "written_unconfirmed")
            await self._poll(link, emit)
        except BridgeError as exc:
            raise self._fail(str(exc)) from exc
        finally:
            with contextlib.suppress(BridgeError):  # the adapter is gone; the next run reopens it
                await link.close()

    async def _keep_abc(self, link: SerialLink, emit: Emit) -> None:
        """Read ABC back (two attempts) and write it only if it differs; without an answer,
        write it unless the driver state says it was written within a day."""
        wanted = self.params.abc

        def on_other(frame: Mhz19bFrame) -> None:
            # A reading here answers a query of the previous run, sent just before it ended;
            # a second ABC status, the first attempt's answer come late.
            if self._take(frame, emit):
                self.late_replies += 1

        try:
            status = await link.request(cmd.get_abc_status(), self.decoder, _is_abc_status,
                                        retries=1, timeout_s=self.params.reply_timeout_s,
                                        on_other=on_other)
        except ProtocolError:
            self.unanswered_setting_queries += 1
            await self._write_unless_recent(link, "abc", int(wanted), cmd.set_abc(wanted),
                                            "written_unconfirmed")
            return
        assert isinstance(status, Mhz19bAbcStatus)
        if status.enabled == wanted:
            self.settings["abc"] = "kept"
        elif self.flash.recently_written(NOT_HELD + "abc", int(wanted)):
            # Written within a day and read back otherwise right after: writing it again at
            # every start would not make it hold, only wear the flash.
            self.settings["abc"] = "not_held"
        else:
            await self._write(link, "abc", int(wanted), cmd.set_abc(wanted), "written")
            if await self._abc_reads_back(link, emit, wanted) is False:
                self.flash.record(NOT_HELD + "abc", int(wanted))
                self.settings["abc"] = "written_not_held"

    async def _abc_reads_back(self, link: SerialLink, emit: Emit, wanted: bool) -> bool | None:
        """Ask 'get ABC status' (two attempts, each listened to for its whole window): True
        as soon as an answer reads `wanted`, False when every answer reads otherwise, None
        without an answer. An answer to the query before the write may still come first
        (late, with the old value), so only an answer that reads `wanted` settles it early."""
        loop = asyncio.get_running_loop()
        answered = held = False
        for _ in range(2):
            await link.write(cmd.get_abc_status())
            deadline = loop.time() + self.params.reply_timeout_s
            while not held and (remaining := deadline - loop.time()) > 0:
                try:
                    data = await link.read(timeout_s=remaining)
                except LinkTimeoutError:
                    break
                for frame in self.decoder.feed(data):
                    if isinstance(frame, Mhz19bAbcStatus):
                        answered = True
                        held = held or frame.enabled == wanted
                    elif self._take(frame, emit):
                        self.late_replies += 1
                raise_if_cancelled()  # only after what was read is emitted
            if held:
                return True
        return False if answered else None

    async def _write_unless_recent(self, link: SerialLink, name: str, value: int, command: bytes,
                                   status: str) -> None:
        if self.flash.recently_written(name, value):
            self.settings[name] = "unconfirmed"
        else:
            await self._write(link, name, value, command, status)

    async def _write(self, link: SerialLink, name: str, value: int, command: bytes, status: str) -> None:
        await link.write(command)
        self.flash_writes += 1
        self.flash.record(name, value)
        self.settings[name] = status

    async def _poll(self, link: SerialLink, emit: Emit) -> None:
        """One 'read CO2' every query_interval_s; between queries the driver listens, so an
        answer that comes after its window is emitted (and stamped) when it comes, counted
        in late_replies. No reading for silence_timeout_s fails the driver."""
        p = self.params
        loop = asyncio.get_running_loop()
        last_ok = next_query = loop.time()

        def late(frame: Mhz19bFrame) -> None:
            if self._take(frame, emit):
                nonlocal last_ok
                self.late_replies += 1
                last_ok = loop.time()

        while True:
            self.queries += 1
            readings = await self._query(link, emit)
            if readings:
                self.late_replies += readings - 1
                last_ok = loop.time()
            else:
                self.missed_replies += 1
                if loop.time() - last_ok >= p.silence_timeout_s:
                    raise self._fail(f"no reply to 'read CO2' for {p.silence_timeout_s:g} s")
            next_query += p.query_interval_s
            now = loop.time()
            if next_query < now:  # fell behind (slow replies): keep the cadence from now
                next_query = now
            await link.listen_until(next_query, self.decoder, late)
            raise_if_cancelled()  # only after what was read is emitted

    async def _query(self, link: SerialLink, emit: Emit) -> int:
        """Send 'read CO2' and listen for the whole reply window, emitting every reading
        as it comes; returns how many came. The last is this query's answer, any before
        it answered earlier queries late (see README)."""
        await link.write(cmd.read_co2())
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.params.reply_timeout_s
        readings = 0
        while (remaining := deadline - loop.time()) > 0:
            try:
                data = await link.read(timeout_s=remaining)
            except LinkTimeoutError:
                break
            for frame in self.decoder.feed(data):
                readings += self._take(frame, emit)
            raise_if_cancelled()  # only after what was read is emitted
        return readings

    def _take(self, frame: Mhz19bFrame, emit: Emit) -> bool:
        """Emit a reading; count a frame that answers nothing asked now. True for a reading."""
        if isinstance(frame, Mhz19bAbcStatus):  # a late answer to the start's ABC query
            self.late_abc_status += 1
            return False
        values = {"co2": float(frame.co2_ppm), "temperature_c": float(frame.temperature_c)}
        self.last = values
        flags = ("warmup",) if self.warmup.warming_up(frame) or frame.suspect_zero else ()
        emit(Sample(self.sensor_id, KIND, values, self.ctx.clock.now(), flags))
        return True


def _is_abc_status(frame: Mhz19bFrame) -> bool:
    return isinstance(frame, Mhz19bAbcStatus)


def build(sensor_id: str, params: Mhz19bParams, ctx: DriverContext) -> Mhz19bDriver:
    return Mhz19bDriver(sensor_id, params, ctx)
