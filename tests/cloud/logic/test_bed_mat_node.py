"""A bed mat's readings through the dataflow's node step (`NodeState.process`, decoded from
journal records as the dataflow does): the contract takes load and motion, the raw points
carry them, and a mat whose motion goes exactly flat raises a stuck event."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

from cloud.journal import JournalRecord
from cloud.logic.node import NodeState
from cloud.logic.records import RP_RAW, decode_record
from cloud.logic.rollup import HOUR_NS
from urbanpulse.clock import to_epoch_ns
from urbanpulse.wire import Reading, data_topic, encode_batch

T0 = datetime(2026, 12, 1, 8, tzinfo=UTC)


def test_mat_readings_are_stored_raw_and_a_flat_motion_is_stuck() -> None:
    state = NodeState(HOUR_NS)
    rng = random.Random(7)
    lines: list[str] = []
    raw: list[str] = []
    for i in range(20):
        ts = T0 + timedelta(minutes=5 * i)
        live = i < 15
        values = {"occupied": 1, "load": 0.55 + 3e-5 * rng.gauss(0, 1) if live else 0.5512,
                  "motion": 0.01 * (1 + 0.1 * rng.gauss(0, 1)) if live else 0.0}
        payload = encode_batch("hn-bachmai", "ward-b",
                               [Reading("bed-01", "hospital.bed", to_epoch_ns(ts), i, values)])
        received = to_epoch_ns(ts + timedelta(milliseconds=20))
        data, points = decode_record(
            JournalRecord("i1", i + 1, received, data_topic("hn-bachmai", "ward-b"), payload),
            1 << 16)
        assert data is not None
        points += state.process(data)
        lines += [ln for _, ln in points]
        raw += [ln for rp, ln in points if rp == RP_RAW and ln.startswith("hospital_bed,")]
    assert len(raw) == 20
    assert all("load=" in ln and "motion=" in ln and "occupied=1" in ln for ln in raw)
    stuck = [ln for ln in lines if ln.startswith("events,") and "type=stuck" in ln]
    assert len(stuck) == 1, stuck
    assert 'field="motion"' in stuck[0]
    assert "sensor=bed-01" in stuck[0]
    assert "delay_s=600.0" in stuck[0]  # 3 readings over 10 min
    assert not any(ln.startswith("events,") and "type=dead_letter" in ln for ln in lines)
