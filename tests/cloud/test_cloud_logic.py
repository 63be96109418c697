"""The dataflow's logic in plain Python: dedup, windows, late data, ledger, dead letters."""

from __future__ import annotations

import json
import pickle
import random
from datetime import UTC, datetime

from hypothesis import given
from hypothesis import strategies as st

from cloud.journal import JournalRecord
from cloud.logic.lines import float_fields, line
from cloud.logic.node import NodeState
from cloud.logic.records import NodeData, decode_record
from cloud.logic.rollup import MINUTE_NS, SensorRollup, Window
from cloud.logic.seqs import SeqRanges
from urbanpulse.clock import to_epoch_ns
from urbanpulse.wire import Reading, encode_batch

T0 = to_epoch_ns(datetime(2026, 11, 28, 8, 0, tzinfo=UTC))
HOUR = 3600 * 10**9


def test_seq_ranges_tell_new_from_duplicate_in_any_order() -> None:
    s = SeqRanges()
    order = list(range(100))
    random.Random(3).shuffle(order)
    assert all(s.add(q) for q in order)
    assert not any(s.add(q) for q in order)
    assert s.ranges == [[0, 100]]
    assert (s.expected, s.seen, s.missing) == (100, 100, 0)


@given(st.lists(st.integers(0, 60), max_size=120))
def test_seq_ranges_agree_with_a_set_of_seen_numbers(seqs: list[int]) -> None:
    s, seen = SeqRanges(max_ranges=1000), set()
    for q in seqs:
        assert s.add(q) == (q not in seen), q
        seen.add(q)
    assert s.seen == len(seen)
    assert all(a < b for a, b in s.ranges)
    assert all(s.ranges[i][1] < s.ranges[i + 1][0] for i in range(len(s.ranges) - 1))


def test_seq_ranges_count_gaps_and_stay_bounded() -> None:
    s = SeqRanges(max_ranges=4)
    for q in (0, 2, 4, 6, 8, 10):
        s.add(q)
    assert len(s.ranges) == 4
    assert s.given_up == 2
    assert s.missing == 5
    assert not s.add(1)  # inside a given-up gap: treated as seen


@given(st.lists(st.integers(0, 600), min_size=1, max_size=80))
def test_rollup_eviction_keeps_exactly_the_windows_inside_the_horizon(minutes: list[int]) -> None:
    r = SensorRollup(MINUTE_NS, 30 * MINUTE_NS)
    accepted: set[int] = set()
    for m in [31, 0, 40, 15, 50, *minutes]:  # any order: late readings open older windows
        if r.add(T0 + m * MINUTE_NS, {"v": 1.0}) is not None:  # None: too late to aggregate
            accepted.add(T0 + m * MINUTE_NS)
        r.evict()
        floor = r.newest_ns - r.horizon_ns - r.width_ns
        assert all(start >= floor for start in r.starts())  # live or frozen
    assert set(r.starts()) == {s for s in accepted if s >= r.newest_ns - r.horizon_ns - r.width_ns}


def test_a_rollup_pickled_before_it_kept_its_oldest_window_still_evicts() -> None:
    r = SensorRollup(MINUTE_NS, 30 * MINUTE_NS)
    for m in (5, 0, 10):
        r.add(T0 + m * MINUTE_NS, {"v": 1.0})
    old = SensorRollup.__new__(SensorRollup)
    old.__setstate__((None, {k: getattr(r, k) for k in ("horizon_ns", "newest_ns", "too_late",
                                                        "width_ns", "windows")}))
    old.add(T0 + 100 * MINUTE_NS, {"v": 2.0})
    old.evict()
    assert list(old.windows) == [T0 + 100 * MINUTE_NS]


def test_line_protocol_escaping_and_types() -> None:
    assert line("m x", {"b": "v,1", "a": "w=2"}, {"f": 1.5, "i": 3, "s": 'say "hi"\\', "ok": True}, 7) \
        == 'm\\ x,a=w\\=2,b=v\\,1 f=1.5,i=3i,s="say \\"hi\\"\\\\",ok=true 7'


def test_window_aggregates_hand_checked() -> None:
    r = SensorRollup(MINUTE_NS, HOUR)
    for sec, v in ((5, 10.0), (20, 30.0), (50, 20.0), (65, 99.0)):
        r.add(T0 + sec * 10**9, {"pm25": v})
    first = r.windows[T0].as_fields()
    assert first == {"count": 3, "pm25_mean": 20.0, "pm25_min": 10.0, "pm25_max": 30.0, "pm25_last": 20.0}
    assert r.windows[T0 + MINUTE_NS].as_fields()["count"] == 1


