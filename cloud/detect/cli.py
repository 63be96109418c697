"""`urbanpulse detect [--detector NAME] INPUT.csv -o OUTPUT.csv`: score a NAB-format
file (timestamp,value) row by row with the streaming detector the dataflow runs."""

from __future__ import annotations

import argparse
import contextlib
import csv
import math
import os
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import TextIO

from cloud.detect.detector import AnomalyDetector
from cloud.detect.errors import DetectError
from cloud.detect.profiles import detector_by_name


def _timestamp(text: str, line: int) -> datetime:
    try:
        ts = datetime.fromisoformat(text.strip())
    except ValueError as exc:
        raise DetectError(f"line {line}: bad timestamp {text!r}") from exc
    return ts.replace(tzinfo=UTC) if ts.tzinfo is None else ts.astimezone(UTC)


def _value(text: str, line: int) -> float:
    try:
        value = float(text)
    except ValueError as exc:
        raise DetectError(f"line {line}: bad value {text!r}") from exc
    if not math.isfinite(value):
        raise DetectError(f"line {line}: value {text!r} is not finite")
    return value


def score_csv(source: Path, target: Path, detector_name: str = "default") -> int:
    """Write timestamp,value,anomaly_score for every row; returns the number of rows.

    NAB timestamps carry no zone: they are read as UTC. The rows are written to a file
    beside `target` that replaces it once every row is scored: a bad row leaves `target`
    as it was (no partial result that looks whole), and `target` may be `source` itself
    (it used to be emptied before it was read)."""
    detector = detector_by_name(detector_name)
    rows = 0
    partial = target.with_name(f".{target.name}.{os.getpid()}.partial")
    with source.open(newline="", encoding="utf-8") as fin:
        try:
            try:
                # O_EXCL: never through a link or over someone else's file; the umask's mode
                fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
            except OSError as exc:
                raise DetectError(f"{target}: cannot write beside it ({exc.strerror})") from exc
            with os.fdopen(fd, "w", newline="") as fout:
                rows = _score_rows(source, fin, fout, detector)
            try:
                os.replace(partial, target)
            except OSError as exc:
                raise DetectError(f"{target}: cannot write it ({exc.strerror})") from exc
        finally:
            with contextlib.suppress(FileNotFoundError):
                partial.unlink()
    return rows


def _score_rows(source: Path, fin: TextIO, fout: TextIO, detector: AnomalyDetector) -> int:
    """Blank lines are no rows (a spreadsheet's last line); a UTF-8 BOM is no header text."""
    rows = 0
    reader = csv.reader(fin)
    try:
        header = next(reader, None)
        if header and header[0].startswith("\ufeff"):
            header[0] = header[0][1:]
        if header is None or [h.strip() for h in header[:2]] != ["timestamp", "value"]:
            raise DetectError(f"{source}: the header must be timestamp,value (got {header!r})")
        writer = csv.writer(fout, lineterminator="\n")
        writer.writerow(["timestamp", "value", "anomaly_score"])
        for row in reader:
            line = reader.line_num
            if not any(cell.strip() for cell in row):
                continue
            if len(row) < 2:
                raise DetectError(f"line {line}: expected timestamp,value, got {row!r}")
            score = detector.update(_timestamp(row[0], line), _value(row[1], line))
            writer.writerow([row[0], row[1], repr(score)])
            rows += 1
    except UnicodeDecodeError as exc:
        # (decoded ahead of the rows, in blocks: which line is not known)
        raise DetectError(f"{source}: not UTF-8 text (byte {exc.object[exc.start]:#04x})"
                          ) from exc
    except csv.Error as exc:
        raise DetectError(f"{source}: line {reader.line_num}: {exc}") from exc
    return rows


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="urbanpulse detect", description=__doc__)
    parser.add_argument("input", type=Path, help="NAB-format CSV: timestamp,value")
    parser.add_argument("-o", "--output", type=Path, required=True)
    parser.add_argument(
        "--detector",
        default="default",
        help="'default' (tuned on NAB) or KIND:FIELD, e.g. traffic.loop:occupancy_pct",
    )
    args = parser.parse_args(argv)
    try:
        rows = score_csv(args.input, args.output, args.detector)
    except DetectError as exc:
        print(f"urbanpulse detect: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"urbanpulse detect: {exc}", file=sys.stderr)
        return 2
    print(f"scored {rows} rows into {args.output}", file=sys.stderr)
    return 0
