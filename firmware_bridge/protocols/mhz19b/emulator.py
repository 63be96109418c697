"""An MH-Z19B behind a pseudo-terminal."""

from __future__ import annotations

from collections.abc import Callable

from firmware_bridge.emulator.pty_device import PtyEmulator
from firmware_bridge.protocols.mhz19b import wire
from firmware_bridge.protocols.mhz19b.commands import RANGES_PPM, Mhz19bCommandDecoder

BAUDRATE = 9600
WARMUP_S = 180.0
_IDLE_S = 3600.0
_STORED = (wire.CMD_ZERO, wire.CMD_SPAN, wire.CMD_ABC, wire.CMD_RANGE)  # kept in flash


class Mhz19bEmulator(PtyEmulator):
    """Answers 'read CO2' only, as the module does: `values()` is the true CO2 in ppm.
    Reads 0 ppm during the `warmup_s` preheat after power-up; zero calibration makes
    the present air read 400 ppm, span calibration scales to the given value; ABC
    on/off and the range are kept (and survive a power cycle, like the calibration).

    Those settings live in the module's flash: each command that sets one (ABC, range,
    zero and span calibration) is a flash write, counted in `flash_writes` (also when it
    sets the stored value). 'Get ABC status' (0x7D) is answered unless
    `answers_abc_status=False` (firmware without it: no reply)."""

    def __init__(
        self,
        values: Callable[[], float] | None = None,
        *,
        temperature_c: int = 28,
        warmup_s: float = WARMUP_S,
        range_ppm: int = 5000,
        link_path: str | None = None,
        pace: bool = True,
        attach_grace_s: float = 0.2,
        seed: int | None = None,
        answers_abc_status: bool = True,
    ) -> None:
        super().__init__(
            baudrate=BAUDRATE,
            link_path=link_path,
            pace=pace,
            attach_grace_s=attach_grace_s,
            seed=seed,
        )
        if range_ppm not in RANGES_PPM:
            raise ValueError(f"range_ppm must be one of {RANGES_PPM}, got {range_ppm}")
        self.values = values or (lambda: 650.0)
        self.temperature_c = temperature_c
        self.warmup_s = warmup_s
        self.range_ppm = range_ppm
        self.abc_enabled = True
        self.zero_offset_ppm = 0.0
        self.span_factor = 1.0
        self.answers_abc_status = answers_abc_status
        self.commands_heard = 0
        self.flash_writes = 0
        self._commands = Mhz19bCommandDecoder()
        self._warm_until = 0.0

    def _power_on(self, now: float) -> None:
        self._warm_until = now + self.warmup_s
        self._commands = Mhz19bCommandDecoder()

    def _on_detach(self) -> None:
        self._commands = Mhz19bCommandDecoder()

    def _tick(self, now: float) -> float:
        return now + _IDLE_S

    def _corrupt_checksum(self, frame: bytes) -> bytes:
        return frame[:-1] + bytes((frame[-1] ^ 0x5A,))

    def _calibrated(self) -> float:
        return (self.values() + self.zero_offset_ppm) * self.span_factor

    def _on_bytes(self, data: bytes, now: float) -> None:
        for cmd in self._commands.feed(data):
            self.commands_heard += 1
            args = cmd.args
            if cmd.command == wire.CMD_READ:
                ppm = 0 if now < self._warm_until else round(self._calibrated())
                ppm = min(max(ppm, 0), self.range_ppm)
                self._send_frame(wire.encode_reading(ppm, self.temperature_c))
            elif cmd.command == wire.CMD_ABC_STATUS:
                if self.answers_abc_status:
                    self._send_frame(wire.encode_abc_status(self.abc_enabled))
            elif cmd.command in _STORED:
                self.flash_writes += 1
                self._store(cmd.command, args)

    def _store(self, command: int, args: bytes) -> None:
        if command == wire.CMD_ZERO:
            self.span_factor = 1.0
            self.zero_offset_ppm = 400.0 - self.values()
        elif command == wire.CMD_SPAN:
            span = args[0] << 8 | args[1]
            present = self.values() + self.zero_offset_ppm
            if span and present > 0:
                self.span_factor = span / present
        elif command == wire.CMD_ABC:
            self.abc_enabled = args[0] == 0xA0
        elif command == wire.CMD_RANGE:
            requested = args[3] << 8 | args[4]
            if requested in RANGES_PPM:
                self.range_ppm = requested
