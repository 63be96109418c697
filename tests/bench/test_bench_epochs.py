"""The epoch benchmark's warm city and the check that outputs do not wait for the epoch:
a copy of a node goes on from its base node's warm state (its readings are new to it, not
duplicates of the warm hours), the copies do not send in step, and a stateful step's
outputs reach the sink long before a 30 s epoch ends; a setting's form, EPOCH or EPOCH/N;
with `--influx`, a real InfluxDB for the children and influxd's CPU beside the processor's."""

from __future__ import annotations

import argparse
import gc
import json
import os
import pickle
import time
from pathlib import Path

import pytest

from bench.pipeline.epoch_outputs import delays
from bench.pipeline.epochs import (
    SNAPSHOT_PARTS,
    SPREAD_S,
    STEP_PARTS,
    _base_of,
    _copy_key,
    _influx_stack,
    _process_cpu_s,
    _raw_points,
    _setting,
    _Stats,
    _summary,
    _time_step_parts,
    epoch_rounds,
    main,
    make_city,
)
from cloud.config import parse_cloud_config
from cloud.flow import NodeLogic, node_key
from cloud.frozen_store import FrozenStore
from cloud.journal import JournalRecord
from urbanpulse.influx_http import InfluxHTTP


def _second(t: float, cpu: float, records: int) -> dict[str, object]:
    return {"kind": "second", "t": t, "cpu": cpu, "records": records, "lag_max": 0.1,
            "lag_p50": 0.05, "rss": 2**20, "store": 10}


def _summarised(tmp_path: Path, epoch: float, t0: float, marks: list[dict[str, object]],
                second: dict[str, object], end: float) -> dict[str, object]:
    """`_summary` of a first run's marks and last second, killed at `end` (after t0)."""
    journal = tmp_path / "journal" / "j.sqlite3"
    journal.parent.mkdir(exist_ok=True)
    journal.write_bytes(b"x")
    return _summary(epoch, [], t0, 0, [*marks, second], [], t0 + end, t0 + end + 1, None, None,
                    None, t0 + end + 10, t0 + end + 11, journal)


def test_a_copy_goes_on_from_its_base_nodes_warm_state() -> None:
    bases, live, _, pickled = make_city(2, 60.0, keys=["lang-ha/aq-1"], warm_hours=0.5)
    assert list(bases) == ["lang-ha/aq-1"]
    assert pickled == len(bases["lang-ha/aq-1"])
    keys = {node_key(JournalRecord("i0", 0, r.received_ns, r.topic, r.payload)) for r in live}
    assert keys == {"lang-ha-g0/aq-1-c0", "lang-ha-g0/aq-1-c1"}
    assert {_base_of(k) for k in keys} == {"lang-ha/aq-1"}
    assert [r.received_ns for r in live] == sorted(r.received_ns for r in live)
    assert all(0 <= r.at_s < 60.0 for r in live)
    first = {k: min(r.at_s for r in live if f"/{k.split('/')[1]}/" in r.topic) for k in keys}
    assert first["lang-ha-g0/aq-1-c1"] - first["lang-ha-g0/aq-1-c0"] > SPREAD_S / 2 - 2  # not in step

    logic = NodeLogic(pickle.loads(bases["lang-ha/aq-1"]), 1 << 16)
    assert logic.state.seqs  # the warm hours' sensors and their numbers
    mine = [r for r in live if "/aq-1-c1/" in r.topic]
    readings = sum(r.readings for r in mine)
    assert readings > 0
    raw = 0
    for offset, r in enumerate(mine):
        out, _ = logic.on_batch([JournalRecord("i0", offset, r.received_ns, r.topic, r.payload)])
        raw += sum(1 for points, *_ in out for rp, line in points
                   if rp == "raw" and ",sensor=" in line and "seq=" in line)
    assert raw == readings  # every reading taken in: none dropped as seen in the warm hours
    assert (logic.state.site, logic.state.node) == ("lang-ha-g0", "aq-1-c1")


