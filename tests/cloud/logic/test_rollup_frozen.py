"""A rollup keeps its closed windows frozen (the bytes of their compact state): a late
reading thaws one and gets the point a never-frozen window gives, a snapshot copies the
frozen bytes as they are and loads them still frozen, snapshots of the forms before load and
freeze, and a frozen window costs about its pickled size in memory."""

from __future__ import annotations

import base64
import pickle
import random
import zlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bench.pipeline.node_state_size import deep_size
from cloud.logic.rollup import (
    HOUR_NS,
    INDEXED_ROLLUP,
    MINUTE_NS,
    SensorRollup,
    Window,
)
from tests.cloud.logic.rollup_feed import NeverFrozen, feed, texts

T0 = 1_795_000_000_000_000_000
S = 10**9


def test_a_late_reading_thaws_its_window_and_writes_the_point_of_one_never_frozen() -> None:
    frozen, live = SensorRollup(MINUTE_NS, HOUR_NS), NeverFrozen(MINUTE_NS, HOUR_NS)
    for i in range(30 * 6):  # 30 minutes, a reading each 10 s
        ts = T0 + i * 10 * S
        for r in (frozen, live):
            feed(r, ts, {"pm25": 10.0 + (i % 13) * 0.7, "pm10": 40.0 - i * 0.1}, i)
    start = T0 - T0 % MINUTE_NS + 5 * MINUTE_NS
    assert start in frozen.frozen
    assert start not in frozen.windows
    assert len(frozen.windows) <= 3  # the windows of the last 2 minutes past the newest's
    late = start + 30 * S + 1
    assert feed(frozen, late, {"pm25": 99.5, "pm10": 0.5}, 999) == \
        feed(live, late, {"pm25": 99.5, "pm10": 0.5}, 999)
    assert start in frozen.windows  # thawed
    for i in range(30 * 6, 31 * 6):  # the line moves on: it freezes again
        for r in (frozen, live):
            feed(r, T0 + i * 10 * S, {"pm25": 1.0, "pm10": 2.0}, i)
    assert start in frozen.frozen
    assert texts(frozen) == texts(live)


_STEP = st.tuples(st.integers(-200, 90), st.sampled_from([0.0, -0.0, 1, 2.5, 1e-7, 7.25, 1e16]),
                  st.integers(0, 3))


@settings(max_examples=60, deadline=None)
@given(st.lists(_STEP, min_size=1, max_size=120), st.sampled_from([MINUTE_NS, HOUR_NS]),
       st.sampled_from([30 * MINUTE_NS, 2 * HOUR_NS]), st.integers(0, 119), st.integers(0, 119))
