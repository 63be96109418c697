"""Fixtures for the firmware_bridge tests."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

import firmware_bridge.protocols
from urbanpulse.testing import wait_for

PROTOCOLS_DIR = Path(firmware_bridge.protocols.__file__ or "").parent

GoldenLoader = Callable[[str], dict[str, bytes]]
Waiter = Callable[..., None]


def _load_golden(protocol: str) -> dict[str, bytes]:
    """`<name> <hex bytes>` lines of a protocol's golden/datasheet.txt."""
    frames: dict[str, bytes] = {}
    path = PROTOCOLS_DIR / protocol / "golden" / "datasheet.txt"
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        key, _, hexbytes = line.partition(" ")
        frames[key] = bytes.fromhex(hexbytes)
    return frames


def _wait_until(condition: Callable[[], bool], timeout_s: float = 5.0) -> None:
    wait_for(condition, timeout_s, "the condition", every_s=0.005)


@pytest.fixture
def golden() -> GoldenLoader:
    return _load_golden


@pytest.fixture
def wait_until() -> Waiter:
    """Poll a condition until it holds; fail after the deadline."""
    return _wait_until


@pytest.fixture
def pty() -> Iterator[tuple[int, str]]:
    """A real pseudo-terminal: its master fd and the path of its slave (the "port")."""
    master, slave = os.openpty()
    try:
        yield master, os.ttyname(slave)
    finally:
        os.close(slave)
        os.close(master)
