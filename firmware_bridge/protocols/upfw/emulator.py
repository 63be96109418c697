"""A urbanpulse board speaking upfw behind a pseudo-terminal."""

from __future__ import annotations

import dataclasses
import random
from collections.abc import Callable, Sequence

from firmware_bridge.emulator.pty_device import PtyEmulator
from firmware_bridge.protocols.upfw import wire
from firmware_bridge.protocols.upfw.decoder import UpfwDecoder
from firmware_bridge.protocols.upfw.frames import (
    BedWeight,
    BoardMessage,
    DeviceKind,
    DoorCount,
    Hello,
    IdentityQuery,
    LoopVehicle,
    TicketIssued,
    TicketServed,
)

BAUDRATE = 115200
Source = Callable[[], Sequence[BoardMessage]]


def demo_source(kind: DeviceKind, channels: int, rng: random.Random) -> Source:
    """Plausible traffic for a board of `kind`; `seq` and `t_ms` are filled in later."""
    counts = [0] * (channels + 1)
    tickets = {"queue": 0, "served": 0}

    def loop() -> Sequence[BoardMessage]:
        out: list[BoardMessage] = []
        for ch in range(1, channels + 1):
            if rng.random() < 0.6:
                counts[ch] += 1
                speed = rng.uniform(15, 45)
                out.append(LoopVehicle(0, 0, ch, round(6.5 / speed * 3600), counts[ch]))
        return out

    def bed() -> Sequence[BoardMessage]:
        return [
            BedWeight(0, 0, b, round(rng.uniform(55, 80), 3) if b % 3 else 0.0, True, b % 3 != 0)
            for b in range(1, channels + 1)
        ]

    def door() -> Sequence[BoardMessage]:
        door_no = rng.randint(1, channels)
        counts[door_no] += rng.randint(0, 3)
        exited = max(counts[door_no] - rng.randint(0, 5), 0)
        return [DoorCount(0, 0, door_no, counts[door_no], exited)]

    def kiosk() -> Sequence[BoardMessage]:
        tickets["queue"] += 1
        out: list[BoardMessage] = [
            TicketIssued(0, 0, "A", tickets["queue"], tickets["queue"] - tickets["served"])
        ]
        if tickets["served"] < tickets["queue"] and rng.random() < 0.5:
            tickets["served"] += 1
            out.append(TicketServed(0, 0, "A", tickets["served"], rng.randint(1, 4), rng.randint(60, 1800)))
        return out

    return {DeviceKind.LOOP: loop, DeviceKind.BED: bed, DeviceKind.DOOR: door, DeviceKind.KIOSK: kiosk}[kind]


class UpfwEmulator(PtyEmulator):
    """Says HI at boot, every `hello_period_s` and when asked (IQ); every `period_s`
    sends what `source()` returns, numbering sentences (`seq`) and stamping board
    uptime (`t_ms`) as the firmware does."""

    def __init__(
        self,
        source: Source | None = None,
        *,
        kind: DeviceKind = DeviceKind.LOOP,
        device_id: str = "lp-demo-01",
        firmware: str = "1.0.0",
        channels: int = 2,
        period_s: float = 1.0,
        hello_period_s: float = 60.0,
        baudrate: int = BAUDRATE,
        link_path: str | None = None,
        pace: bool = True,
        attach_grace_s: float = 0.2,
        seed: int | None = None,
    ) -> None:
        super().__init__(
            baudrate=baudrate,
            link_path=link_path,
            pace=pace,
            attach_grace_s=attach_grace_s,
            seed=seed,
        )
        if period_s <= 0 or hello_period_s <= 0:
            raise ValueError("period_s and hello_period_s must be positive")
        self.kind = kind
        self.device_id = device_id
        self.firmware = firmware
        self.channels = channels
        self.period_s = period_s
        self.hello_period_s = hello_period_s
        self.source = source or demo_source(kind, channels, self.rng)
        wire.encode(self._hello(0.0))  # refuse a bad device id or firmware now
        self.commands_heard = 0
        self._seq = 0
        self._boot = 0.0
        self._next_report = 0.0
        self._next_hello = 0.0
        self._commands = UpfwDecoder()

    def age(self, seconds: float, sentences: int = 0) -> None:
        """The board has been up `seconds` longer than it has (its `t_ms` jumps ahead) and
        has sent `sentences` more (its `seq` moves on, wrapping at 65536), so a test can
        play hours of uptime without waiting them."""
        if seconds < 0 or sentences < 0:
            raise ValueError(f"seconds and sentences must be >= 0, got {seconds}, {sentences}")

        def older() -> None:
            self._boot -= seconds
            self._seq = (self._seq + sentences) & wire.U16

        self.call(older)

    def _hello(self, now: float) -> Hello:
        return Hello(0, 0, self.kind, self.device_id, self.firmware, self.channels)

    def _emit(self, message: BoardMessage, now: float) -> None:
        t_ms = int((now - self._boot) * 1000) & wire.U32
        stamped = dataclasses.replace(message, seq=self._seq, t_ms=t_ms)
        self._seq = (self._seq + 1) & wire.U16
        self._send_frame(wire.encode(stamped))

    def _power_on(self, now: float) -> None:
        self._seq = 0
        self._boot = now
        self._next_report = now + self.period_s
        self._next_hello = now + self.hello_period_s
        self._commands = UpfwDecoder()
        self._emit(self._hello(now), now)

    def _on_detach(self) -> None:
        self._commands = UpfwDecoder()

    def _tick(self, now: float) -> float:
        if now >= self._next_hello:
            self._emit(self._hello(now), now)
            self._next_hello = max(self._next_hello + self.hello_period_s, now)
        if now >= self._next_report:
            for message in self.source():
                self._emit(message, now)
            self._next_report += self.period_s
            if self._next_report <= now:
                self._next_report = now + self.period_s
        return min(self._next_report, self._next_hello)

    def _corrupt_checksum(self, frame: bytes) -> bytes:
        star = frame.rindex(b"*")
        wrong = int(frame[star + 1 : star + 3], 16) ^ 0x01
        return frame[: star + 1] + f"{wrong:02X}".encode() + frame[star + 3 :]

    def _on_bytes(self, data: bytes, now: float) -> None:
        for message in self._commands.feed(data):
            self.commands_heard += 1
            if isinstance(message, IdentityQuery):
                self._emit(self._hello(now), now)