def test_frozen_windows_write_every_point_a_never_frozen_rollup_writes(
        steps: list[tuple[int, float, int]], width: int, horizon: int, snap_at: int,
        horizon_at: int) -> None:
    """Readings moving on with late ones (up to 200 minutes behind), a snapshot and a new
    horizon on the way: the same point for each reading, the same windows in the end."""
    frozen, live = SensorRollup(width, horizon), NeverFrozen(width, horizon)
    newest = T0
    for i, (back, v, seq) in enumerate(steps):
        if i == snap_at:
            frozen = pickle.loads(pickle.dumps(frozen, protocol=pickle.HIGHEST_PROTOCOL))
        if i == horizon_at:
            for r in (frozen, live):
                r.set_horizon(horizon // 2 if horizon > HOUR_NS else 3 * horizon)
        if back <= 0:  # the stream moves on by -back minutes
            newest += -back * MINUTE_NS + 7 * S
            ts = newest
        else:
            ts = newest - back * MINUTE_NS
        values = {"v": v, "w": float(i)}
        assert feed(frozen, ts, values, seq) == feed(live, ts, values, seq)
        assert frozen.too_late == live.too_late
    assert texts(frozen) == texts(live)
    assert all(isinstance(b, bytes) for b in frozen.frozen.values())


def _rollup_with_frozen_windows() -> SensorRollup:
    r = SensorRollup(MINUTE_NS, HOUR_NS)
    for i in range(50 * 4):  # 50 minutes, a reading each 15 s
        feed(r, T0 + i * 15 * S, {"pm25": 3.0 + i % 5, "pm10": 9.5}, i)
    assert len(r.frozen) >= 45
    return r


def test_a_snapshot_copies_frozen_windows_as_they_are_and_loads_them_frozen(
        monkeypatch: pytest.MonkeyPatch) -> None:
    r = _rollup_with_frozen_windows()
    calls = []
    getstate = Window.__getstate__

    def counted(window: Window) -> tuple[object, ...]:
        calls.append(window.start_ns)
        return getstate(window)

    monkeypatch.setattr(Window, "__getstate__", counted)
    snapshot = pickle.dumps(r, protocol=pickle.HIGHEST_PROTOCOL)
    assert sorted(calls) == sorted(r.windows)  # the live windows only: no frozen one pickled again
    assert all(frozen in snapshot for frozen in r.frozen.values())  # its bytes copied as they are
    setstate = Window.__setstate__
    made = []

    def counted_set(window: Window, state: tuple[object, ...]) -> None:
        made.append(state[0])
        setstate(window, state)

    monkeypatch.setattr(Window, "__setstate__", counted_set)
    resumed: SensorRollup = pickle.loads(snapshot)
    assert sorted(made) == sorted(r.windows)  # only the live ones made at loading
    assert resumed.__getstate__()[0] == INDEXED_ROLLUP
    assert resumed.frozen == r.frozen
    assert list(resumed.frozen) == sorted(resumed.frozen)
    monkeypatch.undo()
    assert texts(resumed) == texts(r)
    late = T0 + 10 * MINUTE_NS + 1
    assert feed(resumed, late, {"pm25": 0.5}) == feed(r, late, {"pm25": 0.5})


# A minute and an hour rollup pickled by the code before windows froze ("rollup-3", the hour
# one with a raised horizon's floor): 60 readings each 20 s, then one late in minute 3.
ROLLUP_3 = (
    "eNqVll9IVFkcx2+OTSPOlgjFWLtmYM4444xTruKso93W6hYnFssMI5a1zG0CXf+U0LIbzb5s7jALwt4wK0goyl6W"
    "2GKLiLCHoqAiiqiHLWahQitQWKF5KOrMOb/fT8dzm9bzdO7v3Pu5H8/9/sYTnXt4rVMTI57f2t7ZuyvQ3rl7T2ug"
    "p7O9vbfLjDsb237Y29mzWV7+YZb+YnriDrnqrzBjc7VmI/lZzK4NXQqus8Uc8458U5BXNOaKObSJk7mThWOuPqZ9"
    "a3o8UwU254DJb4w+2P6OXx3gvOyujpWVpqEXgwm/XhHk13Xyupdph8x9/Blt/Stb1lJOsPGnIg6OZTZ+16AY/PEK"
    "MfhEFI7ylzxevCWXP0Alfn84IaltkRwANMmCodfgpFZOpgNgjdnaeg+lVIZWvl2gqKyKAqD4dmrcMfTl0omTgjs3"
    "FggSlJjd0LSZKptHAFCNKl+RCgFgjdlBJfnj5BcplWxSyTb0lp/R4HsxDL05gaS+s2vcUkVqshzjSjJNhQO25kmD"
    "VZOoUqcpgDCo5IBKw7XXPmVX9NNgUIKkEunESYmJcKUgQYk5LT5QI25raMaXmg6ANeYElWHH85CisrpAxIC/bhAm"
    "biJVV1fWCxKU2ALjiqKyRflAdSqgFgGgojU8MVSVuNh8/jqMrZti23/Qv0mqQGzzjXBSUdHTI0JfYzoA1lg+qDQP"
    "PGxSVL5GgBtj66HYjt5Y/p0gQYkttIhtY4ZdIQCU2EJQOff0Tquqshc2w4Ox9UgnTtLnF3ZIFYita5bNTABsZheo"
    "OEpudKsqL8CgFEmlFNsjTYt+EiQosSUWKpmamQDYzEtApaXj6kFFpX4bpLUUY+sl0sTx+b8JEpRYoUVsm0bSIzL9"
    "AxEAm7kQVC5d+Pt3VeU2xNaLsfVSbNc/sw9IFYjtMovYZmpmAmAzLwOVvLd/HlNU1mADeDG2PortkO/9KUGCEiu2"
    "iG2mZiYANnMxqETqz5xVVc7DZvgwtj6KbbLnzV9SBWLrtshKpmYmADazG1RGYicuKiprS8CgDEllFNuGy+MjggQl"
    "5jXCE7NpZgJgM3tBxXV/4Lqqgmktw4mfSMNzRu8KEpSY3yq2GZqZANjMflDpKuh/oKisc0JE/OJDfcknFFttQ+If"
    "qQKxDf6/HqbnsIeDYHCzpe9f1QBz78e0BqQKJzX3P34pSFBiFVa/bBl6mADYwxWgUjQcHVdV/oO0BjCtAUrruUf3"
    "klIF0lo1y3/IBMAergKV/eP73ykqBhqUI6mc0upYestelCJBiYUs0pqphwmAPRwClXtV3bl8gWWRShY/vJ2HZJRj"
    "WstpV+BUSyVWMzOtHMCiM9M61cMEwLTWpFTa9pk7I1mpM3Ukm87Qdk3v3hG3p52lE29CQ3iWnrpkYfIPG3qf8T41"
    "6Bj9Cf/a1Wn+HDAY+fhWWvvvSP06HR699fmYi/8lv5qBDx0sY+k="
)


def _build_as_the_pinned_ones() -> tuple[SensorRollup, SensorRollup]:
    m, h = SensorRollup(MINUTE_NS, HOUR_NS), SensorRollup(HOUR_NS, HOUR_NS)
    for i in range(60):
        ts = T0 + i * 20 * S + 7
        for r in (m, h):
            feed(r, ts, {"pm25": 10.0 + i * 0.1, "pm10": 30.0 - (i % 7)}, i)
    window = m.window(T0 + 3 * MINUTE_NS + 5)
    assert window is not None
    window.add(T0 + 3 * MINUTE_NS + 5, {"pm25": 99.5, "pm10": 1.25}, 200)
    h.set_horizon(2 * HOUR_NS)
    return m, h


def test_a_snapshot_from_before_windows_froze_loads_and_freezes() -> None:
    old_m, old_h = pickle.loads(zlib.decompress(base64.b64decode("".join(ROLLUP_3))))
    m, h = _build_as_the_pinned_ones()
    assert not old_m.frozen  # all live as they were pickled
    assert m.frozen
    assert texts(old_m) == texts(m)
    assert texts(old_h) == texts(h)
    assert old_h.kept_ns == h.kept_ns
    rng = random.Random(5)
    for i in range(60, 120):
        ts = T0 + i * 20 * S + 7 if i % 5 else T0 + rng.randrange(0, i * 20) * S
        for old, new in ((old_m, m), (old_h, h)):
            values = {"pm25": rng.uniform(0, 50), "pm10": 1.0}
            assert feed(old, ts, values, i) == feed(new, ts, values, i)
    assert old_m.frozen  # its closed windows frozen by the first eviction
    assert texts(old_m) == texts(m)
    assert texts(old_h) == texts(h)


def test_a_rollup_of_the_forms_before_resumes_and_freezes() -> None:
    """rollup-2 (no reading numbers) and the pre-compact form (None, slots) load too."""
    m, _ = _build_as_the_pinned_ones()
    states = [(start, *w.__getstate__()[1:]) for start, w in
              ((s, m.window_at(s)) for s in m.starts()) if w is not None]
    old_fields = [(s, c, {k: a[:6] + a[7:] for k, a in f.items()}, *[x[:2] for x in rest])
                  for s, c, f, *rest in states]
    two = SensorRollup.__new__(SensorRollup)
    two.__setstate__(("rollup-2", m.width_ns, m.horizon_ns, m.newest_ns, min(m.starts()), True,
                      m.too_late, old_fields))
    before = SensorRollup.__new__(SensorRollup)
    windows = {}
    for state in states:
        w = Window.__new__(Window)
        w.__setstate__(state)
        windows[w.start_ns] = w
    before.__setstate__((None, {"width_ns": m.width_ns, "horizon_ns": m.horizon_ns,
                                "newest_ns": m.newest_ns, "too_late": m.too_late,
                                "windows": windows}))
    for r in (two, before):
        assert texts(r) == texts(m)
        ts = T0 + 25 * MINUTE_NS
        assert feed(r, ts, {"pm25": 1.0, "pm10": 2.0}, 500) == feed(
            pickle.loads(pickle.dumps(m)), ts, {"pm25": 1.0, "pm10": 2.0}, 500)
        assert r.frozen
        assert all(start < r.cold_ns for start in r.frozen)


def test_a_frozen_window_costs_about_its_pickled_size_in_memory() -> None:
    live = NeverFrozen(MINUTE_NS, 6 * HOUR_NS)
    frozen = SensorRollup(MINUTE_NS, 6 * HOUR_NS)
    for i in range(6 * 60 * 6):  # 6 hours of an air station's readings, each 10 s
        values = {"pm25": 12.0 + (i % 17) * 0.3, "pm10": 30.0 + (i % 11) * 0.5}
        for r in (live, frozen):
            feed(r, T0 + i * 10 * S, values, i)
    n = len(frozen.frozen)
    assert n >= 355
    per_frozen = (deep_size(frozen) - deep_size(frozen.windows)) / n
    per_live = deep_size(live) / len(live.windows)
    pickled = sum(len(b) for b in frozen.frozen.values()) / n
    # the bytes object's header (33), its slot in the list of bytes (8), its start and id
    # in the index's arrays (16); a dict of them cost its int key (36) and a slot (about 50)
    assert per_frozen < pickled + 70, (per_frozen, pickled)
    assert per_frozen < per_live / 3, (per_frozen, per_live)
