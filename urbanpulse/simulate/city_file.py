"""Reading a city from TOML: every value typed and range-checked once, every error
naming its key (`hospital[0].ward[1].beds: ...`). No I/O beyond reading the file."""

from __future__ import annotations

import re
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from urbanpulse.config_fields import unknown_key
from urbanpulse.errors import ConfigError
from urbanpulse.hour_intervals import check_divides_hour
from urbanpulse.simulate.city import (
    AirSensor,
    AirStation,
    City,
    CounterWindow,
    Department,
    District,
    Entrance,
    Hospital,
    Intersection,
    Kiosk,
    Lane,
    Outpatient,
    Profiles,
    Ward,
    nodes_of,
)
from urbanpulse.simulate.events import AIR_DRIVERS, EVENT_TYPES, Event, make_event
from urbanpulse.simulate.profiles import DailyProfile, MonthlyCurve, WeeklyProfile
from urbanpulse.wire.payload import SENSOR_ID

SITE_ID = re.compile(r"[a-z0-9][a-z0-9-]{0,31}")
_CLOCK = re.compile(r"([0-2]?\d):([0-5]\d)")
AIR_PERIOD_S = {"sds011": 30.0, "pms5003": 30.0, "mhz19b": 60.0}

_MISSING: Any = object()


class Table:
    """A TOML table being read: typed getters that name the key on error, and a final
    check that no unknown key was left over (a typo must not pass silently)."""

    def __init__(self, raw: Any, key: str) -> None:
        if not isinstance(raw, dict):
            raise ConfigError(key, f"must be a table, got {type(raw).__name__}")
        self.raw: dict[str, Any] = raw
        self.key = key
        self._used: set[str] = set()

    def sub(self, name: str) -> str:
        return f"{self.key}.{name}" if self.key else name

    def _get(self, name: str, default: Any) -> Any:
        self._used.add(name)
        if name in self.raw:
            return self.raw[name]
        if default is _MISSING:
            raise ConfigError(self.sub(name), "required")
        return default

    def has(self, name: str) -> bool:
        return name in self.raw

    def string(self, name: str, default: Any = _MISSING) -> str:
        value = self._get(name, default)
        if not isinstance(value, str) or not value:
            raise ConfigError(self.sub(name), f"must be a non-empty string, got {value!r}")
        return value

    def ident(self, name: str, pattern: re.Pattern[str] = SITE_ID,
              default: Any = _MISSING) -> str:
        value = self.string(name, default)
        if not pattern.fullmatch(value):
            what = "1-32 of [a-z0-9-]" if pattern is SITE_ID else "1-64 of [a-z0-9_.-]"
            raise ConfigError(self.sub(name), f"{value!r} is not an id ({what}, starting "
                              "with a letter or digit)")
        return value

    def number(self, name: str, default: Any = _MISSING, low: float = float("-inf"),
               high: float = float("inf")) -> float:
        value = self._get(name, default)
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ConfigError(self.sub(name), f"must be a number, got {value!r}")
        if not low <= value <= high:
            raise ConfigError(self.sub(name), f"{value} is outside [{low}, {high}]")
        return float(value)

    def interval(self, name: str, default: float) -> float:
        """A counting interval (s): 1 to 3600, dividing an hour exactly, as the edge's
        drivers require of the interval_s the demo gives them from it."""
        value = self.number(name, default, 1.0, 3600.0)
        check_divides_hour(self.sub(name), value, 1.0)
        return value

    def integer(self, name: str, default: Any = _MISSING, low: int = 0,
                high: int = 2**31) -> int:
        value = self._get(name, default)
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(self.sub(name), f"must be an integer, got {value!r}")
        if not low <= value <= high:
            raise ConfigError(self.sub(name), f"{value} is outside [{low}, {high}]")
        return value

    def boolean(self, name: str, default: Any = _MISSING) -> bool:
        value = self._get(name, default)
        if not isinstance(value, bool):
            raise ConfigError(self.sub(name), f"must be true or false, got {value!r}")
        return value

    def numbers(self, name: str, length: int) -> tuple[float, ...]:
        value = self._get(name, _MISSING)
        if (not isinstance(value, list) or len(value) != length
                or any(isinstance(v, bool) or not isinstance(v, int | float) or v < 0
                       for v in value)):
            raise ConfigError(self.sub(name), f"must be a list of {length} non-negative numbers")
        return tuple(float(v) for v in value)

    def tables(self, name: str) -> list[Table]:
        value = self._get(name, [])
        if not isinstance(value, list):
            raise ConfigError(self.sub(name), "must be an array of tables ([[...]])")
        return [Table(item, f"{self.sub(name)}[{i}]") for i, item in enumerate(value)]

    def table(self, name: str) -> Table | None:
        value = self._get(name, None)
        return None if value is None else Table(value, self.sub(name))

    def rest(self) -> dict[str, Any]:
        """The keys not read yet (marks them read)."""
        extra = {k: v for k, v in self.raw.items() if k not in self._used}
        self._used.update(extra)
        return extra

    def done(self) -> None:
        extra = sorted(set(self.raw) - self._used)
        if extra:
            raise ConfigError(self.sub(extra[0]), unknown_key(extra[0], self._used))


