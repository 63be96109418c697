"""Air quality per station and hour: means, NowCast and both indices, hand-computed; the
valid hour (readings covering 45 min of it) the NowCast takes."""

from __future__ import annotations

import pickle
import random

import pytest

from cloud.logic.domain import aqi
from cloud.logic.domain.air import AirRollup
from tests.cloud.logic.domain_helpers import HOUR, MIN, T0, final, rd, select
from urbanpulse.wire import Reading

PM, CO2 = "air.pm", "air.co2"


def two_hours() -> list[Reading]:
    """Two valid hours: pm-a and pm-b every 10 min, 5 min apart (the first hour's readings
    cover 55 min), then pm-a alone every 10 min (50 min)."""
    return [
        *[rd("pm-a", PM, T0 + m * MIN, pm25=10, pm10=40) for m in range(0, 60, 10)],
        *[rd("pm-b", PM, T0 + m * MIN, pm25=20, pm10=60) for m in range(5, 60, 10)],
        rd("co2-a", CO2, T0 + 6 * MIN, co2=400),
        rd("co2-a", CO2, T0 + 36 * MIN, co2=500),
        *[rd("pm-a", PM, T0 + HOUR + m * MIN, pm25=30, pm10=100) for m in range(5, 60, 10)],
        rd("pm-a", PM, T0 + HOUR + 6 * MIN, ("warmup",), pm25=0, pm10=0),
    ]


def test_hour_means_and_indices() -> None:
    points = AirRollup(3 * HOUR).process("hn", "st1", two_hours())
    rows = select(points, "agg_1h", "air_quality", site="hn", node="st1")
    # First hour: one hour of data only, NowCast needs 2 of the 3 latest hours -> no index.
    assert rows[T0] == {"pm25_mean": 15.0, "pm25_n": 12, "pm10_mean": 50.0, "pm10_n": 12,
                        "co2_mean": 450.0, "co2_n": 2}
    second = rows[T0 + HOUR]
    assert second["pm25_mean"] == 30.0  # the warm-up zero is left out
    # PM2.5 hours [30, 15]: w = 1/2; EPA NowCast (30 + 15/2)/1.5 = 25.0 -> 49/26.3*15.9+51 = 80.6
    assert second["pm25_nowcast"] == pytest.approx(25.0)
    # PM10 [100, 50]: EPA (100 + 25)/1.5 = 83.3 -> 83 -> 49/99*28 + 51 = 64.9 -> 65
    assert second["pm10_nowcast"] == pytest.approx(125 / 1.5)
    assert second["aqi_epa"] == 81
    assert second["category_epa"] == "Moderate"
    # VN: PM2.5 25 * (1 - 2^-12) = 24.9939 -> 50; PM10 83.3333 * (1 - 2^-12) = 83.313
    # -> 50 + 0.5 * 33.313 = 66.66 -> 67; the station index is the larger.
    assert second["aqi_vn"] == 67
    assert second["category_vn"] == "Trung bình"
    assert "co2_mean" not in second


def test_late_reading_recomputes_the_following_nowcasts() -> None:
    readings = [rd("pm-a", PM, T0 + h * HOUR + m * MIN, pm25=5 + 3 * h + m % 7, pm10=20 + h + m % 11)
                for h in range(14) for m in range(0, 60, 10)]
    expected = final(AirRollup(20 * HOUR).process("hn", "st1", readings))
    late = AirRollup(20 * HOUR)
    # The first hour arrives last (a node's backlog after an outage).
    points = late.process("hn", "st1", readings[6:]) + late.process("hn", "st1", readings[:6])
    assert final(points) == expected
    shuffled = readings[:]
    random.Random(5).shuffle(shuffled)
    again = AirRollup(20 * HOUR)
    assert final([p for i in range(0, 84, 10) for p in again.process("hn", "st1", shuffled[i:i + 10])]) \
        == expected
    # The backlog's hour changes the index of hour 11 (its NowCast reaches back 11 hours) ...
    assert any(p[1].endswith(str(T0 + 11 * HOUR)) for p in late.process("hn", "st1", readings[:1]))


