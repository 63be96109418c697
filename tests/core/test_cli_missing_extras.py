"""`urbanpulse` on a node with only the `edge` extra: a group that needs a package of the
`cloud` extra says which and how to install it, instead of "not in this build" or a
traceback. The edge-only install is stood in for by a child interpreter in which the cloud
extra's packages cannot be imported (a second virtualenv would need the package index)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CLOUD_ONLY = ("bytewax", "numpy", "pandas", "orjson", "cryptography")
SAMPLE = ROOT / "edge/drivers/sds011/sample.toml"

_CHILD = f"""
import sys
from importlib.abc import MetaPathFinder

class _NotInstalled(MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in {CLOUD_ONLY!r}:
            raise ModuleNotFoundError(f"No module named {{name!r}}", name=name)
        return None

sys.meta_path.insert(0, _NotInstalled())
from urbanpulse.cli import main
sys.exit(main(sys.argv[1:]))
"""


def _urbanpulse(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", _CHILD, *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=60, check=False)


@pytest.mark.parametrize(("args", "package"), [
    (("detect", "--help"), "numpy"),  # its package imports numpy before the command does
    (("query", "--help"), "numpy"),
    (("demo", "--duration", "1"), "orjson"),
])
def test_a_group_without_its_extra_names_the_package_and_the_extra(args: tuple[str, ...],
                                                                   package: str) -> None:
    out = _urbanpulse(*args)
    assert out.returncode == 3, out.stderr
    assert f"needs {package!r}, which is not installed here (`pip install 'urbanpulse[cloud]'`)" \
        in out.stderr
    assert "Traceback" not in out.stderr
    assert "not in this build" not in out.stderr


def test_a_command_that_imports_its_engine_late_says_so_too(tmp_path: Path) -> None:
    config, state = tmp_path / "cloud.toml", tmp_path / "state"
    config.write_text('[mqtt]\npassword_file = "p"\nca_file = "c"\n[influx]\npassword_file = "p"\n'
                      f'[state]\ndir = "{state}"\n')
    assert _urbanpulse("cloud", "check-config", str(config)).returncode == 0  # the group loads
    out = _urbanpulse("cloud", "run", "--no-ingest", "--config", str(config))
    assert out.returncode == 3, out.stderr
    assert "urbanpulse cloud: needs 'bytewax', which is not installed here" in out.stderr
    assert "Traceback" not in out.stderr


def test_the_usage_marks_what_this_install_lacks_and_the_edge_still_runs() -> None:
    usage = _urbanpulse("--help")
    assert usage.returncode == 0
    line = next(ln for ln in usage.stdout.splitlines() if ln.strip().startswith("detect"))
    assert line.endswith("(needs 'numpy')"), line
    assert "not in this build" not in usage.stdout
    edge = _urbanpulse("edge", "check-config", str(SAMPLE))
    assert edge.returncode == 0, edge.stderr


def test_bytewax_on_a_python_without_its_wheels_names_the_pythons_not_pip() -> None:
    # On Debian 13's Python 3.13 the cloud extra installs without Bytewax (pyproject.toml's
    # marker): "pip install 'urbanpulse[cloud]'" would change nothing there.
    from urbanpulse.cli import _needs

    on_313 = _needs("cloud", "bytewax", (3, 13))
    assert "which the 'cloud' extra installs on Python 3.11-3.12 only" in on_313, on_313
    assert "no wheels for Python 3.13" in on_313
    assert "PYTHON=python3.12 scripts/bootstrap" in on_313
    assert "pip install" not in on_313
    assert _needs("cloud", "bytewax", (3, 12)) == (
        "urbanpulse cloud: needs 'bytewax', which is not installed here "
        "(`pip install 'urbanpulse[cloud]'`)")
    assert "which is not installed here" in _needs("query", "numpy", (3, 13))