def load_city(path: Path) -> City:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(str(path), f"cannot read the city file: {exc}") from exc
    return parse_city(text, str(path))


def parse_city(text: str, source: str = "city") -> City:
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(source, f"not valid TOML: {exc}") from exc
    return city_from_mapping(raw)


def city_from_mapping(raw: Mapping[str, Any]) -> City:
    root = Table(dict(raw), "")
    head = root.table("city")
    if head is None:
        raise ConfigError("city", "required: a [city] table with at least a name")
    name = head.string("name")
    utc_offset = head.number("utc_offset_hours", 7.0, -12.0, 14.0)
    head.done()
    districts = tuple(_district(t) for t in root.tables("district"))
    known_districts = _unique([d.id for d in districts], "district", "id")
    profiles_table = root.table("profiles")
    profiles = _profiles(profiles_table) if profiles_table else Profiles()
    hospitals = tuple(_hospital(t, known_districts) for t in root.tables("hospital"))
    intersections = tuple(_intersection(t, known_districts) for t in root.tables("intersection"))
    stations = tuple(_station(t, known_districts) for t in root.tables("air_station"))
    _unique([h.site for h in hospitals] + [x.site for x in intersections],
            "hospital/intersection", "site")
    event_tables = root.tables("event")
    root.done()
    city = City(name, utc_offset, districts, hospitals, intersections, stations, (), profiles)
    _check_sensor_ids(city)
    events = tuple(_event(t, city) for t in event_tables)
    return City(name, utc_offset, districts, hospitals, intersections, stations, events,
                profiles)


def _unique(values: list[str], what: str, field: str) -> set[str]:
    seen: set[str] = set()
    for i, v in enumerate(values):
        if v in seen:
            raise ConfigError(f"{what}[{i}].{field}", f"{v!r} is used twice")
        seen.add(v)
    return seen


def _check_sensor_ids(city: City) -> None:
    for node in nodes_of(city):
        seen: set[str] = set()
        for s in node.sensors:
            if s.id in seen:
                raise ConfigError(f"{node.site}/{node.node}/{s.id}",
                                  "two sensors of one node have this id")
            seen.add(s.id)


def _district(t: Table) -> District:
    d = District(t.ident("id"), t.string("name"))
    t.done()
    return d


def _district_ref(t: Table, known: set[str]) -> str:
    value = t.ident("district")
    if known and value not in known:
        raise ConfigError(t.sub("district"), f"{value!r} is not a declared [[district]]")
    return value


