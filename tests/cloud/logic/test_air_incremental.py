"""The air rollup's kept sums, NowCast tails and hour covers give, byte for byte, what the
rollup gave when it summed every value of an hour and the 12 hours' NowCast anew at every
message (the release before, `_Reference` below, with the valid-hour rule of session 16
added as simply: an hour's stamps sorted and their gaps summed anew): on random streams with
late, shuffled and repeated readings, gaps, zeros and values of every size, hours valid and
not, through evictions, horizons given anew and snapshots, the previous release's snapshots
included."""

from __future__ import annotations

import io
import math
import pickle
import random
from collections.abc import Iterable
from itertools import pairwise

import pytest

from cloud.logic.domain import aqi
from cloud.logic.domain.air import FIELDS, FIELDS_OF_KIND, NOWCAST_HOURS, AirRollup, _partials
from cloud.logic.domain.common import HOUR_NS, RP_1H, Horizon, Point, skipped, window_start
from cloud.logic.lines import line
from cloud.logic.rollup import add_to_partials as _add
from tests.cloud.logic.domain_helpers import HOUR, MIN, T0
from urbanpulse.wire import Reading

_GAP = 15 * 60 * 10**9  # the valid-hour rule, written out again (aqi.MAX_GAP_NS, VALID_COVER_NS)
_VALID = 45 * 60 * 10**9


class _Reference(Horizon):
    """cloud/logic/domain/air.py's AirRollup as released before (ee74ac2), verbatim, but for
    the valid-hour rule (marked "rule"): the NowCast takes an hour's PM mean only if the gaps
    of at most 15 min between its successive stamps sum to 45 min, and a closed hour keeps
    its PM means only if it was valid."""

    def __init__(self, horizon_ns: int) -> None:
        self.horizon_ns = horizon_ns
        self.newest_ns = 0
        self.too_late = 0
        self.open: dict[int, dict[str, dict[tuple[str, int], float]]] = {}
        self.closed: dict[int, dict[str, tuple[float, int]]] = {}
        self._means: dict[tuple[int, str], tuple[float, int] | None] = {}

    def __getstate__(self) -> dict[str, object]:
        state = self.__dict__.copy()
        del state["_means"]
        return state

    def __setstate__(self, state: dict[str, object]) -> None:
        self.__dict__.update(state)
        self._means = {}

    def process(self, site: str, node: str, readings: Iterable[Reading]) -> list[Point]:
        touched: set[int] = set()
        kept = self.kept_ns
        for r in readings:
            names = FIELDS_OF_KIND.get(r.kind)
            if names is None or skipped(r):
                continue
            if r.ts_ns < self.newest_ns - self.horizon_ns or r.ts_ns < kept:
                self.too_late += 1
                continue
            self.newest_ns = max(self.newest_ns, r.ts_ns)
            hour = window_start(r.ts_ns, HOUR_NS)
            fields = self.open.setdefault(hour, {})
            for name in names:
                if name in r.values:
                    fields.setdefault(name, {})[(r.sensor, r.ts_ns)] = float(r.values[name])
            touched.add(hour)
        means = self._means
        for hour in touched:
            for name in FIELDS:
                means.pop((hour, name), None)
        emit = {h + k * HOUR_NS for h in touched for k in range(NOWCAST_HOURS)} & self.open.keys()
        out = [(RP_1H, line("air_quality", {"site": site, "node": node}, self._fields(h, means), h))
               for h in sorted(emit)]
        self._evict()
        return out

    def mean(self, hour: int, name: str) -> tuple[float, int] | None:
        values = self.open.get(hour, {}).get(name)
        if values:
            return math.fsum(values.values()) / len(values), len(values)
        return self.closed.get(hour, {}).get(name)

    def valid(self, hour: int, name: str) -> bool:  # rule
        values = self.open.get(hour, {}).get(name)
        if not values:
            return name in self.closed.get(hour, {})
        stamps = sorted({ts for _, ts in values})
        gaps = [b - a for a, b in pairwise(stamps)]
        return sum(g for g in gaps if g <= _GAP) >= _VALID

    def _mean(self, hour: int, name: str, means: dict[tuple[int, str], tuple[float, int] | None]
              ) -> tuple[float, int] | None:
        key = (hour, name)
        if key in means:
            return means[key]
        m = means[key] = self.mean(hour, name)
        return m

    def _nowcast_hours(self, hour: int, name: str,
                       means: dict[tuple[int, str], tuple[float, int] | None]) -> list[float | None]:
        out: list[float | None] = []
        for k in range(NOWCAST_HOURS):
            m = self._mean(hour - k * HOUR_NS, name, means)
            out.append(None if m is None or not self.valid(hour - k * HOUR_NS, name) else m[0])  # rule
        return out

    def _fields(self, hour: int, means: dict[tuple[int, str], tuple[float, int] | None]
                ) -> dict[str, float | int | str | bool]:
        fields: dict[str, float | int | str | bool] = {}
        for name in FIELDS:
            m = self._mean(hour, name, means)
            if m is not None:
                fields[f"{name}_mean"], fields[f"{name}_n"] = m
        epa: list[int | None] = []
        vn: list[int | None] = []
        pollutant: aqi.Pollutant
        for pollutant in ("pm25", "pm10"):
            hours = self._nowcast_hours(hour, pollutant, means)
            epa_now, vn_now = aqi.epa_nowcast(hours), aqi.vn_nowcast(hours)
            if epa_now is not None:
                fields[f"{pollutant}_nowcast"] = epa_now
            epa.append(aqi.epa_aqi(pollutant, epa_now))
            vn.append(aqi.vn_subindex(pollutant, vn_now))
        for method, subs, category in (("epa", epa, aqi.epa_category), ("vn", vn, aqi.vn_category)):
            index = aqi.overall(subs)
            if index is not None:
                fields[f"aqi_{method}"] = index
                fields[f"category_{method}"] = category(index) or ""
        return fields

    def _evict(self) -> None:
        floor = self.newest_ns - self.horizon_ns - HOUR_NS
        for hour in [h for h in self.open if h < floor]:
            self.closed[hour] = {name: m for name in self.open[hour]
                                 if (m := self.mean(hour, name)) is not None
                                 and (name == "co2" or self.valid(hour, name))}  # rule
            del self.open[hour]
        keep_from = floor - NOWCAST_HOURS * HOUR_NS
        for hour in [h for h in self.closed if h < keep_from]:
            del self.closed[hour]
        if len(self._means) > 4 * NOWCAST_HOURS * len(FIELDS):
            self._means = {k: m for k, m in self._means.items() if k[0] >= keep_from}


