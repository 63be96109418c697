"""The demo's simulated city keeps its sequence numbers between runs, and the name of that
numbering with them, as an edge agent's outbox does: a wiped demo directory numbers from 0
again under a new name, which the cloud tells from redeliveries."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from urbanpulse.demo.city_publisher import load_seq, save_seq
from urbanpulse.errors import ConfigError
from urbanpulse.wire.payload import NUMBERING_ID


def test_the_numbering_name_is_kept_with_the_numbers_and_new_when_they_start_again(
        tmp_path: Path) -> None:
    path = tmp_path / "city_seq.json"
    seqs, name = load_seq(path)
    assert seqs == {}
    assert NUMBERING_ID.fullmatch(name)
    save_seq(path, {("hn", "aq-01", "pm-1"): 42}, name)
    assert load_seq(path) == ({("hn", "aq-01", "pm-1"): 42}, name)
    path.unlink()
    assert load_seq(path)[1] != name


def test_a_file_from_before_names_keeps_its_numbers_under_a_new_name(tmp_path: Path) -> None:
    path = tmp_path / "city_seq.json"
    path.write_text(json.dumps({"hn/aq-01/pm-1": 7}), encoding="utf-8")
    seqs, name = load_seq(path)
    assert seqs == {("hn", "aq-01", "pm-1"): 7}
    assert NUMBERING_ID.fullmatch(name)


@pytest.mark.parametrize("name", ["node-7", 12, "0123456789ABCDEF"])
def test_a_broken_name_stops_the_demo_naming_the_file(tmp_path: Path, name: object) -> None:
    path = tmp_path / "city_seq.json"
    path.write_text(json.dumps({"numbering": name, "hn/aq-01/pm-1": 7}), encoding="utf-8")
    with pytest.raises(ConfigError, match="numbering") as err:
        load_seq(path)
    assert err.value.key == str(path)
