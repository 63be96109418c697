"""Air quality: a city-wide background shared by every station, a local part per
station, and the measurement of each sensor.

The background PM2.5 is the month's mean times the hour-of-day shape (high at night
under a shallow mixing layer, lowest mid-afternoon), times a slow random factor
(weather systems over days), times the washout of rain and the multiplier of
stagnation episodes. Rain and episodes are drawn here and reported as context events.
Each station adds its own fast variation and its local factor (a roadside station reads
higher); PM10 follows from PM2.5 through the fine fraction, which rises when rain
removes the coarse particles first. CO2 outdoors is a background plus traffic and the
night-time inversion; indoors it rises with the people in the hall.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from urbanpulse.simulate.city import AirSensor, AirStation, Profiles
from urbanpulse.simulate.events import Event, make_event
from urbanpulse.simulate.faults import fault_key, in_faults
from urbanpulse.simulate.profiles import EPISODES_MONTHLY, WeeklyProfile
from urbanpulse.simulate.randomness import (
    BoolArray,
    FloatArray,
    key_hash,
    slot_normal,
    slot_uniform,
    substream,
)
from urbanpulse.simulate.timebase import TimeBase
from urbanpulse.simulate.timeline import SequentialChunks

STEP = 60.0
CHUNK = 3600.0
_N = int(CHUNK / STEP)

CITY_SIGMA, CITY_TAU = 0.35, 18 * 3600.0
LOCAL_SIGMA, LOCAL_TAU = 0.15, 40 * 60.0
CO2_SIGMA, CO2_TAU = 12.0, 3600.0
WASHOUT_MIN, WASHOUT_IN, WASHOUT_OUT = 0.35, 1800.0, 8 * 3600.0
INDOOR_PM = 0.7
INDOOR_CO2_RISE = 900.0


@dataclass(frozen=True, slots=True)
class CityChunk:
    t: FloatArray  # grid of offsets, 61 points from k*CHUNK to (k+1)*CHUNK
    background: FloatArray  # PM2.5 without local effects, ug/m3
    washout: FloatArray  # 1 = no rain effect, down to WASHOUT_MIN
    episode: FloatArray  # stagnation multiplier, 1 = none
    temperature: FloatArray
    humidity: FloatArray
    events: tuple[Event, ...]  # rain and episodes beginning in this chunk


@dataclass(frozen=True, slots=True)
class _CityState:
    x: float
    washout: float = 1.0
    rain_until: float = -1.0
    episode: tuple[float, float, float] | None = None  # start, end, peak


class CityAir:
    """The background shared by every station (one per run)."""

    def __init__(self, seed: int, timebase: TimeBase, profiles: Profiles) -> None:
        self.seed = seed
        self.timebase = timebase
        self.profiles = profiles
        init = substream(seed, "air", "city", "init")
        self._chunks: SequentialChunks[_CityState, CityChunk] = SequentialChunks(
            _CityState(x=float(init.normal(0.0, CITY_SIGMA))), self._generate, keep=10**9)

    def chunk(self, k: int) -> CityChunk:
        return self._chunks.get(k)

    def _generate(self, k: int, s: _CityState) -> tuple[CityChunk, _CityState]:
        rng = substream(self.seed, "air", "city", k)
        tb = self.timebase
        t: FloatArray = k * CHUNK + np.arange(_N + 1, dtype=np.float64) * STEP
        doy = tb.day_of_year(t[:1])
        rain_per_s = float(self.profiles.rain_days_monthly.at(doy)[0]) / 30.0 / 86_400.0
        episode_per_s = float(EPISODES_MONTHLY.at(doy)[0]) / 30.0 / 86_400.0
        rain_onsets = np.sort(rng.uniform(t[0], t[-1], rng.poisson(rain_per_s * CHUNK)))
        rain_hours = np.clip(rng.lognormal(np.log(1.5), 0.6, rain_onsets.size), 0.3, 8.0)
        episode_draw = rng.uniform(size=4)
        episode_onset = (t[0] + episode_draw[1] * CHUNK
                         if episode_draw[0] < episode_per_s * CHUNK else None)
        hours, peak = 24.0 + 48.0 * episode_draw[2], 1.8 + 1.0 * episode_draw[3]
        noise = rng.standard_normal(_N + 1)

        a_city = np.exp(-STEP / CITY_TAU)
        in_rate = 1 - np.exp(-STEP / WASHOUT_IN)
        out_rate = 1 - np.exp(-STEP / WASHOUT_OUT)
        x_now, w_now, rain_until, episode = s.x, s.washout, s.rain_until, s.episode
        x, w, ep = np.empty(_N + 1), np.empty(_N + 1), np.ones(_N + 1)
        rain = np.zeros(_N + 1, dtype=bool)
        events: list[Event] = []
        onset_i = 0
        for i in range(_N + 1):
            ti = float(t[i])
            if i > 0:  # point 0 is the state carried over from the previous chunk
                while onset_i < rain_onsets.size and rain_onsets[onset_i] <= ti:
                    start = float(rain_onsets[onset_i])
                    end = start + float(rain_hours[onset_i]) * 3600
                    rain_until = max(rain_until, end)
                    events.append(make_event("rain", None, None, None, start, end, {}))
                    onset_i += 1
                if episode_onset is not None and episode is None and ti >= episode_onset:
                    episode = (ti, ti + hours * 3600, peak)
                    events.append(make_event("pollution_episode", None, None, None, ti,
                                             ti + hours * 3600, {"peak_factor": peak}))
                    episode_onset = None
                x_now = a_city * x_now + CITY_SIGMA * np.sqrt(1 - a_city**2) * noise[i]
                raining = ti < rain_until
                target = WASHOUT_MIN if raining else 1.0
                w_now += (target - w_now) * (in_rate if raining else out_rate)
            x[i], w[i] = x_now, w_now
            rain[i] = ti < rain_until
            if episode is not None:
                ep[i] = _trapezoid(ti, *episode)
                if i > 0 and ti >= episode[1]:
                    episode = None
        hour = tb.local_hour(t)
        doy_t = tb.day_of_year(t)
        background = (self.profiles.pm25_monthly.at(doy_t) * self.profiles.pm_diurnal.at(hour)
                      / (self.profiles.pm_diurnal.day_sum / 24.0)
                      * np.exp(x - CITY_SIGMA**2 / 2) * w * ep)
        t_season = self.profiles.temperature_monthly.at(doy_t)
        wet = (1.0 - w) / (1.0 - WASHOUT_MIN)
        temperature = t_season + 3.5 * np.cos(2 * np.pi * (hour - 14.5) / 24) - 2.0 * wet
        humidity = np.clip(78.0 - 2.5 * (temperature - t_season) + 15.0 * rain, 30.0, 100.0)
        chunk = CityChunk(t, background, w, ep, temperature, humidity, tuple(events))
        return chunk, _CityState(float(x_now), float(w_now), rain_until, episode)

    def context_until(self, t: float) -> list[Event]:
        """Rain and pollution episodes that began before offset t."""
        events: list[Event] = []
        for k in range(int(np.ceil(t / CHUNK))):
            events += [e for e in self.chunk(k).events if e.start_s < t]
        return events


def _trapezoid(t: float, start: float, end: float, peak: float) -> float:
    ramp = 0.25 * (end - start)
    rise = min(1.0, max(0.0, (t - start) / ramp), max(0.0, (end - t) / ramp))
    return 1.0 + (peak - 1.0) * rise


@dataclass(frozen=True, slots=True)
class StationChunk:
    t: FloatArray
    pm25: FloatArray
    fine_fraction: FloatArray  # PM2.5 / PM10
    co2: FloatArray
    temperature: FloatArray
    humidity: FloatArray


class StationAir:
    """One station's true air, on a one-minute grid."""

    def __init__(self, seed: int, station: AirStation, city: CityAir, traffic: WeeklyProfile,
                 occupancy: WeeklyProfile, spikes: list[Event]) -> None:
        self.seed = seed
        self.station = station
        self.city = city
        self.traffic = traffic
        self.occupancy = occupancy
        self.spikes = spikes
        init = substream(seed, "air", station.site, station.node, "init")
        self._chunks: SequentialChunks[tuple[float, float], StationChunk] = SequentialChunks(
            (float(init.normal(0, LOCAL_SIGMA)), float(init.normal(0, CO2_SIGMA))),
            self._generate, keep=4)

    def _generate(self, k: int, state: tuple[float, float]) -> tuple[StationChunk,
                                                                     tuple[float, float]]:
        st = self.station
        c = self.city.chunk(k)
        tb = self.city.timebase
        rng = substream(self.seed, "air", st.site, st.node, k)
        n1, n2 = rng.standard_normal(_N + 1), rng.standard_normal(_N + 1)
        a_pm, a_co2 = np.exp(-STEP / LOCAL_TAU), np.exp(-STEP / CO2_TAU)
        x_now, y_now = state
        x, y = np.empty(_N + 1), np.empty(_N + 1)
        for i in range(_N + 1):
            if i > 0:
                x_now = a_pm * x_now + LOCAL_SIGMA * np.sqrt(1 - a_pm**2) * n1[i]
                y_now = a_co2 * y_now + CO2_SIGMA * np.sqrt(1 - a_co2**2) * n2[i]
            x[i], y[i] = x_now, y_now
        pm25 = c.background * st.local_factor * np.exp(x - LOCAL_SIGMA**2 / 2)
        for e in self.spikes:
            inside = (c.t >= e.start_s) & (c.t < e.end_s)
            phase = (c.t[inside] - e.start_s) / (e.end_s - e.start_s)
            pm25[inside] *= 1 + (e.params["factor"] - 1) * np.sin(np.pi * phase) ** 2
        hour = tb.local_hour(c.t)
        traffic = self.traffic.at(tb.week_hour(c.t)) / self.traffic.peak
        night = np.clip((self.city.profiles.pm_diurnal.at(hour) - 0.7) / 0.5, 0.0, 1.0)
        co2 = 425.0 + 45.0 * traffic + 40.0 * night + y + 30.0 * (c.episode - 1.0)
        wet = (1.0 - c.washout) / (1.0 - WASHOUT_MIN)
        fine = 0.62 + 0.15 * wet
        temperature, humidity = c.temperature, c.humidity
        if st.indoor:
            pm25 = pm25 * INDOOR_PM
            people = self.occupancy.at(tb.week_hour(c.t)) / max(self.occupancy.peak, 1e-9)
            co2 = co2 + INDOOR_CO2_RISE * people
            temperature = 27.0 + 0.3 * (temperature - 27.0)
            humidity = np.clip(65.0 + 0.3 * (humidity - 65.0), 30.0, 100.0)
        chunk = StationChunk(c.t, pm25, fine, co2, temperature, humidity)
        return chunk, (float(x_now), float(y_now))

    def chunk(self, k: int) -> StationChunk:
        return self._chunks.get(k)

    def at(self, t: FloatArray) -> StationChunk:
        """The true values at offsets t (linear between grid minutes)."""
        if t.size == 0:
            empty = np.empty(0)
            return StationChunk(empty, empty, empty, empty, empty, empty)
        if float(t.min()) < 0:
            raise ValueError("air is simulated from the start of the run on")
        ks = np.unique(np.floor(t / CHUNK))
        parts = [self.chunk(int(k)) for k in ks]

        def col(name: str) -> FloatArray:
            grid: FloatArray = np.concatenate([getattr(p, name) for p in parts])
            return grid

        grid_t = col("t")
        return StationChunk(t, *(np.interp(t, grid_t, col(name)) for name in
                                 ("pm25", "fine_fraction", "co2", "temperature", "humidity")))


