"""`decode_record`'s orjson shortcut (`records._sound_readings`) against the contract's
decoder (`urbanpulse.wire.decode_batch`), on payloads test_records_shortcut.py does not
make: JSON written as text rather than by `json.dumps`, so that keys come escaped
(`\\u0070m25`), repeated (both parsers keep the last), reordered and spaced;
numbers spelt every way JSON allows (exponents, `-0`, 20 digits, 1e-400); stamps on the
edges of what the contract takes (exactly 2020, exactly a day ahead, ISO 8601 forms that
are no RFC 3339); flags repeated; the envelope's `v` as 1.0 or true. And the benchmark
city's messages with their bytes mutated at random (fixed seed): a broken message must
become the same dead letters, and a message still sound the same readings, either way.

Both sides are compared with every value's type showing (1 and 1.0 differ here), stamps,
flags, order, and the dead letters' reasons and details.
"""

from __future__ import annotations

import json
import random
import re
from datetime import UTC, datetime

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from bench.pipeline.workload import Workload, generate
from cloud.journal import JournalRecord
from cloud.logic import records
from cloud.logic.records import NodeData, Point, decode_record
from urbanpulse.wire import KINDS, decode_batch
from urbanpulse.wire.kinds import BOOL_UNIT, COUNT_UNITS

SITE, NODE = "hn-bachmai", "ward-1"
TOPIC = f"urbanpulse/v1/{SITE}/{NODE}/data"
RECEIVED_NS = 1_795_000_000_000_000_000  # 2026-11-18T11:06:40Z
A_DAY_AHEAD = "2026-11-19T11:06:40Z"  # the latest stamp the contract takes
UNITS = {"air.pm": {"pm25": "ug/m3", "pm10": "ug/m3", "pm1": "ug/m3"},
         "hospital.bed": {"occupied": "bool", "fault": "bool"},
         "traffic.loop": {"count": "vehicles", "interval_s": "s", "occupancy_pct": "%"}}
FIELDS = {kind: list(units) for kind, units in UNITS.items()}
REQUIRED = {kind: [name for name, spec in KINDS[kind].fields.items() if spec.required] for kind in UNITS}

# Numbers a sound reading may carry, spelt as JSON text.
SOUND_NUMBERS = ["-0", "-0.0", "0.0", "1.0", "1E2", "1e-400", "5e-324", "41.5", "7",
                 "9223372036854775807", "-9223372036854775808", "9223372036854775808",
                 "18446744073709551615", "9007199254740993", "9007199254740993.0",
                 "0.30000000000000004441", "123456789.123456789e-3", "9.2233720368547748e18",
                 "-9.2233720368547748e18", "2.2250738585072014e-308"]
# What a bool field and a count field (a whole number in [0, 2^53]) of a sound reading may
# carry, spelt every way: any other number there is refused (a broken reading's "number").
SOUND_BOOLS = ["0", "1", "-0", "0.0", "-0.0", "1.0", "1E0", "0e5", "10e-1", "1.000", "1e-400"]
SOUND_COUNTS = ["0", "-0", "0.0", "-0.0", "7", "1E2", "1e-400", "9007199254740992",
                "9007199254740992.0", "9.007199254740992e15", "12.0000000000000000001"]
# Text in place of a number that the contract refuses, or that orjson reads otherwise.
ODD_NUMBERS = ["NaN", "Infinity", "-Infinity", "true", "false", "null", '"1"', "[]", "{}",
               "18446744073709551616", "-9223372036854775809", "1e308", "1e309", "-1e400",
               "1.7976931348623159e308", "1" + "0" * 30, "1" + "0" * 330]
SOUND_STAMPS = ["2026-11-18T09:00:01.000000Z", "2026-11-18T09:00:01Z", "2026-11-18T09Z",
                "20261118T0900Z", "2026-W47-3T09:00Z", "2026-11-18 09:00:00Z",
                "2020-01-01T00:00:00Z", "2026-11-18T09:00:00.1234567Z",
                "2026-11-18T09:00:00,5Z", A_DAY_AHEAD]
