"""`urbanpulse dashboards check` with credentials InfluxDB refuses, on the real InfluxDB and
the real command: a wrong password is one message naming the user, exit 2, instead of every
query (about 160) failing alike with a 401 and exit 1."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from urbanpulse.stack import StackInfo

pytestmark = pytest.mark.stack

ROOT = Path(__file__).resolve().parents[2]


def _check(url: str, user: str, password_file: Path, db: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "urbanpulse.cli", "dashboards", "check", "--influx-url", url,
         "--user", user, "--password-file", str(password_file), "--db", db],
        cwd=ROOT, capture_output=True, text=True, timeout=300, check=False)


def test_a_wrong_password_is_one_message_and_exit_2(db_ready: StackInfo, tmp_path: Path) -> None:
    creds = db_ready.influx("reader")
    wrong = tmp_path / "wrong.password"
    wrong.write_text("not-the-password\n")
    done = _check(creds.url, creds.username, wrong, db_ready.database)
    assert done.returncode == 2, done.stdout[-2000:]
    assert "FAIL" not in done.stdout
    (line,) = done.stderr.splitlines()
    assert f"--user {creds.username}:" in line
    assert "refused the credentials" in line
    assert "401" in line
    assert str(wrong) in line
