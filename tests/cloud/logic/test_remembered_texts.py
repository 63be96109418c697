"""The ledger point's text written directly (`LedgerHour.field_text`, session 17) is the one
the released code made: `line()` of the dict `LedgerHour.fields` returned, kept here
verbatim as the reference. And what the decode remembers from one message to the next
gives what it gave before: a topic parsed once (`records.parsed_topic`) is the one
`parse_topic` gives, a refused one refused again each time; known field names still have
their units checked."""

from __future__ import annotations

import random

import pytest

from cloud.logic import records
from cloud.logic.lines import line
from cloud.logic.node import INT64_MAX, LedgerHour
from cloud.logic.records import parsed_topic
from tests.cloud.logic.test_records_shortcut import GOOD, UNITS, _both, _payload, _reading
from urbanpulse.wire import parse_topic
from urbanpulse.wire.topics import TopicError


def released_fields(held: LedgerHour, missing: int) -> dict[str, int | float | str | bool]:
    """LedgerHour.fields as released up to e058a0a, verbatim."""
    unique = held.received - held.duplicates
    missing = min(missing, INT64_MAX - unique)
    return {"expected": unique + missing, "received": held.received,
            "duplicates": held.duplicates, "late": held.late, "missing": missing,
            "restarts": held.restarts}


def _counts(rng: random.Random) -> int:
    return rng.choice([0, 1, rng.randrange(1000), rng.randrange(2**40), INT64_MAX - rng.randrange(3),
                       INT64_MAX])


def test_ledger_text_is_the_released_line() -> None:
    rng = random.Random(17)
    tags = {"site": "bach-mai", "node": "ward-5"}
    for _ in range(2000):
        held = LedgerHour(received=_counts(rng), duplicates=0, late=_counts(rng),
                          restarts=rng.randrange(4))
        held.duplicates = min(_counts(rng), held.received)
        missing = _counts(rng)
        hour = rng.randrange(2**62) // 3600 * 3600
        expected = line("ledger", tags, released_fields(held, missing), hour)
        assert f"ledger,node=ward-5,site=bach-mai {held.field_text(missing)} {hour}" == expected


def test_parsed_topic_is_parse_topic() -> None:
    for text in ("urbanpulse/v1/bach-mai/ward-5/data", "urbanpulse/v1/bach-mai/ward-5/status",
                 "urbanpulse/v1/hanoi-1/gw-1/relay"):
        assert parsed_topic(text) == parse_topic(text)
        assert parsed_topic(text) == parse_topic(text)  # from the cache
    for bad in ("urbanpulse/v1/Bach/ward-5/data", "urbanpulse/v1/bach-mai/ward-5/nope", "x/y"):
        for _ in range(2):
            with pytest.raises(TopicError):
                parsed_topic(bad)


def test_field_names_known_from_a_message_before_still_have_their_units_checked(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """`records._known_fields` remembers a kind's field names the shortcut took; a later
    message with those names in another unit, or without its kind's units, is the
    contract's to judge (a dead letter), as the first message of the process would be."""
    good = _payload([_reading(0, GOOD[0], None, None)])
    fast, contract = _both(good, monkeypatch)
    assert fast == contract
    assert "dead_letter" not in fast
    assert ("air.pm", ("pm25", "pm10")) in records._known_fields
    for units in ({**UNITS, "air.pm": {"pm25": "ug/m3", "pm10": "mg/m3"}},
                  {"hospital.bed": UNITS["hospital.bed"]}, {**UNITS, "air.pm": []}):
        fast, contract = _both(_payload([_reading(1, GOOD[0], None, None)], units), monkeypatch)
        assert fast == contract
        assert "dead_letter" in fast