ODD_STAMPS = ["2026-11-19T11:06:40.000001Z", "2019-12-31T23:59:59.999999Z",
              "2026-11-18T09:00:00+00:00", "9999-12-31T23:59:59.999999Z",
              "0001-01-01T00:00:00Z", "z", "", "2026-02-30T00:00:00Z", "1795000000"]
SOUND_FLAGS: list[str | None] = [None, None, "[]", '["warmup"]', '["backlog","warmup","warmup"]',
               '["clock_unsynced","calibrating"]']
ODD_FLAGS: list[str | None] = ['["nope"]', '"warmup"', "null", "{}", '[["warmup"]]', "[1]", '["Warmup"]']
SENSORS = ["pm-1", "bed-01", "x.y_z-0", "a" * 64]
ODD_SENSORS = ["a" * 65, "Pm-1", "pm 1", "pm-1\n", "-pm", "\u00f1-1", "pm\u00e9", "\u0661", ""]
SEQS = ["0", "1", "9223372036854775807", "-0", "10000000"]
ODD_SEQS = ["1.0", "-1", "9223372036854775808", "18446744073709551616", "true", "1e2",
            '"1"', "null", "0.0"]
# A second pair after a reading's own: the last of two equal keys wins (or is refused).
REPEATS = [('"extra"', "1"), ('"seq"', "3"), ('"values"', '{"occupied":1}'),
           ('"kind"', '"hospital.bed"'), ('"sensor"', '"bed-01"'), ('"flags"', '["warmup"]'),
           ('"ts"', '"2026-11-18T09:00:02Z"')]


def _string(s: str, how: int) -> str:
    """A JSON string three ways: ASCII escapes, raw UTF-8, every character escaped."""
    if how == 0:
        return json.dumps(s)
    if how == 1:
        return json.dumps(s, ensure_ascii=False)
    return '"' + "".join(f"\\u{ord(c):04x}" if ord(c) < 0x10000 else json.dumps(c)[1:-1]
                         for c in s) + '"'


@st.composite
def _object(draw: st.DrawFn, pairs: list[tuple[str, str]]) -> str:
    """An object from (key text, value text) pairs, spaced some way."""
    ws = draw(st.sampled_from(["", " ", "\n", "\t", " \r\n "]))
    return "{" + ws + ("," + ws).join(f"{k}{ws}:{ws}{v}" for k, v in pairs) + ws + "}"


def _measure() -> st.SearchStrategy[str]:
    return (st.sampled_from(SOUND_NUMBERS) | st.integers(-1000, 1000).map(str)
            | st.floats(-1e18, 1e18).map(repr))


def _sound_number(kind: str, name: str) -> st.SearchStrategy[str]:
    """A number `name` of `kind` takes: 0 or 1 for a bool, a whole number for a count."""
    spec = KINDS.get(kind)
    unit = spec.fields[name].unit if spec is not None and name in spec.fields else None
    if unit == BOOL_UNIT:
        return st.sampled_from(SOUND_BOOLS)
    if unit in COUNT_UNITS:
        return st.sampled_from(SOUND_COUNTS) | st.integers(0, 2**53).map(str)
    return _measure()


def _number_text() -> st.SearchStrategy[str]:
    digits = st.text("0123456789", min_size=1, max_size=22)
    built = st.builds(lambda sign, whole, frac, exp: sign + (whole.lstrip("0") or "0") + frac + exp,
                      st.sampled_from(["", "-"]), digits,
                      st.sampled_from(["", ".0", ".5", ".000001", ".1234567890123456789"])
                      | digits.map(lambda d: "." + d),
                      st.sampled_from(["", "e0", "E+2", "e-5", "e18", "e19", "e308", "e-324"])
                      | digits.map(lambda d: "e" + d[:3]))
    return st.one_of(built, st.floats(allow_nan=False, allow_infinity=False).map(repr),
                     st.integers(-2**70, 2**70).map(str), st.sampled_from(SOUND_NUMBERS))


