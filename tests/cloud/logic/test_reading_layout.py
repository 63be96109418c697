"""`Reading` is no longer a frozen dataclass (it was the costliest part of making one: see
docs/throughput.md, session 10), and nothing else about it changed: it pickles as the frozen
class did, loads that class's pickles, compares and hashes by its fields."""

from __future__ import annotations

import pickle

import pytest

from urbanpulse.wire import Reading

# pickle.dumps of this reading by the frozen dataclass (commit 6e47edb), protocols 5 and 2
READING = Reading("pm-1", "air.pm", 1795000000000003000, 7, {"pm25": 20.5, "pm10": 35}, ("backlog",))
FROZEN_PICKLE_5 = (
    b"\x80\x05\x95t\x00\x00\x00\x00\x00\x00\x00\x8c\x17urbanpulse.wire.payload\x94\x8c\x07Reading"
    b"\x94\x93\x94)\x81\x94]\x94(\x8c\x04pm-1\x94\x8c\x06air.pm\x94\x8a\x08\xb8\x8b\xd3[\xfd\x1e"
    b"\xe9\x18K\x07}\x94(\x8c\x04pm25\x94G@4\x80\x00\x00\x00\x00\x00\x8c\x04pm10\x94K#u\x8c\x07"
    b"backlog\x94\x85\x94eb.")
FROZEN_PICKLE_2 = (
    b"\x80\x02curbanpulse.wire.payload\nReading\nq\x00)\x81q\x01]q\x02(X\x04\x00\x00\x00pm-1q\x03"
    b"X\x06\x00\x00\x00air.pmq\x04\x8a\x08\xb8\x8b\xd3[\xfd\x1e\xe9\x18K\x07}q\x05(X\x04\x00\x00"
    b"\x00pm25q\x06G@4\x80\x00\x00\x00\x00\x00X\x04\x00\x00\x00pm10q\x07K#uX\x07\x00\x00\x00"
    b"backlogq\x08\x85q\teb.")


def test_a_reading_pickled_by_the_frozen_class_loads_equal() -> None:
    for old in (FROZEN_PICKLE_5, FROZEN_PICKLE_2):
        loaded = pickle.loads(old)
        assert type(loaded) is Reading
        assert loaded == READING
        assert (loaded.sensor, loaded.kind, loaded.ts_ns, loaded.seq, loaded.values, loaded.flags) == (
            "pm-1", "air.pm", 1795000000000003000, 7, {"pm25": 20.5, "pm10": 35}, ("backlog",))
        assert type(loaded.values["pm10"]) is int


def test_a_reading_pickles_as_the_frozen_class_did() -> None:
    assert pickle.dumps(READING, protocol=5) == FROZEN_PICKLE_5
    assert pickle.dumps(READING, protocol=2) == FROZEN_PICKLE_2


def test_readings_compare_and_hash_by_their_fields() -> None:
    a = Reading("s", "air.co2", 1, 2, {}, ("warmup",))
    b = Reading("s", "air.co2", 1, 2, {}, ("warmup",))
    assert a == b
    assert a is not b
    assert a != Reading("s", "air.co2", 1, 3, {}, ("warmup",))
    # hashed as the frozen dataclass was: by the tuple of its fields (values included, so
    # a reading whose values are a dict is not hashable, as before)
    frozen_values = Reading("s", "air.co2", 1, 2, (), ("warmup",))  # type: ignore[arg-type]
    assert hash(frozen_values) == hash(("s", "air.co2", 1, 2, (), ("warmup",)))
    with pytest.raises(TypeError):
        hash(a)
