"""`bench.pipeline.node_state_size --frozen-store` on a short stream: what must hold whatever
the numbers: with the store the snapshot is smaller and holds no frozen window's bytes, every
window frozen is a row written, and bad input is refused."""

from __future__ import annotations

import pickle
import re
from pathlib import Path

import pytest

from bench.pipeline.errors import PipelineBenchError
from bench.pipeline.node_state_size import EveryNthFlush, Snapshots, main, measure, node_stream


def test_with_the_store_the_snapshot_holds_row_ids_and_every_frozen_window_is_a_row(
        tmp_path: Path) -> None:
    key, hours = "saint-paul/ward-peds", 0.5
    readings = node_stream(key, hours)
    _, inline = measure(key, hours, readings=readings)
    store = EveryNthFlush(tmp_path, 1)
    snapshots = Snapshots(store, 2 * 10**9)
    _, stored = measure(key, hours, readings=readings, snapshots=snapshots)
    rollups = [*stored.minute.values(), *stored.hour.values()]
    refs = {v for r in rollups for v in r.frozen.values()}
    assert refs
    assert all(type(v) is int for v in refs)
    assert store.rows() == len(refs)  # the rows let go deleted or never written
    assert snapshots.taken > 50  # (a snapshot each 2 s of reception with a message in it)
    smaller = len(pickle.dumps(stored, protocol=pickle.HIGHEST_PROTOCOL))
    assert smaller < len(pickle.dumps(inline, protocol=pickle.HIGHEST_PROTOCOL))
    store.close()


def test_the_comparison_is_printed_and_bad_input_refused(capsys: pytest.CaptureFixture[str]) -> None:
    main(["--hours", "0.3", "--nodes", "saint-paul/ward-peds", "--frozen-store", "--repeat", "1"])
    out = capsys.readouterr().out
    assert re.search(r"snapshot [\d.]+ -> [\d.]+ KB \(0\.\d+\)", out)
    assert "CPU µs a row, put and flush" in out
    with pytest.raises(PipelineBenchError, match="--flush-every"):
        main(["--frozen-store", "--flush-every", "0"])