# The parts of a reading a broken one has wrong (one or two at a time, the rest sound: the
# shortcut must notice each alone).
SPOILS = ["kind", "names", "number", "sensor", "seq", "ts", "flags", "repeat"]


@st.composite
def _reading(draw: st.DrawFn, sound: bool) -> str:
    spoil = set() if sound else draw(st.sets(st.sampled_from(SPOILS), min_size=1, max_size=2))
    kind = draw(st.sampled_from(sorted(UNITS) + (["air.ozone"] if "kind" in spoil else [])))
    fields = FIELDS.get(kind, ["o3"])
    # a name may repeat: JSON allows it, the last value counts
    names = REQUIRED.get(kind, ["o3"]) + draw(st.lists(st.sampled_from(fields), max_size=3))
    if "names" in spoil:
        names = draw(st.lists(st.sampled_from([*fields, "zz"]), max_size=4))
    how = draw(st.integers(0, 2))
    numbers = [draw(_sound_number(kind, name)) for name in names]
    if "number" in spoil and numbers:
        # (a measure's number in a bool or count field: 41.5, -3, 2^53 + 1...)
        numbers[draw(st.integers(0, len(numbers) - 1))] = draw(
            st.sampled_from(ODD_NUMBERS) | st.sampled_from(ODD_NUMBERS) | _number_text() | _measure())
    values = draw(_object([(_string(n, how), v) for n, v in zip(names, numbers, strict=True)]))
    sensor = draw(st.sampled_from(ODD_SENSORS) | st.text(max_size=6) if "sensor" in spoil
                  else st.sampled_from(SENSORS))
    seq = draw(st.sampled_from(ODD_SEQS) | _number_text() if "seq" in spoil else st.sampled_from(SEQS))
    ts = draw(st.sampled_from(ODD_STAMPS if "ts" in spoil else SOUND_STAMPS))
    flags = draw(st.sampled_from(ODD_FLAGS if "flags" in spoil else SOUND_FLAGS))
    pairs = [('"sensor"', _string(sensor, how)), ('"kind"', json.dumps(kind)), ('"ts"', json.dumps(ts)),
             ('"seq"', seq), ('"values"', values)]
    if flags is not None:
        pairs.append(('"flags"', flags))
    if "repeat" in spoil:
        pairs.insert(draw(st.integers(0, len(pairs))), draw(st.sampled_from(REPEATS)))
    if draw(st.booleans()):
        pairs = draw(st.permutations(pairs))
    return draw(_object(pairs))


def _units_text(case: str) -> str:
    text = json.dumps(UNITS)
    if case == "wrong":
        return text.replace('"vehicles"', '"veh"')
    if case == "missing":
        return json.dumps({k: v for k, v in UNITS.items() if k != "hospital.bed"})
    if case == "extra":
        return text[:-1] + ', "air.co2": {"co2": "ppm"}}'
    if case == "nested":
        return text[:-1] + ', "air.co2": {"co2": ["ppm"]}}'
    if case == "repeated":  # the second entry of a kind wins
        return text[:-1] + ', "hospital.bed": {"occupied": "boolean"}}'
    return text


# The parts of an envelope an odd one spells otherwise (one or two at a time).
ENVELOPE_SPOILS = {
    "v": ["1.0", "true", "2", '"1"', "-0", "1e0"],
    "site": ['"hn-other"', '"HN"', "null"],
    "units": ["wrong", "missing", "extra", "nested", "repeated"],
    "batch": ['"0a1b.12"', "12", "null", '"x"'],
    # sound (also spelt with an escape), then ones the contract refuses
    "numbering": ['"0123456789abcdef"', '"\\u0030123456789abcdef"', '"0123456789ABCDEF"',
                  '"0123"', '"0123456789abcdef0"', "12", "null", '["0123456789abcdef"]'],
    "repeat": ['"x":1', '"v":1', '"v":2', '"site":"hn-other"', '"readings":[]', '"units":{}',
               '"numbering":"0123456789abcdef"', '"numbering":"nope"'],
    "before": [" ", "\n", "\ufeff"],
}


