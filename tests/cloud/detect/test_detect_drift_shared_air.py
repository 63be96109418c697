"""The cross-station drift rule (cloud/detect/drift.py) on a station with two modules of
a field: what both modules show against the other stations is the station's air, not a
module's gain (issue 7, fault bench run 24: a local pollution spike both modules of
bach-mai saw carried a pms5003's sum over after its drift had ended, a false drift).

A hand-made city: four stations with one module each and station "s" with two ("pm",
"pm-b", the pair rule's naming), every station's air its own mix of the city's weather
and a local variation (sd 10 %, memory 40 min), each module its own noise (6 %).
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable

from cloud.detect.drift import CityDrift, Drift
from cloud.detect.pair_drift import PairDrift, PairDriftSettings

H_NS = 3_600_000_000_000
T0_NS = 1_770_000_000 * 1_000_000_000 // H_NS * H_NS  # on an hour
Gain = Callable[[float], float]  # hours -> multiplier

Reading = tuple[tuple[str, str, str], int, float]


def _one(h: float) -> float:
    return 1.0


def ramp(rate_per_h: float, start: float, end: float) -> Gain:
    """A drift fault as the simulator injects it: the gain grows from `start` and is
    back to 1 at `end` (the module mended)."""
    return lambda h: 1 + rate_per_h * (h - start) if start <= h < end else 1.0


def window(factor: float, start: float, end: float) -> Gain:
    return lambda h: factor if start <= h < end else 1.0


def city(hours: float, gain_a: Gain = _one, gain_b: Gain = _one, own_air: Gain = _one,
         second: bool = True, seed: int = 3) -> list[Reading]:
    """PM2.5 every minute of each module; station "s"'s air multiplied by `own_air`
    (seen by both its modules), its module "pm" by `gain_a`, "pm-b" (gain 0.93) by
    `gain_b`; without `second`, station "s" carries "pm" alone (the same draws)."""
    rng = random.Random(seed)
    keep = math.exp(-1 / 40)
    local = [0.0] * 5
    out: list[Reading] = []
    for k in range(int(hours * 60)):
        h = k / 60
        weather = 40 * (1.5 + math.sin(2 * math.pi * h / 24))
        ts = T0_NS + k * 60_000_000_000
        for i in range(5):
            local[i] = keep * local[i] + 0.1 * math.sqrt(1 - keep**2) * rng.gauss(0, 1)
            air = weather * math.exp(local[i])
            if i == 0:
                air *= own_air(h)
                a = air * gain_a(h) * math.exp(0.06 * rng.gauss(0, 1))
                b = 0.93 * air * gain_b(h) * math.exp(0.06 * rng.gauss(0, 1))
                out.append((("s", "aq", "pm"), ts, a))
                if second:
                    out.append((("s", "aq", "pm-b"), ts + 2_000_000_000, b))
            else:
                out.append(((f"o{i}", "aq", "pm"), ts,
                            air * math.exp(0.06 * rng.gauss(0, 1))))
    return out


def drifts(readings: list[Reading], drift: CityDrift | None = None) -> list[Drift]:
    drift = drift or CityDrift()
    found: list[Drift] = []
    for series, ts, value in readings:
        found += drift.update(series, "air.pm", ts, {"pm25": round(value, 1)})
    return found


def cross(found: list[Drift]) -> list[tuple[str, float]]:
    """The cross-station rule's drifts: (sensor, hours from the start when raised)."""
    return [(d.series[2], (d.event.detected_at.timestamp() * 1e9 - T0_NS) / H_NS)
            for d in found if d.pair is None]


def test_a_local_spike_both_modules_see_does_not_carry_a_module_over_after_its_drift(
        ) -> None:
    # run 24's shape: "pm" drifts +8 %/h for 6 h (found by the pair), its cross-station
    # sum climbs near the threshold; the drift ends and, before the sum has come down, a
    # local pollution spike (x4) at the station, which both modules see alike
    readings = city(72, gain_a=ramp(0.08, 50, 56), own_air=window(4.0, 55.5, 58.5))
    found = drifts(readings)
    assert [d.series[2] for d in found if d.pair is not None] == ["pm+pm-b"]
    late = [(sensor, at) for sensor, at in cross(found) if at > 56.25]  # after the grace
    assert late == []


def test_the_station_s_air_off_for_hours_is_no_drift_of_its_paired_modules() -> None:
    # a local source for ten hours (x3 at the station): both modules follow it
    assert cross(drifts(city(72, own_air=window(3.0, 50, 60)))) == []


def test_a_single_module_station_is_judged_on_its_deviation_as_before() -> None:
    # the same air with one module: nothing tells the air from a gain, so the rule
    # judges the deviation as a whole (what it always did) and raises
    found = cross(drifts(city(72, own_air=window(3.0, 50, 60), second=False)))
    assert [sensor for sensor, _ in found] == ["pm"]
    assert 50 < found[0][1] < 60


def test_a_module_s_drift_its_partner_does_not_follow_is_still_found() -> None:
    # the pair finds it first; the other stations then name the module, even while the
    # station's own air moves both modules
    for own in (_one, window(1.4, 52, 56), window(0.7, 52, 56)):
        found = drifts(city(72, gain_a=ramp(0.2, 50, 72), own_air=own))
        assert [d.series[2] for d in found if d.pair is not None] == ["pm+pm-b"]
        named = cross(found)
        assert [sensor for sensor, _ in named] == ["pm"]
        assert 50 < named[0][1] < 62
        (event,) = [d.event for d in found if d.pair is None]
        assert "not shared by pm-b" in event.detail


def test_both_modules_drifting_alike_is_the_station_s_air_to_both_rules() -> None:
    # the blind spot: two modules whose gains grow alike are, against the other
    # stations, exactly the station's air off its usual level; their ratio does not move
    both = ramp(0.2, 50, 72)
    assert drifts(city(72, gain_a=both, gain_b=both)) == []


def test_the_pairing_is_the_pair_rule_s() -> None:
    rule = PairDrift()
    assert (rule.partner("pms5003"), rule.partner("pms5003-b")) == ("pms5003-b", "pms5003")
    assert rule.partner("pms5003-b-b") is None  # the pair rule pairs it with nothing
    assert rule.partner("-b") == "-b-b"
    assert PairDrift(PairDriftSettings(second_suffix="-2")).partner("a-2") == "a"
    # modules not named as a pair are judged each on its whole deviation
    renamed = [((s, n, {"pm": "pm-hall", "pm-b": "pm-door"}.get(m, m)) if s == "s"
                else (s, n, m), ts, v) for (s, n, m), ts, v in city(72, own_air=window(3.0, 50, 60))]
    assert sorted(sensor for sensor, _ in cross(drifts(renamed))) == ["pm-door", "pm-hall"]