def test_a_site_holds_at_most_a_hundred_copies_of_its_nodes() -> None:
    """As the at-pace runs group them: one site for every copy made a hospital of the
    150-copy sample hold 150 OPD halls, and the site step's work a message grow with it."""
    assert _copy_key("bach-mai/opd-hall", 99) == ("bach-mai-g0", "opd-hall-c99")
    assert _copy_key("bach-mai/opd-hall", 100) == ("bach-mai-g1", "opd-hall-c0")
    assert _copy_key("bach-mai/opd-hall", 299) == ("bach-mai-g2", "opd-hall-c99")
    assert {_base_of("/".join(_copy_key("bach-mai/opd-hall", c))) for c in (0, 150, 299)} == {
        "bach-mai/opd-hall"}


def test_outputs_reach_the_sink_before_a_long_epoch_ends() -> None:
    got = delays(epoch_s=30.0, run_s=3.0)
    assert len(got) >= 4
    assert max(got) < 1.0  # held for the epoch, they would wait 3 s, the input's end


def test_a_setting_is_an_epoch_and_perhaps_a_detector_checkpoint_count(
        capsys: pytest.CaptureFixture[str]) -> None:
    assert _setting("30") == (30.0, None)
    assert _setting("30/20") == (30.0, 20)
    assert _setting("2.5/0") == (2.5, 0)
    for bad in ("30/x", "x", "30/1.5"):
        assert main(["--epochs", bad]) == 2
        assert "bad --epochs" in capsys.readouterr().err
    assert main(["--epochs", "30/-1"]) == 2
    assert "at least 0" in capsys.readouterr().err


def test_the_summary_parts_an_epoch_s_cpu_into_the_node_step_the_snapshots_and_the_rest(
        tmp_path: Path) -> None:
    """Each epoch mark holds the process's CPU, the node step's summed CPU and its snapshots'
    at the epoch's first snapshot: from one mark to the next, the CPU an epoch less the step's
    and the snapshots' is the rest (Bytewax, the journal source, the other steps)."""
    t0 = 1000.0
    marks = [{"kind": "epoch", "t": t0 + 30 * i, "cpu": 4.0 * i, "step_cpu": 1.5 * i + (0.1 if i == 2 else 0),
              "pickle_cpu": 0.5, "records": 10 * i, "keys": 3, "bytes": 100, "end": t0 + 30 * i + 1}
             for i in range(1, 6)]
    second = _second(t0 + 175, 22.0, 55)
    out = _summarised(tmp_path, 30.0, t0, marks, second, 180)
    assert out["cpu_s_an_epoch_median"] == 4.0
    assert out["step_cpu_s_an_epoch_median"] == 1.5  # 1.6, 1.4, 1.5, 1.5
    assert out["rest_cpu_s_an_epoch_median"] == 2.0  # 4.0 - 1.5 - 0.5
    assert out["pickle_cpu_s_an_epoch"] == 0.5
    assert out["pickle_cpu_s_an_epoch_median"] == 0.5
    assert out["step_parts_s_an_epoch_median"] is None  # marks of a bench before the parts

    # the step's parts, summed as the step's CPU is; the other is the step less them
    for i, mark in enumerate(marks, start=1):
        mark["parts"] = {"decode": 0.2 * i, "data": 0.6 * i, "heartbeat": 0.3 * i, "tick": 0.1 * i}
    out = _summarised(tmp_path, 30.0, t0, marks, second, 180)
    assert out["step_parts_s_an_epoch_median"] == {
        "decode": 0.2, "data": 0.6, "heartbeat": 0.3, "tick": 0.1, "other": 0.3}  # 1.5 - 1.2
    assert out["snapshot_parts_s_an_epoch_median"] is None

    # the snapshots' parts, summed per epoch: the flush within `frozen_snapshot`, the
    # pickling the snapshots' CPU less it
    for mark in marks:
        mark.update(frozen=0.15, flush=0.05)
    marks[-1].update(frozen=9.0, flush=9.0)  # the last mark's epoch is not a whole one
    out = _summarised(tmp_path, 30.0, t0, marks, second, 180)
    assert out["snapshot_parts_s_an_epoch_median"] == {
        "pickle": 0.35, "frozen_but_flush": 0.1, "flush": 0.05}
    assert "influxd_cores" not in out  # (no --influx)

    # with --influx, influxd's CPU at each mark and second: over the same part as the
    # processor's, and from one mark to the next
    for i, mark in enumerate(marks, start=1):
        mark["influxd_cpu"] = 0.6 * i + (0.3 if i == 3 else 0)
    second["influxd_cpu"] = 3.2
    out = _summarised(tmp_path, 30.0, t0, marks, second, 180)
    assert out["influxd_cpu_s_an_epoch_median"] == 0.6  # 0.6, 0.9, 0.3, 0.6
    assert out["influxd_cores"] == round((3.2 - 0.6) / 145, 4)  # from the first mark to the last second