@st.composite
def _payload(draw: st.DrawFn) -> tuple[bytes, bool]:
    """A data payload: a sound one (every reading one the contract accepts, as text that
    varies), one with a single reading broken, or one whose envelope is spelt otherwise
    (its readings sound or not); and whether it is sound with a reading at least, which
    the shortcut must then take."""
    case = draw(st.sampled_from(["sound", "one broken reading", "odd envelope"]))
    n = draw(st.integers(0 if case != "one broken reading" else 1, 5))
    broken = draw(st.integers(0, n - 1)) if case == "one broken reading" else -1
    all_sound = case != "odd envelope" or draw(st.booleans())
    readings = [draw(_reading(i != broken if all_sound else draw(st.integers(0, 3)) > 0))
                for i in range(n)]
    spoil: dict[str, str] = {}
    if case == "odd envelope":
        for part in sorted(draw(st.sets(st.sampled_from(sorted(ENVELOPE_SPOILS)),
                                        min_size=1, max_size=2))):
            spoil[part] = draw(st.sampled_from(ENVELOPE_SPOILS[part]))
    pairs = [('"v"', spoil.get("v", "1")), ('"site"', spoil.get("site", json.dumps(SITE))),
             ('"node"', json.dumps(NODE)), ('"units"', _units_text(spoil.get("units", "good"))),
             ('"readings"', f"[{','.join(readings)}]")]
    if "batch" in spoil:
        pairs.insert(1, ('"batch"', spoil["batch"]))
    if "numbering" in spoil:
        pairs.insert(1, ('"numbering"', spoil["numbering"]))
    elif draw(st.booleans()):
        pairs.insert(1, ('"numbering"', '"00ff00ff00ff00ff"'))
    if "repeat" in spoil:
        key, value = spoil["repeat"].split(":", 1)
        pairs.insert(draw(st.integers(0, len(pairs))), (key, value))
    text = draw(_object(pairs))
    return (spoil.get("before", "") + text).encode(), case == "sound" and n > 0


def _exact(out: tuple[NodeData | None, list[Point]]) -> str:
    """The decoded record with every value's type showing (1 == 1.0, but not here)."""
    data, points = out
    return repr((None if data is None else (data.key, data.received_ns, data.readings, data.status,
                                            data.numbering),
                 points))


def _both(rec: JournalRecord, monkeypatch: pytest.MonkeyPatch) -> tuple[str, str]:
    """(decode_record as it is, decode_record with the shortcut turned off)."""
    fast = _exact(decode_record(rec, 4096))
    with monkeypatch.context() as m:
        m.setattr(records, "_sound_readings", lambda *args: None)
        contract = _exact(decode_record(rec, 4096))
    return fast, contract


def _shortcut_is_the_contract(payload: bytes, site: str, node: str, received_ns: int) -> bool:
    """Whether the shortcut took the payload; if it did, its readings are the contract's,
    value types included, and the contract rejects none of them."""
    sound = records._sound_readings(payload, site, node, received_ns)
    if sound is None:
        return False
    batch = decode_batch(payload, site=site, node=node, now_ns=received_ns)
    assert repr(sound) == repr((batch.readings, batch.numbering))
    assert not batch.rejected
    return True


