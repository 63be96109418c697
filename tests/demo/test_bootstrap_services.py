"""scripts/bootstrap (run by the README's two commands) on a fresh Debian 12: the `influxdb`
and `mosquitto` packages it installs must not leave their system services running.

Debian's postinst scripts enable the service and, with systemd running, start it
(`deb-systemd-invoke start influxdb.service`): influxd on :8086 (every address, auth off,
the package's config) and 127.0.0.1:8088, mosquitto on 1883. The stack runs its own servers
on 8086 and 8088, so `scripts/demo` stopped at `port 8086 ... already in use`, and the machine
was left with an open, unauthenticated InfluxDB on the network, started again at each boot.

The Debian tools are replaced by stubs on PATH that log their calls and do what the
packages' maintainer scripts do (a start refused for a masked unit, as systemctl refuses it).
"""

from __future__ import annotations

import os
import stat
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]

STUBS = {
    # installed unless named in $STUB_STATE/missing
    "dpkg-query": """\
pkg=${@: -1}
grep -qx "$pkg" "$STUB_STATE/missing" && exit 1
printf 'install ok installed'
""",
    # install: each server package's postinst enables its unit and starts it unless masked
    "apt-get": """\
echo "apt-get $*" >> "$STUB_STATE/log"
[ "$1" = install ] || exit 0
for pkg in "$@"; do
    case $pkg in influxdb|mosquitto) ;; *) continue ;; esac
    echo "enabled $pkg.service" >> "$STUB_STATE/log"
    if [ -e "$STUB_STATE/masked/$pkg.service" ]; then
        echo "start $pkg.service refused: masked" >> "$STUB_STATE/log"
    else
        echo "started $pkg.service" >> "$STUB_STATE/log"
    fi
done
""",
    "systemctl": """\
echo "systemctl $*" >> "$STUB_STATE/log"
action=$1; shift
for unit in "$@"; do
    case $action in
        mask) touch "$STUB_STATE/masked/$unit" ;;
        unmask) rm -f "$STUB_STATE/masked/$unit" ;;
    esac
done
""",
    "id": 'echo 0\n',
    "sudo": 'echo "sudo $*" >> "$STUB_STATE/log"; exit 1\n',
}


def _executable(path: Path, body: str) -> None:
    path.write_text("#!/usr/bin/env bash\n" + body)
    path.chmod(path.stat().st_mode | stat.S_IXUSR)


def _bootstrap(tmp_path: Path, missing: list[str]) -> tuple[list[str], str]:
    """scripts/bootstrap dev <venv> with `missing` not installed; the stubs' log, its output."""
    stubs, state, venv = tmp_path / "bin", tmp_path / "state", tmp_path / "venv"
    for folder in (stubs, state / "masked", venv / "bin"):
        folder.mkdir(parents=True)
    for name, body in STUBS.items():
        _executable(stubs / name, body)
    # an existing virtualenv: bootstrap only installs the project into it
    _executable(venv / "bin" / "python", "exit 0\n")
    _executable(venv / "bin" / "pip", 'echo "pip $*" >> "$STUB_STATE/log"\n')
    (state / "missing").write_text("".join(f"{p}\n" for p in missing))
    env = {**os.environ, "PATH": f"{stubs}:{os.environ['PATH']}", "STUB_STATE": str(state)}
    done = subprocess.run([str(REPO / "scripts" / "bootstrap"), "dev", str(venv)], env=env,
                          capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    log = (state / "log").read_text().splitlines()
    assert not list((state / "masked").iterdir()), "a unit was left masked"
    return log, done.stdout


def test_installed_servers_are_neither_started_nor_enabled(tmp_path: Path) -> None:
    log, out = _bootstrap(tmp_path, ["influxdb", "mosquitto", "python3-dev"])
    assert not [line for line in log if line.startswith("started")], log
    install = next(i for i, line in enumerate(log) if line.startswith("apt-get install"))
    for unit in ("influxdb.service", "mosquitto.service"):
        assert f"start {unit} refused: masked" in log
        disabled = [i for i, line in enumerate(log)
                    if line.startswith("systemctl disable") and unit in line.split()]
        assert disabled, log
        assert disabled[0] > install, log
        assert unit in out
    assert log[-1].startswith("pip install")


def test_a_server_already_installed_is_left_as_it_is(tmp_path: Path) -> None:
    log, _ = _bootstrap(tmp_path, ["python3-dev"])
    assert [line for line in log if line.startswith("apt-get install")], log
    assert not [line for line in log if line.startswith("systemctl")], log


def test_a_fresh_machine_gets_the_compilers_the_tests_use(tmp_path: Path) -> None:
    # tests/firmware_bridge/test_upfw.py builds the boards' C library with gcc and their
    # Arduino sketch with g++, which Debian's gcc package does not bring
    log, _ = _bootstrap(tmp_path, ["gcc", "g++", "libc6-dev"])
    install = next(line for line in log if line.startswith("apt-get install")).split()
    assert {"gcc", "g++", "libc6-dev"} <= set(install)
