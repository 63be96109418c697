"""`edge status` run the moment an agent makes its outbox: the file exists with some or
none of the schema's tables committed (SQLite commits `_SCHEMA`'s statements one by one).
Before, it exited 3 with "cannot read the outbox ...: no such table: outbox" (or `meta`);
an outbox being made holds nothing yet, and says so."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from edge.agent import OUTBOX_FILE
from edge.outbox import _SCHEMA, Outbox, read_stats
from urbanpulse.cli import main

REPO = Path(__file__).resolve().parents[2]
SDS011 = REPO / "edge/drivers/sds011/sample.toml"
STATEMENTS = [s.strip() for s in _SCHEMA.split(";") if s.strip()]


def _node(tmp_path: Path) -> Path:
    path = tmp_path / "node.toml"
    path.write_text(SDS011.read_text().replace('state_dir = "/var/lib/urbanpulse"',
                                               f'state_dir = "{tmp_path}"'))
    return path


def _made_up_to(path: Path, statements: int) -> None:
    """The outbox file as an agent leaves it after committing its first `statements`."""
    db = sqlite3.connect(path, isolation_level=None)
    try:
        db.execute("PRAGMA journal_mode=WAL")
        for statement in STATEMENTS[:statements]:
            db.execute(statement)
    finally:
        db.close()


@pytest.mark.parametrize("statements", range(len(STATEMENTS)))
def test_status_of_an_outbox_being_made_says_it_is_empty(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], statements: int) -> None:
    assert STATEMENTS[0].startswith("CREATE TABLE IF NOT EXISTS outbox")
    _made_up_to(tmp_path / OUTBOX_FILE, statements)
    assert main(["edge", "status", "--config", str(_node(tmp_path))]) == 0
    out, err = capsys.readouterr()
    assert err == ""
    assert "outbox:    0 readings waiting; 0 evicted" in out.splitlines()


def test_an_empty_outbox_file_reads_as_empty(tmp_path: Path) -> None:
    (tmp_path / OUTBOX_FILE).touch()
    stats = read_stats(tmp_path / OUTBOX_FILE)
    assert (stats.depth, stats.oldest_created_ns, stats.evicted) == (0, None, 0)


def test_a_made_outbox_still_counts_its_rows_and_evictions(tmp_path: Path) -> None:
    outbox = Outbox(tmp_path / OUTBOX_FILE).open()
    outbox.close()
    db = sqlite3.connect(tmp_path / OUTBOX_FILE, isolation_level=None)
    try:
        db.execute("INSERT OR REPLACE INTO meta (key, value) VALUES ('evicted', 7)")
    finally:
        db.close()
    assert read_stats(tmp_path / OUTBOX_FILE).evicted == 7