def _profiles(t: Table) -> Profiles:
    defaults = Profiles()

    def daily(name: str, default: DailyProfile) -> DailyProfile:
        return DailyProfile(t.numbers(name, 24)) if t.has(name) else default

    def weekly(prefix: str, default: WeeklyProfile) -> WeeklyProfile:
        days = default.days
        weekday = daily(f"{prefix}_weekday", days[0])
        saturday = daily(f"{prefix}_saturday", days[5])
        sunday = daily(f"{prefix}_sunday", days[6])
        name = f"{prefix}_weekday_factors"
        factors = t.numbers(name, 7) if t.has(name) else default.factors
        return WeeklyProfile.of(weekday, saturday, sunday, factors)

    def monthly(name: str, default: MonthlyCurve) -> MonthlyCurve:
        return MonthlyCurve(t.numbers(name, 12)) if t.has(name) else default

    p = Profiles(
        traffic=weekly("traffic", defaults.traffic),
        er=weekly("er", defaults.er),
        outpatient=weekly("outpatient", defaults.outpatient),
        admissions=weekly("admissions", defaults.admissions),
        pm_diurnal=daily("pm_diurnal", defaults.pm_diurnal),
        pm25_monthly=monthly("pm25_monthly", defaults.pm25_monthly),
        temperature_monthly=monthly("temperature_monthly", defaults.temperature_monthly),
        rain_days_monthly=monthly("rain_days_monthly", defaults.rain_days_monthly),
    )
    t.done()
    return p


def _hospital(t: Table, districts: set[str]) -> Hospital:
    site = t.ident("site")
    name = t.string("name")
    district = _district_ref(t, districts)
    wards = tuple(_ward(w) for w in t.tables("ward"))
    _unique([w.node for w in wards], t.sub("ward"), "node")
    er_table = t.table("er")
    er = _entrance(er_table) if er_table else None
    opd_table = t.table("outpatient")
    opd = _outpatient(opd_table) if opd_table else None
    departments = tuple(_department(d) for d in t.tables("paraclinical"))
    taken = {w.node for w in wards} | {e.node for e in (er, opd) if e is not None}
    for i, d in enumerate(departments):
        if d.node in taken:
            raise ConfigError(f"{t.sub('paraclinical')}[{i}].node", f"{d.node!r} is already a "
                              "node of this hospital: a department needs a node of its own")
        taken.add(d.node)
    t.done()
    return Hospital(site, name, district, wards, er, opd, departments)


def _ward(t: Table) -> Ward:
    w = Ward(
        node=t.ident("node"),
        name=t.string("name"),
        beds=t.integer("beds", low=1, high=999),
        mean_stay_days=t.number("mean_stay_days", 6.5, 0.1, 365.0),
        stay_sigma=t.number("stay_sigma", 0.7, 0.05, 2.0),
        offered_load=t.number("offered_load", 0.92, 0.05, 2.0),
        cleaning_min=t.number("cleaning_min", 60.0, 0.0, 1440.0),
        exit_tolerance_s=t.number("exit_tolerance_s", 60.0, 0.0, 3600.0),
        period_s=t.number("period_s", 300.0, 1.0, 3600.0),
        bed_prefix=t.string("bed_prefix", "bed-"),
        bounce_ms=t.number("bounce_ms", 3.0, 0.0, 50.0),
        mats=t.boolean("mats", False),
    )
    if not SENSOR_ID.fullmatch(w.bed_ids[-1]):
        raise ConfigError(t.sub("bed_prefix"), f"{w.bed_prefix!r} does not make valid sensor "
                          "ids (1-64 of [a-z0-9_.-])")
    t.done()
    return w


def _entrance(t: Table) -> Entrance:
    e = Entrance(
        node=t.ident("node"),
        door=t.ident("door", SENSOR_ID, "door-er"),
        arrivals_per_day=t.number("arrivals_per_day", low=0.0, high=100_000.0),
        companions_mean=t.number("companions_mean", 1.2, 0.0, 10.0),
        period_s=t.interval("period_s", 60.0),
    )
    t.done()
    return e


