"""A per-sensor window's aggregate does not depend on the order its readings came in: its
sums are exact (the mean is the correctly rounded sum over the count, math.fsum's), so a
window filled by a backlog after the fresh readings, one resumed from a snapshot, and one
rebuilt from the raw points all write the bits an uninterrupted, in-order run writes.

Before, a window kept a running float sum: a loop's hour whose on-the-hour reading (the
hour's last interval) came in the fresh message before the backlog got `length_m_mean`
2.5391666666666666 where the in-order run wrote 2.539166666666667.

The domain rollups (air means, traffic sums) sum with math.fsum already: checked the same
way here."""

from __future__ import annotations

import itertools
import math
import pickle
import random
from datetime import UTC, datetime

import pytest

from cloud.logic.domain.air import AirRollup
from cloud.logic.domain.traffic import TrafficRollup
from cloud.logic.node import NodeState
from cloud.logic.recompute import Recompute
from cloud.logic.records import RP_1H, RP_1M, RP_RAW, NodeData, Point
from cloud.logic.rollup import HOUR_NS, MINUTE_NS, SensorRollup, Window
from tests.cloud.logic.domain_helpers import parse
from urbanpulse.clock import to_epoch_ns
from urbanpulse.wire import Reading

DAY = to_epoch_ns(datetime(2026, 11, 28, tzinfo=UTC))
S = 10**9
# A loop's lengths over the 12:00 hour, one reading per 5 minutes (12:05 ... 13:00): summed
# in this order and with the last first, the float sums differ in their last bit.
LENGTHS = [2.68, 2.43, 2.31, 2.59, 2.45, 2.3, 2.79, 2.7, 2.24, 2.57, 2.53, 2.88]


def _loop(i: int, length: float) -> Reading:
    return Reading("lane-1", "traffic.loop", DAY + 12 * HOUR_NS + (i + 1) * 5 * MINUTE_NS, i + 1,
                   {"count": 3.0, "interval_s": 300.0, "length_m": length})


def _run(messages: list[list[Reading]]) -> tuple[dict[tuple[str, int], str], list[Point]]:
    """The last line written per (policy, time) of the lane's traffic_loop windows, and
    every point."""
    state = NodeState(6 * HOUR_NS, detect=False)
    out: list[Point] = []
    for k, readings in enumerate(messages):
        out += state.process(NodeData("hn/x1", "hn", "x1", DAY + 13 * HOUR_NS + k * S, readings))
    last: dict[tuple[str, int], str] = {}
    for rp, text in out:
        if rp in (RP_1M, RP_1H) and text.startswith("traffic_loop,"):
            last[(rp, int(text.rsplit(" ", 1)[1]))] = text
    return last, out


def _rows(points: list[Point]) -> list[dict[str, object]]:
    """The raw points as InfluxDB gives them back (epoch ns)."""
    rows = []
    for rp, text in points:
        if rp == RP_RAW:
            _name, tags, fields, time = parse(text)
            rows.append({**tags, **fields, "time": time})
    return rows


def test_a_backlog_after_the_fresh_reading_writes_the_bits_of_an_in_order_run() -> None:
    readings = [_loop(i, v) for i, v in enumerate(LENGTHS)]
    in_order, points = _run([readings])
    fresh_first, _ = _run([readings[-1:], readings[:-1]])  # the node back: fresh, then its backlog
    hour = in_order[(RP_1H, DAY + 12 * HOUR_NS)]
    assert parse(hour)[2]["length_m_mean"] == math.fsum(LENGTHS) / len(LENGTHS)
    assert fresh_first == in_order
    # and rebuilt from the raw points (a reading beyond the horizon asks for it)
    ask = Recompute(RP_1H, "traffic_loop", "hn", "x1", "lane-1", "traffic.loop", HOUR_NS,
                    DAY + 12 * HOUR_NS)
    assert ask.rebuild(_rows(points)) == hour


@pytest.mark.parametrize("seed", range(6))
def test_any_order_gives_the_same_window(seed: int) -> None:
    """Values of every scale, cancelling ones too (where a running sum loses every bit):
    whatever the order, the same text, and the mean is fsum's."""
    rng = random.Random(seed)
    values = [round(rng.uniform(-5, 40), 2) for _ in range(40)]
    values += [1e16, -1e16, 3.5e-12, 7e22, -7e22, 0.1, 0.2, 0.3, -0.0, 0.0, 5e-324]
    readings = [(i * S, {"v": v, "n": float(i % 7)}) for i, v in enumerate(values)]
    texts = set()
    for _ in range(8):
        rng.shuffle(readings)
        window = Window(0, 0, {})
        window.hold(*readings[0])
        for ts, vals in readings[1:]:
            window.add(ts, vals)
        texts.add(window.field_text())
        fields = window.as_fields()
        assert fields["v_mean"] == math.fsum(values) / len(values)
        assert (fields["v_min"], fields["v_max"]) == (-7e22, 7e22)
        assert (fields["n_min"], fields["n_max"]) == (0.0, 6.0)
        assert fields["v_last"] == values[-1]
    assert len(texts) == 1


def test_sums_of_every_magnitude_stay_exact_and_bounded() -> None:
    """Values from 1e-300 to 1e300 (no sensor's): what the lost term's own roundings lose is
    kept too, compacted into Shewchuk's partials, so the field's list stays bounded."""
    rng = random.Random(1)
    values = [rng.choice([-1, 1]) * 10.0 ** rng.uniform(-300, 300) for _ in range(1500)]
    texts = set()
    for _ in range(3):
        rng.shuffle(values)
        window = Window(0, 0, {})
        for i, v in enumerate(values):
            window.add(i, {"v": v})
        assert window.as_fields()["v_mean"] == math.fsum(values) / len(values)
        assert len(window.fields["v"]) < 7 + 64
        texts.add(window.field_text().split(",v_last")[0])
    assert len(texts) == 1


