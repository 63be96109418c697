"""Two sensors whose serial ports are one device under two names (a by-id link and the
tty it points to) pass parse_config, which does no I/O; `check_devices`, run on the node,
resolves the links and refuses them naming both keys. Before, both drivers opened it: the
second failed at every start with "port busy", and which of the two got the device could
change from one start to the next (its readings then under the other sensor's id)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from edge.config import check_devices, parse_config
from urbanpulse.errors import ConfigError


@pytest.fixture
def tty() -> Iterator[str]:
    """A real pseudo-terminal's slave path (/dev/pts/N)."""
    master, slave = os.openpty()
    try:
        yield os.ttyname(slave)
    finally:
        os.close(slave)
        os.close(master)


def _raw(*ports: str) -> dict[str, Any]:
    return {"node": {"id": "n1", "site": "s1"},
            "mqtt": {"password_file": "/p", "host": "127.0.0.1", "tls": False},
            "sensors": [{"id": f"pm-{i}", "driver": "sds011", "port": port}
                        for i, port in enumerate(ports)]}


def test_a_link_and_the_tty_it_points_to_are_refused_naming_both(tty: str, tmp_path: Path) -> None:
    link = tmp_path / "usb-1a86_USB_Serial-if00-port0"
    link.symlink_to(tty)
    config = parse_config(_raw(str(link), tty))  # no I/O: passes
    with pytest.raises(ConfigError, match=(
            rf"^sensors\[1\]\.port: '{tty}' is the device {tty}, already used by "
            rf"sensors\[0\]\.port \(sensor 'pm-0', '{link}'\): one sensor's only")):
        check_devices(config)


def test_two_links_to_one_tty_are_refused(tty: str, tmp_path: Path) -> None:
    (tmp_path / "a").symlink_to(tty)
    (tmp_path / "b").symlink_to(tmp_path / "a")
    with pytest.raises(ConfigError) as info:
        check_devices(parse_config(_raw(str(tmp_path / "b"), "/dev/ttyUSB9", str(tmp_path / "a"))))
    assert info.value.key == "sensors[2].port"


def test_distinct_and_absent_devices_pass(tty: str, tmp_path: Path) -> None:
    # on a laptop the by-id names do not exist: compared as written
    check_devices(parse_config(_raw(tty, "/dev/serial/by-id/usb-x-if00",
                                    "/dev/serial/by-id/usb-x-if01")))


def test_check_config_and_run_refuse_it_on_the_node(tty: str, tmp_path: Path,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    from urbanpulse.cli import main

    link = tmp_path / "usb-1a86_USB_Serial-if00-port0"
    link.symlink_to(tty)
    path = tmp_path / "node.toml"
    path.write_text('[node]\nid = "n1"\nsite = "s1"\n[mqtt]\nhost = "127.0.0.1"\ntls = false\n'
                    'password_file = "/p"\n'
                    f'[[sensors]]\nid = "pm-0"\ndriver = "sds011"\nport = "{link}"\n'
                    f'[[sensors]]\nid = "pm-1"\ndriver = "pms5003"\nport = "{tty}"\n',
                    encoding="utf-8")
    assert main(["edge", "check-config", str(path)]) == 2
    assert capsys.readouterr().err == (
        f"config error: sensors[1].port: '{tty}' is the device {tty}, already used by "
        f"sensors[0].port (sensor 'pm-0', '{link}'): one sensor's only (a second driver could "
        "never open it); remove one, and write ports by their by-id names throughout\n")
