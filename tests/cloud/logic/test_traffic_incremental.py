"""The traffic rollup's kept sums and lane texts give, byte for byte, what the rollup gave
when it summed every sample of a window at every message (the release before, `_Reference`
below, with the speeds weighted by `speed_count` where a reading carries one): on random
streams of several lanes with late, shuffled and repeated (same lane and stamp) readings,
gaps, zeros, -0.0 and terms of every size, with and without `speed_count`, through evictions,
horizons given anew and snapshots, the previous release's snapshots included."""

from __future__ import annotations

import io
import math
import pickle
import random
from collections.abc import Iterable

import pytest

from cloud.logic.domain import traffic
from cloud.logic.domain.common import NOT_MEASURING, WIDTHS, Horizon, Point
from cloud.logic.domain.traffic import KIND, Sample, TrafficRollup, _sums_text, sample_of
from cloud.logic.lines import float_text, float_texts, series_head
from tests.cloud.logic.domain_helpers import HOUR, MIN, T0, S
from urbanpulse.wire import Reading


def _ref_weight(s: Sample) -> float:
    return s[4] if len(s) == 5 else s[0]


def _ref_sample(v: dict[str, float] | Reading) -> Sample:
    """A reading's sample: speed_kmh * speed_count and speed_count last where the reading has
    a speed and a speed_count that is not its count; else as released before."""
    values = v.values if isinstance(v, Reading) else v
    count, interval = float(values["count"]), float(values["interval_s"])
    speed, occupancy = values.get("speed_kmh"), values.get("occupancy_pct")
    weight = values.get("speed_count")
    if speed is not None and weight is not None and float(weight) != count:
        return (count, None if occupancy is None else float(occupancy) * interval, interval,
                float(speed) * float(weight), float(weight))
    return (count, None if occupancy is None else float(occupancy) * interval,
            interval, None if speed is None else float(speed) * count)


def _ref_sums_text(items: list[Sample], flow: float | None = None) -> tuple[str, float]:
    """`line`'s fields of `_sums(items)`, and its flow; with `flow` given (an intersection's:
    the sum of its lanes' flows) that flow is written instead. A single sample's sums are
    its own values: fsum([x]) is x + 0.0 (which turns -0.0 into 0.0, as fsum does)."""
    occupancy: float | None
    if len(items) == 1:
        count, occupied, covered, speed = items[0][:4]
        weight = _ref_weight(items[0])
        vehicles, covered = count + 0.0, covered + 0.0
        occupancy = None if occupied is None else (occupied + 0.0) / covered
        speed_sums = None if speed is None or not weight > 0 else (speed + 0.0, weight + 0.0)
    else:
        vehicles = math.fsum([s[0] for s in items])
        covered = math.fsum([s[2] for s in items])
        with_occupancy = [s for s in items if s[1] is not None]
        occupancy = None if not with_occupancy else (
            math.fsum([s[1] for s in with_occupancy if s[1] is not None])
            / (covered if len(with_occupancy) == len(items)
               else math.fsum([s[2] for s in with_occupancy])))
        counted = [s for s in items if s[3] is not None and _ref_weight(s) > 0]
        speed_sums = (math.fsum([s[3] for s in counted if s[3] is not None]),
                      math.fsum([_ref_weight(s) for s in counted])) if counted else None
    lane_flow = 60.0 * vehicles / covered
    written_flow = lane_flow if flow is None else flow
    texts = float_texts()  # each float's repr, cached: a lane's values repeat
    text = (f"vehicles={texts.get(vehicles) or float_text(vehicles)},"
            f"interval_s={texts.get(covered) or float_text(covered)},"
            f"flow_vpm={texts.get(written_flow) or float_text(written_flow)}")
    if occupancy is not None:
        text += f",occupancy_pct={texts.get(occupancy) or float_text(occupancy)}"
    if speed_sums is not None:
        speed = speed_sums[0] / speed_sums[1]
        text += f",speed_kmh={texts.get(speed) or float_text(speed)}"
    return text, lane_flow


