"""An SDS011 behind a pseudo-terminal."""

from __future__ import annotations

from collections.abc import Callable

from firmware_bridge.emulator.pty_device import PtyEmulator
from firmware_bridge.protocols.sds011 import wire
from firmware_bridge.protocols.sds011.commands import SET, Sds011Command, Sds011CommandDecoder
from firmware_bridge.protocols.sds011.frames import ReportMode, WorkState

BAUDRATE = 9600
WARMUP_S = 30.0

PmValues = Callable[[], tuple[float, float]]


def constant_pm(pm25: float = 35.0, pm10: float = 60.0) -> PmValues:
    return lambda: (pm25, pm10)


class Sds011Emulator(PtyEmulator):
    """Behaves as the datasheet says: active reporting (a data frame every `period_s`)
    until told otherwise; query mode answers 'query data' only; sleep stops the fan and
    the data but not the command replies; zeros during `warmup_s` after power-on and
    after each wake; report mode, working period and device id survive a power cycle,
    sleep does not. `minute_s` is how long a 'minute' of the working period lasts (60 s
    on a real sensor; tests shorten it).

    Those three settings live in the sensor's flash: every 'set' of one is a flash write,
    counted in `flash_writes` (also when it sets the value already stored, as the firmware
    does not compare). `answers_setting_queries=False` is a clone that obeys the set form
    of 'reporting mode' and 'working period' but ignores their query form."""

    def __init__(
        self,
        values: PmValues | None = None,
        *,
        device_id: str = "a160",
        period_s: float = 1.0,
        warmup_s: float = WARMUP_S,
        minute_s: float = 60.0,
        firmware: tuple[int, int, int] = (2015, 7, 10),
        link_path: str | None = None,
        pace: bool = True,
        attach_grace_s: float = 0.2,
        seed: int | None = None,
        answers_setting_queries: bool = True,
    ) -> None:
        super().__init__(
            baudrate=BAUDRATE,
            link_path=link_path,
            pace=pace,
            attach_grace_s=attach_grace_s,
            seed=seed,
        )
        wire.device_id_bytes(device_id)
        if period_s <= 0:
            raise ValueError(f"period_s must be positive, got {period_s}")
        self.values = values or constant_pm()
        self.device_id = device_id.lower()
        self.period_s = period_s
        self.warmup_s = warmup_s
        self.minute_s = minute_s
        self.firmware = firmware
        self.report_mode = ReportMode.ACTIVE
        self.work_state = WorkState.WORK
        self.working_period_min = 0
        self.answers_setting_queries = answers_setting_queries
        self.commands_heard = 0
        self.flash_writes = 0
        self._commands = Sds011CommandDecoder()
        self._warm_until = 0.0
        self._next_report = 0.0

    @property
    def interval_s(self) -> float:
        if self.working_period_min == 0:
            return self.period_s
        return self.working_period_min * self.minute_s

    def _power_on(self, now: float) -> None:
        self.work_state = WorkState.WORK
        self._warm_until = now + self.warmup_s
        self._next_report = now + self.interval_s
        self._commands = Sds011CommandDecoder()

    def _on_detach(self) -> None:
        self._commands = Sds011CommandDecoder()

    def _measurement(self, now: float) -> bytes:
        pm25, pm10 = (0.0, 0.0) if now < self._warm_until else self.values()
        return wire.encode_measurement(pm25, pm10, self.device_id)

    def _tick(self, now: float) -> float:
        if self.work_state is WorkState.SLEEP or self.report_mode is ReportMode.QUERY:
            return now + 1.0
        if now >= self._next_report:
            self._send_frame(self._measurement(now))
            self._next_report += self.interval_s
            if self._next_report <= now:
                self._next_report = now + self.interval_s
        return self._next_report

    def _corrupt_checksum(self, frame: bytes) -> bytes:
        return frame[:8] + bytes((frame[8] ^ 0x5A,)) + frame[9:]

    def _on_bytes(self, data: bytes, now: float) -> None:
        for command in self._commands.feed(data):
            if command.addresses(self.device_id):
                self.commands_heard += 1
                self._answer(command, now)

    def _reply(self, command: int, d1: int, d2: int, d3: int = 0) -> None:
        self._send_frame(wire.encode_reply(command, d1, d2, d3, self.device_id))

    def _answer(self, cmd: Sds011Command, now: float) -> None:
        is_set = cmd.data[0] == SET
        stored = cmd.command in (wire.CMD_REPORT_MODE, wire.CMD_WORKING_PERIOD)
        if stored and not is_set and not self.answers_setting_queries:
            return
        if cmd.command == wire.CMD_QUERY_DATA:
            if self.work_state is WorkState.WORK:
                self._send_frame(self._measurement(now))
        elif cmd.command == wire.CMD_REPORT_MODE:
            if is_set and cmd.data[1] in (0, 1):
                self.report_mode = ReportMode(cmd.data[1])
                self.flash_writes += 1
                self._next_report = now + self.interval_s
            self._reply(cmd.command, int(is_set), self.report_mode)
        elif cmd.command == wire.CMD_SLEEP_WORK:
            if is_set and cmd.data[1] in (0, 1):
                state = WorkState(cmd.data[1])
                if state is WorkState.WORK and self.work_state is WorkState.SLEEP:
                    self._warm_until = now + self.warmup_s
                    self._next_report = now + self.interval_s
                self.work_state = state
            self._reply(cmd.command, int(is_set), self.work_state)
        elif cmd.command == wire.CMD_WORKING_PERIOD:
            if is_set and cmd.data[1] <= 30:
                self.working_period_min = cmd.data[1]
                self.flash_writes += 1
                self._next_report = now + self.interval_s
            self._reply(cmd.command, int(is_set), self.working_period_min)
        elif cmd.command == wire.CMD_SET_DEVICE_ID:
            new_id = wire.device_id_str(cmd.data[10], cmd.data[11])
            if new_id != wire.BROADCAST_ID:
                self.device_id = new_id
                self.flash_writes += 1
                self._reply(cmd.command, 0, 0, 0)
        elif cmd.command == wire.CMD_FIRMWARE:
            year, month, day = self.firmware
            self._reply(cmd.command, year % 100, month, day)
