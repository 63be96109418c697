"""The scaling fit of epochs-bench runs: the fixed part and the part each node adds, from
runs of one epoch setting at several sample sizes, and the refusals of runs it cannot fit."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench.pipeline.scaling import INFLUXD, MEASURES, fit, main, runs_of


def _run(nodes: int, epoch_s: float = 30.0, **over: float | None) -> dict[str, float | None]:
    # CPU an epoch = 1.5 s + 2 ms a node: the step 1 ms a node, the snapshots 0.5, the rest
    # 0.5 and the 1.5 s
    out: dict[str, float | None] = {
        "nodes": nodes, "epoch_s": epoch_s, MEASURES["cpu"]: 1.5 + 0.002 * nodes,
        MEASURES["node step"]: 0.001 * nodes, MEASURES["node snapshots"]: 0.0005 * nodes,
        MEASURES["rest"]: 1.5 + 0.0005 * nodes}
    out.update(over)
    return out


def _write(path: Path, *runs: dict[str, float | None]) -> Path:
    path.write_text(json.dumps(list(runs)))
    return path


def test_the_fit_parts_the_cpu_into_a_fixed_part_and_a_part_a_node(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    runs = runs_of([_write(tmp_path / "a.json", _run(23)),
                    _write(tmp_path / "b.json", _run(1150), _run(3450))])
    f = fit(runs, MEASURES["cpu"])
    assert f.per_node_ms == pytest.approx(2.0)
    assert f.fixed_s == pytest.approx(1.5)
    assert f.cores(49_680, 30.0) == pytest.approx((0.002 * 49_680 + 1.5) / 30)
    assert fit(runs, MEASURES["rest"]).fixed_s == pytest.approx(1.5)
    assert fit(runs, MEASURES["node step"]).per_node_ms == pytest.approx(1.0)

    assert main([str(tmp_path / "a.json"), str(tmp_path / "b.json"), "--nodes", "49680"]) == 0
    out = capsys.readouterr().out
    assert "cpu                       2.000      1.50                 3.36" in out
    assert "influxd" not in out  # (runs without --influx)
    # the whole CPU of the largest run scaled: its fixed part counted once a node
    assert "3,450-node run's whole CPU instead: 2.435 ms a node, 4.03 cores" in out


def test_runs_with_influxd_add_its_mean_cpu_and_the_processor_s_with_it(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """influxd's CPU an epoch is its mean over the run (its cores x the epoch), 0.3 s + 0.1 ms
    a node here; fitted beside the processor's, and added to it. A run without it among
    them: no influxd line."""
    def run(nodes: int) -> dict[str, float | None]:
        return _run(nodes, influxd_cores=(0.3 + 0.0001 * nodes) / 30.0,
                    influxd_cpu_s_an_epoch_median=0.1)  # (left out: compactions come in bursts)

    runs = runs_of([_write(tmp_path / "i.json", run(23), run(1150), run(3450))])
    f = fit(runs, INFLUXD["influxd"])
    assert f.per_node_ms == pytest.approx(0.1)
    assert f.fixed_s == pytest.approx(0.3)
    both = fit(runs, INFLUXD["processor + influxd"])
    assert both.per_node_ms == pytest.approx(2.1)
    assert both.fixed_s == pytest.approx(1.8)
    assert main([str(tmp_path / "i.json")]) == 0
    out = capsys.readouterr().out
    assert "influxd                   0.100      0.30                 0.18" in out
    assert "processor + influxd       2.100      1.80                 3.54" in out

    mixed = _write(tmp_path / "m.json", run(23), _run(1150), run(3450))
    assert all(INFLUXD["influxd"] not in r for r in runs_of([mixed]))
    assert main([str(mixed)]) == 0
    assert "influxd" not in capsys.readouterr().out


@pytest.mark.parametrize(("runs", "why"), [
    ([_run(23), _run(23)], "at least two sample sizes"),
    ([_run(23), _run(1150, epoch_s=2.0)], "different epoch settings"),
    ([_run(23), _run(1150, pickle_cpu_s_an_epoch_median=None)],
     "setting 1 lacks pickle_cpu_s_an_epoch_median"),
])
def test_runs_it_cannot_fit_are_refused_with_the_reason(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], runs: list[dict[str, float | None]],
        why: str) -> None:
    assert main([str(_write(tmp_path / "r.json", *runs))]) == 2
    assert why in capsys.readouterr().err


def test_a_file_that_is_no_result_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "x.json").write_text("{}")
    assert main([str(tmp_path / "x.json")]) == 2
    assert "a list of settings" in capsys.readouterr().err
    assert main([str(tmp_path / "missing.json")]) == 2
    assert "not an epochs-bench result" in capsys.readouterr().err