def _outpatient(t: Table) -> Outpatient:
    node = t.ident("node")
    door = t.ident("door", SENSOR_ID, "door-main")
    visits = t.number("visits_per_day", low=0.0, high=1_000_000.0)
    companions = t.number("companions_mean", 0.7, 0.0, 10.0)
    period = t.interval("period_s", 60.0)
    kiosks = _kiosks(t)
    t.done()
    return Outpatient(node, door, visits, companions, period, kiosks)


def _department(t: Table) -> Department:
    node = t.ident("node")
    name = t.string("name", node)
    exams = t.number("exams_per_day", low=0.0, high=1_000_000.0)
    delay = t.number("delay_h", 1.5, 0.0, 12.0)
    kiosks = _kiosks(t)
    if not kiosks:
        raise ConfigError(t.sub("kiosk"), "a department needs at least one [[...kiosk]]")
    t.done()
    return Department(node, name, exams, delay, kiosks)


def _kiosks(t: Table) -> tuple[Kiosk, ...]:
    kiosks = tuple(_kiosk(k) for k in t.tables("kiosk"))
    _unique([k.sensor for k in kiosks], t.sub("kiosk"), "sensor")
    total = sum(k.share for k in kiosks)
    if total > 1.0 + 1e-9:
        raise ConfigError(t.sub("kiosk"), f"shares add up to {total:g} > 1")
    return kiosks


def _clock_hours(value: Any, key: str) -> float:
    match = _CLOCK.fullmatch(value) if isinstance(value, str) else None
    hours = int(match.group(1)) + int(match.group(2)) / 60 if match else -1.0
    if not 0 <= hours <= 24:
        raise ConfigError(key, f"must be a local time HH:MM between 00:00 and 24:00, got "
                          f"{value!r}")
    return hours


def _kiosk(t: Table) -> Kiosk:
    sensor = t.ident("sensor", SENSOR_ID)
    share = t.number("share", low=0.0, high=1.0)
    service = t.number("service_mean_min", 4.0, 0.1, 240.0)
    sigma = t.number("service_sigma", 0.5, 0.0, 2.0)
    raw_windows = t._get("windows", _MISSING)
    if not isinstance(raw_windows, list) or not raw_windows:
        raise ConfigError(t.sub("windows"), "must be a non-empty list of "
                          "{start = \"HH:MM\", end = \"HH:MM\", counters = N}")
    windows: list[CounterWindow] = []
    for i, raw in enumerate(raw_windows):
        w = Table(raw, f"{t.sub('windows')}[{i}]")
        start = _clock_hours(w._get("start", _MISSING), w.sub("start"))
        end = _clock_hours(w._get("end", _MISSING), w.sub("end"))
        counters = w.integer("counters", low=1, high=1000)
        w.done()
        if end <= start or (windows and start < windows[-1].end_h):
            raise ConfigError(w.key, "windows must be in order, each ending after it starts")
        windows.append(CounterWindow(start, end, counters))
    t.done()
    return Kiosk(sensor, share, service, sigma, tuple(windows))


def _intersection(t: Table, districts: set[str]) -> Intersection:
    site = t.ident("site")
    node = t.ident("node", SITE_ID, "cabinet")
    name = t.string("name")
    district = _district_ref(t, districts)
    lanes = tuple(_lane(lane) for lane in t.tables("lane"))
    if not lanes:
        raise ConfigError(t.sub("lane"), "an intersection needs at least one [[...lane]]")
    t.done()
    return Intersection(site, node, name, district, lanes)


def _lane(t: Table) -> Lane:
    sensor = t.ident("sensor", SENSOR_ID)
    lane = Lane(
        sensor=sensor,
        name=t.string("name", sensor),
        peak_vph=t.number("peak_vph", low=0.0, high=10_000.0),
        free_speed_kmh=t.number("free_speed_kmh", 35.0, 5.0, 130.0),
        loop_length_m=t.number("loop_length_m", 2.0, 0.5, 10.0),
        loop_spacing_m=t.number("loop_spacing_m", 5.0, 0.5, 50.0),
        period_s=t.interval("period_s", 60.0),
        bounce_ms=t.number("bounce_ms", 3.0, 0.0, 50.0),
    )
    t.done()
    return lane