class _Reference(Horizon):
    """cloud/logic/domain/traffic.py's TrafficRollup as released before (fad9311), verbatim
    but for the speed's weight (`_ref_sample`, `_ref_weight`) and the intersection's
    speed_lanes (its lanes with a sample carrying a speed of weight > 0)."""

    def __init__(self, horizon_ns: int) -> None:
        self.horizon_ns = horizon_ns
        self.newest_ns = 0
        self.too_late = 0
        # (rp, width) -> window start -> sensor -> ts -> sample
        self.windows: dict[tuple[str, int], dict[int, dict[str, dict[int, Sample]]]] = {
            w: {} for w in WIDTHS}

    def process(self, site: str, node: str, readings: Iterable[Reading]) -> list[Point]:
        touched: dict[tuple[str, int], set[int]] = {key: set() for key in self.windows}
        widths = [(key[1], self.windows[key], touched[key]) for key in self.windows]
        horizon_ns, kept = self.horizon_ns, self.kept_ns
        for r in readings:
            if r.kind != KIND or (r.flags and not NOT_MEASURING.isdisjoint(r.flags)):  # skipped(r)
                continue
            ts = r.ts_ns
            if ts < self.newest_ns - horizon_ns or ts < kept:  # before floor_ns()
                self.too_late += 1
                continue
            if ts > self.newest_ns:
                self.newest_ns = ts
            sample = _ref_sample(r)
            sensor = r.sensor
            at = ts - 1  # its interval's last instant: window_ts(KIND, ts)
            for width, windows, starts in widths:
                start = at - at % width
                lanes = windows.get(start)
                if lanes is None:
                    lanes = windows[start] = {}
                lane = lanes.get(sensor)
                if lane is None:
                    lane = lanes[sensor] = {}
                lane[ts] = sample
                starts.add(start)
        out: list[Point] = []
        lane_heads: dict[str, str] = {}
        tags = {"site": site, "node": node}
        total_head = series_head("traffic_intersection", tags)
        for key in sorted(touched):
            rp = key[0]
            windows = self.windows[key]
            for start in sorted(touched[key]):
                lanes = windows[start]
                flows: list[float] = []
                speeded = 0
                for sensor in sorted(lanes):
                    head = lane_heads.get(sensor)
                    if head is None:
                        head = lane_heads[sensor] = series_head("traffic_lane", tags | {"sensor": sensor})
                    text, flow = _ref_sums_text(list(lanes[sensor].values()))
                    flows.append(flow)
                    speeded += any(s[3] is not None and _ref_weight(s) > 0
                                   for s in lanes[sensor].values())
                    out.append((rp, f"{head} {text} {start}"))
                text, _ = _ref_sums_text([s for lane in lanes.values() for s in lane.values()],
                                     math.fsum(flows))
                out.append((rp, f"{total_head} {text},lanes={len(lanes)}i,speed_lanes={speeded}i "
                                f"{start}"))
        self._evict()
        return out

    def _evict(self) -> None:
        for (_rp, width), windows in self.windows.items():
            floor = self.newest_ns - self.horizon_ns - width
            for start in [s for s in windows if s < floor]:
                del windows[start]


class _AsReleased(pickle.Unpickler):
    """Loads a `_Reference` snapshot as the current class: what a previous release's
    snapshot holds (the class's name and its pickled fields)."""

    def find_class(self, module: str, name: str) -> type:
        if name == "_Reference":
            return TrafficRollup
        return super().find_class(module, name)  # type: ignore[no-any-return]


def _released_to_current(old: _Reference) -> TrafficRollup:
    loaded = _AsReleased(io.BytesIO(pickle.dumps(old, protocol=pickle.HIGHEST_PROTOCOL))).load()
    assert isinstance(loaded, TrafficRollup)
    return loaded


def _term(rng: random.Random) -> float:
    kind = rng.random()
    if kind < 0.5:
        return round(rng.uniform(0, 100), rng.choice([0, 1, 2]))  # as loop cards report them
    if kind < 0.7:
        return rng.uniform(0, 1) * 10.0 ** rng.randint(-30, 8)  # far apart: many partials
    if kind < 0.8:
        return rng.choice([0.0] * 6 + [-0.0, 1e-310, 5e-324])  # zeros, subnormals
    if kind < 0.9:
        return float(rng.randint(0, 40))
    return rng.choice([0.1, 0.2, 0.3, 2.0**-40, 1.0, 3.0])  # rounding-prone, equal values


def _values(rng: random.Random) -> dict[str, float]:
    values = {"count": float(rng.randint(0, 30)) if rng.random() < 0.7 else _term(rng),
              "interval_s": rng.choice([20.0, 30.0, 60.0, 60.0, 0.001, 3600.0, 17.3])}
    if rng.random() < 0.8:
        values["occupancy_pct"] = _term(rng)
    if rng.random() < 0.7:
        values["speed_kmh"] = _term(rng) if rng.random() < 0.5 else round(rng.uniform(5, 90), 1)
    if rng.random() < 0.4:  # an agent since session 16: its count, 0, or any
        values["speed_count"] = rng.choice([values["count"], values["count"], 0.0,
                                            float(rng.randint(0, 5)), _term(rng)])
    return values


