"""The detector tests import `bench.nab` from the repository root, and read NAB's data
from the `shared/` folder beside the repository (or $URBANPULSE_SHARED)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[3]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))


@pytest.fixture(scope="session")
def nab_root() -> Path:
    from bench.nab.corpus import nab_dir

    root = nab_dir()
    if not (root / "labels" / "combined_windows.json").exists():
        pytest.skip(f"NAB data not found at {root} (set URBANPULSE_SHARED to the shared folder)")
    return root
