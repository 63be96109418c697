"""A count (a field in persons, vehicles or pulses) that is not a whole number from 0 is
refused on the decode's shortcut (`records._sound_readings`, with its remembered field
names `records._known_fields`) as on the contract's path: the reading becomes a
`bad_count` dead letter of its node, its neighbours go on. Were only the contract's path to
check it, a message whose field names the shortcut knows would store 2.5 persons."""

from __future__ import annotations

import json
from typing import Any

import pytest

from cloud.journal import JournalRecord
from cloud.logic import records
from cloud.logic.records import decode_record

SITE, NODE = "hn-bachmai", "er-door"
TOPIC = f"urbanpulse/v1/{SITE}/{NODE}/data"
RECEIVED_NS = 1_795_000_000_000_000_000  # 2026-11-18
UNITS = {"hospital.door": {"count": "persons", "interval_s": "s", "glitches": "pulses"},
         "traffic.loop": {"count": "vehicles", "interval_s": "s", "speed_count": "vehicles",
                          "speed_kmh": "km/h"}}


def _payload(*values: dict[str, Any], kind: str = "hospital.door") -> bytes:
    readings = [{"sensor": "door-1", "kind": kind, "ts": f"2026-11-18T09:00:{i:02d}.000000Z",
                 "seq": i, "values": v} for i, v in enumerate(values)]
    return json.dumps({"v": 1, "site": SITE, "node": NODE, "units": UNITS,
                       "readings": readings}).encode()


def _decoded(payload: bytes) -> tuple[list[dict[str, Any]], list[tuple[str, str]]]:
    data, points = decode_record(JournalRecord("p0", 1, RECEIVED_NS, TOPIC, payload), 4096)
    letters = []
    for rp, line in points:
        assert (rp, line.split(",", 1)[0]) == ("raw", "dead_letter"), line
        tags = dict(t.split("=", 1) for t in line.split(" ", 1)[0].split(",")[1:])
        assert (tags["site"], tags["node"]) == (SITE, NODE)
        letters.append((tags["reason"], line))
    return ([dict(r.values) for r in data.readings] if data else []), letters


@pytest.mark.parametrize(("kind", "good", "bad", "why"), [
    ("hospital.door", {"count": 3, "interval_s": 60}, {"count": 2.5, "interval_s": 60},
     "is not a whole number"),
    ("hospital.door", {"count": 3, "interval_s": 60}, {"count": -3, "interval_s": 60},
     "is negative"),
    ("hospital.door", {"count": 3, "interval_s": 60, "glitches": 1},
     {"count": 3, "interval_s": 60, "glitches": 0.5}, "is not a whole number"),
    ("traffic.loop", {"count": 4, "interval_s": 60, "speed_kmh": 40.5, "speed_count": 2},
     {"count": 4, "interval_s": 60, "speed_kmh": 40.5, "speed_count": 2**53 + 2},
     "is beyond 2^53"),
])
def test_a_count_not_whole_is_a_dead_letter_on_the_shortcut_too(
        kind: str, good: dict[str, Any], bad: dict[str, Any], why: str) -> None:
    sound = _payload(good, {**good, "count": 5.0}, kind=kind)
    # A sound message takes the shortcut, and leaves its field names known.
    assert records._sound_readings(sound, SITE, NODE, RECEIVED_NS) is not None
    assert (kind, tuple(good)) in records._known_fields
    assert _decoded(sound) == ([good, {**good, "count": 5.0}], [])

    broken = _payload(good, bad, good, kind=kind)
    assert records._sound_readings(broken, SITE, NODE, RECEIVED_NS) is None
    readings, letters = _decoded(broken)
    assert readings == [good, good]  # its neighbours go on
    [(reason, line)] = letters
    assert reason == "bad_count"
    field = next(name for name in bad if bad[name] != good[name])
    assert f"readings[1].values.{field}: a count of " in line
    assert why in line
