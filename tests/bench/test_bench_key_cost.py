"""The per-key cost bench: a real dataflow with a real recovery store, every key snapshotted
each epoch (the store holds them), and the cost printed; bad arguments refused."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from bench.pipeline.key_cost import main, run_cpu


def test_every_key_is_snapshotted_into_the_recovery_store_each_epoch(tmp_path: Path) -> None:
    store = tmp_path / "store"
    assert run_cpu(30, 500, 0.2, 2, store) > 0
    [part] = store.glob("*.sqlite3")
    with sqlite3.connect(part) as db:
        rows = db.execute("SELECT step_id, state_key, ser_change FROM snaps").fetchall()
    held = {key: change for step, key, change in rows if step.endswith("held")}
    assert set(held) == {f"k{i}" for i in range(30)}
    assert all(change is not None and len(change) >= 500 for change in held.values())


def test_the_bench_prints_the_cost_a_key_and_refuses_bad_arguments(
        capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--keys", "20", "--epochs", "2", "--epoch-s", "0.2", "--snapshot-bytes", "100"]) == 0
    assert "20 keys x 2 epochs of 0.2 s, 100 B snapshots:" in capsys.readouterr().out
    for bad in (["--keys", "0"], ["--epochs", "0"], ["--epoch-s", "0"], ["--snapshot-bytes", "-1"]):
        assert main(bad) == 2
        assert "at least 1" in capsys.readouterr().err
