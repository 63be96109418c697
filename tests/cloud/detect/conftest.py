"""The detector tests read NAB's data from the `shared/` folder beside the repository
(or $URBANPULSE_SHARED); `bench` is importable through pytest's pythonpath."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def nab_root() -> Path:
    from bench.nab.corpus import nab_dir

    root = nab_dir()
    if not (root / "labels" / "combined_windows.json").exists():
        pytest.skip(f"NAB data not found at {root} (set URBANPULSE_SHARED to the shared folder)")
    return root