def test_every_order_of_a_few_readings_gives_one_text() -> None:
    values = [2.13, 2.85, 2.76, 0.1]
    texts = set()
    for order in itertools.permutations(values):
        window = Window(0, 0, {})
        for i, v in enumerate(order):
            window.add(i, {"v": v})
        texts.add(window.field_text().split(",v_last")[0])  # the last is the last stamped
    assert texts == {f"count=4i,v_mean={math.fsum(values) / 4!r},v_min=0.1,v_max=2.85"}


@pytest.mark.parametrize("order", list(itertools.permutations([0.0, -0.0, 0, -0.0])))
def test_signed_zeros_give_one_text_in_any_order(order: tuple[float, ...]) -> None:
    """A -0.0 is 0.0 in the windows (held, added or rebuilt): before, the minimum, maximum
    and last of a window holding 0.0 and -0.0 were whichever came first (or last)."""
    window = Window(0, 0, {})
    window.hold(0, {"v": order[0], "w": -0.0})
    for v in order[1:]:
        window.add(0, {"v": v, "w": 1.5})
    assert window.field_text() == ("count=4i,v_mean=0.0,v_min=0.0,v_max=0.0,v_last=0.0,"
                                   "w_mean=1.125,w_min=0.0,w_max=1.5,w_last=1.5")
    held, added = Window(0, 0, {}), Window(0, 0, {})
    held.hold(0, {"v": order[1]})
    added.add(0, {"v": order[1]})
    assert held.field_text() == added.field_text() == "count=1i,v_mean=0.0,v_min=0.0,v_max=0.0,v_last=0.0"


def test_a_window_resumed_mid_way_ends_as_one_never_stopped() -> None:
    rng = random.Random(3)
    values = [round(rng.uniform(0, 100), 1) for _ in range(200)]
    whole, resumed = SensorRollup(HOUR_NS, HOUR_NS), SensorRollup(HOUR_NS, HOUR_NS)
    for i, v in enumerate(values):
        if i == 120:
            resumed = pickle.loads(pickle.dumps(resumed, protocol=pickle.HIGHEST_PROTOCOL))
        for rollup in (whole, resumed):
            window = rollup.window(DAY + i * S)
            assert window is not None
            window.add(DAY + i * S, {"v": v})
    assert whole.windows == resumed.windows
    (w,) = resumed.windows.values()
    assert w.as_fields()["v_mean"] == math.fsum(values) / len(values)


def test_a_window_pickled_before_its_sums_were_exact_loads_and_goes_on() -> None:
    """A snapshot of the code before: a field's running sum is taken as it was, exact from
    there on."""
    window = Window.__new__(Window)
    window.__setstate__((0, 2, {"v": [2, 0.30000000000000004, 0.1, 0.2, 1, 0.2]}))
    window.add(2, {"v": 0.3})
    assert window.as_fields() == {"count": 3, "v_mean": (0.30000000000000004 + 0.3) / 3,
                                  "v_min": 0.1, "v_max": 0.3, "v_last": 0.3}
    rollup = SensorRollup.__new__(SensorRollup)
    rollup.__setstate__(("rollup-2", MINUTE_NS, HOUR_NS, 1, 0, True, 0,
                         [(0, 2, {"v": [2, 0.30000000000000004, 0.1, 0.2, 1, 0.2]})]))
    held = rollup.window(2)
    assert held is not None
    held.add(2, {"v": 0.3})
    assert held.as_fields() == window.as_fields()


# -- the domain rollups ----------------------------------------------------------------------

def _air(i: int, pm25: float) -> Reading:
    return Reading(f"pm-{i % 2}", "air.pm", DAY + i * 90 * S, i, {"pm25": pm25, "pm10": pm25 * 1.7})


@pytest.mark.parametrize("seed", range(3))
def test_air_and_traffic_rollups_do_not_depend_on_the_order(seed: int) -> None:
    rng = random.Random(seed)
    air = [_air(i, round(rng.uniform(5, 80), 1)) for i in range(80)]
    loops = [Reading(f"lane-{i % 3}", "traffic.loop", DAY + (i // 3 + 1) * 20 * S, i,
                     {"count": float(rng.randint(0, 9)), "interval_s": 20.0,
                      "occupancy_pct": round(rng.uniform(0, 60), 2),
                      "speed_kmh": round(rng.uniform(10, 70), 1)})
             for i in range(150)]

    def final(readings: list[Reading], messages: int) -> dict[tuple[str, str], str]:
        a, t = AirRollup(6 * HOUR_NS), TrafficRollup(6 * HOUR_NS)
        out: dict[tuple[str, str], str] = {}
        step = -(-len(readings) // messages)
        for k in range(0, len(readings), step):
            batch = readings[k:k + step]
            for rp, text in a.process("hn", "st", batch) + t.process("hn", "st", batch):
                out[(rp, f"{text.split(' ', 1)[0]} {text.rsplit(' ', 1)[1]}")] = text
        return out

    for readings in (air, loops):
        expected = final(readings, 1)
        shuffled = readings[:]
        rng.shuffle(shuffled)
        assert final(shuffled, 7) == expected
        assert final(readings[::-1], 3) == expected
