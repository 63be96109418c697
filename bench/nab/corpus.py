"""The NAB data shared beside the repository: files, windows and ARTime's golden output."""

from __future__ import annotations

import csv
import json
import os
import sys
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from bench.nab.scoring import FileLabels, ScoringError

REPO = Path(__file__).resolve().parents[2]


def shared_dir() -> Path:
    """`$URBANPULSE_SHARED`, else the `shared/` folder beside the repository."""
    env = os.environ.get("URBANPULSE_SHARED")
    return Path(env) if env else (REPO / ".." / "shared").resolve()


def nab_dir() -> Path:
    return shared_dir() / "data" / "nab"


def corpus_or_say() -> list[NabFile] | None:
    """The whole corpus for a benchmark, or None once it has said on stderr that the NAB
    data is not there (the benchmark then exits with code 2)."""
    root = nab_dir()
    if not (root / "labels" / "combined_windows.json").exists():
        print(f"NAB data not found under {root} (set URBANPULSE_SHARED)", file=sys.stderr)
        return None
    return load_corpus(root)


@dataclass(frozen=True, slots=True)
class NabFile:
    key: str  # "<category>/<file>.csv", as in the label file
    timestamps: list[datetime]
    values: list[float]
    labels: FileLabels

    @property
    def category(self) -> str:
        return self.key.split("/", 1)[0]


def parse_timestamp(text: str) -> datetime:
    try:
        return datetime.fromisoformat(text.strip())
    except ValueError as exc:
        raise ScoringError(f"bad timestamp {text!r}") from exc


def read_series(path: Path) -> tuple[list[datetime], list[float]]:
    timestamps: list[datetime] = []
    values: list[float] = []
    with path.open(newline="") as f:
        reader = csv.reader(f)
        header = next(reader)
        if header[:2] != ["timestamp", "value"]:
            raise ScoringError(f"{path}: header {header!r} is not timestamp,value")
        for row in reader:
            timestamps.append(parse_timestamp(row[0]))
            values.append(float(row[1]))
    return timestamps, values


def load_windows(root: Path | None = None) -> dict[str, list[tuple[datetime, datetime]]]:
    root = root or nab_dir()
    raw = json.loads((root / "labels" / "combined_windows.json").read_text())
    return {
        key: [(parse_timestamp(a), parse_timestamp(b)) for a, b in pairs]
        for key, pairs in raw.items()
    }


def load_corpus(root: Path | None = None, categories: set[str] | None = None) -> list[NabFile]:
    root = root or nab_dir()
    files: list[NabFile] = []
    for key, windows in sorted(load_windows(root).items()):
        if categories is not None and key.split("/", 1)[0] not in categories:
            continue
        timestamps, values = read_series(root / "data" / key)
        labels = FileLabels.build(key, timestamps, windows)
        files.append(NabFile(key, timestamps, values, labels))
    return files
