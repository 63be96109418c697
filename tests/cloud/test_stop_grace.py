"""How long a stop waits for its last epoch (cloud/stop_grace.py): while it moves on, up to
`flow.stop_drain_s`; STALL_S once nothing of it moves (InfluxDB down). On a clock of the
test's: `ended` advances it by the time it is asked to wait."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from cloud.cli import SHUTDOWN_GRACE_S
from cloud.config import parse_cloud_config
from cloud.stop_grace import STALL_S, DrainEnd, EpochProgress, store_marker, wait_for_last_epoch
from urbanpulse.errors import ConfigError

ROOT = Path(__file__).resolve().parents[2]


class Run:
    """The dataflow's last epoch: `moves_until` (s) its progress moves at every wait,
    `ends_at` (s) it ends."""

    def __init__(self, moves_until: float, ends_at: float = float("inf")) -> None:
        self.now = 0.0
        self.moves_until = moves_until
        self.ends_at = ends_at
        self.progress = EpochProgress()

    def monotonic(self) -> float:
        return self.now

    def ended(self, timeout: float) -> bool:
        assert timeout > 0
        self.now += timeout
        if self.now <= self.moves_until:
            self.progress.end_of_input()
            self.progress.tick()
        return self.now >= self.ends_at

    def wait(self, cap_s: float) -> DrainEnd | None:
        return wait_for_last_epoch(self.ended, lambda: self.progress.marker(None), cap_s,
                                   monotonic=self.monotonic)


def test_a_last_epoch_that_moves_on_is_waited_for_past_the_stall_time() -> None:
    run = Run(moves_until=50.0, ends_at=40.0)
    assert run.wait(120.0) is None
    assert run.now == pytest.approx(40.0)


def test_one_that_stands_still_is_given_up_after_the_stall_time() -> None:
    run = Run(moves_until=0.0)  # InfluxDB down: the sink waits, nothing is written
    assert run.wait(120.0) is DrainEnd.STALLED
    assert run.now == pytest.approx(STALL_S)


def test_one_that_stops_moving_is_given_up_the_stall_time_after_its_last_move() -> None:
    run = Run(moves_until=10.0)
    assert run.wait(120.0) is DrainEnd.STALLED
    assert 10.0 + STALL_S - 0.3 <= run.now <= 10.0 + STALL_S


def test_one_still_moving_at_the_cap_is_given_up_at_the_cap() -> None:
    run = Run(moves_until=1000.0)
    assert run.wait(20.0) is DrainEnd.CAPPED
    assert run.now == pytest.approx(20.0)


def test_what_comes_before_the_end_of_the_input_is_no_progress_of_the_last_epoch() -> None:
    """A process of a cluster stopped alone: its snapshots and writes go on, the others'
    epochs, and its input never ends."""
    run = Run(moves_until=0.0)
    progress = EpochProgress()

    def ended(timeout: float) -> bool:
        run.ended(timeout)
        progress.tick()
        return False

    assert wait_for_last_epoch(ended, lambda: progress.marker(None), 120.0,
                               monotonic=run.monotonic) is DrainEnd.STALLED
    assert run.now == pytest.approx(STALL_S)


def test_the_recovery_stores_files_growing_is_progress(tmp_path: Path) -> None:
    assert store_marker(None) == (0, 0)
    assert store_marker(tmp_path / "absent") == (0, 0)
    part = tmp_path / "part-0.sqlite3"
    part.write_bytes(b"x")
    before = store_marker(tmp_path)
    with part.open("ab") as f:
        f.write(b"snapshots")
    assert store_marker(tmp_path) != before
    progress = EpochProgress()  # the others' snapshots, in a store a cluster shares
    assert progress.marker(tmp_path) is None
    progress.end_of_input()
    assert progress.marker(tmp_path) == (1, store_marker(tmp_path))


def _flow(**flow: Any) -> Any:
    return parse_cloud_config({"mqtt": {"password_file": "p", "tls": False},
                               "influx": {"password_file": "p"}, "flow": flow}).flow


def test_flow_stop_drain_s_defaults_to_two_minutes_and_is_checked() -> None:
    assert _flow().stop_drain_s == 120.0
    assert _flow(stop_drain_s=30).stop_drain_s == 30.0
    for bad in (0.5, 0, "60", float("nan"), float("inf")):
        with pytest.raises(ConfigError, match=r"flow\.stop_drain_s"):
            _flow(stop_drain_s=bad)


def test_flow_stop_defaults_to_abort_and_is_checked() -> None:
    assert _flow().stop == "abort"
    assert _flow(stop="drain").stop == "drain"
    for bad in ("Abort", "kill", "", 1, True):
        with pytest.raises(ConfigError, match=r"flow\.stop\b"):
            _flow(stop=bad)


def test_an_abort_stop_waits_for_an_epoch_end_that_moves_whether_the_input_ended_or_not(
        tmp_path: Path) -> None:
    progress = EpochProgress()
    before = progress.moves(tmp_path)
    progress.tick()  # a snapshot of the epoch end under way: the abort's wait goes on
    assert progress.moves(tmp_path) != before
    assert progress.marker(tmp_path) is None  # the drain's wait counts only after the input


def test_systemd_waits_for_a_stop_longer_than_the_processor_does() -> None:
    """The processor's unit (ansible/roles/processor) SIGKILLs at TimeoutStopSec: a clean
    stop's longest (the default flow.stop_drain_s, then Bytewax's SHUTDOWN_GRACE_S) fits."""
    unit = ROOT / "ansible" / "roles" / "processor" / "files" / "urbanpulse-cloud.service"
    [timeout] = re.findall(r"^TimeoutStopSec=(\d+)$", unit.read_text(), re.MULTILINE)
    assert int(timeout) >= _flow().stop_drain_s + SHUTDOWN_GRACE_S + 30