def _stream(rng: random.Random, hours: int) -> list[Reading]:
    """Readings of up to 4 lanes over `hours` hours with gaps, in time order, stamped at their
    interval's end (on the minute, or off it); some repeated (same lane and stamp, perhaps
    other values), some warming up, some of another kind."""
    out: list[Reading] = []
    seq = 0
    lanes = [f"lane-{i}" for i in range(rng.randint(1, 4))]
    gaps = {h for h in range(hours) if rng.random() < 0.15}
    for h in range(hours):
        if h in gaps:
            continue
        for _ in range(rng.choice([1, 2, 5, 20, 60])):
            ts = T0 + h * HOUR + rng.randrange(HOUR // MIN + 1) * MIN + rng.choice([0, 0, 0, 1, 7 * S])
            sensor = rng.choice(lanes)
            seq += 1
            flags: tuple[str, ...] = (rng.choice(sorted(NOT_MEASURING)),) if rng.random() < 0.03 else ()
            kind = KIND if rng.random() < 0.97 else "air.pm"
            values = _values(rng)
            out.append(Reading(sensor, kind, ts, seq, values, flags))
            if rng.random() < 0.07:  # the same lane and stamp again, perhaps with other values
                seq += 1
                again = values if rng.random() < 0.3 else _values(rng)
                out.append(Reading(sensor, kind, ts, seq, again, flags))
    out.sort(key=lambda r: r.ts_ns)
    return out


def _arrival(rng: random.Random, readings: list[Reading]) -> list[list[Reading]]:
    """Messages: mostly in order, some readings held back (late, perhaps too late), some
    messages shuffled."""
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
        n = rng.choice([1, 1, 1, 2, 3, 5, 30])
        msg = order[i:i + n]
        if rng.random() < 0.2:
            rng.shuffle(msg)
        messages.append(msg)
        i += n
    return messages


@pytest.mark.parametrize("seed", range(24))
def test_random_streams_give_the_released_points(seed: int, monkeypatch: pytest.MonkeyPatch) -> None:
    if seed % 2:  # sums kept from a lane's or a window's second sample on
        monkeypatch.setattr(traffic, "KEEP_SUMS_FROM", 2)
    rng = random.Random(seed)
    horizon = rng.choice([10 * MIN, HOUR, 3 * HOUR, 20 * HOUR])
    messages = _arrival(rng, _stream(rng, rng.randint(4, 30)))
    new, ref = TrafficRollup(horizon), _Reference(horizon)
    emitted = 0
    for i, msg in enumerate(messages):
        got = new.process("hn", "x1", msg)
        assert got == ref.process("hn", "x1", msg), (seed, i)
        emitted += len(got)
        assert new.too_late == ref.too_late
        state = new.__getstate__()  # (windows let go as they were; closed ones kept compact)
        state["windows"] = new.held_windows()
        assert state == ref.__dict__
        for key, windows in new.windows.items():  # the caches of windows let go go with them
            assert new._cache[key].keys() <= windows.keys()
        event = rng.random()
        if event < 0.03:  # a snapshot of the current release, resumed
            new = pickle.loads(pickle.dumps(new, protocol=pickle.HIGHEST_PROTOCOL))
        elif event < 0.06:  # a snapshot the previous release took, resumed by this one
            new = _released_to_current(ref)
            ref = pickle.loads(pickle.dumps(ref))
        elif event < 0.08:  # a horizon given anew at a start
            given = rng.choice([10 * MIN, HOUR, 2 * HOUR, 30 * HOUR])
            new.set_horizon(given)
            ref.set_horizon(given)
    assert emitted > len(messages)


def test_the_snapshot_keeps_the_released_fields() -> None:
    """What this release pickles holds the fields the previous one did, no cache, and the
    same windows, the closed ones compact (`held_windows`: as the previous one held them)."""
    new, ref = TrafficRollup(6 * HOUR), _Reference(6 * HOUR)
    readings = _stream(random.Random(3), 5)
    new.process("hn", "x1", readings)
    ref.process("hn", "x1", readings)
    assert sorted(new.__getstate__()) == sorted(ref.__dict__) \
        == ["horizon_ns", "newest_ns", "too_late", "windows"]
    state = new.__getstate__()
    state["windows"] = new.held_windows()
    assert state == ref.__dict__
    back = pickle.loads(pickle.dumps(new))
    assert back.held_windows() == ref.windows
    assert back._cache == {key: {} for key in WIDTHS}


def test_a_previous_release_snapshot_resumes_as_it_would_have_gone_on() -> None:
    """An intersection's hours, the first half through the previous release, a snapshot (its
    pickled fields, loaded by this release), the second half through this one, one reading a
    message, with a backlog of the first hour arriving last."""
    readings = _stream(random.Random(99), 8)
    backlog = [r for r in readings if r.ts_ns < T0 + HOUR]
    live = [r for r in readings if r.ts_ns >= T0 + HOUR]
    half = len(live) // 2
    ref = _Reference(20 * HOUR)
    for r in live[:half]:
        ref.process("hn", "x1", [r])
    new = _released_to_current(ref)
    for r in live[half:] + backlog:
        assert new.process("hn", "x1", [r]) == ref.process("hn", "x1", [r])


def _loop(ts: int, sensor: str = "lane-1", **values: float) -> Reading:
    return Reading(sensor, KIND, ts, 1, {"interval_s": 60.0, **values}, ())


@pytest.mark.parametrize("keep_from", [2, traffic.KEEP_SUMS_FROM])
def test_terms_not_summed_in_partials_give_what_fsum_gave(keep_from: int,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    """Infinite, huge and -0.0 terms (and a sum cancelling to a zero after a repeated stamp
    took a term away): the fields are those math.fsum of the samples gave, an overflow
    raises as it did."""
    monkeypatch.setattr(traffic, "KEEP_SUMS_FROM", keep_from)
    new, ref = TrafficRollup(6 * HOUR), _Reference(6 * HOUR)
    stream = [
        _loop(T0 + MIN, count=5.0, occupancy_pct=-0.0),
        _loop(T0 + 2 * MIN, count=0.0, occupancy_pct=-0.0, speed_kmh=3.0),
        _loop(T0 + 3 * MIN, count=2.0, occupancy_pct=4.0, speed_kmh=-0.0),
        _loop(T0 + 3 * MIN, count=0.0, occupancy_pct=-0.0),  # the same stamp: replaces it
        _loop(T0 + 4 * MIN, sensor="lane-2", count=3.0, speed_kmh=math.inf),
        _loop(T0 + 5 * MIN, sensor="lane-2", count=1e299, speed_kmh=1e299),
        _loop(T0 + 6 * MIN, sensor="lane-2", count=1.0, speed_kmh=10.0),
        _loop(T0 + 6 * MIN, sensor="lane-2", count=2.0, speed_kmh=10.0),
        _loop(T0 + HOUR + MIN, sensor="lane-3", count=1e308, interval_s=1e308),
    ]
    for r in stream:
        assert new.process("hn", "x1", [r]) == ref.process("hn", "x1", [r])
    overflow = _loop(T0 + HOUR + 2 * MIN, sensor="lane-3", count=1e308, interval_s=1e308)
    with pytest.raises(OverflowError) as got:
        new.process("hn", "x1", [overflow])
    with pytest.raises(OverflowError) as raised:
        ref.process("hn", "x1", [overflow])
    assert str(got.value) == str(raised.value)


def test_exact_sums_do_not_depend_on_the_order() -> None:
    """Kept partials, a sample taken away and another put in its place: the sums are those
    math.fsum of the samples gives (`_sums_text`)."""
    rng = random.Random(5)
    for _ in range(300):
        samples: dict[int, Sample] = {}
        new = TrafficRollup(HOUR)
        for _ in range(rng.randint(2, 40)):
            ts = T0 + rng.randint(1, 30) * S
            values = _values(rng)
            new.process("hn", "x1", [_loop(ts, **values)])
            samples[ts] = _ref_sample({"interval_s": 60.0, **values})
            assert sample_of({"interval_s": 60.0, **values}) == samples[ts]
        cache = new._cache[WIDTHS[0]][T0]
        expected = _ref_sums_text(list(samples.values()))
        assert cache.texts["lane-1"] == expected == _sums_text(list(samples.values()))


def test_a_zero_sum_of_negative_zeros_is_summed_from_the_samples(monkeypatch: pytest.MonkeyPatch) -> None:
    """A math.fsum that keeps the sign of a sum of -0.0s (as IEEE addition does; CPython's
    3.11 gives 0.0): the partials of 1.0 taken away for a -0.0 hold a 0.0, so a window with
    a -0.0 term sums its samples, as the release before did, whatever fsum does with them."""
    fsum = math.fsum

    def signed_fsum(terms: Iterable[float]) -> float:
        items = list(terms)
        total = fsum(items)
        if items and all(x == 0 and math.copysign(1.0, x) < 0 for x in items):
            return -0.0
        return total

    monkeypatch.setattr(math, "fsum", signed_fsum)
    monkeypatch.setattr(traffic, "KEEP_SUMS_FROM", 2)
    new, ref = TrafficRollup(6 * HOUR), _Reference(6 * HOUR)
    got: list[Point] = []
    for r in (_loop(T0 + MIN, count=1.0, occupancy_pct=1.0),
              _loop(T0 + 2 * MIN, count=1.0, occupancy_pct=-0.0),
              _loop(T0 + 3 * MIN, count=1.0, occupancy_pct=-0.0),
              _loop(T0 + MIN, count=1.0, occupancy_pct=-0.0)):  # the same stamp: replaces 1.0
        got = new.process("hn", "x1", [r])
        assert got == ref.process("hn", "x1", [r])
    assert [rp for rp, text in got if "occupancy_pct=-0.0" in text.replace(",", " ").split()] \
        == ["agg_1h", "agg_1h"]  # the lane and the intersection
