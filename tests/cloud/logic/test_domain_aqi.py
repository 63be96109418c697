"""AQI by the US EPA (2024 breakpoints) and by Vietnam's Decision 1459/QD-TCMT; every
expected value below was worked out by hand from the published formula and tables."""

from __future__ import annotations

import math

import pytest

from cloud.logic.domain.aqi import (
    epa_aqi,
    epa_aqi_hourly,
    epa_category,
    epa_nowcast,
    overall,
    vn_aqi_hourly,
    vn_category,
    vn_nowcast,
    vn_subindex,
)


@pytest.mark.parametrize(("c", "aqi"), [
    (0.0, 0), (9.0, 50), (9.05, 50), (9.1, 51), (20.0, 71), (35.4, 100), (35.49, 100),
    (35.5, 101), (55.4, 150), (55.5, 151), (125.4, 200), (125.5, 201), (225.4, 300),
    (225.5, 301), (325.4, 500),
    (400.0, 649),  # beyond the AQI: last segment extended, 199/99.9*174.5+301 = 648.6
])
def test_epa_pm25_breakpoints_2024(c: float, aqi: int) -> None:
    assert epa_aqi("pm25", c) == aqi


@pytest.mark.parametrize(("c", "aqi"), [
    (0, 0), (54, 50), (54.9, 50), (55, 51), (100, 73), (154, 100), (155, 101), (254, 150),
    (255, 151), (354, 200), (355, 201), (424, 300), (425, 301), (604, 500),
])
def test_epa_pm10_breakpoints(c: float, aqi: int) -> None:
    assert epa_aqi("pm10", c) == aqi


@pytest.mark.parametrize("c", [None, -0.1, math.nan, math.inf])
def test_no_usable_concentration_gives_none(c: float | None) -> None:
    assert epa_aqi("pm25", c) is None
    assert vn_subindex("pm10", c) is None


def test_unknown_pollutant_is_refused() -> None:
    with pytest.raises(ValueError, match="pollutant"):
        epa_aqi("o3", 1.0)  # type: ignore[arg-type]


@pytest.mark.parametrize(("pollutant", "c", "aqi"), [
    ("pm25", 0, 0), ("pm25", 25, 50), ("pm25", 20.3, 41), ("pm25", 50, 100),
    ("pm25", 55.7, 110),  # the Decision's own example (section 2.3.c): 109.5 -> 110
    ("pm25", 80, 150), ("pm25", 150, 200), ("pm25", 250, 300), ("pm25", 350, 400),
    ("pm25", 500, 500), ("pm25", 700, 500),
    ("pm10", 50, 50), ("pm10", 100, 75), ("pm10", 150, 100), ("pm10", 420, 300),
    ("pm10", 460, 350), ("pm10", 600, 500), ("pm10", 900, 500),
])
def test_vn_subindex_table2(pollutant: str, c: float, aqi: int) -> None:
    assert vn_subindex(pollutant, c) == aqi  # type: ignore[arg-type]


def test_vn_nowcast_worked_example_of_the_decision() -> None:
    # Section 2.3.a: PM2.5 from 09:00 to 20:00, newest first; w* = 16.5/26.9 = 0.61; 20.3.
    hours = [20.6, 19.6, 22.4, 20.3, 16.5, 19.0, 16.5, 19.5, 23.5, 20.5, 24.7, 26.9]
    nowcast = vn_nowcast(hours)
    assert nowcast is not None
    assert round(nowcast, 1) == 20.3
    assert vn_aqi_hourly("pm25", hours) == 41  # section 2.3.b: AQI(PM2.5) = 41


def test_nowcast_weight_above_half_is_the_normalised_weighted_mean() -> None:
    # w = 8/12 = 2/3: (12 + 2/3*10 + 4/9*8) / (1 + 2/3 + 4/9) = 200/19
    assert vn_nowcast([12, 10, 8]) == pytest.approx(200 / 19, rel=1e-12)
    assert epa_nowcast([12, 10, 8]) == pytest.approx(200 / 19, rel=1e-12)


def test_nowcast_weight_half_vn_literal_and_epa_normalised() -> None:
    hours = [40.0] + [10.0] * 11  # w* = 0.25 -> w = 1/2
    # VN: 0.5*40 + 10*(0.5 - 0.5^12) = 24.99755859375
    assert vn_nowcast(hours) == pytest.approx(24.99755859375, rel=1e-12)
    # EPA: (40 + 10*(1 - 0.5^11)) / (2 - 0.5^11) = 25.0036630...
    assert epa_nowcast(hours) == pytest.approx(49.9951171875 / 1.99951171875, rel=1e-12)
    assert vn_aqi_hourly("pm25", hours) == 50
    assert epa_aqi_hourly("pm25", hours) == 81  # 25.0 -> 49/26.3*15.9 + 51 = 80.6


def test_nowcast_missing_hours() -> None:
    # Only c1 of the three most recent: "no data".
    assert vn_nowcast([10.0, None, None, 10.0]) is None
    assert epa_nowcast([None, 10.0, None]) is None
    # c1 = 10, c3 = 20, w = 1/2. EPA: (10 + 0.25*20)/1.25 = 12.
    hours: list[float | None] = [10.0, None, 20.0] + [None] * 9
    assert epa_nowcast(hours) == pytest.approx(12.0, rel=1e-12)
    # VN: (0.5*10 + 0.125*20) / 0.625 * (1 - 2^-12) = 12 * 0.999755859375
    assert vn_nowcast(hours) == pytest.approx(11.9970703125, rel=1e-12)


def test_nowcast_all_zero_and_bad_input() -> None:
    assert vn_nowcast([0.0, 0.0]) == 0.0
    with pytest.raises(ValueError, match="at most 12"):
        vn_nowcast([1.0] * 13)
    with pytest.raises(ValueError, match=">= 0"):
        epa_nowcast([1.0, -2.0])


def test_categories() -> None:
    assert [epa_category(a) for a in (0, 50, 51, 100, 101, 150, 151, 200, 201, 300, 301, 649)] == [
        "Good", "Good", "Moderate", "Moderate", "Unhealthy for Sensitive Groups",
        "Unhealthy for Sensitive Groups", "Unhealthy", "Unhealthy", "Very Unhealthy",
        "Very Unhealthy", "Hazardous", "Hazardous"]
    assert [vn_category(a) for a in (50, 51, 101, 151, 201, 301)] == [
        "Tốt", "Trung bình", "Kém", "Xấu", "Rất xấu", "Nguy hại"]
    assert epa_category(None) is None
    assert overall([None, 41, 60]) == 60
    assert overall([None]) is None
