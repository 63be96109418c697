"""Two events of one type about two fields of one sensor are two points (issue 6).

An event point is identified by its series (the sensor's tags and the event's `type`) and
its time. Stamped alike, the events of a silent dust sensor's PM2.5 and PM10 (one clock
tick), or those of a reading whose two values are out of range, were one point in
InfluxDB, the last written. Each point is now stamped its field's place (in the reading,
or among the sensor's watched fields) in ns after the moment it was raised: the first
field's stamp is the one it always had, and a replay gives the same stamps. Alerts (MQTT,
no identity to share) keep the moment itself.
(tests/cloud/test_void_fields_influx.py shows the out-of-range case on the real InfluxDB.)
"""

from __future__ import annotations

from cloud.logic.events import Alert, SensorWatch, check_readings
from cloud.logic.records import Point
from tests.cloud.logic.domain_helpers import MIN, T0, parse
from urbanpulse.clock import from_epoch_ns
from urbanpulse.wire import Reading


def _dust(i: int, **values: float) -> Reading:
    return Reading("pm-1", "air.pm", T0 + i * MIN, i, values or {"pm25": 10.0 + i % 3, "pm10": 20.0 + i % 2})


def _events(points: list[Point]) -> list[tuple[str, object, int]]:
    out = []
    for _, text in points:
        _, tags, fields, ts = parse(text)
        out.append((tags["type"], fields["field"], ts))
    return out


def test_a_silent_sensors_fields_are_two_silence_events() -> None:
    watches: dict[str, SensorWatch] = {}
    check_readings("s", "n", [_dust(i) for i in range(30)], watches)
    alerts: list[Alert] = []
    points: list[Point] = []
    for minutes in range(1, 60):
        points += watches["pm-1"].tick("s", "n", "pm-1", "air.pm",
                                       from_epoch_ns(T0 + (29 + minutes) * MIN), alerts)
    ((_, _, at), *_) = events = _events(points)
    assert events == [("silence", "pm25", at), ("silence", "pm10", at + 1)]
    assert [a.ts_ns for a in alerts] == [at, at]  # an alert keeps the detection's stamp


def test_out_of_range_on_two_fields_of_one_reading_are_two_points_in_both_paths() -> None:
    normal = [_dust(i) for i in range(30)]
    bad = _dust(30, pm25=5000.0, pm10=9000.0)
    expected = [("out_of_range", "pm25", bad.ts_ns), ("out_of_range", "pm10", bad.ts_ns + 1)]
    batched: dict[str, SensorWatch] = {}
    assert _events(check_readings("s", "n", [*normal, bad], batched)) == expected
    one_by_one = SensorWatch()
    points: list[Point] = []
    for r in [*normal, bad]:
        one_by_one.check("s", "n", r, None, points)
    assert _events(points) == expected
