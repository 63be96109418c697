"""The node step's time-based fault rules (a sensor silent while its node still talks) tick
on the time the ingest received the node's messages, not on the processor's clock
(cloud/flow.py NodeLogic, called as Bytewax calls it). The processor's clock runs on while
the dataflow waits (InfluxDB down, or refusing the writer) or catches up a backlog, when
what arrived meanwhile is not read yet: ticking on it raised a false silence for every fast
sensor when writes resumed (seen in a demo whose writer lost WRITE for 60 s)."""

from __future__ import annotations

import pickle

from cloud.flow import TICK, NodeLogic
from cloud.journal import JournalRecord
from cloud.logic.node import NodeState
from urbanpulse.clock import SystemClock, to_epoch_ns
from urbanpulse.wire import Reading, data_topic, encode_batch

SITE, NODE = "hn", "aq-1"
S = 10**9


def _records(t0_ns: int, seconds: int, slow_until: int) -> list[JournalRecord]:
    """pm-1 every 10 s; co2-1 every 60 s until `slow_until` s (silent after 3 intervals);
    each message received 10 ms after its stamp."""
    out = []
    for k, t in enumerate(range(0, seconds, 10)):
        stamp = t0_ns + t * S
        readings = [Reading("pm-1", "air.pm", stamp, k + 1, {"pm25": 12.0 + k % 5, "pm10": 20.0})]
        if t % 60 == 0 and t < slow_until:
            readings.append(Reading("co2-1", "air.co2", stamp, t // 60 + 1, {"co2": 420.0 + k % 7}))
        out.append(JournalRecord("i0", k, stamp + 10_000_000, data_topic(SITE, NODE),
                                 encode_batch(SITE, NODE, readings)))
    return out


def _silences(logic: NodeLogic, batches: list[list[JournalRecord]]) -> list[str]:
    found = []
    for batch in batches:
        out, _ = logic.on_batch(batch)
        found += [line for points, *_ in out for _, line in points
                  if line.startswith("events,") and "type=silence" in line]
    return found


def test_a_backlog_read_late_raises_no_silence_for_sensors_that_kept_reporting() -> None:
    """Messages received 20 minutes ago, read only now (the dataflow waited for InfluxDB):
    every sensor reported on time by the ingest's clock."""
    t0 = to_epoch_ns(SystemClock().now()) - 20 * 60 * S
    records = _records(t0, 15 * 60, slow_until=15 * 60)
    assert _silences(NodeLogic(NodeState(3600 * S), 4096), [records]) == []


def test_a_sensor_silent_by_the_arrival_clock_is_raised_however_fast_it_is_read() -> None:
    """co2-1 stops after 12 minutes of 20 (its interval learnt from 10 gaps): raised once,
    from its arrivals, whether the
    messages come one per call or all in one (the processor catching up in a burst, which
    the processor's clock would not have ticked through), with the same event."""
    t0 = to_epoch_ns(SystemClock().now()) - 40 * 60 * S
    records = _records(t0, 20 * 60, slow_until=12 * 60)
    one_by_one = _silences(NodeLogic(NodeState(3600 * S), 4096), [[r] for r in records])
    in_one = _silences(NodeLogic(NodeState(3600 * S), 4096), [records])
    assert len(one_by_one) == 1, one_by_one  # co2-1's one field, and nothing of pm-1
    assert "sensor=co2-1" in one_by_one[0]
    assert in_one == one_by_one
    assert TICK.total_seconds() == 30


def test_a_restart_from_a_snapshot_ticks_as_the_run_it_resumes() -> None:
    """The processor restarted from an epoch's snapshot reads the epochs not committed again
    and must raise the same events: a SILENCE stamped otherwise is a second event point (and
    a second alert) beside the one written before the crash. The tick schedule was the
    step's own, not the snapshot's: after a restart the first tick came 30 s after the first
    record read, not when the run resumed would have ticked (co2-1's silence 10 s later)."""
    t0 = to_epoch_ns(SystemClock().now()) - 40 * 60 * S
    records = _records(t0, 20 * 60, slow_until=12 * 60)
    whole = _silences(NodeLogic(NodeState(3600 * S), 4096), [[r] for r in records])
    assert len(whole) == 1, whole
    for cut in range(60, 80):  # snapshots around the silence (co2-1's last reading at 11 min)
        logic = NodeLogic(NodeState(3600 * S), 4096)
        before = _silences(logic, [[r] for r in records[:cut]])
        resumed = NodeLogic(pickle.loads(logic.snapshot()), 4096)
        assert before + _silences(resumed, [[r] for r in records[cut:]]) == whole, cut