def test_the_step_s_parts_are_timed_without_changing_what_the_step_does(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """`_time_step_parts` wraps the step's parts for the bench's child: the same outputs and
    state, each part's CPU counted, together within the step's own."""
    import cloud.flow as cloud_flow
    from cloud.logic.node import NodeState

    for owner, name in ((cloud_flow, "decode_record"), (NodeState, "process"),
                        (cloud_flow.NodeLogic, "_tick_at"), (NodeState, "frozen_snapshot"),
                        (FrozenStore, "flush")):
        monkeypatch.setattr(owner, name, getattr(owner, name))  # put back after the test
    bases, live, _, _ = make_city(1, 600.0, keys=["lang-ha/aq-1"], warm_hours=0.5)
    records = [JournalRecord("i0", i, r.received_ns, r.topic, r.payload) for i, r in enumerate(live)]
    assert {r.topic.rsplit("/", 1)[1] for r in records} == {"data", "status"}
    plain = NodeLogic(pickle.loads(bases["lang-ha/aq-1"]), 1 << 16)
    expected = [plain.on_batch([r])[0] for r in records]

    parts = dict.fromkeys(STEP_PARTS + SNAPSHOT_PARTS, 0.0)
    _time_step_parts(cloud_flow, parts)
    timed = NodeLogic(pickle.loads(bases["lang-ha/aq-1"]), 1 << 16)
    cpu = time.thread_time()
    got = [timed.on_batch([r])[0] for r in records]
    step = time.thread_time() - cpu
    assert got == expected
    assert pickle.dumps(timed.state) == pickle.dumps(plain.state)
    assert all(parts[name] > 0 for name in ("decode", "data", "heartbeat", "tick")), parts
    assert sum(parts.values()) <= step

    # a snapshot's: its frozen store's flush within its `frozen_snapshot`, within the snapshot
    assert parts["frozen"] == parts["flush"] == 0.0
    store = FrozenStore(tmp_path, 0, 0)
    timed.state.use_frozen_store(store)
    cpu = time.thread_time()
    timed.snapshot()
    snapshot = time.thread_time() - cpu
    assert store.rows_written > 0  # the warm state's closed windows, frozen and flushed
    assert 0 < parts["flush"] < parts["frozen"] < snapshot
    store.close()


def test_with_influx_the_children_write_to_a_real_influxdb_whose_cpu_is_read(tmp_path: Path) -> None:
    """`--influx`: a private stack's InfluxDB (on a free 127.0.0.1 port) for the run, the
    children's config for it (its writer may write the database), influxd's pid, whose CPU
    `_process_cpu_s` reads as /proc counts it, and the raw points the database holds; the
    stack stopped after. Without it, nothing."""
    plain = argparse.Namespace(influx=False)
    with _influx_stack(plain, tmp_path / "none") as stack:
        assert stack is None
        assert plain.cloud_config is None
        assert plain.influxd_pid is None
    assert _process_cpu_s(None) is None
    own = _process_cpu_s(os.getpid())
    assert own is not None
    assert 0 < own <= time.process_time() + 0.02  # (clock ticks: 10 ms)

    args = argparse.Namespace(influx=True)
    with _influx_stack(args, tmp_path) as stack:
        assert stack is not None
        config = json.loads(args.cloud_config.read_text())
        cfg = parse_cloud_config({**config, "state": {"dir": str(tmp_path / "state")}})
        assert cfg.influx.url == stack.info.influx("writer").url
        assert cfg.retention.raw == "INF"  # every simulated point kept, however old
        cpu = _process_cpu_s(args.influxd_pid)
        assert cpu is not None
        assert cpu > 0  # its start's
        assert _raw_points(stack) == 0
        with InfluxHTTP(cfg.influx.url, cfg.influx.username,
                        Path(cfg.influx.password_file).read_text().strip()) as writer:
            writer.write(b"air,site=s,node=n,sensor=x,kind=pms5003 pm25=1.5,seq=1i 1780293600000000000\n"
                         b"air,site=s,node=n,sensor=x,kind=pms5003 pm25=2.5,seq=2i 1780293601000000000\n",
                         db=cfg.influx.database, rp="raw")
        assert _raw_points(stack) == 2
    assert not Path(f"/proc/{args.influxd_pid}").exists() or \
        "zombie" in Path(f"/proc/{args.influxd_pid}/status").read_text().lower()  # stopped


def test_a_round_of_snapshots_split_by_a_pause_is_one_epoch(tmp_path: Path) -> None:
    """Seen at 120 s epochs: a round's first snapshot, then a pause over NEW_EPOCH_GAP_S,
    then the rest; the child writes two marks. Counted as two epochs, each real epoch's CPU
    was parted in two and the median fell to half an epoch's; as one, each epoch is whole."""
    t0 = 1000.0
    marks = []
    for i in range(1, 6):
        start = t0 + 120 * i
        marks.append({"kind": "epoch", "t": start, "cpu": 20.0 * i, "step_cpu": 8.0 * i, "pickle_cpu": 0.1,
                      "records": 100 * i, "keys": 1, "bytes": 10, "end": start + 0.01,
                      "frozen": 0.0, "flush": 0.0})
        marks.append({"kind": "epoch", "t": start + 3.0, "cpu": 20.0 * i + 2.5, "step_cpu": 8.0 * i,
                      "pickle_cpu": 1.9, "records": 100 * i, "keys": 99, "bytes": 990,
                      "end": start + 4.0, "frozen": 0.8, "flush": 0.7})
    rounds = epoch_rounds(marks, 120.0)
    assert [r["t"] for r in rounds] == [t0 + 120 * i for i in range(1, 6)]
    assert all(r["keys"] == 100 and r["bytes"] == 1000 and r["end"] == r["t"] + 4.0 for r in rounds)
    assert all(r["pickle_cpu"] == pytest.approx(2.0) and r["flush"] == pytest.approx(0.7) for r in rounds)
    assert marks[0]["keys"] == 1  # the child's marks are left as they were

    out = _summarised(tmp_path, 120.0, t0, marks, _second(t0 + 650, 110.0, 550), 660)
    assert out["epochs"] == 5
    assert out["cpu_s_an_epoch_median"] == 20.0  # split, the medians were of 2.5 and 17.5
    assert out["step_cpu_s_an_epoch_median"] == 8.0
    assert out["rest_cpu_s_an_epoch_median"] == 10.0  # 20 - 8 - 2
    assert out["snapshot_keys_an_epoch"] == 100.0
    # a 30 s bench's rounds, 30 s apart, stay apart
    assert len(epoch_rounds([{**m, "t": t0 + 30 * n} for n, m in enumerate(marks)], 30.0)) == 10


def test_the_collector_s_cpu_and_full_passes_are_counted_an_epoch(tmp_path: Path) -> None:
    """The child times each cyclic collection by `gc.callbacks` (its thread's CPU, in the
    thread that set it off), and the summary gives them an epoch from its marks."""
    stats = _Stats()
    junk = [[i] for i in range(200_000)]  # something for a full pass to walk
    gc.callbacks.append(stats.time_gc)
    try:
        gc.collect(0)
        assert stats.parts["gc_full"] == 0
        gc.collect()
    finally:
        gc.callbacks.remove(stats.time_gc)
    del junk
    assert stats.parts["gc_full"] == 1
    assert stats.parts["gc"] > 0

    t0 = 1000.0
    marks = [{"kind": "epoch", "t": t0 + 30 * i, "cpu": 4.0 * i, "step_cpu": 1.5 * i, "pickle_cpu": 0.5,
              "records": 10 * i, "keys": 3, "bytes": 100, "end": t0 + 30 * i + 1,
              "parts": {**dict.fromkeys(STEP_PARTS, 0.0), "gc": 0.2 * i + (0.9 if i >= 3 else 0),
                        "gc_full": float(i >= 3)}}
             for i in range(1, 6)]
    second = _second(t0 + 175, 22.0, 55)
    out = _summarised(tmp_path, 30.0, t0, marks, second, 180)
    assert out["gc_an_epoch_median"] == 0.2  # 0.2, 1.1, 0.2, 0.2
    assert out["gc_an_epoch_max"] == 1.1
    assert out["gc_full_an_epoch_max"] == 1.0
