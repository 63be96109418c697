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
    return runs


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
    lines.append(f"{'':16} {'a node, ms':>11} {'fixed, s':>9} {f'{nodes:,} nodes, cores':>20}")
    for name, key in MEASURES.items():
        f = fit(runs, key)
        lines.append(f"{name:16} {f.per_node_ms:11.3f} {f.fixed_s:9.2f} {f.cores(nodes, epoch_s):20.2f}")
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
