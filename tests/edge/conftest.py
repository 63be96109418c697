"""Fixtures shared by the edge agent's tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from firmware_bridge.protocols.sds011.emulator import Sds011Emulator


@pytest.fixture
def steady_sds011() -> Iterator[Sds011Emulator]:
    """An SDS011 on a pseudo-terminal reporting the same values 20 times a second."""
    emu = Sds011Emulator(lambda: (21.0, 42.0), period_s=0.05, warmup_s=0.0)
    emu.start()
    yield emu
    emu.stop()