def test_closed_hours_still_feed_the_nowcast_and_state_pickles() -> None:
    roll = AirRollup(HOUR)
    for h in range(5):  # every 15 min: 45 min covered, valid hours
        roll.process("hn", "st1", [rd("pm-a", PM, T0 + h * HOUR + m * MIN, pm25=10 * (h + 1), pm10=50)
                                   for m in (0, 15, 30, 45)])
    # older than newest (04:45) - horizon - 1 h
    assert sorted(roll.closed) == [T0, T0 + HOUR, T0 + 2 * HOUR]
    assert roll.mean(T0, "pm25") == (10.0, 4)
    # hours newest first 50, 40, 30, 20, 10: w = 1/2 -> EPA (50+20+7.5+2.5+0.625)/1.9375
    copy = pickle.loads(pickle.dumps(roll))
    points = copy.process("hn", "st1", [rd("pm-a", PM, T0 + 4 * HOUR + 1, pm25=50, pm10=50)])
    row = select(points, "agg_1h", "air_quality", site="hn", node="st1")[T0 + 4 * HOUR]
    assert row["pm25_nowcast"] == pytest.approx(80.625 / 1.9375)
    assert roll.process("hn", "st1", [rd("pm-a", PM, T0, pm25=1, pm10=1)]) == []
    assert roll.too_late == 1


def _every(sensor: str, start_ns: int, step_ns: int, until_ns: int, **values: float) -> list[Reading]:
    """Readings of `sensor` from `start_ns` every `step_ns` up to and with `until_ns`."""
    return [rd(sensor, PM, t, **values) for t in range(start_ns, until_ns + 1, step_ns)]


def test_the_time_an_hours_readings_cover() -> None:
    assert aqi.covered_ns([]) == aqi.covered_ns([T0 + 5 * MIN]) == 0  # one reading covers nothing
    every_minute = [T0 + m * MIN for m in range(46)]  # :00 to :45
    assert aqi.covered_ns(every_minute) == 45 * MIN
    assert aqi.hour_valid(every_minute)
    assert not aqi.hour_valid(every_minute[:-1])  # :00 to :44: 44 min
    every_5_min = [T0 + m * MIN for m in range(2, 60, 5)]  # :02 to :57, 12 readings
    assert aqi.covered_ns(every_5_min) == 55 * MIN
    quarters = [T0 + m * MIN for m in (0, 15, 30, 45)]  # gaps of 15 min count
    assert aqi.covered_ns(quarters) == 45 * MIN
    assert aqi.covered_ns([T0, T0 + 15 * MIN + 1]) == 0  # a longer gap: silent
    # the first and last 5 minutes: 9 min, the 50 min between them silent
    ends = [T0 + m * MIN for m in (*range(6), *range(55, 60))]
    assert aqi.covered_ns(ends) == 9 * MIN
    two_sensors = [T0 + m * MIN for m in range(0, 60, 20)] + [T0 + m * MIN for m in range(10, 60, 20)]
    assert aqi.covered_ns(two_sensors + two_sensors) == 50 * MIN  # the station's stamps, once each


def test_hour_cover_kept_as_stamps_come_is_covered_ns() -> None:
    rng = random.Random(4)
    for _ in range(500):
        stamps = [T0 + rng.randrange(60) * MIN * rng.choice([1, 1, 1, 2, 16]) // 2 + rng.randrange(2)
                  for _ in range(rng.randint(1, 40))]
        cover = aqi.HourCover(stamps[:3])
        for i, ts in enumerate(stamps[3:], 4):
            cover.add(ts)
            assert cover.covered == aqi.covered_ns(stamps[:i])
            assert cover.valid == aqi.hour_valid(stamps[:i])
            assert cover.stamps == sorted(set(stamps[:i]))


def _rows(readings: list[Reading], horizon: int = 6 * HOUR) -> dict[int, dict[str, object]]:
    return select(AirRollup(horizon).process("hn", "st1", readings), "agg_1h", "air_quality",
                  site="hn", node="st1")


