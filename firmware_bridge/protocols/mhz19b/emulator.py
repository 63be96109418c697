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
    `answers_abc_status=False` (firmware without it: no reply); with
    `abc_status_follows=False` it answers 'on' whatever is stored (firmware whose status
    does not follow the setting).

    Late answers, as a slow module or a USB adapter holding bytes back gives them: every
    answer leaves `reply_delay_s` after its command, and `hold_replies(n)` keeps the
    next n answers to 'read CO2' back and sends them just before the following one,
    back to back. `readings_sent` counts the answers to 'read CO2' put on the line.
    Answers not yet sent are lost when the client closes the port or power goes."""

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
        abc_status_follows: bool = True,
        reply_delay_s: float = 0.0,
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
        if reply_delay_s < 0:
            raise ValueError(f"reply_delay_s must be 0 or more, got {reply_delay_s}")
        self.values = values or (lambda: 650.0)
        self.temperature_c = temperature_c
        self.warmup_s = warmup_s
        self.range_ppm = range_ppm
        self.abc_enabled = True
        self.zero_offset_ppm = 0.0
        self.span_factor = 1.0
        self.answers_abc_status = answers_abc_status
        self.abc_status_follows = abc_status_follows
        self.commands_heard = 0
        self.flash_writes = 0
        self.reply_delay_s = reply_delay_s
        self.readings_sent = 0
        self._commands = Mhz19bCommandDecoder()
        self._warm_until = 0.0
        self._to_hold = 0
        self._held: list[bytes] = []
        self._due: list[tuple[float, bytes]] = []  # (when, answer), in command order

    def hold_replies(self, count: int) -> None:
        """Keep the next `count` answers to 'read CO2' back; each goes out just before
        the answer that follows it."""
        if count < 0:
            raise ValueError(f"count must be 0 or more, got {count}")
        self._call(lambda: setattr(self, "_to_hold", self._to_hold + count))

    def _power_on(self, now: float) -> None:
        self._warm_until = now + self.warmup_s
        self._forget_answers()

    def _on_detach(self) -> None:
        self._forget_answers()

    def _forget_answers(self) -> None:
        self._commands = Mhz19bCommandDecoder()
        self._held.clear()
        self._due.clear()
        self._to_hold = 0

    def _tick(self, now: float) -> float:
        while self._due and self._due[0][0] <= now:
            self._put_on_line(self._due.pop(0)[1])
        return self._due[0][0] if self._due else now + _IDLE_S

    def _answer(self, frame: bytes, now: float) -> None:
        if self.reply_delay_s > 0 or self._due:
            self._due.append((now + self.reply_delay_s, frame))
        else:
            self._put_on_line(frame)

    def _put_on_line(self, frame: bytes) -> None:
        if frame[1] == wire.CMD_READ:
            self.readings_sent += 1
        self._send_frame(frame)

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
                reading = wire.encode_reading(ppm, self.temperature_c)
                if self._to_hold:
                    self._to_hold -= 1
                    self._held.append(reading)
                else:
                    for frame in (*self._held, reading):
                        self._answer(frame, now)
                    self._held.clear()
            elif cmd.command == wire.CMD_ABC_STATUS:
                if self.answers_abc_status:
                    status = self.abc_enabled if self.abc_status_follows else True
                    self._answer(wire.encode_abc_status(status), now)
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
