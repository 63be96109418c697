"""A kiosk's ready line judged only within its opening hours (`ready_hours`): parsing
(every bad value names its exact key), the schedule itself, and the driver's heartbeat
entry on gpiozero MockFactory pins (a Pi's GPIO chip cannot run here)."""

import asyncio
import contextlib
import time
import tomllib
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

import edge.drivers.queue_kiosk
from edge.agent import Agent
from edge.config import load_config
from edge.drivers.base import DriverContext
from edge.drivers.queue_kiosk.driver import build, parse_params
from edge.drivers.queue_kiosk.service_hours import ServiceHours, parse_service_hours
from edge.errors import DriverError
from urbanpulse.errors import ConfigError

HANOI = ZoneInfo("Asia/Ho_Chi_Minh")
BASE = {"issue_pin": 16, "call_pins": [20, 21], "debounce_s": 0.003, "ready_pin": 13,
        "fault_delay_s": 0.05}
HOURS = dict(BASE, ready_hours=["mon-fri 07:00-16:30", "sat 07:00-11:30"],
             ready_closed=["2027-02-08"], timezone="Asia/Ho_Chi_Minh")


def _local(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=HANOI)


def test_the_sample_s_hours_parse() -> None:
    sample = Path(edge.drivers.queue_kiosk.__file__).parent / "sample.toml"
    sensors = tomllib.loads(sample.read_text())["sensors"]
    hours = parse_params(sensors[1], "sensors[1]").ready_hours
    assert hours is not None
    assert hours.timezone == "Asia/Ho_Chi_Minh"
    assert hours.covers(_local("2027-03-01T07:00"))  # a Monday
    assert date(2027, 2, 8) in hours.closed  # a TOML date


def test_opening_hours_by_weekday_end_excluded_closed_dates_and_wrapping_ranges() -> None:
    hours = parse_params(HOURS, "s").ready_hours
    assert hours is not None
    assert not hours.covers(_local("2027-03-01T06:59"))  # Monday
    assert hours.covers(_local("2027-03-01T07:00"))
    assert hours.covers(_local("2027-03-05T16:29"))  # Friday
    assert not hours.covers(_local("2027-03-05T16:30"))
    assert hours.covers(_local("2027-03-06T11:29"))  # Saturday
    assert not hours.covers(_local("2027-03-06T12:00"))
    assert not hours.covers(_local("2027-03-07T10:00"))  # Sunday
    assert not hours.covers(_local("2027-02-08T10:00"))  # a Monday, closed (Tet)
    weekend = parse_service_hours(["sat-mon 08:00-24:00", "wed,fri 00:00-01:00"], None,
                                  "UTC", "s")
    assert sorted(weekend.spans) == [0, 2, 4, 5, 6]
    assert weekend.covers(datetime(2027, 3, 7, 23, 59, tzinfo=UTC))  # Sunday


@pytest.mark.parametrize(("change", "key", "reason"), [
    ({"ready_hours": "mon-fri 07:00-16:30"}, "s.ready_hours", "non-empty list"),
    ({"ready_hours": ["mon-fri 7:00-16:30"]}, "s.ready_hours[0]", "DAYS HH:MM-HH:MM"),
    ({"ready_hours": ["weekdays 07:00-16:30"]}, "s.ready_hours[0]", "days must be"),
    ({"ready_hours": ["mon,mon 07:00-16:30"]}, "s.ready_hours[0]", "named twice"),
    ({"ready_hours": ["mon 16:30-07:00"]}, "s.ready_hours[0]", "end after it starts"),
    ({"ready_hours": ["mon 07:00-24:30"]}, "s.ready_hours[0]", "no time of day"),
    ({"ready_hours": ["mon-fri 07:00-12:00", "fri 11:00-16:00"]}, "s.ready_hours",
     "overlap on fri"),
    ({"ready_closed": ["8 Feb 2027"]}, "s.ready_closed[0]", "YYYY-MM-DD"),
    ({"ready_closed": "2027-02-08"}, "s.ready_closed", "list of dates"),
    ({"timezone": None}, "s.timezone", "required with ready_hours"),
    ({"timezone": "Hanoi time"}, "s.timezone", "IANA"),
])
def test_bad_hours_name_their_key(change: dict[str, Any], key: str, reason: str) -> None:
    raw = {k: v for k, v in dict(HOURS, **change).items() if v is not None}
    with pytest.raises(ConfigError, match=reason) as err:
        parse_params(raw, "s")
    assert err.value.key == key


def test_hours_need_a_ready_line() -> None:
    raw = {k: v for k, v in HOURS.items() if k not in ("ready_pin", "fault_delay_s")}
    with pytest.raises(ConfigError) as err:
        parse_params(raw, "s")
    assert (err.value.key, "only used with a ready_pin" in str(err.value)) == (
        "s.ready_hours", True)


def test_a_zone_unknown_to_the_system_fails_the_driver_naming_the_key() -> None:
    hours = ServiceHours("Asia/Nowhere", {0: ((0, 60),)}, key="sensors[2].timezone")
    with pytest.raises(DriverError, match=r"sensors\[2\]\.timezone: no time zone 'Asia/Nowhere'"):
        hours.zone()


