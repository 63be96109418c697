"""Settings a serial driver writes into a sensor's flash (SDS011 reporting mode and working
period, MH-Z19B ABC and range), remembered in the agent's driver state.

Flash takes some 10^4-10^5 writes. A driver reads a setting back where the sensor lets it
and writes only what differs; where the sensor gives no answer (a clone, a firmware
without the query), this record bounds the writes: a value written less than `refresh_s`
ago is not written again, so a driver restarting in a loop writes it once a day at most,
and a changed configuration is written at once. Without a state keeper (a tool, a test)
nothing is remembered and every such write goes out.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime

from edge.drivers.base import StateKeeper
from urbanpulse.clock import Clock

REFRESH_S = 86400.0


@dataclass(frozen=True, slots=True)
class _Written:
    value: int
    at: datetime


class FlashSettings:
    """The record under `key` (one JSON object: setting name -> value and when written)."""

    def __init__(self, state: StateKeeper | None, key: str, clock: Clock,
                 refresh_s: float = REFRESH_S) -> None:
        self.state = state
        self.key = key
        self.clock = clock
        self.refresh_s = refresh_s
        self.damaged = False  # an unreadable record counts as none: the next write replaces it
        self._written: dict[str, _Written] | None = None

    def _load(self) -> dict[str, _Written]:
        if self._written is not None:
            return self._written
        self._written = {}
        text = None if self.state is None else self.state.load(self.key)
        if text is not None:
            try:
                body = json.loads(text)
                for name, entry in body.items():
                    value, at = entry["value"], datetime.fromisoformat(entry["at"])
                    if type(value) is not int or at.tzinfo is None:
                        raise ValueError(f"{name}: {entry!r}")
                    self._written[name] = _Written(value, at)
            except (ValueError, TypeError, KeyError, AttributeError):
                self.damaged = True
                self._written = {}
        return self._written

    def recently_written(self, name: str, value: int) -> bool:
        """`value` was written as `name` less than `refresh_s` ago (by this clock: a clock
        stepped back by more than that also lets the write go)."""
        entry = self._load().get(name)
        if entry is None or entry.value != value:
            return False
        return abs((self.clock.now() - entry.at).total_seconds()) < self.refresh_s

    def record(self, name: str, value: int) -> None:
        """Remember a write (staged: the agent commits it with its next readings)."""
        written = self._load()
        written[name] = _Written(value, self.clock.now())
        if self.state is not None:
            self.state.stage(self.key, json.dumps(
                {n: {"value": w.value, "at": w.at.isoformat()} for n, w in sorted(written.items())}))
