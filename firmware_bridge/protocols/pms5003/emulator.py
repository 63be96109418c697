"""PMS5003 and PMS5003T behind a pseudo-terminal."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Generic, TypeVar

from firmware_bridge.emulator.pty_device import PtyEmulator
from firmware_bridge.protocols.pms5003 import wire
from firmware_bridge.protocols.pms5003.commands import Pms5003CommandDecoder
from firmware_bridge.protocols.pms5003.frames import Mode, Pms5003Measurement, Pms5003tMeasurement

BAUDRATE = 9600
WARMUP_S = 30.0

M = TypeVar("M", Pms5003Measurement, Pms5003tMeasurement)


def reading(pm25: float = 35.0, pm10: float = 60.0) -> Pms5003Measurement:
    """A plausible full PMS5003 reading from PM2.5 and PM10 (counts roughly scaled)."""
    p25, p10 = round(pm25), round(pm10)
    p1 = round(pm25 * 0.7)
    return Pms5003Measurement(
        pm1_cf1=p1, pm25_cf1=p25, pm10_cf1=p10, pm1=p1, pm25=p25, pm10=p10,
        n0_3=p25 * 60, n0_5=p25 * 18, n1_0=p25 * 3, n2_5=max(p10 - p25, 0),
        n5_0=max(p10 - p25, 0) // 4, n10_0=max(p10 - p25, 0) // 16,
    )  # fmt: skip


def reading_t(
    pm25: float = 35.0, pm10: float = 60.0, temperature_c: float = 29.5, humidity_pct: float = 74.0
) -> Pms5003tMeasurement:
    base = reading(pm25, pm10)
    return Pms5003tMeasurement(
        pm1_cf1=base.pm1_cf1, pm25_cf1=base.pm25_cf1, pm10_cf1=base.pm10_cf1,
        pm1=base.pm1, pm25=base.pm25, pm10=base.pm10,
        n0_3=base.n0_3, n0_5=base.n0_5, n1_0=base.n1_0, n2_5=base.n2_5,
        temperature_c=temperature_c, humidity_pct=humidity_pct,
    )  # fmt: skip


def _zeroed(m: M) -> M:
    return dataclasses.replace(m, **dict.fromkeys(m.PARTICLES, 0))


class _PmsEmulator(PtyEmulator, Generic[M]):
    """Active mode (a frame every `period_s`) at power-up; passive mode answers 'read'
    only; sleep is acknowledged and stops everything; wake is not acknowledged and
    restarts the warm-up, during which particle values are zeros. Mode changes and
    sleep answer `42 4D 00 04 CMD DATA` as the sensors do (observed; the manual does not
    document the answer)."""

    default_reading: Callable[[], M]

    def __init__(
        self,
        values: Callable[[], M] | None = None,
        *,
        period_s: float = 1.0,
        warmup_s: float = WARMUP_S,
        link_path: str | None = None,
        pace: bool = True,
        attach_grace_s: float = 0.2,
        seed: int | None = None,
    ) -> None:
        super().__init__(
            baudrate=BAUDRATE,
            link_path=link_path,
            pace=pace,
            attach_grace_s=attach_grace_s,
            seed=seed,
        )
        if period_s <= 0:
            raise ValueError(f"period_s must be positive, got {period_s}")
        if values is None:
            default = self.default_reading()
            values = lambda: default  # noqa: E731
        self.values: Callable[[], M] = values
        self.period_s = period_s
        self.warmup_s = warmup_s
        self.mode = Mode.ACTIVE
        self.sleeping = False
        self.commands_heard = 0
        self._commands = Pms5003CommandDecoder()
        self._warm_until = 0.0
        self._next_report = 0.0

    def _power_on(self, now: float) -> None:
        self.mode = Mode.ACTIVE
        self.sleeping = False
        self._warm_until = now + self.warmup_s
        self._next_report = now + self.period_s
        self._commands = Pms5003CommandDecoder()

    def _on_detach(self) -> None:
        self._commands = Pms5003CommandDecoder()

    def _frame(self, now: float) -> bytes:
        value = self.values()
        if now < self._warm_until:
            value = _zeroed(value)
        return wire.encode_measurement(value)

    def _tick(self, now: float) -> float:
        if self.sleeping or self.mode is Mode.PASSIVE:
            return now + 1.0
        if now >= self._next_report:
            self._send_frame(self._frame(now))
            self._next_report += self.period_s
            if self._next_report <= now:
                self._next_report = now + self.period_s
        return self._next_report

    def _corrupt_checksum(self, frame: bytes) -> bytes:
        return frame[:-1] + bytes((frame[-1] ^ 0x5A,))

    def _on_bytes(self, data: bytes, now: float) -> None:
        for cmd in self._commands.feed(data):
            self.commands_heard += 1
            if cmd.command == wire.CMD_READ:
                if not self.sleeping and self.mode is Mode.PASSIVE:
                    self._send_frame(self._frame(now))
            elif cmd.command == wire.CMD_MODE and cmd.data in (0, 1):
                if not self.sleeping:
                    self.mode = Mode(cmd.data)
                    self._next_report = now + self.period_s
                    self._send_frame(wire.encode_ack(cmd.command, cmd.data))
            elif cmd.command == wire.CMD_SLEEP and cmd.data == 0:
                if not self.sleeping:
                    self.sleeping = True
                    self._send_frame(wire.encode_ack(cmd.command, cmd.data))
            elif cmd.command == wire.CMD_SLEEP and cmd.data == 1 and self.sleeping:
                self.sleeping = False
                self._warm_until = now + self.warmup_s
                self._next_report = now + self.period_s


class Pms5003Emulator(_PmsEmulator[Pms5003Measurement]):
    default_reading = staticmethod(reading)


class Pms5003tEmulator(_PmsEmulator[Pms5003tMeasurement]):
    default_reading = staticmethod(reading_t)
