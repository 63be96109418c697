"""`FaultMonitor.update`'s fast path (the next number, stamped after the reading before,
nothing held: most readings) gives what the general path (`_arrival` and the rules it
calls) gives: the same events and the same state, pickled byte for byte.

The general path is the one taken for stamps given as datetimes, so each random stream is
fed to two monitors: one as the dataflow feeds it (epoch nanoseconds, the fast path
wherever it applies), one with the same stamps as datetimes (never the fast path). The
streams mix what the rules must tell apart: regular readings, readings arriving in batches,
numbers skipped, repeated and going back, stamps jumping forward and back, the next number
stamped as the reading before, readings taken unjudged or stamped before the newest, the
node's heartbeats (agent starts, unsynchronised clocks; a start within the gap to the next
reading, which is sometimes stamped at that start), ticks with the node's quiets, stuck
values, zeros, spikes, values out of range or at the cut level; every field of the fault
settings, and fields with the defaults. Mutants of the fast path's conditions that a review
found surviving (`at > last_ts` as `>=`, the agent-start check dropped, `last_ts < start <= at`
as `< at`) fail it on every field and seed."""

from __future__ import annotations

import pickle
import random
from collections.abc import Callable
from typing import Any

import pytest

from cloud.detect.faults import FAULT_SETTINGS, FaultEvent, FaultMonitor
from urbanpulse.clock import from_epoch_ns
from urbanpulse.wire.kinds import KINDS

T0_NS = 1_714_000_000 * 10**9
FIELDS = sorted({*FAULT_SETTINGS, ("air.pm", "temperature_c"), ("air.co2", "temperature_c")})

# A call: (method name, its args with every stamp as epoch ns).
Call = tuple[str, tuple[Any, ...]]


def _us(ns: float) -> int:
    """A stamp in ns on whole µs (a datetime holds µs: both forms then say the same)."""
    return round(ns / 1000) * 1000


def _stream(rng: random.Random, kind: str, field: str, steps: int) -> list[Call]:
    spec = KINDS[kind].fields[field]
    low = 0.0 if spec.low is None else float(spec.low)
    high = 100.0 if spec.high is None else float(spec.high)
    settings = FAULT_SETTINGS.get((kind, field))
    cut = None if settings is None else settings.cut_at
    interval = rng.choice([10, 30, 60, 300]) * 1e9
    t, seq, rx = T0_NS, 0, T0_NS + 2 * 10**9
    value = (low + high) / 2
    mode, mode_left = "normal", 0
    calls: list[Call] = []
    for _ in range(steps):
        if mode_left <= 0:
            mode = rng.choices(["normal", "stuck", "zeros", "spikes", "range", "cut"],
                               [10, 2, 2, 1, 1, 1])[0]
            mode_left = rng.randint(3, 40)
        mode_left -= 1
        if mode == "normal":
            value = min(high, max(low, value + rng.gauss(0, (high - low) / 200)))
        elif mode == "zeros":
            value = 0.0
        elif mode == "spikes":
            value = rng.choice([value, high * 0.9, low])
        elif mode == "range":
            value = rng.choice([high * 1.5 + 1, low - 1, value])
        elif mode == "cut" and cut is not None:
            value = cut + rng.choice([0.0, 1.0])
        v = float(round(value, 3))
        r = rng.random()
        if rng.random() < 0.7:  # a new message; else the same one (a batch)
            rx = max(rx, int(t + rng.uniform(0.1, 5) * 1e9)) + rng.randint(0, 10**9)
        rx = _us(rx)
        values = {field: v, "called": float(rng.random() < 0.5)}
        if r < 0.60:
            seq += 1
            t = _us(t + interval * rng.uniform(0.9, 1.1))
            calls.append(("update", (t, v, seq, values, rx)))
        elif r < 0.61:  # the next number, stamped as the reading before (not after it)
            seq += 1
            calls.append(("update", (t, v, seq, values, rx)))
        elif r < 0.62:
            # The agent (re)started within the gap to the next reading, its heartbeat in first;
            # sometimes the next reading is stamped at that start itself (a start at the
            # reading's stamp is within the gap: not a clock jump).
            started = _us(t + rng.uniform(0, interval))
            calls.append(("node_heartbeat", (_us(started + rng.uniform(0, 5) * 1e9),
                                             rng.choice([rx, None]), started,
                                             rng.choice([True, None]))))
            if rng.random() < 0.5:
                seq += 1
                t = started
                calls.append(("update", (t, v, seq, values, rx)))
        elif r < 0.66:
            seq += rng.randint(2, 7)
            t = _us(t + interval * (seq % 7 + 1) * rng.choice([0.2, 1.0, 1.0]))
            calls.append(("update", (t, v, seq, values, rx)))
        elif r < 0.69:
            seq += 1
            t = _us(t + rng.uniform(100, 20_000) * 1e9)  # a clock set forward, or a restart
            calls.append(("update", (t, v, seq, values, rng.choice([rx, t + 10**9, None]))))
        elif r < 0.71:
            seq += 1
            t = _us(t - rng.uniform(1, 600) * 1e9)  # a clock set back
            calls.append(("update", (t, v, seq, values, rx)))
        elif r < 0.74:  # a late or repeated number, stamped before the newest
            late = max(0, seq - rng.randint(0, 8))
            stamp = _us(t - rng.uniform(0, 8) * interval)
            calls.append(("stamped_before", (stamp, v, late)) if rng.random() < 0.5
                         else ("update", (stamp, v, late, values, rx)))
        elif r < 0.77:
            seq += rng.randint(1, 3)
            calls.append(("unjudged", (seq, rng.choice([rx, rx, None]))))
        elif r < 0.81:
            started = _us(t - rng.uniform(0, 4000) * 1e9) if rng.random() < 0.3 else None
            calls.append(("node_heartbeat", (_us(t + rng.uniform(-5, 5) * 1e9),
                                             rng.choice([rx, rx, None]), started,
                                             rng.choice([True, True, False, None]))))
        elif r < 0.86:
            now = rx + int(rng.uniform(0, 20) * interval)
            quiets = [(now - int(rng.uniform(2, 10) * interval), now - int(interval))] \
                if rng.random() < 0.3 else []
            calls.append(("tick", (now, quiets, rng.choice([75.0, 300.0]))))
            rx = max(rx, now)
        elif r < 0.88:
            t = _us(t + interval)
            calls.append(("update", (t, v, None, values, rx)))
        elif r < 0.89:
            seq += 1
            t = _us(t + interval)
            calls.append(("heartbeat", (t, seq)))
        else:
            seq += 1
            t = _us(t + interval * rng.uniform(0.5, 1.5))
            calls.append(("update", (t, v, seq, values, None)))
    return calls