class WallClock:
    """The real monotonic clock (the driver's waits are real) with a wall time the test
    sets: the hour of day decides what the heartbeat says."""

    def __init__(self, wall: datetime) -> None:
        self.wall = wall
        self.shift = 0.0

    def now(self) -> datetime:
        return self.wall

    def monotonic(self) -> float:
        return time.monotonic() + self.shift

    def advance(self, seconds: float) -> None:
        """Both clocks move on, as time passing would move them."""
        self.wall += timedelta(seconds=seconds)
        self.shift += seconds


def test_a_kiosk_switched_off_after_hours_is_not_reported_dead(gpio: Any) -> None:
    # Friday 16:00 in Hanoi is 09:00 UTC.
    clock = WallClock(datetime(2027, 3, 5, 9, 0, tzinfo=UTC))
    driver = build("kiosk-opd", parse_params(HOURS, "s"),
                   DriverContext(clock=clock, pin_factory=gpio.provider))
    ready = gpio.factory.pin(13)

    async def scenario() -> None:
        async with gpio.running(driver):
            await gpio.in_thread(ready.drive_low)  # in service (active low)
            await gpio.wait_until(lambda: driver.supervision() == {"ready": True}, "in service")
            await gpio.in_thread(ready.drive_high)  # off at 16:00: within the hours, dead
            await gpio.wait_until(lambda: driver.supervision() == {"ready": False},
                                  "out of service within the hours")
            clock.wall = datetime(2027, 3, 5, 9, 30, tzinfo=UTC)  # 16:30: the hall closed
            # the line is not judged, and the report says so (a report without any state
            # would leave the heartbeat without the driver's entry)
            assert driver.supervision() == {"hours": "closed"}
            # Monday 07:00, still off: dead once off for fault_delay_s (0.05 s) within the
            # hours, as for an in-service kiosk going off
            clock.wall = datetime(2027, 3, 8, 0, 0, tzinfo=UTC)
            assert driver.supervision() == {"ready": True}
            clock.wall = datetime(2027, 3, 8, 0, 0, 0, 40_000, tzinfo=UTC)
            assert driver.supervision() == {"ready": True}
            clock.wall = datetime(2027, 3, 8, 0, 0, 0, 60_000, tzinfo=UTC)
            assert driver.supervision() == {"ready": False}

    asyncio.run(scenario())


def test_a_long_fault_delay_spans_the_hours_start(gpio: Any) -> None:
    """A kiosk switched on at 07:00 by its timer takes a while to be in service:
    `fault_delay_s` covers that at the start of the hours as it covers a reboot, and a
    kiosk still off after it is reported dead."""
    clock = WallClock(datetime(2027, 3, 7, 23, 0, tzinfo=UTC))  # Monday 06:00 in Hanoi
    driver = build("kiosk-opd", parse_params(dict(HOURS, fault_delay_s=45.0), "s"),
                   DriverContext(clock=clock, pin_factory=gpio.provider))

    async def scenario() -> None:
        async with gpio.running(driver):  # the ready line idle: the kiosk is off
            assert driver.supervision() == {"hours": "closed"}
            clock.advance(3630)  # 07:00:30, off for an hour, 30 s of it within the hours
            assert driver.supervision() == {"ready": True}
            clock.advance(15)  # 07:00:45
            assert driver.supervision() == {"ready": False}

    asyncio.run(scenario())


def test_the_agent_s_heartbeat_says_a_kiosk_s_line_is_not_judged_after_hours(
        gpio: Any, tmp_path: Path) -> None:
    """The sample's ready-only kiosk on a Sunday: its heartbeat entry still has a
    supervision, without `ready`, which ends a dead-kiosk episode in the cloud (a driver
    entry without supervision is taken for a restarting driver, whose state is kept)."""
    sample = Path(edge.drivers.queue_kiosk.__file__).parent / "sample.toml"
    text = sample.read_text().replace('state_dir = "/var/lib/urbanpulse"',
                                      f'state_dir = "{tmp_path}"')
    (tmp_path / "node.toml").write_text(text)
    clock = WallClock(datetime(2027, 3, 7, 3, 0, tzinfo=UTC))  # Sunday 10:00 in Hanoi
    agent = Agent(load_config(tmp_path / "node.toml"), clock=clock, pin_factory=gpio.provider)
    agent.outbox.open()
    sensor = agent.config.sensors[1]
    assert sensor.id == "kiosk-imaging"

    def entry() -> dict[str, Any]:
        drivers: dict[str, dict[str, Any]] = agent.health()["drivers"]
        return drivers["kiosk-imaging"]

    async def scenario() -> None:
        task = asyncio.create_task(agent._supervise(
            sensor, DriverContext(clock=clock, pin_factory=gpio.provider)))
        try:
            await gpio.wait_until(lambda: "supervision" in entry(), "the driver's pins open")
            assert entry()["supervision"] == {"hours": "closed"}
            clock.wall = datetime(2027, 3, 8, 3, 0, tzinfo=UTC)  # Monday 10:00, still off
            await gpio.wait_until(lambda: entry()["supervision"] == {"ready": False},
                                  "off for the sample's fault_delay_s (1 s): dead")
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    asyncio.run(scenario())
    agent.outbox.close()
