"""A hospital ward: admissions into a fixed number of beds, stays, discharges.

Admissions arrive as a non-homogeneous Poisson process (mostly in the working day) at
the rate that would keep the ward at its target occupancy; a patient arriving when every
bed is taken is diverted (counted, never put in a bed), so occupancy cannot exceed the
beds. Stays are log-normal; discharges wait for the late-morning discharge round; a
bed is cleaned before the next patient. An occupied bed's pad also sees the patient get
up now and then (a few minutes) or shift (a few seconds).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from urbanpulse.simulate.bed_mat import mat_values, spike_pulses
from urbanpulse.simulate.city import Ward
from urbanpulse.simulate.events import Event
from urbanpulse.simulate.faults import MIN_PULSE_S, in_faults, pulse_timeline
from urbanpulse.simulate.profiles import WeeklyProfile
from urbanpulse.simulate.randomness import FloatArray, key_hash, substream
from urbanpulse.simulate.timebase import TimeBase
from urbanpulse.simulate.timeline import Intervals, PinTrack, poisson_times, with_bounce

CHUNK = 3600.0
DISCHARGE_ROUND_H = (9.0, 12.0)  # local hours
MIN_STAY_S = 2 * 3600.0
EXIT_RATE_DAY, EXIT_RATE_NIGHT = 0.3, 0.08  # getting up, per hour
SHIFT_RATE = 1.0  # brief unloading of the pad, per hour


@dataclass(frozen=True, slots=True)
class Stay:
    bed: int
    t_in: float
    t_out: float
    contact: Intervals  # when the pad is loaded during the stay (exits left out)


@dataclass
class WardModel:
    seed: int
    site: str
    ward: Ward
    timebase: TimeBase
    profile: WeeklyProfile
    surges: list[Event] = field(default_factory=list)

    def __post_init__(self) -> None:
        w = self.ward
        self._mu = np.log(w.mean_stay_days * 86_400.0) - w.stay_sigma**2 / 2
        weekly_mean = sum(d.day_sum * f for d, f in zip(self.profile.days, self.profile.factors,
                                                         strict=True)) / (7 * 24)
        # Effective bed time per patient: the stay, the wait for the discharge round (half
        # a day on average) and the cleaning.
        per_patient = (w.mean_stay_days + 0.5) * 86_400.0 + w.cleaning_min * 60.0
        self._rate_scale = w.offered_load * w.beds / per_patient / weekly_mean
        self.stays: list[list[Stay]] = [[] for _ in range(w.beds)]
        self.admitted: list[float] = []
        self.diverted: list[float] = []
        self._free_at = np.zeros(w.beds)
        self._generated = 0
        self._initial_fill()

    def _stay_length(self, rng: np.random.Generator, length_biased: bool = False) -> float:
        sigma = self.ward.stay_sigma
        mu = self._mu + (sigma**2 if length_biased else 0.0)
        return max(MIN_STAY_S, float(rng.lognormal(mu, sigma)))

    def _discharge(self, rng: np.random.Generator, t: float) -> float:
        """The discharge time of a stay medically over at t: in the next discharge round."""
        lo, hi = DISCHARGE_ROUND_H
        day = int(self.timebase.local_day(t))
        hour = float(self.timebase.local_hour(t))
        if hour >= hi:
            day += 1
        if lo <= hour < hi:
            return t
        return self.timebase.day_start(day) + (lo + (hi - lo) * float(rng.uniform())) * 3600

    def _initial_fill(self) -> None:
        rng = substream(self.seed, "ward", self.site, self.ward.node, "init")
        p = min(self.ward.offered_load, 0.95)
        cleaning = self.ward.cleaning_min * 60.0
        for bed in range(self.ward.beds):
            if rng.uniform() < p:
                length = self._stay_length(rng, length_biased=True)
                t_in = -float(rng.uniform()) * length
                t_out = self._discharge(rng, max(t_in + length, 60.0))
                self.stays[bed].append(self._stay(rng, bed, t_in, t_out))
                self._free_at[bed] = t_out + cleaning
            else:
                self._free_at[bed] = float(rng.uniform()) * cleaning

    def rate(self, t: FloatArray) -> FloatArray:
        """Admissions per second (before diversion)."""
        tb = self.timebase
        rate: FloatArray = self.profile.at(tb.week_hour(t)) \
            * self._rate_scale
        for e in self.surges:
            rate[(t >= e.start_s) & (t < e.end_s)] *= e.params["factor"]
        return rate

    def generate_until(self, t: float) -> None:
        cleaning = self.ward.cleaning_min * 60.0
        while self._generated * CHUNK < t:
            k = self._generated
            rng = substream(self.seed, "ward", self.site, self.ward.node, k)
            for arrival in poisson_times(rng, self.rate, k * CHUNK, (k + 1) * CHUNK).tolist():
                free = np.flatnonzero(self._free_at <= arrival)
                if free.size == 0:
                    self.diverted.append(arrival)
                    continue
                bed = int(free[rng.integers(free.size)])
                t_out = self._discharge(rng, arrival + self._stay_length(rng))
                self.stays[bed].append(self._stay(rng, bed, arrival, t_out))
                self.admitted.append(arrival)
                self._free_at[bed] = t_out + cleaning
            self._generated += 1

    def occupancy(self, t: FloatArray) -> FloatArray:
        """Occupied beds at each offset (from the stays, without short exits)."""
        if t.size:
            self.generate_until(float(t.max()) + 1)
        count = np.zeros(t.shape)
        for bed_stays in self.stays:
            for s in bed_stays:
                count += (t >= s.t_in) & (t < s.t_out)
        return count

    def stays_of(self, bed: int, t0: float, t1: float) -> list[Stay]:
        self.generate_until(t1)
        return [s for s in self.stays[bed] if s.t_in < t1 and s.t_out > t0]

    def _exit_rate(self, t: FloatArray) -> FloatArray:
        hour = self.timebase.local_hour(t)
        rate: FloatArray = np.where((hour >= 7) & (hour < 22), EXIT_RATE_DAY,
                                    EXIT_RATE_NIGHT) / 3600.0
        return rate

    def _stay(self, rng: np.random.Generator, bed: int, t_in: float, t_out: float) -> Stay:
        # Nobody gets up in the first 10 minutes, and everyone is back before leaving.
        lo, hi = t_in + 600.0, t_out - 1800.0
        if hi <= lo:
            return Stay(bed, t_in, t_out, Intervals(np.array([t_in]), np.array([t_out])))
        walks = poisson_times(rng, self._exit_rate, lo, hi, step=1800.0)
        walk_len = np.clip(rng.lognormal(np.log(240.0), 0.7, walks.size), 20.0, 1500.0)
        shifts = rng.uniform(lo, hi, rng.poisson(SHIFT_RATE * (hi - lo) / 3600))
        shift_len = rng.uniform(2.0, 15.0, shifts.size)
        exits = Intervals.merged(np.concatenate([walks, shifts]),
                                 np.concatenate([walks + walk_len, shifts + shift_len]))
        starts = np.concatenate([[t_in], exits.ends])
        ends = np.concatenate([exits.starts, [t_out]])
        return Stay(bed, t_in, t_out, Intervals(starts, ends))

    def contact(self, bed: int, t0: float, t1: float) -> Intervals:
        """When bed `bed`'s pad is loaded, around [t0, t1): its stays minus the exits."""
        stays = self.stays_of(bed, t0, t1)
        if not stays:
            return Intervals.empty()
        return Intervals(np.concatenate([s.contact.starts for s in stays]),
                         np.concatenate([s.contact.ends for s in stays]))


