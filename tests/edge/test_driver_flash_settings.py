"""FlashSettings: what a driver wrote into a sensor's flash without reading it back, kept
in the agent's driver state (a real outbox on SQLite)."""

from __future__ import annotations

from pathlib import Path

from edge.driver_state import StagedState
from edge.drivers.flash_settings import FlashSettings
from edge.outbox import Outbox
from urbanpulse.clock import FakeClock

KEY = "sds011/pm-1/flash"


def test_a_write_is_remembered_across_a_restart_for_a_day(tmp_path: Path) -> None:
    clock = FakeClock()
    outbox = Outbox(tmp_path / "outbox.sqlite3").open()
    keeper = StagedState(outbox)
    first = FlashSettings(keeper, KEY, clock)
    assert not first.recently_written("report_mode", 1)
    first.record("report_mode", 1)
    outbox.append([], 0, keeper.take())

    clock.advance(23 * 3600.0)
    again = FlashSettings(StagedState(outbox), KEY, clock)  # the agent restarted
    assert again.recently_written("report_mode", 1)
    assert not again.recently_written("report_mode", 0)  # another value: write it
    assert not again.recently_written("working_period", 0)
    clock.advance(3600.0)
    assert not again.recently_written("report_mode", 1)  # a day old: write it again


def test_a_clock_stepped_far_back_lets_the_write_go(tmp_path: Path) -> None:
    clock = FakeClock()
    keeper = StagedState(Outbox(tmp_path / "outbox.sqlite3").open())
    FlashSettings(keeper, KEY, clock).record("abc", 1)
    clock.jump(-2 * 86400.0)
    assert not FlashSettings(keeper, KEY, clock).recently_written("abc", 1)


def test_a_damaged_record_counts_as_none(tmp_path: Path) -> None:
    keeper = StagedState(Outbox(tmp_path / "outbox.sqlite3").open())
    clock = FakeClock()
    for text in ("{not json", '{"abc": {"value": true, "at": "2026-01-01T00:00:00+00:00"}}',
                 '{"abc": {"value": 1, "at": "2026-01-01T00:00:00"}}', '["abc"]'):
        keeper.stage(KEY, text)
        settings = FlashSettings(keeper, KEY, clock)
        assert not settings.recently_written("abc", 1)
        assert settings.damaged
        settings.record("abc", 1)  # replaced by a sound record
        assert FlashSettings(keeper, KEY, clock).recently_written("abc", 1)


def test_without_a_state_keeper_nothing_is_remembered() -> None:
    settings = FlashSettings(None, KEY, FakeClock())
    settings.record("abc", 1)
    assert not FlashSettings(None, KEY, FakeClock()).recently_written("abc", 1)
