"""`urbanpulse detect` on a small NAB-format file."""

from __future__ import annotations

import csv
import math
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cloud.detect.cli import main
from cloud.detect.detector import AnomalyDetector


def _write_input(path: Path, n: int) -> list[tuple[str, float]]:
    t0 = datetime(2015, 9, 1)
    rows = [
        ((t0 + timedelta(minutes=5 * i)).strftime("%Y-%m-%d %H:%M:%S"), 50 + 10 * math.sin(i / 9))
        for i in range(n)
    ]
    rows[250] = (rows[250][0], 400.0)
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["timestamp", "value"])
        w.writerows(rows)
    return rows


def test_detect_writes_one_scored_row_per_input_row(tmp_path: Path) -> None:
    rows = _write_input(tmp_path / "in.csv", 300)
    assert main([str(tmp_path / "in.csv"), "-o", str(tmp_path / "out.csv")]) == 0
    with (tmp_path / "out.csv").open(newline="") as f:
        out = list(csv.reader(f))
    assert out[0] == ["timestamp", "value", "anomaly_score"]
    assert [r[0] for r in out[1:]] == [r[0] for r in rows]
    scores = [float(r[2]) for r in out[1:]]
    detector = AnomalyDetector()
    expected = [
        detector.update(datetime.fromisoformat(ts).replace(tzinfo=UTC), v) for ts, v in rows
    ]
    assert scores == expected
    assert scores[250] >= detector.threshold


def test_detect_rejects_a_bad_file_with_a_clear_message(tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    (tmp_path / "bad.csv").write_text("time,reading\n2015-01-01 00:00:00,1\n")
    assert main([str(tmp_path / "bad.csv"), "-o", str(tmp_path / "o.csv")]) == 2
    assert "timestamp,value" in capsys.readouterr().err
    (tmp_path / "bad2.csv").write_text("timestamp,value\n2015-01-01 00:00:00,abc\n")
    assert main([str(tmp_path / "bad2.csv"), "-o", str(tmp_path / "o.csv")]) == 2
    assert "line 2: bad value" in capsys.readouterr().err


def test_detect_with_a_kind_detector(tmp_path: Path) -> None:
    _write_input(tmp_path / "in.csv", 300)
    files = [str(tmp_path / "in.csv"), "-o", str(tmp_path / "o.csv")]
    assert main(["--detector", "traffic.loop:occupancy_pct", *files]) == 0
    assert main(["--detector", "nope", *files]) == 2


def test_detect_into_its_own_input_scores_it_and_keeps_every_row(tmp_path: Path) -> None:
    # `-o` naming the input truncated it before it was read: the file was lost (0 bytes)
    rows = _write_input(tmp_path / "in.csv", 300)
    assert main([str(tmp_path / "in.csv"), "-o", str(tmp_path / "in.csv")]) == 0
    with (tmp_path / "in.csv").open(newline="") as f:
        out = list(csv.reader(f))
    assert out[0] == ["timestamp", "value", "anomaly_score"]
    assert [r[0] for r in out[1:]] == [r[0] for r in rows]


def test_detect_leaves_no_partial_output_on_a_bad_row(tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    _write_input(tmp_path / "in.csv", 300)
    (tmp_path / "out.csv").write_text("an earlier result\n")
    text = (tmp_path / "in.csv").read_text().replace(",400.0\n", ",oops\n")
    (tmp_path / "bad.csv").write_text(text)
    assert main([str(tmp_path / "bad.csv"), "-o", str(tmp_path / "out.csv")]) == 2
    assert "line 252: bad value 'oops'" in capsys.readouterr().err
    # the target as it was (not 250 scored rows that look like a whole result), no leftovers
    assert (tmp_path / "out.csv").read_text() == "an earlier result\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.csv", "in.csv", "out.csv"]



def test_detect_reads_a_bom_and_blank_lines_and_names_undecodable_bytes(  # type: ignore[no-untyped-def]
        tmp_path: Path, capsys) -> None:
    rows = _write_input(tmp_path / "in.csv", 300)
    text = (tmp_path / "in.csv").read_text()
    # a spreadsheet's UTF-8 BOM, CRLF line ends and a blank line at the end: the same rows
    (tmp_path / "excel.csv").write_bytes(b"\xef\xbb\xbf" + text.replace("\n", "\r\n").encode()
                                         + b"\r\n")
    assert main([str(tmp_path / "excel.csv"), "-o", str(tmp_path / "o.csv")]) == 0
    with (tmp_path / "o.csv").open(newline="") as f:
        assert len(list(csv.reader(f))) == len(rows) + 1
    # bytes that are not UTF-8, and a field the csv module refuses: exit 2 naming the line,
    # no traceback
    (tmp_path / "latin.csv").write_bytes(b"timestamp,value\n2015-01-01 00:00:00,1\n\xff\xfe,2\n")
    assert main([str(tmp_path / "latin.csv"), "-o", str(tmp_path / "o2.csv")]) == 2
    assert "not UTF-8" in capsys.readouterr().err
    (tmp_path / "huge.csv").write_text("timestamp,value\n2015-01-01 00:00:00,\"" + "1" * 200_000
                                       + "\"\n")
    assert main([str(tmp_path / "huge.csv"), "-o", str(tmp_path / "o3.csv")]) == 2
    assert "line 2" in capsys.readouterr().err
    assert not (tmp_path / "o2.csv").exists()
    assert not (tmp_path / "o3.csv").exists()
