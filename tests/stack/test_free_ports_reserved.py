"""free_ports with URBANPULSE_TEST_PORTS (set by tests/conftest.py for every test process):
ports of the range only, none handed out twice while reserved, a bound one never."""

from __future__ import annotations

import os
import socket
import tempfile
from pathlib import Path

import pytest

from urbanpulse.stack.errors import StackError
from urbanpulse.stack.process import RESERVED_PORTS_ENV, free_ports

SPAN = 8
# A loopback address no other test binds: the other test processes' servers on ports of the
# range (127.0.0.1) leave this address's ports free.
ADDR = "127.0.0.3"


@pytest.fixture
def small_range(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> range:
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))  # a reservation book of its own
    high = int(os.environ[RESERVED_PORTS_ENV].partition("-")[2])
    ports = range(high - SPAN + 1, high + 1)
    monkeypatch.setenv(RESERVED_PORTS_ENV, f"{ports[0]}-{ports[-1]}")
    return ports


def test_reserved_ports_are_not_handed_out_again(small_range: range) -> None:
    first = free_ports(3, ADDR)
    second = free_ports(3, ADDR)
    assert len(set(first + second)) == 6
    assert set(first + second) <= set(small_range)


def test_a_bound_port_is_skipped_and_an_exhausted_range_says_so(small_range: range) -> None:
    with socket.socket() as squatter:
        squatter.bind((ADDR, small_range[0]))
        got = free_ports(SPAN - 1, ADDR)
        assert small_range[0] not in got
        with pytest.raises(StackError, match=rf"fewer than 1 ports of \S+ \({RESERVED_PORTS_ENV}\)"):
            free_ports(1, ADDR)


@pytest.mark.parametrize("span", ["20000", "x-y", "30000-20000", "80-90", "60000-70000"])
def test_a_bad_range_is_refused_naming_the_variable(monkeypatch: pytest.MonkeyPatch, span: str) -> None:
    monkeypatch.setenv(RESERVED_PORTS_ENV, span)
    with pytest.raises(StackError, match=f"{RESERVED_PORTS_ENV} must be LOW-HIGH"):
        free_ports(1)
