"""A node whose MQTT credential file cannot be read (not provisioned yet, or owned by root
with mode 0600 while the agent runs as its own user) keeps reading its sensors into the
outbox, as it does while the broker refuses it, and sends everything once the file is
readable."""

from __future__ import annotations

import logging
import re
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

from edge.agent import Agent
from edge.config import load_config
from firmware_bridge.protocols.sds011.emulator import Sds011Emulator
from tests.agent_thread import agent_in_thread
from tests.conftest import Collector
from urbanpulse.testing import wait_for

SITE = "hn-creds"


def test_an_unreadable_password_file_keeps_the_readings_until_it_is_readable(
        steady_sds011: Sds011Emulator, make_node_config: Callable[..., Path],
        collector: Callable[[str, str], Collector], tmp_path: Path,
        caplog: pytest.LogCaptureFixture) -> None:
    """Before, the publisher's thread ended on the file's error and the agent with it
    (exit 3): systemd started it again every 5 s, and each run read its sensors for a
    fraction of a second, so nearly every reading of the misconfigured hours was lost."""
    node = "aq-creds"
    path = make_node_config(SITE, node, f'[[sensors]]\nid = "pm-1"\ndriver = "sds011"\n'
                            f'port = "{steady_sds011.port}"\nsilence_timeout_s = 3.0\n')
    real = Path(re.search(r'password_file = "(.*)"', path.read_text())[1])  # type: ignore[index]
    missing = tmp_path / "provisioned-later.password"
    path.write_text(path.read_text().replace(str(real), str(missing)))
    seen = collector(SITE, node)
    agent = Agent(load_config(path))
    with caplog.at_level(logging.ERROR, logger="urbanpulse.edge.publisher"), \
            agent_in_thread(agent):
        wait_for(lambda: agent.drivers["pm-1"].readings >= 40, 30, "readings without credentials")
        assert agent.publisher is not None
        assert agent.publisher.failure is None
        assert "mqtt.password_file" in (agent.publisher.state.last_error or "")
        assert agent.health()["outbox_depth"] > 0
        shutil.copy(real, missing)
        wait_for(lambda: agent.publisher is not None and agent.publisher.state.connected, 30,
                 "the publisher to connect once the file is readable")
        read = agent.drivers["pm-1"].readings
        wait_for(lambda: set(range(read)) <= set(seen.seqs("pm-1")), 30,
                 "every reading read meanwhile at the broker")
    errors = [r for r in caplog.records if "cannot make the MQTT client" in r.getMessage()]
    assert len(errors) == 1  # once, not at every try
