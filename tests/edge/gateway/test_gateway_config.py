"""The gateway's config: the sample passes, each mistake is refused naming its key, and
`urbanpulse gateway check-config` says so with the config error exit code."""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

import pytest

from edge.gateway.config import parse_config
from urbanpulse.cli import main
from urbanpulse.errors import ConfigError
from urbanpulse.wire.relay import MAX_RELAY_BYTES

SAMPLE = Path(__file__).parents[3] / "edge" / "gateway" / "sample.toml"


def sample() -> dict[str, Any]:
    return tomllib.loads(SAMPLE.read_text(encoding="utf-8"))


def test_the_sample_config_is_valid_and_fills_the_defaults() -> None:
    config = parse_config(sample())
    assert (config.site, config.id) == ("hn-bachmai", "gw-1")
    assert config.limits.max_bytes == MAX_RELAY_BYTES
    assert config.limits.max_delay_s == 1.0
    assert config.cloud_mqtt.username == "hn-bachmai.gw-1"  # a node of the cloud broker
    assert config.site_mqtt.tls
    assert config.cloud_mqtt.tls


@pytest.mark.parametrize(("table", "key", "value", "named", "why"), [
    ("gateway", "site", "Bach Mai", "gateway.site", "not a valid id"),
    ("gateway", "id", "", "gateway.id", "not a valid id"),
    ("gateway", "relay_max_delay_s", float("nan"), "gateway.relay_max_delay_s", "finite"),
    ("gateway", "relay_max_delay_s", 0, "gateway.relay_max_delay_s", "> 0"),
    ("gateway", "relay_max_delay_s", 300, "gateway.relay_max_delay_s", "ack_timeout_s"),
    ("gateway", "relay_max_bytes", MAX_RELAY_BYTES + 1, "gateway.relay_max_bytes", "relay limit"),
    ("gateway", "relay_max_messages", 1001, "gateway.relay_max_messages", "1-1000"),
    ("gateway", "max_inflight_relays", 0, "gateway.max_inflight_relays", "1-1000"),
    ("gateway", "max_waiting_bytes", 1000, "gateway.max_waiting_bytes", "relay_max_bytes"),
    ("gateway", "heartbeat_s", 600, "gateway.heartbeat_s", "Node offline"),
    ("gateway", "relay_every_s", 1, "gateway.relay_every_s", "unknown key"),
    ("site_mqtt", "host", "mqtts://broker.lan", "site_mqtt.host", "host name"),
    ("cloud_mqtt", "port", 70000, "cloud_mqtt.port", "TCP port"),
    ("cloud_mqtt", "tls", False, "cloud_mqtt.tls", "in clear"),
    ("site_mqtt", "password_file", "relative/path", "site_mqtt.password_file", "path"),
    ("site_mqtt", "keepalive_s", 70000, "site_mqtt.keepalive_s", "16 bits"),
])
def test_a_wrong_value_is_refused_naming_its_key(table: str, key: str, value: Any, named: str,
                                                 why: str) -> None:
    raw = sample()
    raw[table][key] = value
    with pytest.raises(ConfigError) as caught:
        parse_config(raw)
    assert caught.value.key == named, caught.value
    assert why in caught.value.reason, caught.value


def test_missing_tables_and_credentials_are_named() -> None:
    raw = sample()
    del raw["cloud_mqtt"]
    with pytest.raises(ConfigError, match=r"^cloud_mqtt: missing table"):
        parse_config(raw)
    raw = sample()
    del raw["site_mqtt"]["password_file"]
    with pytest.raises(ConfigError, match=r"^site_mqtt\.password_file: give password_file"):
        parse_config(raw)
    raw = sample()
    del raw["site_mqtt"]["ca_file"]
    with pytest.raises(ConfigError, match=r"^site_mqtt\.ca_file: missing: TLS is on"):
        parse_config(raw)


def test_one_broker_for_both_links_is_refused() -> None:
    raw = sample()
    raw["cloud_mqtt"]["host"] = raw["site_mqtt"]["host"]
    with pytest.raises(ConfigError, match=r"^cloud_mqtt\.port: .* the site broker's too"):
        parse_config(raw)


def test_check_config_exit_codes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["gateway", "check-config", "--config", str(SAMPLE)]) == 0
    assert "ok (gateway hn-bachmai/gw-1" in capsys.readouterr().out
    bad = tmp_path / "gateway.toml"
    bad.write_text(SAMPLE.read_text().replace("relay_max_delay_s = 1.0", "relay_max_delay_s = -1"))
    assert main(["gateway", "check-config", "--config", str(bad)]) == 2
    assert "config error: gateway.relay_max_delay_s: must be > 0" in capsys.readouterr().err
    assert main(["gateway", "run", "--config", str(tmp_path / "missing.toml")]) == 2
    assert "cannot read the config file" in capsys.readouterr().err