class _AsReleased(pickle.Unpickler):
    """Loads a `_Reference` snapshot as the current class: what a previous release's
    snapshot holds (the class's name and its pickled fields)."""

    def find_class(self, module: str, name: str) -> type:
        if name == "_Reference":
            return AirRollup
        return super().find_class(module, name)  # type: ignore[no-any-return]


def _released_to_current(old: _Reference) -> AirRollup:
    loaded = _AsReleased(io.BytesIO(pickle.dumps(old, protocol=pickle.HIGHEST_PROTOCOL))).load()
    assert isinstance(loaded, AirRollup)
    return loaded


def _value(rng: random.Random) -> float:
    kind = rng.random()
    if kind < 0.5:
        return round(rng.uniform(0, 400), 1)  # as sensors report them
    if kind < 0.7:
        return rng.uniform(0, 1) * 10.0 ** rng.randint(-30, 5)  # far apart: many partials
    if kind < 0.8:
        return rng.choice([0.0, -0.0, 1e-310, 5e-324])  # zeros, subnormals
    if kind < 0.9:
        return float(rng.randint(0, 1000))
    return rng.choice([0.1, 0.2, 0.3, 1e5, 2.0**-40, 1.0, 3.0])  # rounding-prone, equal values


def _stream(rng: random.Random, hours: int) -> list[Reading]:
    """Readings of two PM sensors and a CO2 sensor over `hours` hours with gaps, in time
    order; some repeated (same sensor and ts, another value), some warming up, some PM
    readings without PM10."""
    out: list[Reading] = []
    seq = 0
    gaps = {h for h in range(hours) if rng.random() < 0.15}
    for h in range(hours):
        if h in gaps:
            continue
        per_hour = rng.choice([1, 2, 5, 20, 60])
        minutes = rng.choice([60, 60, 47, 46, 45, 44, 10])  # readings within the first ones
        cadence = rng.choice([0, 0, 5, 15, 16])  # min; 0: random
        for i in range(per_hour):
            minute = (i * cadence) % minutes if cadence else rng.randrange(minutes)
            ts = T0 + h * HOUR + minute * MIN + rng.randrange(3)
            sensor = rng.choice(["pm-a", "pm-b", "co2-a"])
            seq += 1
            flags: tuple[str, ...] = ("warmup",) if rng.random() < 0.03 else ()
            if sensor == "co2-a":
                values = {"co2": _value(rng)}
            elif rng.random() < 0.1:
                values = {"pm25": _value(rng)}
            else:
                values = {"pm25": _value(rng), "pm10": _value(rng)}
            out.append(Reading(sensor, "air.co2" if sensor == "co2-a" else "air.pm", ts, seq,
                               values, flags))
            if rng.random() < 0.05:  # the same reading again, perhaps with another value
                again = {k: (v if rng.random() < 0.5 else _value(rng)) for k, v in values.items()}
                seq += 1
                out.append(Reading(sensor, out[-1].kind, ts, seq, again, flags))
    out.sort(key=lambda r: r.ts_ns)
    return out