@dataclass
class BedSensor:
    """One bed pad, faults included. A cut cable reads empty (NC wiring)."""

    model: WardModel
    bed: int
    sensor_id: str
    faults: list[Event]

    def __post_init__(self) -> None:
        m = self.model
        self._key = key_hash(m.seed, "bounce", m.site, m.ward.node, self.sensor_id)
        self.phase = (self._key % 1_000_003) / 1_000_003 * m.ward.period_s

    def timeline(self, t0: float, t1: float) -> Intervals:
        m = self.model
        base = m.contact(self.bed, t0, t1)
        if not self.faults:
            return base
        return pulse_timeline(base, self.faults, t0, t1, m.seed,
                              lambda t: m.contact(self.bed, t, t + 1e-6).level_at(t), 0)

    def pin_tracks(self, t0: float, t1: float) -> dict[str, PinTrack]:
        track = self.timeline(t0, t1).track(t0, t1)
        return {"pad": with_bounce(track, self._key, self.model.ward.bounce_ms / 1000.0)}

    def reports(self, t0: float, t1: float) -> tuple[FloatArray, list[dict[str, float]]]:
        """hospital.bed readings in [t0, t1): on each confirmed change of state (an exit
        counts once it has lasted the exit tolerance) and every period as a heartbeat.
        Contact pulses shorter than the driver's minimum pulse length are not a patient:
        they are counted in the next reading's `glitches`."""
        ward = self.model.ward
        tolerance = ward.exit_tolerance_s
        contact, short = self.timeline(t0 - tolerance - 3600, t1).split_short(
            MIN_PULSE_S["bed_pad"])
        seen = contact.extended(tolerance)
        # From one period back: the report before t0 bounds the first one's glitches.
        lo = t0 - ward.period_s
        changes = np.concatenate([seen.starts, seen.ends])
        changes = changes[(changes >= lo) & (changes < t1)]
        first = np.ceil((lo - self.phase) / ward.period_s)
        beats = self.phase + np.arange(first, np.ceil((t1 - self.phase) / ward.period_s)) \
            * ward.period_s
        every = np.sort(np.concatenate([changes, beats]))
        later = every >= t0
        glitches = short.count_starts(every[:-1], every[1:])[later[1:]].tolist()
        times = every[later]
        if ward.mats:
            return self._mat_reports(every[:-1][later[1:]], times, seen)
        if not self.faults:
            return times, [_bed(lv, g) for lv, g in zip(seen.levels_at(times).tolist(), glitches,
                                                        strict=True)]
        keep = ~in_faults(self.faults, ("silence",), times)
        times = times[keep]
        glitches = [g for g, k in zip(glitches, keep.tolist(), strict=True) if k]
        levels = seen.levels_at(times).tolist()
        cut = in_faults(self.faults, ("cut_cable",), times).tolist()
        values: list[dict[str, float]] = [
            {"occupied": 0, "fault": 1} if c else _bed(lv, g)
            for lv, c, g in zip(levels, cut, glitches, strict=True)]
        return times, values

    def _mat_reports(self, lo: FloatArray, hi: FloatArray, seen: Intervals
                     ) -> tuple[FloatArray, list[dict[str, float]]]:
        """A mat's readings covering [lo, hi) each (urbanpulse/simulate/bed_mat.py)."""
        m = self.model
        if not hi.size:
            return hi, []
        true = m.contact(self.bed, float(lo[0]) - 1.0, float(hi[-1]) + 1.0)
        load, motion = mat_values(self._key, true, lo, hi)
        pulses = spike_pulses(m.seed, self.faults, lo, hi)
        occupied = seen.levels_at(hi)
        cut = np.zeros(hi.shape, dtype=bool)
        for f in self.faults:
            inside = (hi >= f.start_s) & (hi < f.end_s)
            if f.type == "stuck" and inside.any():
                before = np.array([f.start_s - m.ward.period_s])
                held, _ = mat_values(self._key, m.contact(self.bed, f.start_s - m.ward.period_s,
                                                          f.start_s + 1.0),
                                     before, np.array([f.start_s]))
                load[inside] = float(held[0])
                motion[inside] = 0.0
            elif f.type == "cut_cable" and inside.any():
                # the level at 0 (below the driver's fault_below): the supervised driver's
                # fault, occupied frozen at what it was when the cable was cut
                load[inside], motion[inside] = 0.0, 0.0
                tolerance = m.ward.exit_tolerance_s
                at_cut = m.contact(self.bed, f.start_s - tolerance - 1.0, f.start_s + 1.0)
                occupied[inside] = at_cut.extended(tolerance).level_at(f.start_s)
                cut |= inside
        keep = ~in_faults(self.faults, ("silence",), hi)
        values = [_mat(int(o), float(ld), float(mo), int(g), c) for o, ld, mo, g, c in zip(
            occupied[keep].tolist(), load[keep].tolist(), motion[keep].tolist(),
            pulses[keep].tolist(), cut[keep].tolist(), strict=True)]
        return hi[keep], values


def _mat(occupied: int, load: float, motion: float, glitches: int, cut: bool
         ) -> dict[str, float]:
    # `fault` only while cut, as the simulated pads' readings (a driver sends 0 otherwise)
    out = {"occupied": occupied, "load": load, "motion": motion, **({"fault": 1} if cut else {})}
    return {**out, "glitches": glitches} if glitches else out


def _bed(occupied: int, glitches: int) -> dict[str, float]:
    return {"occupied": occupied, "glitches": glitches} if glitches else {"occupied": occupied}
