"""`urbanpulse bridge ...` through firmware_bridge.cli.main and as a real process."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from firmware_bridge.cli import main
from firmware_bridge.protocols.sds011.emulator import Sds011Emulator
from firmware_bridge.protocols.upfw import LoopVehicle
from firmware_bridge.protocols.upfw.emulator import UpfwEmulator

GoldenLoader = Callable[[str], dict[str, bytes]]
SDS_KEYS = {"pm25", "pm10", "device_id"}


def run(
    argv: list[str], capsys: pytest.CaptureFixture[str]
) -> tuple[int, list[dict[str, object]], dict[str, int]]:
    code = main(argv)
    out, err = capsys.readouterr()
    records = [json.loads(line) for line in out.splitlines()]
    counters = json.loads(err.strip().splitlines()[-1]) if err.strip().startswith("{") else {}
    return code, records, counters


def test_decode_capture_prints_one_object_per_measurement(
    tmp_path: Path, golden: GoldenLoader, capsys: pytest.CaptureFixture[str]
) -> None:
    g = golden("sds011")
    bad = bytearray(g["data_query_reply"])
    bad[8] ^= 0xFF
    capture = tmp_path / "capture.bin"
    capture.write_bytes(
        b"\x00\x13" + g["data_query_reply"] + bytes(bad) + g["reply_set_sleep"] + g["data_query_reply"][:6]
    )
    code, records, counters = run(["decode", "--protocol", "sds011", str(capture)], capsys)
    assert code == 0
    assert records == [{"pm25": 123.6, "pm10": 261.8, "device_id": "a160"}]
    assert counters["frames"] == 2  # the measurement and the sleep reply
    assert counters["checksum_errors"] == 1
    assert counters["bytes_skipped"] == 2 + 10 + 6


def test_decode_stdin(
    golden: GoldenLoader, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    data = golden("pms5003")["data_pms5003t"] * 3
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(data)))
    code, records, counters = run(["decode", "--protocol", "pms5003t", "-"], capsys)
    assert code == 0
    assert len(records) == 3
    assert set(records[0]) == {
        "pm1", "pm25", "pm10", "pm1_cf1", "pm25_cf1", "pm10_cf1", "n0_3", "n0_5", "n1_0", "n2_5",
        "temperature_c", "humidity_pct",
    }  # fmt: skip
    assert counters["frames"] == 3


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["decode", "--protocol", "nope", "x"], 2),
        (["decode", "--protocol", "sds011", "a.bin", "--port", "/dev/null"], 2),
        (["decode", "--protocol", "sds011", "a.bin", "--duration", "1"], 2),
        (["frobnicate"], 2),
        (["decode", "--protocol", "sds011", "/nonexistent/capture.bin"], 1),
    ],
)
def test_usage_errors_and_unreadable_input(
    argv: list[str], expected: int, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(argv) == expected
    assert capsys.readouterr().out == ""


def test_decode_live_port(capsys: pytest.CaptureFixture[str]) -> None:
    with Sds011Emulator(lambda: (8.0, 9.5), period_s=0.05, warmup_s=0.0) as emu:
        code, records, counters = run(
            ["decode", "--protocol", "sds011", "--port", emu.port, "--duration", "0.5"], capsys
        )
    assert code == 0
    assert records
    assert all(r == {"pm25": 8.0, "pm10": 9.5, "device_id": "a160"} for r in records)
    assert counters["bytes_skipped"] == 0


def test_probe_finds_an_upfw_board(capsys: pytest.CaptureFixture[str]) -> None:
    with UpfwEmulator(lambda: [LoopVehicle(0, 0, 1, 800, 1)], period_s=0.1) as emu:
        assert main(["probe", "--port", emu.port, "--listen", "0.4"]) == 0
    out = capsys.readouterr().out
    assert "upfw at 115200 baud" in out


def test_probe_says_when_nothing_answers(capsys: pytest.CaptureFixture[str]) -> None:
    master, slave = os.openpty()
    try:
        assert main(["probe", "--port", os.ttyname(slave), "--listen", "0.2"]) == 1
    finally:
        os.close(slave)
        os.close(master)
    assert "no known device answered" in capsys.readouterr().out


def test_emulate_process_prints_its_port_and_takes_fault_commands(tmp_path: Path) -> None:
    link = tmp_path / "ttyUSB-sds011"
    script = tmp_path / "values.jsonl"
    script.write_text('{"pm25": 11.1, "pm10": 22.2}\n{"pm25": 33.3, "pm10": 44.4}\n')
    proc = subprocess.Popen(
        [
            sys.executable, "-m", "firmware_bridge.cli", "emulate", "--protocol", "sds011",
            "--warmup", "0", "--period", "0.05", "--link", str(link), "--script", str(script),
            "--duration", "30",
        ],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        assert proc.stdin is not None
        assert proc.stderr is not None
        assert proc.stdout.readline().strip() == str(link)
        decoded = subprocess.run(
            [sys.executable, "-m", "firmware_bridge.cli", "decode", "--protocol", "sds011",
             "--port", str(link), "--duration", "0.5"],
            capture_output=True, text=True, timeout=20, check=True,
        )  # fmt: skip
        values = {(r["pm25"], r["pm10"]) for r in map(json.loads, decoded.stdout.splitlines())}
        assert values == {(11.1, 22.2), (33.3, 44.4)}
        proc.stdin.write("unplug\n")
        proc.stdin.flush()
        assert proc.stderr.readline().startswith("unplug: done")
        assert not link.exists()
        proc.stdin.write("replug\nquit\n")
        proc.stdin.flush()
        assert proc.wait(timeout=10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        for stream in (proc.stdin, proc.stdout, proc.stderr):
            if stream is not None:
                stream.close()


def test_benchmark_reports_every_protocol() -> None:
    from firmware_bridge.benchmark import run as run_benchmark

    lines: list[str] = []
    run_benchmark(0.01, lines)
    assert [line.split()[0] for line in lines[1:]] == ["sds011", "pms5003", "pms5003t", "mhz19b", "upfw"]
    assert all(float(line.split()[1].replace(",", "")) > 0 for line in lines[1:])


def test_decode_capture_keeps_a_last_mhz19b_answer_whose_checksum_is_ff(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # The decoder holds such an answer for the byte after it (the start of another
    # answer?); at the end of the file no byte comes, and the answer is printed.
    from firmware_bridge.protocols.mhz19b import wire

    last = next(r for co2 in range(400, 5000) if (r := wire.encode_reading(co2, 28))[8] == 0xFF)
    capture = tmp_path / "co2.bin"
    capture.write_bytes(wire.encode_reading(650, 28) + last)
    code, records, counters = run(["decode", "--protocol", "mhz19b", str(capture)], capsys)
    assert code == 0
    assert [r["co2_ppm"] for r in records] == [650, last[2] << 8 | last[3]]
    assert (counters["frames"], counters["bytes_skipped"], counters["bytes_pending"]) == (2, 0, 0)
