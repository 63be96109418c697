"""Counting drivers' state lives in the outbox and is committed in the same SQLite
transaction as the readings it produced (real SQLite files)."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime
from pathlib import Path

import pytest

from edge.driver_state import StagedState
from edge.drivers.base import Sample
from edge.errors import OutboxError
from edge.outbox import Outbox

NOW = datetime(2026, 11, 28, 8, 0, tzinfo=UTC)
NS = 1_795_852_800_000_000_000


def _door(count: float) -> Sample:
    return Sample("door-1", "hospital.door", {"count": count, "interval_s": 60.0}, NOW)


def _outbox(tmp_path: Path) -> Outbox:
    return Outbox(tmp_path / "outbox.sqlite3").open()


def test_state_is_committed_with_the_readings_and_survives_a_reopen(tmp_path: Path) -> None:
    outbox = _outbox(tmp_path)
    keeper = StagedState(outbox)
    assert keeper.load("upfw/d/doors") is None
    keeper.stage("upfw/d/doors", '{"total": 12}')
    assert keeper.load("upfw/d/doors") == '{"total": 12}'  # staged: a restarted driver sees it
    assert outbox.load_state("upfw/d/doors") is None  # not committed yet
    outbox.append([_door(3.0)], NS, keeper.take())
    assert keeper.take() == {}
    outbox.close()

    reopened = _outbox(tmp_path)
    assert StagedState(reopened).load("upfw/d/doors") == '{"total": 12}'
    assert reopened.stats().depth == 1


def test_state_alone_is_committed_too(tmp_path: Path) -> None:
    outbox = _outbox(tmp_path)
    assert outbox.append([], NS, {"k": "v"}) == []
    assert outbox.load_state("k") == "v"
    assert outbox.stats().depth == 0


def test_a_failed_commit_keeps_neither_the_readings_nor_the_state(tmp_path: Path) -> None:
    outbox = _outbox(tmp_path)
    outbox.append([_door(1.0)], NS, {"k": "before"})
    # A real SQLite failure inside the transaction, after the readings were inserted.
    db = sqlite3.connect(outbox.path)
    db.execute("CREATE TRIGGER refuse AFTER INSERT ON driver_state "
               "BEGIN SELECT RAISE(ABORT, 'disk says no'); END")
    db.commit()
    db.close()
    with pytest.raises(OutboxError, match="disk says no"):
        outbox.append([_door(2.0)], NS + 1, {"k": "after"})
    assert outbox.load_state("k") == "before"
    assert outbox.stats().depth == 1