def _arrival(rng: random.Random, readings: list[Reading]) -> list[list[Reading]]:
    """Messages: mostly in order, some readings held back by up to a day (late, perhaps too
    late), some messages shuffled."""
    held: list[tuple[int, Reading]] = []
    order: list[Reading] = []
    for i, r in enumerate(readings):
        if rng.random() < 0.08:
            held.append((i + rng.randint(1, 400), r))
        else:
            order.append(r)
        for item in [x for x in held if x[0] <= i]:
            held.remove(item)
            order.append(item[1])
    order += [r for _, r in held]
    messages: list[list[Reading]] = []
    i = 0
    while i < len(order):
        n = rng.choice([1, 1, 1, 2, 5, 30])
        msg = order[i:i + n]
        if rng.random() < 0.2:
            rng.shuffle(msg)
        messages.append(msg)
        i += n
    return messages


def _same_state(new: AirRollup, ref: _Reference) -> None:
    state = new.__getstate__()  # (its closed hours kept compact: as held before, `held_open`)
    state["open"] = new.held_open()
    assert state == ref.__getstate__()
    for hour in list(ref.open) + list(ref.closed):
        for name in FIELDS:
            assert new.mean(hour, name) == ref.mean(hour, name)


@pytest.mark.parametrize("seed", range(12))
def test_random_streams_give_the_released_points(seed: int) -> None:
    rng = random.Random(seed)
    horizon = rng.choice([HOUR, 3 * HOUR, 6 * HOUR, 20 * HOUR])
    messages = _arrival(rng, _stream(rng, rng.randint(10, 40)))
    new, ref = AirRollup(horizon), _Reference(horizon)
    emitted = 0
    for i, msg in enumerate(messages):
        got = new.process("hn", "st1", msg)
        assert got == ref.process("hn", "st1", msg), (seed, i)
        emitted += len(got)
        assert new.too_late == ref.too_late
        event = rng.random()
        if event < 0.03:  # a snapshot of the current release, resumed
            new = pickle.loads(pickle.dumps(new, protocol=pickle.HIGHEST_PROTOCOL))
        elif event < 0.06:  # a snapshot the previous release took, resumed by this one
            new = _released_to_current(ref)
            ref = pickle.loads(pickle.dumps(ref))
        elif event < 0.08:  # a horizon given anew at a start
            given = rng.choice([HOUR, 2 * HOUR, 6 * HOUR, 30 * HOUR])
            new.set_horizon(given)
            ref.set_horizon(given)
    assert emitted > len(messages) // 2
    _same_state(new, ref)


def test_a_previous_release_snapshot_resumes_as_it_would_have_gone_on() -> None:
    """A live station's day, the first half through the previous release, a snapshot (its
    pickled fields, loaded by this release), the second half through this one, with a
    backlog of the first hours arriving late."""
    rng = random.Random(99)
    readings = _stream(rng, 30)
    backlog = [r for r in readings if r.ts_ns < T0 + 3 * HOUR]
    live = [r for r in readings if r.ts_ns >= T0 + 3 * HOUR]
    half = len(live) // 2
    ref = _Reference(20 * HOUR)
    for r in live[:half]:
        ref.process("hn", "st1", [r])
    new = _released_to_current(ref)
    assert not hasattr(new, "_sums") or new._sums == {}
    for r in live[half:] + backlog:
        assert new.process("hn", "st1", [r]) == ref.process("hn", "st1", [r])
    _same_state(new, ref)


def test_the_snapshot_keeps_the_released_fields() -> None:
    """What this release pickles is what the previous one did (and can load): no cache."""
    new, ref = AirRollup(6 * HOUR), _Reference(6 * HOUR)
    readings = _stream(random.Random(3), 12)
    new.process("hn", "st1", readings)
    ref.process("hn", "st1", readings)
    assert sorted(new.__getstate__()) == sorted(ref.__getstate__()) \
        == ["closed", "horizon_ns", "newest_ns", "open", "too_late"]
    back = pickle.loads(pickle.dumps(new))
    assert back._sums == {}
    assert back._tails == {}
    assert back._means == {}