def test_last_is_by_event_time_not_arrival() -> None:
    r = SensorRollup(MINUTE_NS, HOUR)
    r.add(T0 + 50 * 10**9, {"pm25": 5.0})
    r.add(T0 + 10 * 10**9, {"pm25": 7.0})
    assert r.windows[T0].as_fields()["pm25_last"] == 5.0


def _readings(n: int, start_s: int = 0, seq0: int = 0, sensor: str = "pm-1") -> list[Reading]:
    return [Reading(sensor, "air.pm", T0 + (start_s + 10 * i) * 10**9, seq0 + i,
                    {"pm25": float(i % 7), "pm10": float(i % 5)}) for i in range(n)]


def _final(points: list[tuple[str, str]]) -> dict[tuple[str, str], str]:
    """What InfluxDB keeps: the last line written for each (policy, series+time)."""
    out = {}
    for rp, ln in points:
        head, _fields, ts = ln.rsplit(" ", 2)
        out[(rp, head + " " + ts)] = ln
    return out


def test_late_backlog_gives_the_same_aggregates_as_in_order() -> None:
    readings = _readings(400)  # about 67 minutes of one sensor
    in_order = NodeState(6 * HOUR, detect=False)
    a = _final(in_order.process(NodeData("s/n", "s", "n", T0 + 2 * HOUR, readings)))
    late = NodeState(6 * HOUR, detect=False)
    outage = readings[100:300]
    points = late.process(NodeData("s/n", "s", "n", T0, readings[:100] + readings[300:]))
    points += late.process(NodeData("s/n", "s", "n", T0 + 2 * HOUR, outage))
    b = _final(points)
    assert {k: v for k, v in a.items() if k[0] != "agg_1h" or "ledger" not in k[1]} == \
        {k: v for k, v in b.items() if k[0] != "agg_1h" or "ledger" not in k[1]}


def test_duplicates_are_written_once_and_counted() -> None:
    state = NodeState(6 * HOUR, detect=False)
    rs = _readings(10)
    first = state.process(NodeData("s/n", "s", "n", T0, rs))
    again = state.process(NodeData("s/n", "s", "n", T0, rs))
    assert sum(1 for rp, _ in first if rp == "raw") == 10
    assert not any(rp == "raw" for rp, _ in again)
    ledger = [ln for rp, ln in again if ln.startswith("ledger")]
    assert "duplicates=10i" in ledger[0]
    assert "expected=10i" in ledger[0]


def test_warmup_zeros_are_stored_but_not_aggregated() -> None:
    state = NodeState(6 * HOUR, detect=False)
    rs = [Reading("pm-1", "air.pm", T0 + 10**9, 0, {"pm25": 0.0, "pm10": 0.0}, ("warmup",)),
          Reading("pm-1", "air.pm", T0 + 2 * 10**9, 1, {"pm25": 40.0, "pm10": 60.0})]
    points = state.process(NodeData("s/n", "s", "n", T0, rs))
    assert sum(1 for rp, _ in points if rp == "raw" and _.startswith("air_pm")) == 2
    agg = next(ln for rp, ln in points if rp == "agg_1m")
    assert "count=1i" in agg
    assert "pm25_min=40.0" in agg


def test_state_survives_pickling_mid_stream() -> None:
    rs = _readings(60)
    whole = NodeState(6 * HOUR)
    a = _final(whole.process(NodeData("s/n", "s", "n", T0, rs)))
    part = NodeState(6 * HOUR)
    points = part.process(NodeData("s/n", "s", "n", T0, rs[:25]))
    resumed: NodeState = pickle.loads(pickle.dumps(part))
    points += resumed.process(NodeData("s/n", "s", "n", T0, rs[25:]))
    assert a == _final(points)


def _record(topic: str, payload: bytes) -> JournalRecord:
    return JournalRecord("i0", 9, T0, topic, payload)


def test_records_split_into_data_and_dead_letters() -> None:
    good = _readings(2)
    body = json.loads(encode_batch("s", "n", good))
    body["readings"].append(dict(body["readings"][0], values={"pm25": "x", "pm10": 1}))
    data, points = decode_record(_record("urbanpulse/v1/s/n/data", json.dumps(body).encode()), 64)
    assert data is not None
    assert data.readings == good
    [(rp, dl)] = points
    assert rp == "raw"
    assert dl.startswith("dead_letter,node=n,reason=bad_value,site=s ")
    assert 'detail="readings[2].values.pm25' in dl
    assert dl.endswith(str(T0 + 3))


