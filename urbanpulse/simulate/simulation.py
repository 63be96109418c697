"""The simulated city at run time: every model built from the city and the events,
and what each sensor's device should report.

Three ways to use it:
- live emulation: `clock()` runs simulated time at `speed` times the wall clock;
  `serial_source(...)` gives the values a serial air sensor reports at an offset;
  `pin_tracks(...)` gives the edges to drive on a GPIO sensor's pins over a window;
- lightweight: `readings()` makes wire-contract readings per node directly (see
  lightweight.py), for load tests and offline runs;
- scoring: `ground_truth(until)` lists what was injected and the weather context.
Times are offsets in seconds from `start` (see timebase.py).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Protocol

from urbanpulse.clock import Clock, SystemClock
from urbanpulse.simulate.air import AirSensorModel, CityAir, StationAir
from urbanpulse.simulate.city import City, NodeSpec, SensorSpec
from urbanpulse.simulate.city_file import check_target
from urbanpulse.simulate.errors import SimulationError, UnknownTargetError
from urbanpulse.simulate.events import Event
from urbanpulse.simulate.lightweight import ReadingGenerator
from urbanpulse.simulate.paraclinical import DepartmentModel
from urbanpulse.simulate.queues import KioskSensor, QueueEvent
from urbanpulse.simulate.randomness import FloatArray
from urbanpulse.simulate.sources import SerialSource
from urbanpulse.simulate.timebase import NodeClock, SimClock, SkewFn, TimeBase
from urbanpulse.simulate.timeline import PinTrack
from urbanpulse.simulate.traffic import LaneModel, LaneSensor, Passages
from urbanpulse.simulate.visits import DoorSensor, EntranceModel, OutpatientModel
from urbanpulse.simulate.ward import BedSensor, WardModel

# A Monday, 00:00 in Hanoi.
DEFAULT_START = datetime(2026, 3, 1, 17, 0, tzinfo=UTC)

SensorKey = tuple[str, str, str]


class SensorOutput(Protocol):
    def reports(self, t0: float, t1: float) -> tuple[FloatArray, list[dict[str, float]]]:
        """Readings stamped in [t0, t1): their offsets and values."""
        ...


class PinSensor(SensorOutput, Protocol):
    def pin_tracks(self, t0: float, t1: float) -> dict[str, PinTrack]: ...


class Simulation:
    def __init__(self, city: City, seed: int = 0, start: datetime = DEFAULT_START,
                 speed: float = 1.0, events: Sequence[Event] | None = None) -> None:
        self.city = city
        self.seed = seed
        self.timebase = TimeBase.create(start, city.utc_offset_hours)
        if not math.isfinite(speed) or speed <= 0:
            raise SimulationError(f"speed must be a positive finite number, got {speed}")
        self.speed = float(speed)
        self.events: tuple[Event, ...] = tuple(city.events if events is None else events)
        for i, e in enumerate(self.events):
            check_target(city, e, f"events[{i}]")
        self.city_air = CityAir(seed, self.timebase, city.profiles)
        self.lanes: dict[SensorKey, LaneModel] = {}
        self.stations: dict[tuple[str, str], StationAir] = {}
        self.wards: dict[tuple[str, str], WardModel] = {}
        self.entrances: dict[str, EntranceModel] = {}
        self.outpatients: dict[str, OutpatientModel] = {}
        self.departments: dict[tuple[str, str], DepartmentModel] = {}
        self.outputs: dict[SensorKey, SensorOutput] = {}
        self._build()

    @property
    def start(self) -> datetime:
        return self.timebase.start

    @property
    def nodes(self) -> tuple[NodeSpec, ...]:
        return self.city.nodes

    def _on(self, type_: str, site: str, node: str | None = None,
            sensor: str | None = None) -> list[Event]:
        return [e for e in self.events if e.type == type_ and e.site == site
                and (node is None or e.node == node) and (sensor is None or e.sensor == sensor)]

    def _faults(self, site: str, node: str, sensor: str) -> list[Event]:
        return [e for e in self.events if e.category == "fault" and e.site == site
                and e.node == node and e.sensor == sensor]

    def _build(self) -> None:
        seed, tb, profiles = self.seed, self.timebase, self.city.profiles
        for h in self.city.hospitals:
            surges = self._on("surge", h.site)
            for w in h.wards:
                ward = WardModel(seed, h.site, w, tb, profiles.admissions, surges)
                self.wards[(h.site, w.node)] = ward
                for bed, bed_id in enumerate(w.bed_ids):
                    self.outputs[(h.site, w.node, bed_id)] = BedSensor(
                        ward, bed, bed_id, self._faults(h.site, w.node, bed_id))
            if h.er is not None:
                er = EntranceModel(seed, h.site, h.er, tb, profiles.er, surges)
                self.entrances[h.site] = er
                self.outputs[(h.site, h.er.node, h.er.door)] = DoorSensor(
                    seed, h.er.door, h.er.period_s, er, self._faults(h.site, h.er.node, h.er.door))
            if h.outpatient is not None:
                o = h.outpatient
                opd = OutpatientModel(seed, h.site, o, tb, profiles.outpatient)
                self.outpatients[h.site] = opd
                self.outputs[(h.site, o.node, o.door)] = DoorSensor(
                    seed, o.door, o.period_s, opd, self._faults(h.site, o.node, o.door))
                for k in o.kiosks:
                    self.outputs[(h.site, o.node, k.sensor)] = KioskSensor(
                        seed, h.site, o.node, k, opd, self._faults(h.site, o.node, k.sensor))
            for d in h.paraclinical:
                dept = DepartmentModel(seed, h.site, d, tb, profiles.outpatient)
                self.departments[(h.site, d.node)] = dept
                for k in d.kiosks:
                    self.outputs[(h.site, d.node, k.sensor)] = KioskSensor(
                        seed, h.site, d.node, k, dept, self._faults(h.site, d.node, k.sensor))
        for x in self.city.intersections:
            for lane in x.lanes:
                model = LaneModel(seed, x.site, x.node, lane, tb, profiles.traffic,
                                  self._on("incident", x.site, x.node, lane.sensor))
                self.lanes[(x.site, x.node, lane.sensor)] = model
                self.outputs[(x.site, x.node, lane.sensor)] = LaneSensor(
                    model, self._faults(x.site, x.node, lane.sensor))
        for s in self.city.air_stations:
            station = StationAir(seed, s, self.city_air, profiles.traffic, profiles.outpatient,
                                 self._on("pollution_spike", s.site, s.node))
            self.stations[(s.site, s.node)] = station
            for a in s.sensors:
                self.outputs[(s.site, s.node, a.id)] = AirSensorModel(
                    seed, station, a, self._faults(s.site, s.node, a.id))

    # --- time --------------------------------------------------------------------

    def at(self, t: float) -> datetime:
        """The UTC datetime of offset t."""
        return self.timebase.at(t)

    def offset(self, ts: datetime) -> float:
        return self.timebase.offset(ts)

    def clock(self, base: Clock | None = None, at_offset: float = 0.0) -> SimClock:
        """Simulated time running at `speed` times `base` (the system clock by default),
        from offset `at_offset` now."""
        return SimClock(self.timebase, self.speed, base or SystemClock(), at_offset)

    def clock_skew(self, site: str, node: str) -> SkewFn:
        """Seconds the node's own clock is off, as a function of the offset."""
        self.city.node(site, node)
        return SkewFn([(e.start_s, e.end_s, e.params["offset_s"])
                       for e in self._on("clock_jump", site, node)])

    def node_clock(self, site: str, node: str, sim_clock: SimClock) -> NodeClock:
        """The clock an emulated node should stamp its readings with."""
        return NodeClock(sim_clock, self.clock_skew(site, node))

    # --- per sensor ----------------------------------------------------------------

    def sensor(self, site: str, node: str, sensor: str) -> SensorSpec:
        return self.city.sensor(site, node, sensor)

    def output(self, site: str, node: str, sensor: str) -> SensorOutput:
        try:
            return self.outputs[(site, node, sensor)]
        except KeyError:
            raise UnknownTargetError(f"no sensor {site}/{node}/{sensor}") from None

    def serial_source(self, site: str, node: str, sensor: str) -> SerialSource:
        out = self.output(site, node, sensor)
        if not isinstance(out, AirSensorModel):
            raise UnknownTargetError(f"{site}/{node}/{sensor} is not a serial air sensor")
        return SerialSource(out, self.timebase)

    def pin_tracks(self, site: str, node: str, sensor: str, t0: float,
                   t1: float) -> dict[str, PinTrack]:
        """The edges of each pin of a GPIO sensor over [t0, t1), by pin name
        (`SensorSpec.pins`)."""
        out = self.output(site, node, sensor)
        if not isinstance(out, LaneSensor | BedSensor | DoorSensor | KioskSensor):
            raise UnknownTargetError(f"{site}/{node}/{sensor} has no GPIO pins")
        return out.pin_tracks(t0, t1)

    def kiosk_events(self, site: str, node: str, sensor: str, t0: float,
                     t1: float) -> list[QueueEvent]:
        out = self.output(site, node, sensor)
        if not isinstance(out, KioskSensor):
            raise UnknownTargetError(f"{site}/{node}/{sensor} is not a queue kiosk")
        return out.events(t0, t1)

    def passages(self, site: str, node: str, sensor: str, t0: float, t1: float) -> Passages:
        """The true vehicles over a lane's loops (arrivals at loop 1 in [t0, t1))."""
        try:
            return self.lanes[(site, node, sensor)].passages(t0, t1)
        except KeyError:
            raise UnknownTargetError(f"{site}/{node}/{sensor} is not a traffic lane") from None

    # --- lightweight and truth ----------------------------------------------------

    def readings(self, max_batch: int = 500) -> ReadingGenerator:
        """A generator of wire-contract readings per node, from offset 0 on."""
        return ReadingGenerator(self, max_batch)

    def ground_truth(self, until: float) -> list[Event]:
        """Injected events and weather context that began before offset `until`."""
        events = [e for e in self.events if e.start_s < until]
        events += self.city_air.context_until(until)
        return sorted(events, key=lambda e: (e.start_s, e.type, e.site or "", e.node or "",
                                             e.sensor or ""))


