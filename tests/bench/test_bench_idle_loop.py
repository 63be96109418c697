"""The idle-loop bench: an empty dataflow that ends by itself after its time, and its CPU
printed; bad arguments refused."""

from __future__ import annotations

import pytest

from bench.pipeline.idle_loop import idle_cores, main


def test_an_empty_dataflow_runs_its_time_and_uses_some_cpu() -> None:
    cores = idle_cores(1.0, 20.0, 2)
    # Bytewax's loop wakes every millisecond: more than nothing, less than a core busy
    assert 0.0 < cores < 1.0


def test_the_bench_prints_the_cores_and_refuses_bad_arguments(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--seconds", "0.5", "--wake-ms", "100"]) == 0
    assert "an idle Bytewax worker, its source woken every 100 ms, 0 maps:" in capsys.readouterr().out
    for bad in (["--seconds", "0"], ["--wake-ms", "-1"], ["--maps", "-2"]):
        assert main(bad) == 2
        assert "must be positive" in capsys.readouterr().err
