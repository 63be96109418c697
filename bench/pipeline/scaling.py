"""`python -m bench.pipeline.scaling RUN.json...`: the processor's CPU an epoch parted into
what does not grow with the nodes and what grows with each, from epochs-bench runs
(`bench.pipeline.epochs --out RUN.json`) of one epoch setting at several sample sizes
(`--copies`), and what that makes for a city of `--nodes` nodes.

Scaling one sample's whole CPU linearly also scales the fixed part (Bytewax's worker loop
wakes every millisecond whatever the input: about 1.4 s an epoch on one worker), and
overstates a city's cores; a least-squares line through the sizes does not:

    python -m bench.pipeline.epochs --copies 1 --epochs 30 --measure-s 240 --out s1.json
    python -m bench.pipeline.epochs --copies 50 --epochs 30 --measure-s 240 --out s50.json
    python -m bench.pipeline.epochs --copies 150 --epochs 30 --measure-s 240 --out s150.json
    python -m bench.pipeline.scaling s1.json s50.json s150.json

Runs made with `--influx` (every one of them) add InfluxDB: influxd's CPU an epoch as its
mean over the measured part (its compactions come every few epochs: a median an epoch would
leave them out), and the processor's median with it, what the processor and its database
take together.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.pipeline.errors import PipelineBenchError

CITY_NODES = 49_680  # the simulated city's 23 nodes x 2,160
# the summary's medians an epoch: the whole CPU and its parts
MEASURES = {"cpu": "cpu_s_an_epoch_median", "node step": "step_cpu_s_an_epoch_median",
            "node snapshots": "pickle_cpu_s_an_epoch_median", "rest": "rest_cpu_s_an_epoch_median"}
# with --influx: influxd's mean an epoch (`with_influxd` makes it), and the processor's with it
INFLUXD = {"influxd": "influxd_cpu_s_an_epoch_mean", "processor + influxd": "with_influxd_s_an_epoch"}


@dataclass(frozen=True)
class Fit:
    per_node_ms: float  # CPU ms an epoch each node adds
    fixed_s: float  # CPU s an epoch with no node

    def cores(self, nodes: int, epoch_s: float) -> float:
        return (self.per_node_ms / 1e3 * nodes + self.fixed_s) / epoch_s


def runs_of(paths: list[Path]) -> list[dict[str, Any]]:
    """Every setting's result of the files, each checked to have what a fit needs."""
    runs: list[dict[str, Any]] = []
    for path in paths:
        try:
            results = json.loads(path.read_text())
        except (OSError, ValueError) as exc:
            raise PipelineBenchError(f"{path}: not an epochs-bench result: {exc}") from exc
        if not isinstance(results, list):
            raise PipelineBenchError(f"{path}: not an epochs-bench result (a list of settings)")
        for i, result in enumerate(results):
            missing = [k for k in ("nodes", "epoch_s", *MEASURES.values())
                       if not isinstance(result, dict) or result.get(k) is None]
            if missing:
                raise PipelineBenchError(f"{path}: setting {i} lacks {', '.join(missing)} (a run "
                                         "of an older bench, or one too short to measure)")
            runs.append(result)
    return with_influxd(runs)


def with_influxd(runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The runs with influxd's mean CPU an epoch and the processor's with it (INFLUXD), when
    every run measured influxd (`--influx`); else as they are."""
    if not runs or any(r.get("influxd_cores") is None for r in runs):
        return runs
    out = []
    for r in runs:
        mean = r["influxd_cores"] * r["epoch_s"]
        out.append({**r, INFLUXD["influxd"]: mean,
                    INFLUXD["processor + influxd"]: r[MEASURES["cpu"]] + mean})
    return out


def fit(runs: list[dict[str, Any]], key: str) -> Fit:
    """The least-squares line of `key` an epoch against the nodes; at least two sizes, one
    epoch setting."""
    if len({r["epoch_s"] for r in runs}) != 1:
        raise PipelineBenchError("the runs have different epoch settings: fit one at a time")
    if len({r["nodes"] for r in runs}) < 2:
        raise PipelineBenchError("a fit needs runs of at least two sample sizes")
    slope, intercept = statistics.linear_regression([float(r["nodes"]) for r in runs],
                                                    [float(r[key]) for r in runs])
    return Fit(slope * 1e3, intercept)


def report(runs: list[dict[str, Any]], nodes: int) -> str:
    epoch_s = runs[0]["epoch_s"]
    lines = [f"{len(runs)} runs, {epoch_s:g} s epochs: " + ", ".join(
        f"{r['nodes']:,} nodes {r[MEASURES['cpu']]:.2f} s" for r in sorted(runs, key=lambda r: r["nodes"]))]
    lines.append(f"{'':19} {'a node, ms':>11} {'fixed, s':>9} {f'{nodes:,} nodes, cores':>20}")
    measures = MEASURES | (INFLUXD if INFLUXD["influxd"] in runs[0] else {})
    for name, key in measures.items():
        f = fit(runs, key)
        lines.append(f"{name:19} {f.per_node_ms:11.3f} {f.fixed_s:9.2f} {f.cores(nodes, epoch_s):20.2f}")
    big = max(runs, key=lambda r: r["nodes"])
    whole = big[MEASURES["cpu"]] / big["nodes"] * 1e3
    lines.append(f"(scaling the {big['nodes']:,}-node run's whole CPU instead: {whole:.3f} ms a node, "
                 f"{whole / 1e3 * nodes / epoch_s:.2f} cores)")
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.pipeline.scaling", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("runs", nargs="+", type=Path, help="epochs-bench results (--out)")
    p.add_argument("--nodes", type=int, default=CITY_NODES, help="the city's nodes to project to")
    args = p.parse_args(argv)
    try:
        print(report(runs_of(args.runs), args.nodes))
    except PipelineBenchError as exc:
        print(f"scaling: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
