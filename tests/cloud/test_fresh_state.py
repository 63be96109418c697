"""A processor never starts a new recovery store by itself beside journals a processor has
already read and trimmed (cloud/fresh_state.py): with empty states it would write the hours of
what the journals still hold from that part alone, over the complete figures stored. Before,
a lost or deleted `state.dir/recovery` started over without a word. Real SQLite journals, the
real `urbanpulse cloud run` and `cloud new-state` entry points (they stop before any broker
or InfluxDB is needed), a real Bytewax recovery store."""

from __future__ import annotations

from pathlib import Path

import pytest

from cloud.cli import main as cloud_main
from cloud.fresh_state import FreshStateRefused, check_new_store, journal_sites, trimmed_journals
from cloud.journal import Journal, journal_path

T0 = 1_780_000_000 * 10**9  # a receive time; the hour of 2026-05-28T20:00Z
SECOND = 10**9


def _journal(directory: Path, instance: str, messages: int, trim_below: int = 0) -> Journal:
    journal = Journal(journal_path(directory, instance), instance).open()
    journal.append([(f"urbanpulse/v1/site-{k % 2}/node-{k}/data", b"{}") for k in range(messages)],
                   T0, [T0 + k * SECOND for k in range(messages)])
    if trim_below:
        assert journal.trim(trim_below, T0 + 3600 * SECOND) == trim_below - 1
    return journal


def _config(tmp_path: Path) -> Path:
    path = tmp_path / "cloud.toml"
    path.write_text(f'[mqtt]\npassword_file = "{tmp_path}/m"\nca_file = "{tmp_path}/c"\n'
                    f'[influx]\npassword_file = "{tmp_path}/w"\n'
                    f'[state]\ndir = "{tmp_path}/state"\n'
                    '[flow]\naggregate_horizon_s = 7200\n')
    return path


def test_first_kept_counts_the_records_a_trim_let_go(tmp_path: Path) -> None:
    journal = _journal(tmp_path, "i0", 10)
    assert journal.first_kept() == 1
    journal.trim(4, T0 + 3600 * SECOND)
    assert journal.first_kept() == 4
    journal.trim(11, T0 + 3600 * SECOND)  # every record: the next one's number
    assert journal.first_kept() == 11
    journal.close()


def test_a_new_store_beside_a_trimmed_journal_is_refused_naming_it(tmp_path: Path) -> None:
    directory = tmp_path / "journal"
    _journal(directory, "i0", 10).close()  # read, never trimmed: a new store reads it all
    _journal(directory, "i1", 10, trim_below=6).close()
    rdir = tmp_path / "recovery"
    [trimmed] = trimmed_journals(directory)
    assert (trimmed.path.name, trimmed.let_go, trimmed.first_received_ns) == (
        journal_path(directory, "i1").name, 5, T0 + 5 * SECOND)
    with pytest.raises(FreshStateRefused, match=rf"{journal_path(directory, 'i1').name} \(records 1-5\)"):
        check_new_store(rdir, directory)
    rdir.mkdir()  # an empty directory is no store either
    with pytest.raises(FreshStateRefused):
        check_new_store(rdir, directory)
    assert journal_sites(directory) == {"site-0", "site-1"}


def test_untrimmed_journals_or_an_existing_store_start_as_before(tmp_path: Path) -> None:
    directory = tmp_path / "journal"
    _journal(directory, "i0", 10).close()
    check_new_store(tmp_path / "recovery", directory)  # a first start
    check_new_store(tmp_path / "recovery", tmp_path / "none")  # no journal yet
    _journal(directory, "i1", 10, trim_below=6).close()
    (tmp_path / "recovery").mkdir()
    (tmp_path / "recovery" / "part-0.sqlite3").write_bytes(b"")
    check_new_store(tmp_path / "recovery", directory)  # resumed: the trim is the store's business


def test_cloud_run_stops_with_exit_2_and_new_state_makes_the_store_on_purpose(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = _config(tmp_path)
    state = tmp_path / "state"
    _journal(state / "journal", "i0", 10, trim_below=6).close()
    assert cloud_main(["run", "--config", str(config)]) == 2
    err = capsys.readouterr().err
    assert "the recovery store" in err
    assert "records 1-5" in err
    assert "cloud new-state" in err
    assert not (state / "recovery").exists()  # nothing made, nothing read

    assert cloud_main(["new-state", "--config", str(config)]) == 0
    out = capsys.readouterr().out
    assert "records 1-5 were trimmed" in out
    # the first record held, received at T0 + 5 s, less the 2 h horizon, to the hour
    for site in ("site-0", "site-1"):
        assert f"recompute --config {config} --site {site} --from 2026-05-28T18:00:00" in out
    assert any((state / "recovery").iterdir())
    check_new_store(state / "recovery", state / "journal")  # `cloud run` goes ahead now

    assert cloud_main(["new-state", "--config", str(config)]) == 2  # never over a store
    assert "holds a recovery store already" in capsys.readouterr().err