def _station(t: Table, districts: set[str]) -> AirStation:
    site = t.ident("site")
    node = t.ident("node")
    name = t.string("name")
    district = _district_ref(t, districts)
    indoor = t.boolean("indoor", False)
    local = t.number("local_factor", 1.0, 0.1, 10.0)
    sensors = tuple(_air_sensor(s) for s in t.tables("sensor"))
    if not sensors:
        raise ConfigError(t.sub("sensor"), "an air station needs at least one sensor")
    t.done()
    return AirStation(site, node, name, district, indoor, local, sensors)


def _air_sensor(t: Table) -> AirSensor:
    sensor_id = t.ident("id", SENSOR_ID)
    driver = t.string("driver")
    if driver not in AIR_DRIVERS:
        raise ConfigError(t.sub("driver"), f"{driver!r} is not an air driver: use one of "
                          + ", ".join(sorted(AIR_DRIVERS)))
    s = AirSensor(sensor_id, driver, t.number("period_s", AIR_PERIOD_S[driver], 1.0, 3600.0),
                  t.number("bias", 1.0, 0.2, 5.0), t.number("wander_sd", 0.0, 0.0, 0.5),
                  t.number("humidity_coef", 0.0, -0.05, 0.05),
                  t.number("offset", 0.0, -500.0, 500.0))
    t.done()
    return s


def _optional(t: Table, name: str, pattern: re.Pattern[str]) -> str | None:
    return t.ident(name, pattern) if t.has(name) else None


def _event(t: Table, city: City) -> Event:
    type_ = t.string("type")
    if type_ not in EVENT_TYPES:
        raise ConfigError(t.sub("type"), f"unknown event type {type_!r}; known: "
                          + ", ".join(sorted(EVENT_TYPES)))
    site = _optional(t, "site", SITE_ID)
    node = _optional(t, "node", SITE_ID)
    sensor = _optional(t, "sensor", SENSOR_ID)
    start_h = t.number("start_h", low=0.0, high=24 * 3660.0)
    duration_h = t.number("duration_h", low=1e-6, high=24 * 3660.0)
    params: dict[str, float] = {}
    for name, value in t.rest().items():
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ConfigError(t.sub(name), f"must be a number, got {value!r}")
        params[name] = float(value)
    event = make_event(type_, site, node, sensor, start_h * 3600,
                       (start_h + duration_h) * 3600, params, t.key)
    check_target(city, event, t.key)
    return event


def check_target(city: City, event: Event, key: str = "event") -> None:
    """Raise ConfigError unless the event's target exists and is of the right kind."""
    spec = EVENT_TYPES[event.type]

    def fail(field: str, reason: str) -> None:
        raise ConfigError(f"{key}.{field}", reason)

    if spec.target == "city":
        return
    if spec.target == "site":
        if event.type == "surge" and event.site not in {h.site for h in city.hospitals}:
            fail("site", f"{event.site!r} is not a hospital site")
        return
    nodes = {(n.site, n.node): n for n in nodes_of(city)}
    node = nodes.get((event.site or "", event.node or ""))
    if node is None:
        fail("node", f"no node {event.site}/{event.node} in the city")
        return
    drivers = {s.driver for s in node.sensors}
    if event.sensor is not None:
        match = [s for s in node.sensors if s.id == event.sensor]
        if not match:
            fail("sensor", f"node {event.site}/{event.node} has no sensor {event.sensor!r}")
        drivers = {match[0].driver}
    if spec.drivers and not drivers & spec.drivers:
        fail("sensor" if event.sensor else "node",
             f"{event.type} applies to {', '.join(sorted(spec.drivers))}, "
             f"not to {', '.join(sorted(drivers))}")