def test_bad_topic_and_oversized_payload_become_dead_letters() -> None:
    _, [(_, dl)] = decode_record(_record("other/topic", b"hello"), 64)
    assert "reason=bad_topic" in dl
    data, [(_, dl)] = decode_record(_record("urbanpulse/v1/s/n/data", b"{" * 5000), 64)
    assert data is None
    assert "truncated=true" in dl
    assert len(dl) < 1500


def test_state_from_an_older_version_resumes_with_defaults() -> None:
    old = NodeState(6 * HOUR, detect=False)
    old.process(NodeData("s/n", "s", "n", T0, _readings(3)))
    del old.__dict__["watch"], old.__dict__["detect"]  # as pickled before detection existed
    resumed: NodeState = pickle.loads(pickle.dumps(old))
    points = resumed.process(NodeData("s/n", "s", "n", T0, _readings(3, start_s=30, seq0=3)))
    assert sum(1 for rp, _ in points if rp == "raw") == 3


def test_a_silent_sensor_is_reported_by_the_clock_tick() -> None:
    from cloud.logic.records import NodeData as Data
    from urbanpulse.clock import from_epoch_ns

    state = NodeState(6 * HOUR)
    for i in range(60):
        ts = T0 + i * 10 * 10**9
        r = Reading("co2-1", "air.co2", ts, i, {"co2": 500.0 + i % 7})
        state.process(Data("s/n", "s", "n", ts, [r]))
        assert not any("type=silence" in p for _, p in state.tick(from_epoch_ns(ts)))
    assert state.take_alerts() == []
    quiet = state.tick(from_epoch_ns(T0 + 60 * 10 * 10**9 + 10 * 60 * 10**9))
    assert any(ln.startswith("events,") and "type=silence" in ln for _, ln in quiet), quiet
    [alert] = [a for a in state.take_alerts() if a.type == "silence"]
    assert alert.sensor == "co2-1"


def test_two_readings_in_the_same_microsecond_stay_two_points() -> None:
    state = NodeState(6 * HOUR, detect=False)
    same = [Reading("kiosk-1", "hospital.queue", T0, 7, {"ticket": 12.0, "called": 1.0}),
            Reading("kiosk-1", "hospital.queue", T0, 8, {"ticket": 13.0, "called": 1.0})]
    raw = [ln for rp, ln in state.process(NodeData("s/n", "s", "n", T0, same)) if rp == "raw"]
    assert len({ln.rsplit(" ", 1)[1] for ln in raw}) == 2


def test_numpy_numbers_keep_their_field_types() -> None:
    import numpy as np

    assert line("m", {"a": "b"}, {"x": np.float64(2.5), "n": np.int64(3)}, 1) == "m,a=b x=2.5,n=3i 1"  # type: ignore[dict-item]


def test_a_reading_beyond_the_horizon_asks_for_its_windows_to_be_rebuilt() -> None:
    from cloud.logic.recompute import RECOMPUTE, Recompute

    state = NodeState(2 * 60 * 10**9, detect=False)
    state.process(NodeData("s/n", "s", "n", T0, _readings(100)))  # 1000 s of data
    late = Reading("pm-1", "air.pm", T0 + 15 * 10**9, 1000, {"pm25": 99.0, "pm10": 1.0})
    points = state.process(NodeData("s/n", "s", "n", T0 + HOUR, [late]))
    asks = sorted((Recompute.decode(ln) for rp, ln in points if rp == RECOMPUTE), key=lambda a: a.rp)
    # The minute is gone from memory: rebuilt from the raw points. The hour is still held
    # (it has every reading of its hour so far), so the reading goes into it (1631aa6).
    assert [(a.rp, a.start_ns) for a in asks] == [("agg_1m", T0)]
    (hour,) = [ln for rp, ln in points if rp == "agg_1h" and ln.startswith("air_pm,")]
    assert " count=101i," in hour
    assert hour.endswith(f" {T0}")
    rows = [{"time": T0 + 5 * 10**9, "pm25": 10.0, "pm10": 2.0, "seq": 0, "sensor": "pm-1"},
            {"time": T0 + 15 * 10**9, "pm25": 99.0, "pm10": 1.0, "seq": 1000, "sensor": "pm-1"},
            {"time": T0 + 25 * 10**9, "pm25": 0.0, "pm10": 0.0, "seq": 2, "flags": "warmup"}]
    rebuilt = asks[0].rebuild(rows)
    assert rebuilt is not None
    assert rebuilt.startswith("air_pm,kind=air.pm,node=n,sensor=pm-1,site=s count=2i,")
    assert "pm25_mean=54.5" in rebuilt
    assert "pm25_last=99.0" in rebuilt


