"""Paraclinical departments (imaging, laboratory): patients sent for an exam after their
outpatient consultation take a ticket at the department's kiosk and wait for a counter
(an imaging room, a sampling desk) as in the outpatient hall (queues.py).

Arrivals are a non-homogeneous Poisson process: the outpatient profile (weekday shape,
Saturday 0.4, Sunday closed) shifted `delay_h` hours later, scaled to `exams_per_day` on a
working day. The shift stands for registration, the wait for the doctor and the
consultation, which the simulator does not follow patient by patient; 1.5 h is the
default, an assumption (no published figure for Hanoi's hospitals was used). Ward and ER
patients' exams are ordered from the wards and do not queue at the kiosks: they are not
modelled. There is no door counter.
"""

from __future__ import annotations

from dataclasses import dataclass

from urbanpulse.simulate.city import Department
from urbanpulse.simulate.profiles import WeeklyProfile, per_day_rate
from urbanpulse.simulate.queues import KioskDay, QueueEvent, events_over, kiosk_days
from urbanpulse.simulate.randomness import FloatArray, substream
from urbanpulse.simulate.timebase import TimeBase
from urbanpulse.simulate.timeline import LruCache, poisson_times


@dataclass(frozen=True, slots=True)
class DepartmentDay:
    arrivals: FloatArray
    kiosks: dict[str, KioskDay]


@dataclass
class DepartmentModel:
    seed: int
    site: str
    department: Department
    timebase: TimeBase
    profile: WeeklyProfile  # the outpatients' profile, before the shift

    def __post_init__(self) -> None:
        self._days: LruCache[int, DepartmentDay] = LruCache(self._day, keep=3)

    def rate(self, t: FloatArray) -> FloatArray:
        """Patients per second coming for an exam."""
        d = self.department
        return per_day_rate(d.exams_per_day, self.profile,
                            self.timebase.week_hour(t) - d.delay_h)

    def _day(self, day: int) -> DepartmentDay:
        d = self.department
        rng = substream(self.seed, "paraclinical", self.site, d.node, day)
        day0 = self.timebase.day_start(day)
        arrivals = poisson_times(rng, self.rate, day0, day0 + 86_400.0, step=60.0)
        choice = rng.uniform(size=arrivals.size)
        kiosks = kiosk_days(self.seed, self.site, d.node, d.kiosks, day, day0, arrivals, choice)
        return DepartmentDay(arrivals, kiosks)

    def day(self, day: int) -> DepartmentDay:
        return self._days.get(day)

    def kiosk_events(self, sensor: str, t0: float, t1: float) -> list[QueueEvent]:
        return events_over(self.timebase, lambda d: self.day(d).kiosks, sensor, t0, t1)
