"""A node whose agent sends its readings in batches (`outbox.batch_max_delay_s` longer than
a fast sensor's silence limit, here 60 s against a 10-s sensor's 30 s) while its heartbeats
come every 30 s: the ticks the heartbeats carry found the sensor's newest reading older than
its limit between two batches, and raised a false SILENCE every minute or so. A sensor's
silence is judged on the cloud's arrival clock, so its limit is also that many of the gaps
at which its readings arrive, when longer; a sensor that stops on such a node is still
raised. Fed through the dataflow's node step (cloud.flow.NodeLogic), a record at a time."""

from __future__ import annotations

from cloud.flow import NodeLogic
from cloud.journal import JournalRecord
from cloud.logic.node import NodeState
from urbanpulse.clock import from_epoch_ns
from urbanpulse.wire import Reading, data_topic, encode_batch, encode_status, status_topic

SITE, NODE = "hn", "aq-1"
S = 10**9
T0 = 1_780_000_000 * S


def _records(batch_s: int, seconds: int, dead_from: int | None = None) -> list[JournalRecord]:
    """pm-1 every 10 s (until `dead_from` s), its readings sent every `batch_s` s; a
    heartbeat every 30 s, between the batches; each received 10 ms after it was sent."""
    msgs: list[tuple[int, str, bytes]] = []
    pending: list[Reading] = []
    seq = 0
    for t in range(seconds):
        if t % 10 == 0 and (dead_from is None or t < dead_from):
            seq += 1
            pending.append(Reading("pm-1", "air.pm", T0 + t * S, seq,
                                   {"pm25": 12.0 + seq % 5, "pm10": 20.0 + seq % 7}))
        if t % batch_s == batch_s - 1 and pending:
            msgs.append((T0 + t * S, data_topic(SITE, NODE), encode_batch(SITE, NODE, pending)))
            pending = []
        if t % 30 == 15:
            health = {"uptime_s": t + 100.0, "run_id": "r1",
                      "clock": {"jumps": 0, "synchronised": True}}
            msgs.append((T0 + t * S, status_topic(SITE, NODE),
                         encode_status("online", from_epoch_ns(T0 + t * S), health)))
    return [JournalRecord("i0", i, at + S // 100, topic, payload)
            for i, (at, topic, payload) in enumerate(msgs)]


def _silences(records: list[JournalRecord]) -> list[tuple[str, float]]:
    logic = NodeLogic(NodeState(3600 * S), 4096)
    found = []
    for rec in records:
        out, _ = logic.on_batch([rec])
        for points, *_ in out:
            for _, ln in points:
                if ln.startswith("events,") and "type=silence" in ln:
                    field = ln.split('field="')[1].split('"')[0]
                    found.append((field, int(ln.rsplit(" ", 1)[1]) / S - T0 / S))
    return found


def test_a_node_sending_its_readings_every_minute_raises_no_silence() -> None:
    for batch_s in (45, 60):
        assert _silences(_records(batch_s, 3600)) == [], batch_s


def test_a_sensor_dead_on_a_batched_node_is_still_raised_once() -> None:
    """pm-1's last reading at 1790 s (sent at 1799 s): raised for both fields, once each,
    within 3 of its arrival gaps (and a tick) of its last batch."""
    found = _silences(_records(60, 3600, dead_from=1800))
    assert sorted(f for f, _ in found) == ["pm10", "pm25"], found
    assert all(1799 + 180 <= at <= 1799 + 180 + 60 for _, at in found), found


def test_an_unbatched_node_raises_a_dead_fast_sensor_as_before() -> None:
    """A batch a second: the limit stays the sensor's 30 s."""
    found = _silences(_records(1, 3600, dead_from=1800))
    assert sorted(f for f, _ in found) == ["pm10", "pm25"], found
    assert all(1790 + 30 <= at <= 1790 + 30 + 60 for _, at in found), found
