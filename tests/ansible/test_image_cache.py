"""The cache of test images and wheels (tests/ansible/booted_node.py `cached`): built once
under the cache's lock, reused after, older recipes removed, nothing left under the name
by a build that fails. Plain folders stand in for the debootstrap images (no root here)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.ansible.booted_node import cached


def test_an_entry_is_built_once_and_an_older_recipes_removed(tmp_path: Path) -> None:
    old = tmp_path / "img-old"
    old.mkdir()
    other = tmp_path / "wheels-1"
    other.mkdir()
    builds: list[Path] = []

    def build(folder: Path) -> None:
        builds.append(folder)
        folder.mkdir()
        (folder / "made").write_text("yes")

    first = cached(tmp_path, "img-new", "img", build)
    again = cached(tmp_path, "img-new", "img", build)
    assert first == again == tmp_path / "img-new"
    assert (first / "made").read_text() == "yes"
    assert len(builds) == 1
    assert builds[0].name == ".building-img-new"  # built aside, renamed once complete
    assert not old.exists()
    assert other.is_dir()  # another prefix's entry stays


def test_a_failed_build_leaves_nothing_under_the_name(tmp_path: Path) -> None:
    def failing(folder: Path) -> None:
        folder.mkdir()
        raise AssertionError("debootstrap exited 1")

    with pytest.raises(AssertionError, match="debootstrap exited 1"):
        cached(tmp_path, "img-x", "img", failing)
    assert not (tmp_path / "img-x").exists()
    # the next call builds again, over the half-made folder
    assert cached(tmp_path, "img-x", "img", lambda folder: folder.mkdir()).is_dir()