INDEX = ("pm25_nowcast", "pm10_nowcast", "aqi_epa", "category_epa", "aqi_vn", "category_vn")


def test_an_hour_is_valid_from_45_minutes_of_readings() -> None:
    """00:00 every minute to 00:45 (PM2.5 20, PM10 30), then 01:02 to 01:57 every 5 min (40,
    50): two valid hours, an index at 01:00. Hand-computed: PM2.5 [40, 20], w = 1/2, EPA
    NowCast (40 + 10)/1.5 = 33.33 -> 33.3 -> 49/26.3 * 24.2 + 51 = 96.09 -> 96; PM10 [50, 30],
    w = 0.6, (50 + 18)/1.6 = 42.5 -> 42 -> 50/54 * 42 = 38.9 -> 39. VN: PM2.5 w = 1/2,
    (20 + 5)/0.75 * (1 - 2^-12) = 33.325 -> 50 + 2 * 8.325 = 66.65 -> 67; PM10 42.5 -> 43."""
    first = _every("pm-a", T0, MIN, T0 + 45 * MIN, pm25=20, pm10=30)
    second = _every("pm-a", T0 + HOUR + 2 * MIN, 5 * MIN, T0 + HOUR + 57 * MIN, pm25=40, pm10=50)
    rows = _rows(first + second)
    assert rows[T0 + HOUR]["pm25_nowcast"] == pytest.approx(100 / 3)
    assert rows[T0 + HOUR]["pm10_nowcast"] == pytest.approx(42.5)
    assert {k: rows[T0 + HOUR][k] for k in ("aqi_epa", "category_epa", "aqi_vn", "category_vn")} \
        == {"aqi_epa": 96, "category_epa": "Moderate", "aqi_vn": 67, "category_vn": "Trung bình"}
    # 00:00 to 00:44: 44 min, not valid: 01:00 has one hour of the 3 latest, no index; the
    # means are written all the same
    short = _rows(first[:-1] + second)
    assert not set(INDEX) & (set(short[T0 + HOUR]) | set(short[T0]))
    assert short[T0] == {"pm25_mean": 20.0, "pm25_n": 45, "pm10_mean": 30.0, "pm10_n": 45}
    assert short[T0 + HOUR] == {"pm25_mean": 40.0, "pm25_n": 12, "pm10_mean": 50.0, "pm10_n": 12}


def test_an_hour_of_one_reading_is_not_valid() -> None:
    """A station heard first at 12:59:43, every 30 s to 13:06:43 (a demo's back-fill of 5
    min crossing the hour and 2 minutes of run): the 12:00 hour has one reading, 13:00 six
    and a half minutes; no index. Before the rule the 12:00 hour's reading counted as an
    hour: an index from the first 13:00 reading on."""
    noon = T0 + 12 * HOUR
    readings = _every("pm-a", noon + 59 * MIN + 43 * 10**9, 30 * 10**9, noon + HOUR + 6 * MIN + 43 * 10**9,
                      pm25=50, pm10=60)
    rows = _rows(readings)
    assert rows[noon] == {"pm25_mean": 50.0, "pm25_n": 1, "pm10_mean": 60.0, "pm10_n": 1}
    assert rows[noon + HOUR] == {"pm25_mean": 50.0, "pm25_n": 14, "pm10_mean": 60.0, "pm10_n": 14}
    # the next hours, valid (every 5 min), take the index from 15:00: 13:00 and 12:00 never
    # count, 14:00 and 15:00 are 2 of the 3 latest
    later = _every("pm-a", noon + 2 * HOUR, 5 * MIN, noon + 3 * HOUR + 55 * MIN, pm25=50, pm10=60)
    rows = _rows(readings + later)
    assert "aqi_epa" not in rows[noon + 2 * HOUR]
    assert rows[noon + 3 * HOUR]["pm25_nowcast"] == 50.0
    assert rows[noon + 3 * HOUR]["aqi_epa"] == aqi.epa_aqi("pm25", 50.0) == 137


