"""Numbers of the node config that TOML can write as nan or inf, or too large for what
they feed: each refused by `check-config` naming its key, where before the agent took
them and stalled (a partial batch never due, a backlog never drained, no heartbeat) or
died at run time on a conversion, named nowhere."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from edge.config import parse_config
from urbanpulse.cli import main
from urbanpulse.errors import ConfigError

NAN, INF = float("nan"), float("inf")


def _config(table: str, key: str, value: Any) -> Any:
    raw: dict[str, Any] = {"node": {"id": "n1", "site": "s1"},
                           "mqtt": {"password_file": "/p", "host": "127.0.0.1", "tls": False},
                           "sensors": [{"id": "pm-1", "driver": "sds011", "port": "/dev/null"}]}
    raw.setdefault(table, {})[key] = value
    return parse_config(raw)


@pytest.mark.parametrize(("table", "key"), [
    ("outbox", "batch_max_delay_s"),
    ("outbox", "live_window_s"),
    ("outbox", "backlog_batches_per_s"),
    ("outbox", "max_age_days"),
    ("agent", "heartbeat_s"),
])
@pytest.mark.parametrize("value", [NAN, INF])
def test_a_number_that_is_not_finite_is_refused_naming_its_key(table: str, key: str,
                                                               value: float) -> None:
    with pytest.raises(ConfigError, match=rf"^{table}\.{key}: must be a finite number"):
        _config(table, key, value)


@pytest.mark.parametrize(("table", "key", "value", "reason"), [
    ("outbox", "max_age_days", 1e300, r"must be <= 3650"),
    ("mqtt", "keepalive_s", 65536, r"must be <= 65535 \(MQTT's keep alive is 16 bits\)"),
])
def test_a_number_too_large_for_what_it_feeds_is_refused_naming_its_key(
        table: str, key: str, value: float, reason: str) -> None:
    with pytest.raises(ConfigError, match=rf"^{table}\.{key}: {reason}"):
        _config(table, key, value)


def test_the_largest_allowed_pass() -> None:
    assert _config("mqtt", "keepalive_s", 65535).mqtt.keepalive_s == 65535
    assert _config("outbox", "max_age_days", 3650).outbox.max_age_s == 3650 * 86400


def test_check_config_names_the_key(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "node.toml"
    path.write_text('[node]\nid = "n1"\nsite = "s1"\n[mqtt]\nhost = "127.0.0.1"\ntls = false\n'
                    'password_file = "/p"\n[outbox]\nbatch_max_delay_s = nan\n'
                    '[[sensors]]\nid = "pm-1"\ndriver = "sds011"\nport = "/dev/null"\n')
    assert main(["edge", "check-config", str(path)]) == 2
    assert capsys.readouterr().err == ("config error: outbox.batch_max_delay_s: must be a finite "
                                       "number of seconds, got nan\n")


def test_a_heartbeat_too_rare_for_the_offline_alert_is_refused() -> None:
    """"Node offline" fires after 5 minutes without an online heartbeat: a node set to
    send one every 300 s or more would be reported offline while up (found by review)."""
    assert _config("agent", "heartbeat_s", 120).heartbeat_s == 120
    with pytest.raises(ConfigError, match=r"^agent\.heartbeat_s: must be <= 120, got 300: "
                                          r"the cloud's \"Node offline\" alert"):
        _config("agent", "heartbeat_s", 300)