def _as_datetimes(name: str, args: tuple[Any, ...]) -> tuple[Any, ...]:
    """The call's stamps as datetimes: `update` then takes the general path."""
    def dt(ns: int | None) -> Any:
        return None if ns is None else from_epoch_ns(ns)
    if name == "update":
        return (dt(args[0]), *args[1:4], dt(args[4]) if len(args) > 4 else None)
    if name == "node_heartbeat":
        return (dt(args[0]), dt(args[1]), dt(args[2]), args[3])
    if name == "tick":
        return (dt(args[0]), [(q0 // 1000, q1 // 1000) for q0, q1 in args[1]], args[2])
    return args


def _as_fed(name: str, args: tuple[Any, ...]) -> tuple[Any, ...]:
    """The call as the dataflow makes it: stamps of readings in ns, the rest as datetimes."""
    if name in ("node_heartbeat", "tick"):
        return _as_datetimes(name, args)
    return args


@pytest.mark.parametrize(("kind", "field"), FIELDS)
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_the_fast_path_gives_what_the_general_path_gives(kind: str, field: str, seed: int,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    rng = random.Random(f"{kind}/{field}/{seed}")
    calls = _stream(rng, kind, field, 3000)
    fed, general = FaultMonitor(kind, field, "s1"), FaultMonitor(kind, field, "s1")
    arrivals = {id(fed): 0, id(general): 0}
    arrival: Callable[..., None] = FaultMonitor._arrival

    def counted(self: FaultMonitor, *args: Any, **kwargs: Any) -> None:
        arrivals[id(self)] += 1
        arrival(self, *args, **kwargs)

    monkeypatch.setattr(FaultMonitor, "_arrival", counted)
    raised = 0
    for step, (name, args) in enumerate(calls):
        got: list[FaultEvent] = getattr(fed, name)(*_as_fed(name, args))
        want: list[FaultEvent] = getattr(general, name)(*_as_datetimes(name, args))
        assert got == want, f"step {step}: {name}{args}"
        raised += len(got)
        if step % 100 == 0 or step == len(calls) - 1:
            assert fed.__getstate__() == general.__getstate__(), f"step {step}: {name}{args}"
    assert pickle.dumps(fed) == pickle.dumps(general)
    updates = sum(name == "update" for name, _ in calls)
    # Both paths taken often: in these streams about half the updates have the fast path.
    assert arrivals[id(general)] >= updates
    assert 0.2 * updates < arrivals[id(fed)] < 0.8 * updates
    assert raised > 0