def test_a_sensor_every_5_min_and_the_hour_in_progress() -> None:
    """Every 5 min from 00:00: each hour valid at its 45th minute (:00 to :45, 10 readings).
    The row of the hour in progress takes its own mean only then: before, its NowCast is
    that of the two hours before it (PM2.5 [-, 40, 20]: w = 1/2, (20 + 5)/0.75 = 33.33)."""
    readings = (_every("pm-a", T0, 5 * MIN, T0 + 55 * MIN, pm25=20, pm10=20)
                + _every("pm-a", T0 + HOUR, 5 * MIN, T0 + HOUR + 55 * MIN, pm25=40, pm10=20))
    roll = AirRollup(6 * HOUR)
    roll.process("hn", "st1", readings)
    assert roll.valid(T0, "pm25")
    assert roll.valid(T0 + HOUR, "pm25")
    hour = T0 + 2 * HOUR
    nowcasts = []
    for m in range(0, 60, 5):
        points = roll.process("hn", "st1", [rd("pm-a", PM, hour + m * MIN, pm25=80, pm10=20)])
        row = select(points, "agg_1h", "air_quality", site="hn", node="st1")[hour]
        nowcasts.append(row["pm25_nowcast"])
        assert roll.valid(hour, "pm25") == (m >= 45)
    assert nowcasts[:9] == [pytest.approx(100 / 3)] * 9
    # from 02:45: [80, 40, 20], w = 1/4 -> 1/2: (80 + 20 + 5)/1.75 = 60
    assert nowcasts[9:] == [pytest.approx(60.0)] * 3


def test_late_readings_making_an_hour_valid_rewrite_the_index() -> None:
    """00:00 to 00:20 every minute first (not valid), 01:00 to 01:55 every 5 min: no index at
    01:00. The rest of 00:00 arriving late (a node's backlog) makes it valid: 00:00 and 01:00
    are written again, 01:00 with the index in-order processing gives it (96, as in
    test_an_hour_is_valid_from_45_minutes_of_readings), and 02:00 to 11:00 would be too."""
    first = _every("pm-a", T0, MIN, T0 + 45 * MIN, pm25=20, pm10=30)
    second = _every("pm-a", T0 + HOUR + 2 * MIN, 5 * MIN, T0 + HOUR + 57 * MIN, pm25=40, pm10=50)
    roll = AirRollup(6 * HOUR)
    before = select(roll.process("hn", "st1", first[:21] + second), "agg_1h", "air_quality",
                    site="hn", node="st1")
    assert not roll.valid(T0, "pm25")
    assert "aqi_epa" not in before[T0 + HOUR]
    points = roll.process("hn", "st1", first[21:])
    assert roll.valid(T0, "pm25")
    after = select(points, "agg_1h", "air_quality", site="hn", node="st1")
    assert sorted(after) == [T0, T0 + HOUR]
    assert after[T0 + HOUR]["aqi_epa"] == 96
    assert after == _rows(first + second)


def test_a_closed_hour_keeps_its_means_for_the_nowcast_only_if_valid() -> None:
    roll = AirRollup(HOUR)
    roll.process("hn", "st1", [rd("pm-a", PM, T0 + m * MIN, pm25=10, pm10=10) for m in (0, 15, 30, 45)]
                 + [rd("pm-a", PM, T0 + HOUR + 59 * MIN, pm25=99, pm10=99)]
                 + [rd("pm-a", PM, T0 + 3 * HOUR + 30 * MIN, pm25=5, pm10=5)])
    assert sorted(roll.closed) == [T0, T0 + HOUR]
    assert roll.closed[T0] == {"pm25": (10.0, 4), "pm10": (10.0, 4)}
    assert roll.closed[T0 + HOUR] == {}  # one reading: its mean was written, the NowCast never takes it
    assert roll.valid(T0, "pm25")
    assert not roll.valid(T0 + HOUR, "pm25")
    assert pickle.loads(pickle.dumps(roll)).closed == roll.closed
