"""`bench.pipeline.detector_book` on a short stream: what must hold whatever the numbers:
with the book a traffic node's snapshots are smaller and the store is written, and bad
input is refused."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from bench.pipeline.detector_book import main, run
from bench.pipeline.errors import PipelineBenchError


def test_with_the_book_the_snapshots_are_smaller_and_the_store_holds_the_detectors(
        tmp_path: Path) -> None:
    key = "cau-giay/cabinet"
    (tmp_path / "inline").mkdir()
    (tmp_path / "book").mkdir()
    inline = run(key, 2.0, 1.0, 30.0, 0, tmp_path / "inline")
    book = run(key, 2.0, 1.0, 30.0, 5, tmp_path / "book")
    assert inline.snapshots == book.snapshots > 50
    assert book.row_bytes > 10 * inline.row_bytes > 0  # checkpoints beside the windows
    assert book.snapshot_bytes < 0.7 * inline.snapshot_bytes
    assert inline.records == book.records


def test_the_comparison_is_printed_and_bad_input_refused(capsys: pytest.CaptureFixture[str]) -> None:
    main(["--hours", "1", "--measure-hours", "0.5", "--nodes", "cau-giay/cabinet", "--every", "3"])
    out = capsys.readouterr().out
    assert re.search(r"bytes handed to Bytewax 0\.\d+x", out), out
    assert re.search(r"a resume [\d.]+x", out), out
    for bad in (["--every", "0"], ["--measure-hours", "7"], ["--epoch-s", "0"]):
        with pytest.raises(PipelineBenchError):
            main(["--hours", "1", *bad])