# A Window pickled by the version before windows went compact (slots dataclass holding
# FieldAgg objects): 1 reading, pm25 = 2.0 at t = 61 in the window starting at 60.
OLD_WINDOW_PICKLE = (
    b"\x80\x05\x95\xc2\x00\x00\x00\x00\x00\x00\x00\x8c\x12cloud.logic.rollup\x94\x8c\x06Window"
    b"\x94\x93\x94)\x81\x94N}\x94(\x8c\x08start_ns\x94K<\x8c\x05count\x94K\x01\x8c\x06fields\x94}"
    b"\x94\x8c\x04pm25\x94h\x00\x8c\x08FieldAgg\x94\x93\x94)\x81\x94N}\x94(\x8c\x01n\x94K\x01\x8c"
    b"\x05total\x94G@\x00\x00\x00\x00\x00\x00\x00\x8c\x03low\x94G@\x00\x00\x00\x00\x00\x00\x00\x8c"
    b"\x04high\x94G@\x00\x00\x00\x00\x00\x00\x00\x8c\x07last_ts\x94K=\x8c\x04last\x94G@\x00\x00\x00"
    b"\x00\x00\x00\x00u\x86\x94bsu\x86\x94b.")


def test_a_window_from_an_older_snapshot_loads_and_keeps_aggregating() -> None:
    window = pickle.loads(OLD_WINDOW_PICKLE)
    window.add(62, {"pm25": 6.0})
    assert window.as_fields() == {"count": 2, "pm25_mean": 4.0, "pm25_min": 2.0, "pm25_max": 6.0,
                                  "pm25_last": 6.0}
    assert pickle.loads(pickle.dumps(window)) == window


def test_window_field_text_is_the_line_of_its_fields() -> None:
    r = SensorRollup(MINUTE_NS, 3600 * 10**9)
    for i, (pm25, pm10) in enumerate([(1.5, 3.0), (0.1, 7.25), (1e-7, 2.0)]):
        r.add(T0 + i, {"pm25": pm25, "pm10": pm10})
    window = r.windows[T0]
    assert f"m {window.field_text()} 0" == line("m", {}, window.as_fields(), 0)
    assert window.field_text().startswith("count=3i,pm10_mean=4.083333333333333,")


_VALUE = st.sampled_from([0, 1, -0.0, 0.0, 7, 2.5, 1e-7, 123456.75, -3.0])


@given(st.lists(st.dictionaries(st.sampled_from(["pm25", "pm10", "co2"]), _VALUE, min_size=1),
                min_size=1, max_size=4))
def test_a_window_holding_its_first_reading_is_the_window_that_added_it(
        readings: list[dict[str, float]]) -> None:
    """A new window keeps its first reading as it came (`hold`): its text, fields, equality
    and pickle are those of a window that `add`ed it, before and after more readings."""
    held, added = Window(0, 0, {}), Window(0, 0, {})
    held.hold(10, readings[0])
    added.add(10, readings[0])
    assert held.field_text() == added.field_text()
    assert f"m {held.field_text()} 0" == line("m", {}, added.as_fields(), 0)
    resumed = pickle.loads(pickle.dumps(held))
    for i, values in enumerate(readings[1:], 11):
        for window in (held, added, resumed):
            window.add(i, values)
    assert held.field_text() == added.field_text() == resumed.field_text()
    assert held == added == resumed
    assert held.fields == added.fields


def test_cached_float_texts_keep_the_sign_of_zero_and_write_ints_as_floats() -> None:
    """Float texts are cached by value, and 0.0 == -0.0 == 0 == False as dict keys."""
    for order in ([0.0, -0.0, 0, 1, 1.0, -0.0], [-0.0, 0, 0.0, 1.0, 1]):
        assert [float_fields({"x": v}) for v in order] == [f"x={float(v)!r}" for v in order]
