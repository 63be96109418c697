"""`urbanpulse query ... --config FILE` with the wrong file, through the real command: the
message names the file, and a node's config given by mistake is said to be one (exit 2).
Before: `node: unknown table (known: ...)`, no file named."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from cloud.query import CityData
from cloud.query.errors import ConfigFileError
from urbanpulse.errors import ConfigError

ROOT = Path(__file__).resolve().parents[3]
NODE_SAMPLE = ROOT / "edge" / "drivers" / "sds011" / "sample.toml"
WINDOW = ["--start", "2026-01-01T00:00:00Z", "--end", "2026-01-02T00:00:00Z"]


def _query(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "urbanpulse.cli", "query", *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=120, check=False)


def test_a_node_config_is_named_and_said_to_be_one(tmp_path: Path) -> None:
    node = tmp_path / "node.toml"
    node.write_text(NODE_SAMPLE.read_text())
    done = _query("ledger", "--config", str(node), *WINDOW)
    assert done.returncode == 2
    assert done.stdout == ""
    (line,) = done.stderr.splitlines()
    assert line.startswith(f"urbanpulse query ledger: {node}: looks like an edge node config")
    assert "docs/cloud-config.md" in line
    assert "unknown table" not in line


def test_any_other_config_error_names_the_file_then_the_key(tmp_path: Path) -> None:
    cloud = tmp_path / "cloud.toml"
    cloud.write_text('[mqtt]\npassword_file = "p"\nca_file = "c"\n[influx]\npassword_file = "p"\n'
                     '[retention]\nraw = "30 days"\n')
    done = _query("events", "--config", str(cloud), *WINDOW)
    assert done.returncode == 2
    assert done.stderr.startswith(f"urbanpulse query events: {cloud}: retention.raw: ")
    with pytest.raises(ConfigFileError) as caught:
        CityData.from_config(cloud)
    assert (caught.value.path, caught.value.key) == (cloud, "retention.raw")
    assert isinstance(caught.value, ConfigError)  # what from_config is documented to raise