def test_partials_sum_as_fsum_of_the_values() -> None:
    rng = random.Random(7)
    for _ in range(300):
        values: dict[int, float] = {}
        partials: list[float] = []
        for _ in range(rng.randint(1, 80)):
            key = rng.randrange(40)
            x = _value(rng) * rng.choice([1, -1])
            old = values.get(key)
            values[key] = x
            _add(partials, x)
            if old is not None:
                _add(partials, -old)
            total = math.fsum(values.values())
            assert math.fsum(partials) == total or (total == 0 and math.fsum(partials) == 0)
        again = _partials(values.values())
        assert again is not None
        assert math.fsum(again) == math.fsum(partials)
    assert _partials([1.0, math.inf]) is None
    assert _partials([math.nan]) is None
    assert _partials([1e308, 1e308]) is None


def test_unsafe_and_signed_zero_means_are_those_of_fsum() -> None:
    """Values no partials take (infinite, huge) and sums cancelling to a zero: the mean is
    math.fsum of the values (the NowCast then raises as it did; the zero keeps its sign)."""
    def pm(ts: int, v: float) -> Reading:
        return Reading("pm-a", "air.pm", ts, 1, {"pm25": v, "pm10": 1.0}, ())

    new, ref = AirRollup(6 * HOUR), _Reference(6 * HOUR)
    for r in (pm(T0, 5.0), pm(T0, -0.0), pm(T0 + 1, -0.0), pm(T0 + 2, 2.0), pm(T0 + 2, -0.0)):
        assert new.process("hn", "st1", [r]) == ref.process("hn", "st1", [r])
    zero, expected = new.mean(T0, "pm25"), ref.mean(T0, "pm25")
    assert zero is not None
    assert expected is not None
    assert zero[0] == 0
    assert math.copysign(1, zero[0]) == math.copysign(1, expected[0])  # (as math.fsum gives it)
    for r in (pm(T0 + 5, 1e305), pm(T0 + 6, 1e305), pm(T0 + 5, 3.0), pm(T0 + 6, 1.0)):
        assert new.process("hn", "st1", [r]) == ref.process("hn", "st1", [r])
    assert new.mean(T0, "pm25") == ref.mean(T0, "pm25") == (4.0 / 5, 5)
    # both hours valid (a NowCast to raise): readings every 10 min
    for r in [pm(T0 + h * HOUR + k * 10 * MIN, 1.0) for h in (0, 1) for k in range(1, 6)]:
        assert new.process("hn", "st1", [r]) == ref.process("hn", "st1", [r])
    assert new.valid(T0, "pm25")
    assert ref.valid(T0, "pm25")
    with pytest.raises(ValueError, match="finite") as got:
        new.process("hn", "st1", [pm(T0 + HOUR, math.inf)])
    with pytest.raises(ValueError, match="finite") as raised:
        ref.process("hn", "st1", [pm(T0 + HOUR, math.inf)])
    assert str(got.value) == str(raised.value)


def _hours(rng: random.Random) -> list[float | None]:
    pool = [rng.uniform(0, 500), rng.uniform(0, 5), 0.0, -0.0, 12.5, 25.0]
    return [None if rng.random() < 0.2 else
            (rng.choice(pool) if rng.random() < 0.3 else round(rng.uniform(0, 300), 1))
            for _ in range(12)]


def test_nowcast_tail_is_epa_and_vn_nowcast() -> None:
    rng = random.Random(11)
    for _ in range(3000):
        hours = _hours(rng)
        tail = aqi.NowCastTail(hours[1:])
        for c0 in (hours[0], None, rng.uniform(0, 600), 0.0, tail.lo, tail.hi, hours[0]):
            full = [c0, *hours[1:]]
            assert tail.nowcasts(c0) == (aqi.epa_nowcast(full), aqi.vn_nowcast(full)), full


@pytest.mark.parametrize("bad", [-1.0, math.nan, math.inf])
def test_nowcast_tail_raises_as_the_functions_do(bad: float) -> None:
    for hours in ([bad, 5.0, 6.0] + [None] * 9, [5.0, bad, 6.0] + [None] * 9,
                  [None, 5.0, 6.0, bad] + [None] * 8, [5.0, None, None, bad] + [None] * 8):
        tail = aqi.NowCastTail(hours[1:])
        try:
            expected: object = (aqi.epa_nowcast(hours), aqi.vn_nowcast(hours))
        except ValueError as e:
            expected = str(e)
        try:
            got: object = tail.nowcasts(hours[0])
        except ValueError as e:
            got = str(e)
        assert got == expected
