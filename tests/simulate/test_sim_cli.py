from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from urbanpulse.clock import FakeClock
from urbanpulse.simulate import City, Simulation
from urbanpulse.simulate.cli import main
from urbanpulse.simulate.errors import SimulationError
from urbanpulse.wire import decode_batch

from .conftest import MONDAY


def test_offline_run_writes_readings_ground_truth_and_inventory(tmp_path: Path) -> None:
    out = tmp_path / "run"
    code = main(["--seed", "3", "--hours", "3", "--out", str(out), "--anomalies", "3",
                 "--faults", "6"])
    assert code == 0
    summary = json.loads((out / "summary.json").read_text())
    lines = (out / "readings.jsonl").read_text().splitlines()
    assert len(lines) == summary["readings"] > 1000
    first = json.loads(lines[0])
    assert set(first) == {"site", "node", "sensor", "kind", "ts", "seq", "values"}
    assert first["ts"].endswith("Z")
    truth = [json.loads(line) for line in (out / "ground_truth.jsonl").read_text().splitlines()]
    injected = [t for t in truth if t["category"] != "context"]
    # 3 + 6 planned; the city's own events after hour 3 have not begun.
    city_events = [e for e in City.load().events if e.start_s < 3 * 3600]
    assert len(injected) == 9 + len(city_events)
    assert {"type", "category", "site", "node", "sensor", "start", "end", "params"} == \
        set(truth[0])
    nodes = json.loads((out / "nodes.json").read_text())
    assert len(nodes) == len(City.load().nodes)


def test_wire_format_lines_are_contract_payloads(tmp_path: Path) -> None:
    out = tmp_path / "wire"
    assert main(["--hours", "1", "--out", str(out), "--format", "wire", "--replicas", "2",
                 "--no-city-events"]) == 0
    lines = (out / "batches.jsonl").read_bytes().splitlines()
    parsed = [decode_batch(line) for line in lines]
    assert all(p.rejected == [] for p in parsed)
    assert {p.site for p in parsed} >= {"bach-mai", "bach-mai-r0001"}
    assert (out / "ground_truth.jsonl").read_text() == ""


def test_errors_are_reported_with_exit_code_2(tmp_path: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text('[city]\nname = "x"\n[[district]]\nid = "Bad Id"\nname = "B"\n')
    assert main(["--city", str(bad), "--out", str(tmp_path / "o")]) == 2
    assert "district[0].id" in capsys.readouterr().err
    assert main(["--hours", "0", "--out", str(tmp_path / "o")]) == 2
    assert main(["--hours", "1"]) == 2
    assert not (tmp_path / "o").exists()
    assert main(["--check"]) == 0
    assert "nodes" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        main(["--start", "2026-03-02T00:00:00", "--out", str(tmp_path / "o")])


def test_sim_clock_runs_a_day_in_a_minute(hanoi: City) -> None:
    sim = Simulation(hanoi, seed=0, start=MONDAY, speed=1440.0)
    base = FakeClock(datetime(2030, 1, 1, tzinfo=UTC))
    clock = sim.clock(base)
    assert clock.now() == MONDAY
    base.advance(60.0)
    assert clock.offset() == pytest.approx(86_400.0)
    assert clock.now() == MONDAY + timedelta(days=1)
    assert clock.monotonic() == pytest.approx(86_400.0)
    assert clock.wall_delay(86_400.0 + 1440.0) == pytest.approx(1.0)
    base.jump(-3600)  # the host's wall clock steps back: simulated time does not
    assert clock.offset() == pytest.approx(86_400.0)
    node = sim.node_clock("saint-paul", "er-gate", sim.clock(base, at_offset=16.5 * 3600))
    assert node.now() == MONDAY + timedelta(hours=15.5)  # a clock_jump of -1 h at 16:00


def test_bad_simulation_arguments(hanoi: City) -> None:
    with pytest.raises(SimulationError, match="aware"):
        Simulation(hanoi, start=datetime(2026, 3, 2))
    with pytest.raises(SimulationError, match="2020"):
        Simulation(hanoi, start=datetime(2019, 3, 2, tzinfo=UTC))
    with pytest.raises(SimulationError, match="speed"):
        Simulation(hanoi, start=MONDAY, speed=0)
    sim = Simulation(hanoi, start=MONDAY)
    with pytest.raises(SimulationError, match="no sensor"):
        sim.pin_tracks("bach-mai", "er-gate", "nope", 0, 10)
    with pytest.raises(SimulationError, match="not a serial"):
        sim.serial_source("bach-mai", "er-gate", "door-er")
    with pytest.raises(SimulationError, match="no GPIO"):
        sim.pin_tracks("lang-ha", "aq-1", "pms5003", 0, 10)
