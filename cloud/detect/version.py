"""A fingerprint of the detectors' code, stored with their state in the dataflow's snapshots.

Detector state is learned, and its layout changes with the code; a snapshot taken by other
code is not resumed (the detectors start learning again) rather than crash the dataflow.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

_HERE = Path(__file__).resolve().parent


def _fingerprint() -> str:
    digest = hashlib.sha256()
    for path in sorted(_HERE.glob("*.py")):
        if path.name not in ("cli.py", "version.py"):
            digest.update(path.name.encode())
            digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


STATE_VERSION = _fingerprint()
