"""Whether the node's wall clock is synchronised, and the flag its readings carry when not.

A Raspberry Pi has no real-time clock: it boots on the time it last shut down at (or on
1970) and keeps that until NTP answers, minutes later or never. The kernel knows:
adjtimex(2) asked with modes = 0 (change nothing) returns TIME_ERROR while its status has
STA_UNSYNC, which chrony (with `rtcsync`) and systemd-timesyncd clear once synchronised
(`timedatectl`'s "System clock synchronized" reads the maximum error instead, so the two can
differ). The kernel also sets it again by
itself when the time daemon stops correcting the clock for long.

Probes:
- `KernelClockSync`: that system call, through ctypes (Linux only).
- `FixedClockSync`: says what it is told, switchable; for tests and the demo (the place
  gpiozero's MockFactory has for pins).
`clock_sync_for(config)` picks one from `[agent] clock_check`; `SyncWatch` asks it at most
once per PROBE_INTERVAL_S and remembers the answer for the agent.
"""

from __future__ import annotations

import ctypes
import errno
import logging
import os
from collections.abc import Callable
from dataclasses import replace
from typing import TYPE_CHECKING, Any, Protocol

from edge.drivers.base import Sample
from edge.errors import ConfigError, EdgeError
from urbanpulse.clock import Clock

if TYPE_CHECKING:
    from edge.config import AgentConfig

log = logging.getLogger("urbanpulse.edge.clock_sync")

CLOCK_CHECKS = ("kernel", "off")
CLOCK_UNSYNCED = "clock_unsynced"  # the wire contract's flag
PROBE_INTERVAL_S = 1.0

# adjtimex(2) return values: TIME_OK .. TIME_WAIT (0-4) are states of a synchronised
# clock (leap second handling); TIME_ERROR means not synchronised.
TIME_ERROR = 5
_CLOCK_STATES = range(0, 6)
# struct timex is 208 bytes on 64-bit Linux and smaller on 32-bit; zeroed, its first field
# (modes) asks for nothing to be changed.
TIMEX_BUFFER_BYTES = 512

Adjtimex = Callable[[Any], int]


class ClockSyncError(EdgeError):
    """The clock's synchronisation state cannot be read here."""


class ClockSync(Protocol):
    def synchronised(self) -> bool:
        """Whether the wall clock is synchronised now. Raises ClockSyncError when it
        cannot tell. Quick (one system call at most), no blocking I/O."""
        ...


def _libc_adjtimex() -> Adjtimex:
    libc = ctypes.CDLL(None, use_errno=True)  # the C library this process already uses
    try:
        fn = libc.adjtimex
    except AttributeError as exc:
        raise ClockSyncError("this system's C library has no adjtimex (not Linux?)") from exc
    fn.argtypes = [ctypes.c_void_p]
    fn.restype = ctypes.c_int
    return fn


class KernelClockSync:
    """The kernel's own word, by adjtimex(2) with modes = 0 (needs no privilege)."""

    def __init__(self, adjtimex: Adjtimex | None = None) -> None:
        # The C library is looked up at the first probe, not here.
        self._adjtimex = adjtimex

    def synchronised(self) -> bool:
        if self._adjtimex is None:
            self._adjtimex = _libc_adjtimex()
        buf = ctypes.create_string_buffer(TIMEX_BUFFER_BYTES)
        ctypes.set_errno(0)
        rc = self._adjtimex(buf)
        if rc == -1:
            code = ctypes.get_errno()
            name = errno.errorcode.get(code, "?")
            raise ClockSyncError(f"adjtimex failed with errno {code} ({name}: {os.strerror(code)})")
        if rc not in _CLOCK_STATES:
            raise ClockSyncError(f"adjtimex returned {rc}, not a clock state (0-5)")
        return rc != TIME_ERROR


class FixedClockSync:
    """A ClockSync that says what it is told: `set(False)` then `set(True)` plays a node
    whose NTP answers late. `error`, when set, is raised by the next probes instead.
    Counts its probes."""

    def __init__(self, synchronised: bool) -> None:
        self.state = synchronised
        self.error: ClockSyncError | None = None
        self.probes = 0

    def set(self, synchronised: bool) -> None:
        self.state = synchronised

    def synchronised(self) -> bool:
        self.probes += 1
        if self.error is not None:
            raise self.error
        return self.state


def clock_sync_for(config: AgentConfig) -> ClockSync | None:
    """The probe `[agent] clock_check` names; None for "off"."""
    if config.clock_check == "off":
        return None
    if config.clock_check == "kernel":
        return KernelClockSync()
    raise ClockSyncError(f"unknown clock check {config.clock_check!r}")  # config refuses it first


def flag_unsynced(sample: Sample) -> Sample:
    """`sample` with the clock_unsynced flag added to its others (once)."""
    if CLOCK_UNSYNCED in sample.flags:
        return sample
    return replace(sample, flags=(*sample.flags, CLOCK_UNSYNCED))


class SyncWatch:
    """The agent's view of a probe: asked at most once per `interval_s` of monotonic time,
    logged on each change. `state` is the last answer, None while the check is off or
    before the first probe; read from other threads (the heartbeat) without probing."""

    def __init__(self, probe: ClockSync | None, clock: Clock,
                 interval_s: float = PROBE_INTERVAL_S) -> None:
        self._probe = probe
        self._clock = clock
        self._interval_s = interval_s
        self._asked_at: float | None = None
        self._failing = False
        self.state: bool | None = None

    @property
    def enabled(self) -> bool:
        return self._probe is not None

    def start(self) -> None:
        """The start-up probe. A kernel that cannot be asked at all (not Linux, or a
        sandbox that refuses the call) will not answer later either: the config asks for
        what this machine cannot do, a ConfigError naming the key (the agent stops with
        exit code 2, which systemd does not restart)."""
        if self._probe is None:
            return
        try:
            synced = self._probe.synchronised()
        except ClockSyncError as exc:
            raise ConfigError("agent.clock_check", f'"kernel", but the kernel cannot be asked '
                              f"whether the clock is synchronised here: {exc}. Under systemd, "
                              "the unit must allow the adjtimex and clock_adjtime system calls "
                              "and not set ProtectClock=yes (the unit of ansible/roles/edge "
                              'does so); elsewhere set clock_check = "off"') from exc
        self._record(synced)
        self._asked_at = self._clock.monotonic()

    def refresh(self) -> bool | None:
        """The state, probed again when the last answer is `interval_s` old. A probe that
        fails after start-up counts as not synchronised (the readings keep their raw
        stamps, flagged) and is logged once until it answers again."""
        if self._probe is None:
            return None
        now = self._clock.monotonic()
        if self._asked_at is not None and now - self._asked_at < self._interval_s:
            return self.state
        self._asked_at = now
        try:
            synced = self._probe.synchronised()
        except ClockSyncError as exc:
            if not self._failing:
                log.warning("cannot tell whether the clock is synchronised; flagging readings",
                            extra={"error": str(exc)})
            self._failing = True
            synced = False
        else:
            self._failing = False
        self._record(synced)
        return synced

    def stamp(self, sample: Sample) -> Sample:
        """`sample`, flagged clock_unsynced when the clock is not synchronised now."""
        return flag_unsynced(sample) if self.refresh() is False else sample

    def _record(self, synced: bool) -> None:
        if synced != self.state:
            if synced:
                log.info("wall clock synchronised; readings no longer flagged")
            else:
                log.warning("wall clock not synchronised; readings flagged clock_unsynced")
        self.state = synced
