"""A demo run again on the same stack finds fewer of its injected events (the processor
keeps its detectors' state, and each run injects the same events at the same minutes): its
closing summary says so, and how to start from a fresh stack, instead of only that a longer
run finds more (which on that stack it need not)."""

from __future__ import annotations

from pathlib import Path

from urbanpulse.demo.runner import FOUND_HINT, TRUTH_DIR, earlier_runs, found_hint


def test_a_fresh_stack_gets_the_longer_run_hint(tmp_path: Path) -> None:
    assert earlier_runs(tmp_path) is None
    (tmp_path / "cloud").mkdir()  # made, nothing kept yet
    assert earlier_runs(tmp_path) is None
    assert found_hint(None, ".venv/bin/urbanpulse", tmp_path) == FOUND_HINT


def test_a_later_run_says_the_detectors_saw_the_same_events(tmp_path: Path) -> None:
    truth = tmp_path / TRUTH_DIR
    truth.mkdir()
    for start in ("20261130T140000Z", "20261130T132500Z"):
        (truth / f"{start}.jsonl").write_text("")
    runs = earlier_runs(tmp_path)
    assert runs == ["20261130T132500Z", "20261130T140000Z"]
    hint = found_hint(runs, ".venv/bin/urbanpulse", Path(".urbanpulse"))
    assert hint != FOUND_HINT
    assert "ran the demo before (2 runs, the last started 20261130T140000Z)" in hint
    assert "`.venv/bin/urbanpulse stack down`, then remove .urbanpulse" in hint


def test_a_processor_state_without_ground_truth_is_a_later_run_too(tmp_path: Path) -> None:
    """A run killed outright wrote no ground truth, but its processor's state stays."""
    (tmp_path / "cloud").mkdir()
    (tmp_path / "cloud" / "journal").mkdir()
    runs = earlier_runs(tmp_path)
    assert runs == []
    assert "its processor's state is in the demo directory" in found_hint(runs, "urbanpulse",
                                                                          tmp_path)