def test_payloads_written_as_text_decode_as_the_contract_decodes_them(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Both ways decode alike; and every payload built sound, however spelt, is the
    shortcut's (else the comparison would hold for a shortcut that never applies). Asserted
    of each such payload, not as a share of those drawn: a floor of a tenth taken failed
    about one run in seventy, the share varying from 8% to 33% with the draw."""
    @settings(max_examples=300, deadline=None, database=None)
    @given(case=_payload())
    @example(case=((f'{{ "site":"{SITE}" ,"node":"{NODE}","v":1e0,"units":{json.dumps(UNITS)},'
                    '"readings":[{"\\u0073ensor":"bed-01","kind":"hospital.bed","seq":-0,'
                    '"ts":"2026-11-18T09Z","values":{"occupied":1.0,"fault":-0,"occupied":0},'
                    '"flags":["warmup"]}]}').encode(), True))
    def check(case: tuple[bytes, bool]) -> None:
        payload, sound = case
        fast, contract = _both(JournalRecord("i0", 7, RECEIVED_NS, TOPIC, payload), monkeypatch)
        assert fast == contract
        assert _shortcut_is_the_contract(payload, SITE, NODE, RECEIVED_NS) or not sound, payload

    check()


@pytest.mark.parametrize(("ts", "sound"), [
    ("2020-01-01T00:00:00Z", True), (A_DAY_AHEAD, True), ("2026-11-18T09Z", True),
    ("2026-11-18 09:00:00Z", True), ("2026-11-18T09:00:00.1234567Z", True),
    ("2019-12-31T23:59:59.999999Z", False), ("2026-11-19T11:06:40.000001Z", False)])
def test_a_stamp_on_the_edge_or_in_another_iso_form_decodes_as_the_contract_decodes_it(
        ts: str, sound: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    """The shortcut takes the stamps the contract accepts, and stamps them alike; a
    microsecond outside the range is the contract's to refuse."""
    payload = (f'{{"v":1,"site":"{SITE}","node":"{NODE}","units":{json.dumps(UNITS)},"readings":'
               f'[{{"sensor":"pm-1","kind":"air.pm","ts":"{ts}","seq":1,"values":{{"pm25":1,"pm10":2.5}}}}]}}'
               ).encode()
    assert _shortcut_is_the_contract(payload, SITE, NODE, RECEIVED_NS) == sound
    fast, contract = _both(JournalRecord("i0", 7, RECEIVED_NS, TOPIC, payload), monkeypatch)
    assert fast == contract


NOW = datetime(2026, 6, 1, 12, tzinfo=UTC)  # the workload's end: generate() is then deterministic
# Bytes put in at random: JSON's own syntax, numbers orjson and json read apart, flags, a
# BOM, an invalid UTF-8 byte, escapes.
TOKENS = [b"1", b"1.0", b"-0", b"-0.0", b"1e400", b"NaN", b"true", b"null", b"[]", b"{}", b'"a"',
          b",", b":", b'"', b"\\", b"\\u0000", b"\\ud800", b"\\u0070", b"18446744073709551616",
          b"9223372036854775808", b"1e18", b"9.3e18", b" ", b"\xef\xbb\xbf", b"\xff",
          b'"warmup"', b'"seq"', b'"values"', b'"flags":["backlog"],', b'"x":1,', b"Z", b"T", b".",
          b"+", b"-", b"0", b"9", b"e", b"E"]


NUMBER = re.compile(rb"(?<=:)-?[0-9]+(?:\.[0-9]+)?(?:[eE][-+]?[0-9]+)?")
# Numbers JSON allows that a reading must not carry, or that orjson reads otherwise.
NUMBER_TOKENS = [b"1e400", b"NaN", b"-Infinity", b"18446744073709551616", b"9223372036854775808",
                 b"-9223372036854775809", b"1" + b"0" * 25, b"-0", b"1.0", b"1E2", b"true", b"5e-324"]


def _mutate(payload: bytes, rng: random.Random) -> bytes:
    p = bytearray(payload)
    if rng.random() < 0.3:  # one number (a value, seq, v) spelt otherwise, the rest intact
        m = rng.choice(list(NUMBER.finditer(payload)))
        return payload[:m.start()] + rng.choice(NUMBER_TOKENS) + payload[m.end():]
    for _ in range(rng.choice([1, 1, 2, 4])):
        roll, i = rng.random(), rng.randrange(len(p) + 1)
        if roll < 0.3 and p:
            p[min(i, len(p) - 1)] = rng.randrange(256)
        elif roll < 0.5:
            del p[i:i + rng.randint(1, 6)]
        elif roll < 0.8:
            p[i:i] = rng.choice(TOKENS)
        else:  # a piece of the message copied elsewhere in it
            j = rng.randrange(len(p) + 1)
            p[i:i] = p[j:j + rng.randint(1, 40)]
    return bytes(p)


def _city() -> Workload:
    """300 messages of 20 readings of the benchmark's city, every kind it has."""
    return generate(6000, batch=20, now=NOW)


def test_city_messages_with_mutated_bytes_decode_as_the_contract_decodes_them(
        monkeypatch: pytest.MonkeyPatch) -> None:
    rng = random.Random(20261118)
    city = _city()
    messages = city.messages
    taken = dead = 0
    for n in range(900):
        m = messages[n % len(messages)]
        payload = _mutate(m.payload, rng)
        _, _, site, node, _ = m.topic.split("/")
        received = city.last_ts_ns + rng.randint(0, 10**9)
        fast, contract = _both(JournalRecord("i0", n, received, m.topic, payload), monkeypatch)
        assert fast == contract, payload
        taken += _shortcut_is_the_contract(payload, site, node, received)
        dead += "dead_letter," in fast
    # Both ways are exercised (with this seed: 55 messages the shortcut took, 829 with dead
    # letters).
    assert taken >= 40, taken
    assert dead >= 600, dead



SOUND_PM = ('{"sensor":"pm-1","kind":"air.pm","ts":"2026-11-18T09:00:01Z","seq":1,'
            '"values":{"pm25":1,"pm10":2.5}}')


@pytest.mark.parametrize("numbering", ['"0123456789ABCDEF"', '""', "12", "true", "{}",
                                       '["0123456789abcdef"]', '"\\ud800123456789abcde"',
                                       '"0123456789abcdef "', '"0123456789abcdef\\n"'])
def test_a_bad_numbering_is_one_dead_letter_that_names_it_and_keeps_the_message(
        numbering: str, monkeypatch: pytest.MonkeyPatch) -> None:
    payload = (f'{{"v":1,"site":"{SITE}","node":"{NODE}","numbering":{numbering},'
               f'"units":{json.dumps(UNITS)},"readings":[{SOUND_PM}]}}').encode()
    rec = JournalRecord("i0", 7, RECEIVED_NS, TOPIC, payload)
    fast, contract = _both(rec, monkeypatch)
    assert fast == contract
    data, [(_, text)] = decode_record(rec, 4096)
    assert data is None
    assert text.startswith(f"dead_letter,node={NODE},reason=bad_numbering,site={SITE} ")
    assert 'detail="numbering must be 16 hex digits [0-9a-f], got ' in text
    assert '\\"readings\\":[{\\"sensor\\":\\"pm-1\\"' in text  # the whole message, kept


def test_a_null_numbering_is_no_numbering_either_way(monkeypatch: pytest.MonkeyPatch) -> None:
    """As wire-contract.md says: without a name, the stamps decide."""
    payload = (f'{{"v":1,"site":"{SITE}","node":"{NODE}","numbering":null,'
               f'"units":{json.dumps(UNITS)},"readings":[{SOUND_PM}]}}').encode()
    rec = JournalRecord("i0", 7, RECEIVED_NS, TOPIC, payload)
    fast, contract = _both(rec, monkeypatch)
    assert fast == contract
    data, points = decode_record(rec, 4096)
    assert not points
    assert data is not None
    assert (data.numbering, len(data.readings)) == (None, 1)
