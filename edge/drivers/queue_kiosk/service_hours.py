"""When a kiosk must be in service: the hours in which its "in service" output is judged.

Most kiosks are switched off when the hall closes. Their ready line is then off on
purpose, and reporting it would raise a dead kiosk every night, every Sunday and every
holiday. `ready_hours` lists the opening hours in the kiosk's local time, e.g.
`["mon-fri 07:00-16:30", "sat 07:00-11:30"]`, `ready_closed` the dates on which the
hall stays closed (public holidays); outside them the heartbeat says nothing about the
ready line. Set the hours from when the kiosk is switched on at the latest to when it is
switched off at the earliest.

Parsed without I/O; the time zone's rules are read when the driver starts (`zone`).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime
from itertools import pairwise
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from edge.errors import DriverError
from urbanpulse.errors import ConfigError

DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_SPAN = re.compile(r"^\s*(\S+)\s+(\d{2}):(\d{2})\s*-\s*(\d{2}):(\d{2})\s*$")
_ZONE = re.compile(r"^[A-Za-z][A-Za-z0-9_+\-]*(/[A-Za-z0-9_+\-]+)*$")


@dataclass(frozen=True, slots=True)
class ServiceHours:
    """Opening spans per weekday (0 = Monday) in minutes of the local day, [start, end)."""

    timezone: str
    spans: Mapping[int, tuple[tuple[int, int], ...]]
    closed: frozenset[date] = frozenset()
    key: str = "timezone"  # the config key of `timezone`, for the error

    def zone(self) -> ZoneInfo:
        """The time zone's rules, read from the system's time zone database."""
        try:
            return ZoneInfo(self.timezone)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise DriverError(f"{self.key}: no time zone {self.timezone!r} in this system's "
                              f"time zone database ({type(exc).__name__})") from exc

    def covers(self, local: datetime) -> bool:
        """`local` (a time in the kiosk's zone) lies within the opening hours."""
        if local.date() in self.closed:
            return False
        minute = local.hour * 60 + local.minute
        return any(start <= minute < end for start, end in self.spans.get(local.weekday(), ()))


def parse_service_hours(hours: Any, closed: Any, timezone: Any, key: str) -> ServiceHours:
    """`ready_hours`, `ready_closed` and `timezone` of the sensor table at `key`;
    ConfigError naming the exact key otherwise."""
    if not isinstance(hours, list) or not hours:
        raise ConfigError(f"{key}.ready_hours", 'must be a non-empty list like '
                          '["mon-fri 07:00-16:30", "sat 07:00-11:30"]')
    spans: dict[int, list[tuple[int, int]]] = {}
    for i, text in enumerate(hours):
        where = f"{key}.ready_hours[{i}]"
        days, span = _span(text, where)
        for day in days:
            spans.setdefault(day, []).append(span)
    for day, day_spans in spans.items():
        day_spans.sort()
        for (_, end), (start, _) in pairwise(day_spans):
            if start < end:
                raise ConfigError(f"{key}.ready_hours", f"two spans overlap on {DAYS[day]}")
    if not isinstance(timezone, str) or not _ZONE.match(timezone):
        raise ConfigError(f"{key}.timezone", "required with ready_hours: the kiosk's IANA "
                          f"time zone, e.g. \"Asia/Ho_Chi_Minh\"; got {timezone!r}")
    return ServiceHours(timezone, {d: tuple(s) for d, s in sorted(spans.items())},
                        _dates(closed, f"{key}.ready_closed"), f"{key}.timezone")


def _span(text: Any, where: str) -> tuple[tuple[int, ...], tuple[int, int]]:
    match = _SPAN.match(text) if isinstance(text, str) else None
    if match is None:
        raise ConfigError(where, f'must be "DAYS HH:MM-HH:MM" (e.g. "mon-fri 07:00-16:30"), '
                          f"got {text!r}")
    day_text, h0, m0, h1, m1 = match.groups()
    start, end = _minute(h0, m0, where), _minute(h1, m1, where)
    if end <= start:
        raise ConfigError(where, f"the span must end after it starts, got {text!r} "
                          "(a kiosk in service across midnight needs no ready_hours)")
    return _days(day_text, where), (start, end)


def _minute(hour: str, minute: str, where: str) -> int:
    h, m = int(hour), int(minute)
    if m > 59 or h > 24 or (h == 24 and m):
        raise ConfigError(where, f"{hour}:{minute} is no time of day (00:00..24:00)")
    return h * 60 + m


def _days(text: str, where: str) -> tuple[int, ...]:
    """"daily", "mon-fri" (a range, wrapping past Sunday), "sat" or "mon,wed,fri"."""
    if text == "daily":
        return tuple(range(7))
    out: list[int] = []
    for part in text.split(","):
        ends = part.split("-")
        if len(ends) > 2 or not all(e in DAYS for e in ends):
            raise ConfigError(where, f"days must be daily, a day ({', '.join(DAYS)}), a range "
                              f"like mon-fri or a list like mon,wed,fri; got {text!r}")
        first, last = DAYS.index(ends[0]), DAYS.index(ends[-1])
        out += [(first + k) % 7 for k in range((last - first) % 7 + 1)]
    if len(set(out)) != len(out):
        raise ConfigError(where, f"a day is named twice in {text!r}")
    return tuple(out)


def _dates(value: Any, where: str) -> frozenset[date]:
    if value is None:
        return frozenset()
    if not isinstance(value, list):
        raise ConfigError(where, 'must be a list of dates like ["2027-02-06", "2027-04-30"]')
    out: set[date] = set()
    for i, item in enumerate(value):
        if isinstance(item, date) and not isinstance(item, datetime):
            out.add(item)  # a TOML date
            continue
        try:
            out.add(date.fromisoformat(item))
        except (TypeError, ValueError):
            raise ConfigError(f"{where}[{i}]", f"must be a date YYYY-MM-DD, got {item!r}"
                              ) from None
    return frozenset(out)