FIELDS = {
    "sds011": ("pm25", "pm10"),
    "pms5003": ("pm1", "pm25", "pm10"),
    "mhz19b": ("co2", "temperature_c"),
}
PRIMARY = frozenset({"pm1", "pm25", "pm10", "co2"})
_WAVES = 4  # sinusoids in a module's gain wander
_LIMITS = {"pm1": 999.0, "pm25": 999.9, "pm10": 1999.9, "co2": 5000.0}


@dataclass
class AirSensorModel:
    """What one serial air sensor measures: the station's air with the sensor's bias
    and noise (per second of simulated time), then its faults."""

    seed: int
    station: StationAir
    sensor: AirSensor
    faults: list[Event]

    def __post_init__(self) -> None:
        st = self.station.station
        self._key = key_hash(self.seed, "sensor", st.site, st.node, self.sensor.id)
        self.phase = float(slot_uniform(self._key, np.array([0]), 7)[0]) * self.sensor.period_s
        self.fields = FIELDS[self.sensor.driver]

    def silent(self, t: FloatArray) -> BoolArray:
        return in_faults(self.faults, ("silence", "cut_cable"), t)

    def sample_times(self, t0: float, t1: float) -> FloatArray:
        """When the sensor is read in [t0, t1): every period, from a per-sensor phase."""
        period = self.sensor.period_s
        first = np.ceil((t0 - self.phase) / period)
        last = np.ceil((t1 - self.phase) / period)
        times: FloatArray = self.phase + np.arange(max(first, 0.0), last) * period
        return times

    def reports(self, t0: float, t1: float) -> tuple[FloatArray, list[dict[str, float]]]:
        times = self.sample_times(t0, t1)
        times = times[~self.silent(times)]
        if times.size == 0:
            return times, []
        columns = self.values(times, self.sensor.period_s)
        names = list(columns)
        rows = zip(*(columns[n].tolist() for n in names), strict=True)
        return times, [dict(zip(names, row, strict=True)) for row in rows]

    def _respond(self, out: dict[str, FloatArray], t: FloatArray, humidity: FloatArray
                 ) -> None:
        """The module's own response on top of its bias: a slow wander of its gain, its
        humidity sensitivity, its offset (none unless the city file sets them)."""
        a = self.sensor
        if a.wander_sd or a.humidity_coef:
            draws = slot_uniform(self._key, np.arange(2 * _WAVES, dtype=np.int64), 9)
            periods = 6.0 * 3600.0 * 8.0 ** draws[:_WAVES]  # 6 to 48 h
            phases = 2 * np.pi * draws[_WAVES:]
            wander = np.sin(2 * np.pi * t[:, None] / periods + phases).sum(axis=1)
            gain = np.exp(a.wander_sd * np.sqrt(2 / _WAVES) * wander
                          + a.humidity_coef * (humidity - 70.0))
            for name in out.keys() & PRIMARY:
                out[name] *= gain
        if a.offset:
            for name in out.keys() & PRIMARY:
                out[name] += a.offset

    def values(self, t: FloatArray, period: float = 1.0) -> dict[str, FloatArray]:
        """Field arrays at offsets t. `period` is the sampling interval, which sets the
        chance of catching a spike. Silent samples are not removed here (see silent)."""
        eff = t.copy()
        for f in self.faults:
            if f.type == "stuck":
                eff[(t >= f.start_s) & (t < f.end_s)] = f.start_s
        true = self.station.at(eff)
        slots = np.floor(eff).astype(np.int64)
        bias = self.sensor.bias
        out: dict[str, FloatArray] = {}
        if self.sensor.driver == "mhz19b":
            co2 = true.co2 * bias * (1 + 0.02 * slot_normal(self._key, slots, 0))
            out["co2"] = co2 + 8.0 * slot_normal(self._key, slots, 1)
            out["temperature_c"] = true.temperature + 0.5 * slot_normal(self._key, slots, 2)
        else:
            sigma = 0.08 if self.sensor.driver == "sds011" else 0.06
            pm25 = true.pm25 * bias * np.exp(sigma * slot_normal(self._key, slots, 0)
                                             - sigma**2 / 2)
            out["pm25"] = pm25 + slot_normal(self._key, slots, 1)
            out["pm10"] = pm25 / true.fine_fraction * np.exp(
                0.05 * slot_normal(self._key, slots, 2)) + slot_normal(self._key, slots, 3)
            if self.sensor.driver == "pms5003":
                out["pm1"] = pm25 * 0.72 * np.exp(0.04 * slot_normal(self._key, slots, 4))
            # The modules count particles by size and sum the counts up: PM10 takes in
            # PM2.5, which takes in PM1, whatever the noise of each.
            np.maximum(out["pm10"], out["pm25"], out=out["pm10"])
            if "pm1" in out:
                np.minimum(out["pm1"], out["pm25"], out=out["pm1"])
        self._respond(out, eff, true.humidity)
        for f in self.faults:
            inside = (t >= f.start_s) & (t < f.end_s)
            if f.type == "drift":
                gain = 1 + f.params["pct_per_h"] / 100 * (t[inside] - f.start_s) / 3600
                for name in out.keys() & PRIMARY:
                    out[name][inside] *= np.maximum(gain, 0.0)
            elif f.type == "spikes":
                p = min(1.0, f.params["rate_per_h"] * period / 3600)
                hit = inside & (slot_uniform(fault_key(self.seed, f), slots, 0) < p)
                for name in out.keys() & PRIMARY:
                    out[name][hit] *= f.params["factor"]
        for name, values in out.items():
            high = _LIMITS.get(name, 85.0)
            low = -40.0 if name == "temperature_c" else 0.0
            np.clip(values, low, high, out=values)
            if self.sensor.driver == "sds011":
                out[name] = np.round(values, 1)
            else:
                out[name] = np.round(values)
        return out
