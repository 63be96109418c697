"""The city the simulator runs: hospitals, intersections, air-quality stations, and the
edge nodes and sensors they carry. Built by `City.load` from a TOML file (see
urbanpulse/simulate/cities/hanoi.toml and docs/simulator.md)."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from functools import cached_property
from pathlib import Path

from urbanpulse.errors import ConfigError
from urbanpulse.simulate.errors import UnknownTargetError
from urbanpulse.simulate.events import Event
from urbanpulse.simulate.profiles import (
    ADMISSIONS,
    ER,
    OUTPATIENT,
    PM25_MONTHLY,
    PM_DIURNAL,
    RAIN_DAYS_MONTHLY,
    TEMPERATURE_MONTHLY,
    TRAFFIC,
    DailyProfile,
    MonthlyCurve,
    WeeklyProfile,
)

DRIVER_KINDS: dict[str, str] = {
    "sds011": "air.pm",
    "pms5003": "air.pm",
    "mhz19b": "air.co2",
    "traffic_loop": "traffic.loop",
    "bed_pad": "hospital.bed",
    "door_counter": "hospital.door",
    "queue_kiosk": "hospital.queue",
}
DEFAULT_CITY = Path(__file__).parent / "cities" / "hanoi.toml"


@dataclass(frozen=True, slots=True)
class SensorSpec:
    """One sensor as its edge node sees it. `period_s` is the reporting interval (the
    aggregation interval for counters, the heartbeat for bed pads, 0 for kiosks, which
    report events). `pins` names the GPIO lines of the device (empty for serial ones);
    `params` carries what the edge driver needs to know (loop spacing, exit delay)."""

    id: str
    driver: str
    period_s: float
    pins: tuple[str, ...] = ()
    params: Mapping[str, float] = field(default_factory=dict)

    @property
    def kind(self) -> str:
        return DRIVER_KINDS[self.driver]

    @property
    def serial(self) -> bool:
        return not self.pins


@dataclass(frozen=True, slots=True)
class NodeSpec:
    site: str
    node: str
    sensors: tuple[SensorSpec, ...]

    def sensor(self, sensor_id: str) -> SensorSpec:
        for s in self.sensors:
            if s.id == sensor_id:
                return s
        raise UnknownTargetError(f"node {self.site}/{self.node} has no sensor {sensor_id!r}")


@dataclass(frozen=True, slots=True)
class Lane:
    sensor: str
    name: str
    peak_vph: float
    free_speed_kmh: float
    loop_length_m: float
    loop_spacing_m: float
    period_s: float
    bounce_ms: float


@dataclass(frozen=True, slots=True)
class Intersection:
    site: str
    node: str
    name: str
    district: str
    lanes: tuple[Lane, ...]


@dataclass(frozen=True, slots=True)
class AirSensor:
    """One serial air module. `bias` is its constant gain; `wander_sd` (sd of a slow
    wander of its log gain, periods of 6-48 h), `humidity_coef` (log gain per %RH away
    from 70 %RH) and `offset` (added to the primary value, ppm or ug/m3) are how a real
    module's response differs from another's with the weather and the particle mix
    (urbanpulse/simulate/module_pairs.py); all 0 by default."""

    id: str
    driver: str
    period_s: float
    bias: float
    wander_sd: float = 0.0
    humidity_coef: float = 0.0
    offset: float = 0.0


@dataclass(frozen=True, slots=True)
class AirStation:
    site: str
    node: str
    name: str
    district: str
    indoor: bool
    local_factor: float
    sensors: tuple[AirSensor, ...]


@dataclass(frozen=True, slots=True)
class Ward:
    node: str
    name: str
    beds: int
    mean_stay_days: float
    stay_sigma: float
    offered_load: float
    cleaning_min: float
    exit_tolerance_s: float
    period_s: float
    bed_prefix: str
    bounce_ms: float
    # Analogue mats (edge/drivers/bed_mat) instead of pads: the readings carry load and
    # motion. Planned as pads (the same faults on the same beds), for comparing the two.
    mats: bool = False

    @property
    def bed_ids(self) -> tuple[str, ...]:
        width = max(2, len(str(self.beds)))
        return tuple(f"{self.bed_prefix}{i:0{width}d}" for i in range(1, self.beds + 1))


@dataclass(frozen=True, slots=True)
class Entrance:
    """The emergency entrance: a door counter where patients and companions arrive."""

    node: str
    door: str
    arrivals_per_day: float
    companions_mean: float
    period_s: float


@dataclass(frozen=True, slots=True)
class CounterWindow:
    start_h: float
    end_h: float
    counters: int


@dataclass(frozen=True, slots=True)
class Kiosk:
    sensor: str
    share: float
    service_mean_min: float
    service_sigma: float
    windows: tuple[CounterWindow, ...]

    @property
    def max_counters(self) -> int:
        return max(w.counters for w in self.windows)


@dataclass(frozen=True, slots=True)
class Outpatient:
    node: str
    door: str
    visits_per_day: float
    companions_mean: float
    period_s: float
    kiosks: tuple[Kiosk, ...]


@dataclass(frozen=True, slots=True)
class Department:
    """A paraclinical department (imaging, laboratory): its own node, its own kiosks,
    no door counter. Patients come after their outpatient consultation: the outpatient
    profile `delay_h` hours later, `exams_per_day` tickets on a working day."""

    node: str
    name: str
    exams_per_day: float
    delay_h: float
    kiosks: tuple[Kiosk, ...]


@dataclass(frozen=True, slots=True)
class Hospital:
    site: str
    name: str
    district: str
    wards: tuple[Ward, ...]
    er: Entrance | None
    outpatient: Outpatient | None
    paraclinical: tuple[Department, ...] = ()


@dataclass(frozen=True, slots=True)
class District:
    id: str
    name: str


@dataclass(frozen=True, slots=True)
class Profiles:
    traffic: WeeklyProfile = TRAFFIC
    er: WeeklyProfile = ER
    outpatient: WeeklyProfile = OUTPATIENT
    admissions: WeeklyProfile = ADMISSIONS
    pm_diurnal: DailyProfile = PM_DIURNAL
    pm25_monthly: MonthlyCurve = PM25_MONTHLY
    temperature_monthly: MonthlyCurve = TEMPERATURE_MONTHLY
    rain_days_monthly: MonthlyCurve = RAIN_DAYS_MONTHLY


@dataclass(frozen=True)
class City:
    name: str
    utc_offset_hours: float
    districts: tuple[District, ...]
    hospitals: tuple[Hospital, ...]
    intersections: tuple[Intersection, ...]
    air_stations: tuple[AirStation, ...]
    events: tuple[Event, ...] = ()
    profiles: Profiles = Profiles()

    @classmethod
    def load(cls, path: str | Path = DEFAULT_CITY) -> City:
        from urbanpulse.simulate.city_file import load_city

        return load_city(Path(path))

    @classmethod
    def parse(cls, text: str, source: str = "city") -> City:
        from urbanpulse.simulate.city_file import parse_city

        return parse_city(text, source)

    @cached_property
    def nodes(self) -> tuple[NodeSpec, ...]:
        """Every edge node with its sensors, in file order."""
        return nodes_of(self)

    @cached_property
    def _node_index(self) -> dict[tuple[str, str], NodeSpec]:
        return {(n.site, n.node): n for n in self.nodes}

    def node(self, site: str, node: str) -> NodeSpec:
        try:
            return self._node_index[(site, node)]
        except KeyError:
            raise UnknownTargetError(f"no node {site}/{node} in city {self.name!r}") from None

    def sensor(self, site: str, node: str, sensor: str) -> SensorSpec:
        return self.node(site, node).sensor(sensor)

    def hospital(self, site: str) -> Hospital:
        for h in self.hospitals:
            if h.site == site:
                return h
        raise UnknownTargetError(f"no hospital at site {site!r}")

    def replicate(self, copies: int) -> City:
        """`copies` copies of every site (ids suffixed -r0001...), for load tests of
        thousands of nodes. Copy 0 keeps the original ids and the events."""
        if copies < 1:
            raise ValueError("copies must be at least 1")
        # A site id cut short to fit its suffix may fall on another site's copy (or on
        # another site): their nodes would become one, their readings mixed.
        sites = sorted({h.site for h in self.hospitals} | {x.site for x in self.intersections}
                       | {s.site for s in self.air_stations})
        taken: dict[str, str] = {site: site for site in sites}
        for i in range(1, copies):
            for site in sites:
                copy = _suffixed(site, f"-r{i:04d}")
                if copy in taken:
                    other = taken[copy]
                    whose = f"site {other!r}" if other == copy else f"a copy of site {other!r}"
                    raise ConfigError("replicas", f"copy {i} of site {site!r} would be "
                                      f"{copy!r}, already {whose} (a site id is cut to 26 "
                                      "characters to take its -rNNNN suffix): shorten the "
                                      "site ids")
                taken[copy] = site
        hospitals: list[Hospital] = []
        intersections: list[Intersection] = []
        stations: list[AirStation] = []
        for i in range(copies):
            suffix = "" if i == 0 else f"-r{i:04d}"
            hospitals += [replace(h, site=_suffixed(h.site, suffix)) for h in self.hospitals]
            intersections += [replace(x, site=_suffixed(x.site, suffix))
                              for x in self.intersections]
            stations += [replace(s, site=_suffixed(s.site, suffix)) for s in self.air_stations]
        return replace(self, hospitals=tuple(hospitals), intersections=tuple(intersections),
                       air_stations=tuple(stations))

    def with_mats(self) -> City:
        """This city with every ward's beds on analogue mats (edge/drivers/bed_mat) instead
        of pads: the same beds, ids and events."""
        return replace(self, hospitals=tuple(
            replace(h, wards=tuple(replace(w, mats=True) for w in h.wards))
            for h in self.hospitals))

    def shard(self, index: int, count: int) -> City:
        """The sites of shard `index` out of `count` (by a stable hash of the site id),
        with their events. Every model draws from its own stream, so the shards of a city
        run in separate processes produce exactly the readings of the whole city."""
        if not 0 <= index < count:
            raise ValueError(f"shard index {index} not in 0..{count - 1}")

        def mine(site: str | None) -> bool:
            return site is None or _shard_of(site, count) == index

        return replace(
            self,
            hospitals=tuple(h for h in self.hospitals if mine(h.site)),
            intersections=tuple(x for x in self.intersections if mine(x.site)),
            air_stations=tuple(s for s in self.air_stations if mine(s.site)),
            events=tuple(e for e in self.events if mine(e.site)),
        )


def _shard_of(site: str, count: int) -> int:
    return int.from_bytes(hashlib.blake2b(site.encode(), digest_size=8).digest(), "little") \
        % count


def _suffixed(site: str, suffix: str) -> str:
    if len(site) + len(suffix) > 32:
        site = site[: 32 - len(suffix)].rstrip("-")
    return site + suffix


# A door counter's lines: the beam (1 while broken) and its supervision loopback (a
# spare pair shorted inside the receiver's connector, edge/drivers/door_counter: 1 while
# the loop is closed, 0 while a cut cable opens it).
DOOR_PINS = ("beam", "loopback")


def _kiosk_spec(k: Kiosk) -> SensorSpec:
    pins = ("ticket", *(f"call-{c}" for c in range(1, k.max_counters + 1)))
    return SensorSpec(k.sensor, "queue_kiosk", 0.0, pins, {"counters": float(k.max_counters)})


def nodes_of(city: City) -> tuple[NodeSpec, ...]:
    sensors: dict[tuple[str, str], list[SensorSpec]] = {}

    def add(site: str, node: str, spec: SensorSpec) -> None:
        sensors.setdefault((site, node), []).append(spec)

    for h in city.hospitals:
        for w in h.wards:
            for bed in w.bed_ids:
                add(h.site, w.node, SensorSpec(bed, "bed_pad", w.period_s, ("pad",), {
                    "exit_tolerance_s": w.exit_tolerance_s, "bounce_ms": w.bounce_ms,
                    **({"mat": 1.0} if w.mats else {})}))
        if h.er is not None:
            add(h.site, h.er.node, SensorSpec(h.er.door, "door_counter", h.er.period_s,
                                              DOOR_PINS))
        if h.outpatient is not None:
            o = h.outpatient
            add(h.site, o.node, SensorSpec(o.door, "door_counter", o.period_s, DOOR_PINS))
            for k in o.kiosks:
                add(h.site, o.node, _kiosk_spec(k))
        for d in h.paraclinical:
            for k in d.kiosks:
                add(h.site, d.node, _kiosk_spec(k))
    for x in city.intersections:
        for lane in x.lanes:
            add(x.site, x.node, SensorSpec(lane.sensor, "traffic_loop", lane.period_s,
                                           ("loop1", "loop2"), {
                                               "loop_length_m": lane.loop_length_m,
                                               "loop_spacing_m": lane.loop_spacing_m,
                                               "bounce_ms": lane.bounce_ms}))
    for s in city.air_stations:
        for a in s.sensors:
            add(s.site, s.node, SensorSpec(a.id, a.driver, a.period_s))
    return tuple(NodeSpec(site, node, tuple(specs)) for (site, node), specs in sensors.items())
