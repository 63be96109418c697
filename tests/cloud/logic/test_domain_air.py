"""Air quality per station and hour: means, NowCast and both indices, hand-computed."""

from __future__ import annotations

import pickle
import random

import pytest

from cloud.logic.domain.air import AirRollup
from tests.cloud.logic.domain_helpers import HOUR, MIN, T0, final, rd, select
from urbanpulse.wire import Reading

PM, CO2 = "air.pm", "air.co2"


def two_hours() -> list[Reading]:
    return [
        rd("pm-a", PM, T0 + 5 * MIN, pm25=10, pm10=40),
        rd("pm-b", PM, T0 + 35 * MIN, pm25=20, pm10=60),
        rd("co2-a", CO2, T0 + 6 * MIN, co2=400),
        rd("co2-a", CO2, T0 + 36 * MIN, co2=500),
        rd("pm-a", PM, T0 + HOUR + 5 * MIN, pm25=30, pm10=100),
        rd("pm-a", PM, T0 + HOUR + 6 * MIN, ("warmup",), pm25=0, pm10=0),
    ]


def test_hour_means_and_indices() -> None:
    points = AirRollup(3 * HOUR).process("hn", "st1", two_hours())
    rows = select(points, "agg_1h", "air_quality", site="hn", node="st1")
    # First hour: one hour of data only, NowCast needs 2 of the 3 latest hours -> no index.
    assert rows[T0] == {"pm25_mean": 15.0, "pm25_n": 2, "pm10_mean": 50.0, "pm10_n": 2,
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
    for h in range(5):
        roll.process("hn", "st1", [rd("pm-a", PM, T0 + h * HOUR, pm25=10 * (h + 1), pm10=50)])
    assert sorted(roll.closed) == [T0, T0 + HOUR]  # older than newest - horizon - 1 h
    assert roll.mean(T0, "pm25") == (10.0, 1)
    # hours newest first 50, 40, 30, 20, 10: w = 1/2 -> EPA (50+20+7.5+2.5+0.625)/1.9375
    copy = pickle.loads(pickle.dumps(roll))
    points = copy.process("hn", "st1", [rd("pm-a", PM, T0 + 4 * HOUR + 1, pm25=50, pm10=50)])
    row = select(points, "agg_1h", "air_quality", site="hn", node="st1")[T0 + 4 * HOUR]
    assert row["pm25_nowcast"] == pytest.approx(80.625 / 1.9375)
    assert roll.process("hn", "st1", [rd("pm-a", PM, T0, pm25=1, pm10=1)]) == []
    assert roll.too_late == 1
